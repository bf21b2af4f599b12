//! `omv`: talk to an OpenMV cam from the command line.
//!
//! ```text
//! omv demo                          # the embedded simulated cam: a tour
//! omv --port /dev/ttyACM0 info      # a real cam (or omv-sim --pty)
//! omv --tcp 127.0.0.1:5555 run script.py
//! omv --udp 127.0.0.1:5556 info     # omv-sim --udp, one packet per datagram
//! omv --port /dev/pts/5 read bulk --out bulk.bin
//! ```
//!
//! With none of `--port`, `--tcp` and `--udp` the target is a simulated cam started
//! in this process (sim-device's `SimCam` over an in-memory link), with a
//! profile channel and two user channels: `ticks` (milliseconds since
//! start, 10 digits) and `bulk` (1 MiB, byte i = i % 251).
//!
//! Errors print one line on stderr and exit with status 1 (usage errors:
//! 2); standard output closed by its reader (`omv info | head -1`) ends
//! the command quietly with status 0. Ctrl-C stops long-running commands
//! cleanly (a second one exits at once).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use omv_blocking::image::save_png;
use omv_blocking::omv_proto::ChannelId;
use omv_blocking::sim::EmbeddedSim;
use omv_blocking::symbols::SymbolTable;
use omv_blocking::EventKind;
use omv_blocking::{Camera, CameraConfig, Error};
use omv_sim::board::Board;
use omv_sim::cam::SimConfig;
use omv_sim::user::{BufferChannel, SnapshotChannel};

/// Command-line tool for OpenMV cams (protocol 1.0): scripts, frames, channels, profiler.
#[derive(Parser, Debug)]
#[command(name = "omv", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Debug)]
struct Global {
    /// Serial port of the cam (e.g. /dev/ttyACM0, or omv-sim --pty's path).
    #[arg(long, global = true, value_name = "PATH", conflicts_with_all = ["tcp", "udp"])]
    port: Option<String>,
    /// TCP address of the cam (e.g. omv-sim --tcp's address).
    #[arg(long, global = true, value_name = "ADDR", conflicts_with = "udp")]
    tcp: Option<String>,
    /// UDP address of the cam (e.g. omv-sim --udp's address): one packet per datagram.
    #[arg(long, global = true, value_name = "ADDR")]
    udp: Option<String>,
    /// Serial baud rate (921600 switches a USB cam to the protocol).
    #[arg(long, global = true, default_value_t = 921_600)]
    baudrate: u32,
    /// Per-packet timeout in seconds.
    #[arg(long, global = true, default_value_t = 1.0, value_parser = seconds)]
    timeout: f64,
    /// Enable CRCs.
    #[arg(long, global = true, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, value_parser = boolean)]
    crc: bool,
    /// Enable sequence numbers.
    #[arg(long, global = true, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, value_parser = boolean)]
    seq: bool,
    /// Enable ACKs (and cam retransmissions).
    #[arg(long, global = true, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, value_parser = boolean)]
    ack: bool,
    /// Enable events.
    #[arg(long, global = true, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set, value_parser = boolean)]
    events: bool,
    /// SYNC attempts before giving up.
    #[arg(long, global = true, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..))]
    max_retry: u8,
    /// Largest payload (the cam clips it).
    #[arg(long, global = true, default_value_t = 4096, value_parser = clap::value_parser!(u16).range(50..))]
    max_payload: u16,
    /// Test only: probability of dropping each received packet.
    #[arg(long, global = true, default_value_t = 0.0, value_parser = probability)]
    drop_rate: f64,
    /// Seed of the drop simulation.
    #[arg(long, global = true, default_value_t = 0)]
    seed: u64,
    /// Board of the embedded simulated cam (h7plus, rt1062, n6, ae3, h7).
    #[arg(long, global = true, default_value = "n6", value_parser = board)]
    sim_board: Board,
    /// More output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Debug logging (same as -vv).
    #[arg(long, global = true)]
    debug: bool,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// A tour: system info, channels, a script, frames (one saved as PNG), a user channel, stats.
    Demo {
        /// Where to save the PNG (default: a new temporary directory).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// System information, versions, channels, memory and statistics.
    Info,
    /// Run a script, printing its output until it ends (or Ctrl-C), then stop
    /// it; exits 1 if it ends with an uncaught exception.
    Run {
        /// The script file ("-" reads standard input).
        script: PathBuf,
        /// Start the script and return at once, leaving it running (e.g. a
        /// script that registers channels for later commands).
        #[arg(long)]
        detach: bool,
    },
    /// Stop the running script.
    Stop,
    /// Stream frames: print each, optionally save them as PNG; prints fps and throughput.
    Stream {
        /// Number of frames.
        #[arg(long, default_value_t = 30)]
        frames: u32,
        /// Uncompressed frames (needs --resolution).
        #[arg(long, requires = "resolution")]
        raw: bool,
        /// Raw frame size, WxH.
        #[arg(long, value_name = "WxH", value_parser = resolution)]
        resolution: Option<(u32, u32)>,
        /// Save every frame as DIR/frame-NNNN.png.
        #[arg(long, value_name = "DIR")]
        save: Option<PathBuf>,
        /// Run this script on the cam first (one that captures frames, on a
        /// real cam), and stop it at the end.
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
    },
    /// Read a channel (by name or id) to a file or standard output; throughput on stderr.
    Read {
        /// Channel name or id.
        channel: String,
        /// Byte offset.
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// Bytes to read (default: the channel's size minus the offset).
        #[arg(long)]
        size: Option<u32>,
        /// Read this many times (each read is written out).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        repeat: u32,
        /// Output file (default: standard output).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Write to a channel (by name or id).
    Write {
        /// Channel name or id.
        channel: String,
        /// The bytes to write, as text.
        #[arg(long, conflicts_with = "file", required_unless_present = "file")]
        data: Option<String>,
        /// A file whose bytes to write.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Byte offset.
        #[arg(long, default_value_t = 0)]
        offset: u32,
    },
    /// Which channels have data ready, and the event state.
    Status,
    /// Read the profiler: a table sorted by total time.
    Profile {
        /// Switch to exclusive timing first (callees not charged to callers).
        #[arg(long)]
        exclusive: bool,
        /// Reset the counters (and the default PMU events) after reading.
        #[arg(long)]
        reset: bool,
        /// Firmware ELF for function names.
        #[arg(long, value_name = "ELF")]
        firmware: Option<PathBuf>,
        /// Rows to print.
        #[arg(long, default_value_t = 20)]
        top: usize,
    },
    /// Throughput benchmark with a progress bar: frames, or reads of a channel.
    Bench {
        /// Seconds to run.
        #[arg(long, default_value_t = 5.0, value_parser = seconds)]
        seconds: f64,
        /// Read this channel repeatedly instead of streaming frames.
        #[arg(long)]
        channel: Option<String>,
        /// Uncompressed frames (needs --resolution).
        #[arg(long, requires = "resolution")]
        raw: bool,
        /// Raw frame size, WxH.
        #[arg(long, value_name = "WxH", value_parser = resolution)]
        resolution: Option<(u32, u32)>,
        /// Run this script on the cam first (one that captures frames, on a
        /// real cam), and stop it at the end.
        #[arg(long, value_name = "FILE")]
        script: Option<PathBuf>,
    },
}

fn boolean(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "t" | "y" | "1" | "on" => Ok(true),
        "no" | "false" | "f" | "n" | "0" | "off" => Ok(false),
        _ => Err(format!("{s:?} is not a boolean (true/false, yes/no, 1/0)")),
    }
}

fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds (0 to 86400)")),
    }
}

fn probability(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability between 0 and 1")),
    }
}

fn resolution(s: &str) -> Result<(u32, u32), String> {
    let err = || format!("{s:?} is not a resolution WxH (e.g. 320x240)");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(err)?;
    let w: u32 = w.trim().parse().map_err(|_| err())?;
    let h: u32 = h.trim().parse().map_err(|_| err())?;
    if w == 0 || h == 0 || w > 8192 || h > 8192 {
        return Err(err());
    }
    Ok((w, h))
}

fn board(s: &str) -> Result<Board, String> {
    s.parse::<Board>().map_err(|e| e.to_string())
}

/// Why a command ended early.
#[derive(Debug)]
enum Failure {
    /// An error, printed as one line (exit status 1).
    Message(String),
    /// Standard output was closed by its reader (`omv info | head -1`):
    /// nothing more to say, a clean exit.
    ClosedOutput,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        Failure::Message(e.to_string())
    }
}

impl From<String> for Failure {
    fn from(s: String) -> Failure {
        Failure::Message(s)
    }
}

type CliResult<T = ()> = Result<T, Failure>;

/// A failed write of the command's output: a reader that went away
/// (`BrokenPipe`) ends the command cleanly, anything else is an error.
fn output_error(e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Failure::ClosedOutput
    } else {
        Failure::Message(format!("cannot write the output: {e}"))
    }
}

/// Writes to standard output without panicking (`print!` panics when the
/// pipe is closed).
fn emit(args: std::fmt::Arguments<'_>) -> CliResult {
    std::io::stdout()
        .lock()
        .write_fmt(args)
        .map_err(output_error)
}

/// [`emit`] plus a newline, in one locked write.
fn emit_line(args: std::fmt::Arguments<'_>) -> CliResult {
    let mut out = std::io::stdout().lock();
    out.write_fmt(args)
        .and_then(|()| out.write_all(b"\n"))
        .map_err(output_error)
}

fn flush_output() -> CliResult {
    std::io::stdout().flush().map_err(output_error)
}

/// A message on standard error; a closed stderr is ignored (`eprintln!`
/// would panic).
fn note(args: std::fmt::Arguments<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_fmt(args).and_then(|()| err.write_all(b"\n"));
}

/// `eprintln!` through [`note`].
macro_rules! errln {
    ($($arg:tt)*) => {
        note(format_args!($($arg)*))
    };
}

/// `print!` through [`emit`]: returns the failure from the enclosing function.
macro_rules! out {
    ($($arg:tt)*) => {
        emit(format_args!($($arg)*))?
    };
}

/// `println!` through [`emit_line`]: returns the failure from the enclosing function.
macro_rules! outln {
    () => {
        emit_line(format_args!(""))?
    };
    ($($arg:tt)*) => {
        emit_line(format_args!($($arg)*))?
    };
}

/// The cam and, for the embedded sim, the thread serving it. Field order
/// matters: the camera disconnects before the sim stops.
struct Target {
    cam: Camera,
    _sim: Option<EmbeddedSim>,
}

fn config(g: &Global, port: &str) -> CameraConfig {
    CameraConfig::new(port)
        .baudrate(g.baudrate)
        .timeout(Duration::from_secs_f64(g.timeout))
        .crc(g.crc)
        .seq(g.seq)
        .ack(g.ack)
        .events(g.events)
        .max_retry(g.max_retry)
        .max_payload(g.max_payload)
        .drop_rate(g.drop_rate)
        .seed(g.seed)
}

/// Builds the embedded cam: profiler on, user channels `ticks` and `bulk`.
fn start_sim(board: Board) -> CliResult<EmbeddedSim> {
    let start = Instant::now();
    let sim = EmbeddedSim::start(SimConfig::new().board(board).profiler(true), move |cam| {
        let ticks = SnapshotChannel::new(move || {
            format!("{:010}", start.elapsed().as_millis()).into_bytes()
        });
        for (name, backend) in [
            ("ticks", Box::new(ticks) as Box<_>),
            (
                "bulk",
                Box::new(BufferChannel::with_pattern(1 << 20)) as Box<_>,
            ),
        ] {
            if let Err(e) = cam.register_channel(name, backend) {
                log::warn!("embedded sim: cannot register {name}: {e}");
            }
        }
    })
    .map_err(|e| Failure::Message(e.to_string()))?;
    Ok(sim)
}

fn connect(g: &Global) -> CliResult<Target> {
    let (mut cam, sim) = match (&g.port, &g.tcp, &g.udp) {
        (Some(p), _, _) => (Camera::new(config(g, p)), None),
        (None, Some(a), _) => (Camera::tcp(a, config(g, a)), None),
        (None, None, Some(a)) => (Camera::udp(a, config(g, a)), None),
        (None, None, None) => {
            let sim = start_sim(g.sim_board)?;
            let link = sim
                .take_link()
                .ok_or_else(|| Failure::Message("embedded sim: no link".into()))?;
            (
                Camera::with_transport(link, config(g, "embedded-sim")),
                Some(sim),
            )
        }
    };
    // SIGINT/SIGTERM cancel whatever the cam does (connect included);
    // commands that stop a script or a stream on Ctrl-C take the flag
    // off again (see `run`).
    cam.set_cancel_flag(interrupt_flag());
    cam.connect().map_err(|e| match e {
        // An I/O error names its port already; the others do not.
        Error::Io { .. } => Failure::from(e),
        e => Failure::Message(format!("{}: {e}", cam.port_name())),
    })?;
    log::info!("connected to {}", cam.port_name());
    Ok(Target { cam, _sim: sim })
}

/// Ctrl-C: the first sets the flag, the second exits at once.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone());
        let _ = signal_hook::flag::register(sig, flag.clone());
    }
    flag
}

fn interrupted(flag: &AtomicBool) -> bool {
    flag.load(Ordering::SeqCst)
}

/// A channel given as a name or a numeric id.
fn resolve(cam: &mut Camera, channel: &str) -> CliResult<ChannelId> {
    if let Ok(id) = channel.parse::<u8>() {
        return match cam.get_channel(ChannelId(id))? {
            Some(e) => Ok(e.id),
            None => Err(Failure::Message(format!(
                "no channel with id {id} on the cam"
            ))),
        };
    }
    cam.get_channel_id(channel)?
        .ok_or_else(|| Failure::Message(Error::NoSuchChannel(channel.to_string()).to_string()))
}

fn rate(bytes: f64, secs: f64) -> String {
    let bps = bytes / secs.max(1e-9);
    if bps >= 1024.0 * 1024.0 {
        format!("{:.2} MiB/s", bps / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB/s", bps / 1024.0)
    }
}

// --------------------------------------------------------------------
// Commands
// --------------------------------------------------------------------

fn cmd_info(cam: &mut Camera) -> CliResult {
    for l in cam.system_info_lines()? {
        outln!("{l}");
    }
    print_channels(cam)?;
    match cam.memory_stats() {
        Ok(m) => {
            outln!("Memory:");
            for e in &m.entries {
                let kind = e
                    .kind
                    .name()
                    .map_or_else(|| format!("type {}", e.kind.0), str::to_string);
                outln!(
                    "  {kind:<9} total {:>10}  used {:>10}  free {:>10}  peak {:>10}",
                    e.total,
                    e.used,
                    e.free,
                    e.peak
                );
            }
        }
        Err(Error::Unsupported(why)) => outln!("Memory: not supported ({why})"),
        Err(e) => return Err(e.into()),
    }
    print_stats(cam)
}

fn print_channels(cam: &mut Camera) -> CliResult {
    let list = cam.channels()?.to_vec();
    outln!("Channels ({}):", list.len());
    for c in list {
        outln!("  {:>2}  {:<14} {:?}", c.id.0, c.name, c.flags);
    }
    Ok(())
}

fn print_stats(cam: &mut Camera) -> CliResult {
    let h = cam.host_stats();
    outln!(
        "Host stats: sent {}, received {}, checksum {}, sequence {}, duplicates {}, events {}, timeouts {}",
        h.sent, h.received, h.checksum, h.sequence, h.duplicates, h.events, h.timeouts
    );
    let d = cam.device_stats()?;
    outln!(
        "Cam stats:  sent {}, received {}, checksum {}, sequence {}, retransmit {}, transport {}, sent_events {}",
        d.sent,
        d.received,
        d.checksum_errors,
        d.sequence_errors,
        d.retransmits,
        d.transport_errors,
        d.sent_events
    );
    Ok(())
}

/// The tail of a script's output kept to spot an uncaught exception.
const OUTPUT_TAIL: usize = 16 * 1024;

/// The exception line when `output` ends with an uncaught exception's
/// traceback (only `MPY: soft reboot` may follow it), as a cam prints it.
fn uncaught_exception(output: &str) -> Option<String> {
    let pos = output.rfind("Traceback (most recent call last):")?;
    let lines: Vec<&str> = output[pos..]
        .lines()
        .skip(1)
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty() && l.trim() != "MPY: soft reboot")
        .collect();
    let (last, frames) = lines.split_last()?;
    // Only the traceback's indented frame lines, then the exception line
    // (a chained traceback's last part has its own header, found above).
    let is_frame = |l: &&str| l.starts_with(' ') || l.starts_with('\t');
    if is_frame(last) || frames.is_empty() || !frames.iter().all(is_frame) {
        return None;
    }
    Some(last.to_string())
}

/// Runs `script` and prints its output until it ends or `stop` is raised.
/// A script that ends with an uncaught exception is an error.
fn run_script(cam: &mut Camera, script: &str, stop: &AtomicBool) -> CliResult {
    let before = cam.event_state();
    cam.exec(script)?;
    let stdin = cam.get_channel_id("stdin")?;
    let mut tail = String::new();
    let mut interrupted_by_user = false;
    // The script's output as it comes; a failed write (the reader went
    // away) stops the script.
    let mut show = |text: &str| {
        tail.push_str(text);
        if tail.len() > OUTPUT_TAIL {
            let mut cut = tail.len() - OUTPUT_TAIL;
            while !tail.is_char_boundary(cut) {
                cut += 1;
            }
            tail.drain(..cut);
        }
        emit(format_args!("{text}")).and_then(|()| flush_output())
    };
    let mut ended = false;
    let mut failed = None;
    while !ended && failed.is_none() {
        if interrupted(stop) {
            errln!("omv: interrupted, stopping the script");
            interrupted_by_user = true;
            break;
        }
        cam.wait_events(Duration::from_millis(100))?;
        let state = cam.event_state();
        let stopped_event = state.scripts_stopped > before.scripts_stopped
            || state.soft_reboots > before.soft_reboots;
        // Without events, or if one was lost: the stdin poll says whether a script runs.
        let running = match stdin {
            Some(id) => cam.read_status()?.ready_id(id),
            None => !stopped_event,
        };
        ended = stopped_event || !running;
        while let Some(text) = cam.read_stdout()? {
            if let Err(f) = show(&text) {
                failed = Some(f);
                break;
            }
        }
    }
    cam.stop()?;
    if let Some(f) = failed {
        return Err(f);
    }
    // Output written before the stop.
    while let Some(text) = cam.read_stdout()? {
        show(&text)?;
    }
    if !interrupted_by_user {
        if let Some(exc) = uncaught_exception(&tail) {
            return Err(Failure::Message(format!(
                "the script ended with an uncaught exception: {exc}"
            )));
        }
    }
    Ok(())
}

fn cmd_run(cam: &mut Camera, path: &Path) -> CliResult {
    let script = read_script(path)?;
    let stop = interrupt_flag();
    run_script(cam, &script, &stop)
}

/// Waits for the next frame (up to `patience`), returning it decoded.
fn next_frame(
    cam: &mut Camera,
    patience: Duration,
    stop: &AtomicBool,
) -> CliResult<Option<omv_blocking::Frame>> {
    let deadline = Instant::now() + patience;
    loop {
        if interrupted(stop) {
            return Ok(None);
        }
        if let Some(f) = cam.read_frame()? {
            return Ok(Some(f));
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Failure::Message(format!(
                "no frame within {:.1}s (is the stream channel producing frames?)",
                patience.as_secs_f64()
            )));
        }
        // Blocks until the next event (a frame-ready NOTIFY) or 20 ms.
        cam.wait_events((deadline - now).min(Duration::from_millis(20)))?;
    }
}

fn cmd_stream(
    cam: &mut Camera,
    frames: u32,
    raw: bool,
    res: Option<(u32, u32)>,
    save: Option<&Path>,
) -> CliResult {
    if let Some(dir) = save {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::Message(format!("cannot create {}: {e}", dir.display())))?;
    }
    let stop = interrupt_flag();
    cam.streaming(true, raw, res)?;
    let patience = cam.config().timeout.max(Duration::from_secs(1)) * 5;
    let start = Instant::now();
    let (mut n, mut bytes) = (0u32, 0u64);
    let r = (|| -> CliResult {
        while n < frames {
            let Some(f) = next_frame(cam, patience, &stop)? else {
                break;
            };
            n += 1;
            bytes += f.raw_size as u64;
            let mut line = format!(
                "frame {n}: {}x{} {} {} bytes",
                f.width, f.height, f.pixfmt, f.raw_size
            );
            if let Some(fps) = f.fps {
                line.push_str(&format!(" (cam {fps:.1} fps)"));
            }
            if let Some(dir) = save {
                let p = dir.join(format!("frame-{n:04}.png"));
                save_png(&f.rgb, &p).map_err(Error::from)?;
                line.push_str(&format!(" -> {}", p.display()));
            }
            outln!("{line}");
        }
        Ok(())
    })();
    let secs = start.elapsed().as_secs_f64();
    let off = cam.streaming(false, false, None);
    r?;
    off?;
    outln!(
        "{n} frames in {secs:.2}s: {:.1} fps, {}",
        f64::from(n) / secs.max(1e-9),
        rate(bytes as f64, secs)
    );
    Ok(())
}

fn cmd_read(
    cam: &mut Camera,
    channel: &str,
    offset: u32,
    size: Option<u32>,
    repeat: u32,
    out: Option<&Path>,
) -> CliResult {
    let id = resolve(cam, channel)?;
    let size = match size {
        Some(s) => s,
        None => cam
            .retry(|c| c.channel_size_at(id))?
            .checked_sub(offset)
            .ok_or_else(|| {
                Failure::Message(format!("offset {offset} is past the end of {channel}"))
            })?,
    };
    let mut sink: Box<dyn Write> = match out {
        Some(p) => Box::new(std::io::BufWriter::new(std::fs::File::create(p).map_err(
            |e| Failure::Message(format!("cannot create {}: {e}", p.display())),
        )?)),
        None => Box::new(std::io::stdout().lock()),
    };
    let stop = interrupt_flag();
    let start = Instant::now();
    let mut total = 0u64;
    show_progress(cam, "read");
    for _ in 0..repeat {
        if interrupted(&stop) {
            break;
        }
        // Resumes at the first byte not received after any failure, within
        // the read's deadline.
        let data = cam.channel_read_at(id, offset, size)?;
        total += data.len() as u64;
        sink.write_all(&data).map_err(output_error)?;
    }
    let secs = start.elapsed().as_secs_f64();
    sink.flush().map_err(output_error)?;
    errln!(
        "read {total} bytes from {channel} in {secs:.3}s: {}",
        rate(total as f64, secs)
    );
    Ok(())
}

fn cmd_write(
    cam: &mut Camera,
    channel: &str,
    data: Option<&str>,
    file: Option<&Path>,
    offset: u32,
) -> CliResult {
    let bytes = match (data, file) {
        (Some(d), _) => d.as_bytes().to_vec(),
        (None, Some(f)) => std::fs::read(f)
            .map_err(|e| Failure::Message(format!("cannot read {}: {e}", f.display())))?,
        (None, None) => return Err(Failure::Message("give --data or --file".into())),
    };
    let id = resolve(cam, channel)?;
    let start = Instant::now();
    show_progress(cam, "write");
    // Resumes at the first byte not acknowledged after any failure.
    cam.channel_write_at(id, offset, &bytes)?;
    let secs = start.elapsed().as_secs_f64();
    outln!(
        "wrote {} bytes to {channel} at offset {offset} in {secs:.3}s ({})",
        bytes.len(),
        rate(bytes.len() as f64, secs)
    );
    Ok(())
}

/// Progress of long transfers on stderr (when it is a terminal).
fn show_progress(cam: &mut Camera, what: &'static str) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    cam.set_progress_handler(move |p| {
        // Short transfers finish before a bar is worth drawing.
        if p.total >= 256 * 1024 {
            bar.set_length(p.total);
            bar.set_position(p.done);
            if p.done >= p.total {
                bar.finish_and_clear();
            }
        }
    });
}

fn cmd_status(cam: &mut Camera) -> CliResult {
    let st = cam.read_status()?;
    for (e, ready) in &st.channels {
        outln!(
            "  {:>2}  {:<14} {}",
            e.id.0,
            e.name,
            if *ready { "ready" } else { "-" }
        );
    }
    cam.poll_events()?;
    let ev = cam.event_state();
    let running = match ev.script_running {
        Some(true) => "running",
        Some(false) => "stopped",
        None => "unknown (no stdin event seen)",
    };
    outln!("Script: {running}");
    outln!("Frame ready: {}", if ev.frame_ready { "yes" } else { "no" });
    outln!(
        "Events: {} received ({} started, {} stopped, {} soft reboots, {} channel changes)",
        ev.total,
        ev.scripts_started,
        ev.scripts_stopped,
        ev.soft_reboots,
        ev.channel_changes
    );
    Ok(())
}

fn cmd_profile(
    cam: &mut Camera,
    exclusive: bool,
    reset: bool,
    firmware: Option<&Path>,
    top: usize,
) -> CliResult {
    if !cam.has_channel("profile")? {
        return Err(Error::Unsupported(
            "no profile channel (the firmware was built without PROFILE_ENABLE)".into(),
        )
        .into());
    }
    let symbols = match firmware {
        Some(p) => {
            let bytes = std::fs::read(p)
                .map_err(|e| Failure::Message(format!("cannot read {}: {e}", p.display())))?;
            Some(SymbolTable::from_elf_bytes(&bytes).map_err(Error::from)?)
        }
        None => None,
    };
    if exclusive {
        cam.profiler_mode(true)?;
    }
    let Some(mut records) = cam.read_profile(symbols.as_ref())? else {
        outln!("no profile data yet");
        return Ok(());
    };
    records.sort_by_key(|r| std::cmp::Reverse(r.record.total_ticks));
    let sum: u64 = records.iter().map(|r| r.record.total_ticks).sum();
    let nev = records.first().map_or(0, |r| r.record.events.len()).min(4);
    out!(
        "{:<32} {:>9} {:>9} {:>9} {:>12} {:>9} {:>6}",
        "function",
        "calls",
        "min",
        "max",
        "total",
        "avg",
        "%"
    );
    for i in 0..nev {
        out!(" {:>12}", format!("E{i}"));
    }
    outln!();
    for e in records.iter().take(top) {
        let r = &e.record;
        let name = e
            .function
            .clone()
            .unwrap_or_else(|| format!("0x{:08x}", r.address));
        let name: String = name.chars().take(32).collect();
        let avg = r.total_ticks / u64::from(r.call_count.max(1));
        let pct = if sum > 0 {
            r.total_ticks as f64 * 100.0 / sum as f64
        } else {
            0.0
        };
        out!(
            "{name:<32} {:>9} {:>9} {:>9} {:>12} {:>9} {:>6.2}",
            r.call_count,
            r.min_ticks,
            r.max_ticks,
            r.total_ticks,
            avg,
            pct
        );
        for v in r.events.iter().take(nev) {
            out!(" {v:>12}");
        }
        outln!();
    }
    outln!(
        "{} functions ({} mode){}",
        records.len(),
        if exclusive { "exclusive" } else { "current" },
        if records.len() > top {
            format!(", top {top} shown")
        } else {
            String::new()
        }
    );
    if reset {
        cam.profiler_reset(None)?;
        outln!("profiler reset");
    }
    Ok(())
}

fn cmd_bench(
    cam: &mut Camera,
    seconds: f64,
    channel: Option<&str>,
    raw: bool,
    res: Option<(u32, u32)>,
) -> CliResult {
    let stop = interrupt_flag();
    let dur = Duration::from_secs_f64(seconds);
    let bar = indicatif::ProgressBar::new(dur.as_millis() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed_precise} {msg}")
            .map_err(|e| Failure::Message(e.to_string()))?
            .progress_chars("=> "),
    );
    let start = Instant::now();
    let (mut bytes, mut items) = (0u64, 0u64);
    let update = |bytes: u64, items: u64, what: &str| {
        let secs = start.elapsed().as_secs_f64();
        bar.set_position(start.elapsed().as_millis() as u64);
        bar.set_message(format!(
            "{items} {what}, {:.1}/s, {}",
            items as f64 / secs.max(1e-9),
            rate(bytes as f64, secs)
        ));
    };
    let what;
    if let Some(ch) = channel {
        what = "reads";
        let id = resolve(cam, ch)?;
        // A script's stdout fills a moment after it starts.
        let patience = Instant::now() + cam.config().timeout.max(Duration::from_secs(1)) * 5;
        let mut size = cam.retry(|c| c.channel_size_at(id))?;
        while size == 0 && Instant::now() < patience && !interrupted(&stop) {
            cam.wait_events(Duration::from_millis(10))?;
            size = cam.retry(|c| c.channel_size_at(id))?;
        }
        if size == 0 {
            return Err(Failure::Message(format!("channel {ch} is empty")));
        }
        while start.elapsed() < dur && !interrupted(&stop) {
            // What is available now: a consuming channel (stdout) shrinks
            // as it is read, and reading past its end is NAK FAILED.
            let d = cam.channel_read_available(id)?;
            if d.is_empty() {
                cam.wait_events(Duration::from_millis(10))?;
                continue;
            }
            bytes += d.len() as u64;
            items += 1;
            update(bytes, items, what);
        }
    } else {
        what = "frames";
        cam.streaming(true, raw, res)?;
        let patience = cam.config().timeout.max(Duration::from_secs(1)) * 5;
        let r = (|| -> CliResult {
            while start.elapsed() < dur && !interrupted(&stop) {
                let Some(f) = next_frame(cam, patience, &stop)? else {
                    break;
                };
                bytes += f.raw_size as u64;
                items += 1;
                update(bytes, items, what);
            }
            Ok(())
        })();
        let off = cam.streaming(false, false, None);
        r?;
        off?;
    }
    bar.finish();
    let secs = start.elapsed().as_secs_f64();
    outln!(
        "{items} {what} in {secs:.2}s: {:.1}/s, {} ({bytes} bytes)",
        items as f64 / secs.max(1e-9),
        rate(bytes as f64, secs)
    );
    Ok(())
}

const DEMO_SCRIPT: &str = "\
import sys
print('Hello from the cam!')
for i in range(3):
    print('line', i, 'of the demo script')
print('python', sys.version.split()[0])
";

fn cmd_demo(cam: &mut Camera, dir: Option<&Path>) -> CliResult {
    outln!("== System information");
    for l in cam.system_info_lines()? {
        outln!("{l}");
    }
    outln!("\n== Channels");
    print_channels(cam)?;

    outln!("\n== Running a script");
    let stop = interrupt_flag();
    run_script(cam, DEMO_SCRIPT, &stop)?;

    outln!("\n== Streaming frames");
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => std::env::temp_dir().join(format!("omv-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Failure::Message(format!("cannot create {}: {e}", dir.display())))?;
    let own_capture = !script_running(cam)?;
    if own_capture {
        cam.exec(CAPTURE_SCRIPT)?;
    }
    cam.streaming(true, false, None)?;
    let start = Instant::now();
    let mut saved = None;
    let mut bytes = 0u64;
    let frames = 5u32;
    let r = (|| -> CliResult {
        for i in 1..=frames {
            let Some(f) = next_frame(cam, Duration::from_secs(5), &stop)? else {
                return Ok(());
            };
            bytes += f.raw_size as u64;
            outln!(
                "frame {i}: {}x{} {} ({} bytes on the wire)",
                f.width,
                f.height,
                f.pixfmt,
                f.raw_size
            );
            if saved.is_none() {
                let p = dir.join("frame.png");
                save_png(&f.rgb, &p).map_err(Error::from)?;
                saved = Some(p);
            }
        }
        Ok(())
    })();
    let off = cam.streaming(false, false, None);
    let stopped = if own_capture { cam.stop() } else { Ok(()) };
    r?;
    off?;
    stopped?;
    let secs = start.elapsed().as_secs_f64();
    outln!(
        "{frames} frames in {secs:.2}s ({:.1} fps, {})",
        f64::from(frames) / secs.max(1e-9),
        rate(bytes as f64, secs)
    );
    if let Some(p) = saved {
        outln!("saved {}", p.display());
    }

    outln!("\n== A user channel");
    use omv_blocking::omv_proto::ChannelFlags;
    let list = cam.channels()?.to_vec();
    let user = list
        .iter()
        .find(|c| c.name == "ticks")
        .or_else(|| {
            list.iter().find(|c| {
                c.flags.contains(ChannelFlags::DYNAMIC) && c.flags.contains(ChannelFlags::READ)
            })
        })
        .cloned();
    match user {
        Some(c) => {
            let data = cam.channel_read(&c.name, None)?.unwrap_or_default();
            let head = &data[..data.len().min(32)];
            let shown = if head.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
                format!("{:?}", String::from_utf8_lossy(head))
            } else {
                head.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let more = if data.len() > head.len() { " ..." } else { "" };
            outln!("{} ({} bytes): {shown}{more}", c.name, data.len());
        }
        None => outln!("the cam has no readable user channel"),
    }

    outln!("\n== Statistics");
    print_stats(cam)?;
    let ev = cam.event_state();
    outln!(
        "Events: {} (frames ready {}, scripts started {}, stopped {}, soft reboots {})",
        ev.total,
        cam.take_events()
            .iter()
            .filter(|e| e.kind == EventKind::FrameReady)
            .count(),
        ev.scripts_started,
        ev.scripts_stopped,
        ev.soft_reboots
    );
    Ok(())
}

fn read_script(path: &Path) -> CliResult<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s).map_err(|e| {
            Failure::Message(format!("cannot read the script from standard input: {e}"))
        })?;
        return Ok(s);
    }
    std::fs::read_to_string(path)
        .map_err(|e| Failure::Message(format!("cannot read {}: {e}", path.display())))
}

/// What `omv stream`, `bench` and `demo` run when no script is running
/// and none is given: frames on a cam come from a script's snapshots (as
/// the stock CLI's default script).
const CAPTURE_SCRIPT: &str = "\
import csi
import time

cam = csi.CSI()
cam.reset()
cam.pixformat(csi.RGB565)
cam.framesize(csi.QVGA)
clock = time.clock()
while True:
    clock.tick()
    cam.snapshot()
";

/// True when the cam says a script is running (stdin's poll bit).
fn script_running(cam: &mut Camera) -> CliResult<bool> {
    Ok(match cam.get_channel_id("stdin")? {
        Some(id) => cam.read_status()?.ready_id(id),
        None => false,
    })
}

/// Runs `f`, with `script` (if any) running on the cam meanwhile; with no
/// script given and none running, a capture script of ours. A script the
/// user started is left running.
fn with_script(
    cam: &mut Camera,
    script: Option<&Path>,
    f: impl FnOnce(&mut Camera) -> CliResult,
) -> CliResult {
    let text = match script {
        Some(path) => read_script(path)?,
        None if script_running(cam)? => return f(cam),
        None => {
            log::info!("no script running: starting a capture script");
            CAPTURE_SCRIPT.to_string()
        }
    };
    cam.exec(&text)?;
    let r = f(cam);
    let stopped = cam.stop();
    r?;
    Ok(stopped?)
}

fn run(cli: Cli) -> CliResult {
    let mut target = connect(&cli.global)?;
    let cam = &mut target.cam;
    if !matches!(
        cli.cmd,
        Cmd::Read { .. } | Cmd::Write { .. } | Cmd::Status | Cmd::Info | Cmd::Profile { .. }
    ) {
        // These end on Ctrl-C by stopping the script or the stream, which
        // needs the link: the first signal is theirs, the second exits.
        cam.clear_cancel_flag();
    }
    match &cli.cmd {
        Cmd::Demo { dir } => cmd_demo(cam, dir.as_deref()),
        Cmd::Info => cmd_info(cam),
        Cmd::Run {
            script,
            detach: true,
        } => {
            cam.exec(&read_script(script)?)?;
            outln!("started {}", script.display());
            Ok(())
        }
        Cmd::Run { script, .. } => cmd_run(cam, script),
        Cmd::Stop => {
            cam.stop()?;
            outln!("stopped");
            Ok(())
        }
        Cmd::Stream {
            frames,
            raw,
            resolution,
            save,
            script,
        } => with_script(cam, script.as_deref(), |cam| {
            cmd_stream(cam, *frames, *raw, *resolution, save.as_deref())
        }),
        Cmd::Read {
            channel,
            offset,
            size,
            repeat,
            out,
        } => cmd_read(cam, channel, *offset, *size, *repeat, out.as_deref()),
        Cmd::Write {
            channel,
            data,
            file,
            offset,
        } => cmd_write(cam, channel, data.as_deref(), file.as_deref(), *offset),
        Cmd::Status => cmd_status(cam),
        Cmd::Profile {
            exclusive,
            reset,
            firmware,
            top,
        } => cmd_profile(cam, *exclusive, *reset, firmware.as_deref(), *top),
        Cmd::Bench {
            seconds,
            channel,
            raw,
            resolution,
            script,
        } => with_script(cam, script.as_deref(), |cam| {
            cmd_bench(cam, *seconds, channel.as_deref(), *raw, *resolution)
        }),
    }
}

fn init_logging(g: &Global) {
    let level = match (g.debug, g.verbose) {
        (true, _) | (_, 2..) => log::LevelFilter::Debug,
        (_, 1) => log::LevelFilter::Info,
        _ => log::LevelFilter::Warn,
    };
    let _ = env_logger::Builder::new()
        .filter_level(level)
        .format(|buf, r| writeln!(buf, "omv {:<5} {}", r.level(), r.args()))
        .try_init();
}

/// One line for a clap error (the first non-empty line of its message).
fn usage_error(msg: &str) -> ExitCode {
    let mut lines = msg.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut line = lines.next().unwrap_or("invalid arguments").to_string();
    if line.ends_with(':') {
        if let Some(next) = lines.next() {
            line = format!("{line} {next}");
        }
    }
    let line = line.strip_prefix("error:").map_or(line.as_str(), str::trim);
    errln!("omv: {line}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => return usage_error(&e.to_string()),
    };
    init_logging(&cli.global);
    match run(cli).and_then(|()| flush_output()) {
        Ok(()) | Err(Failure::ClosedOutput) => ExitCode::SUCCESS,
        Err(Failure::Message(msg)) => {
            errln!("omv: {msg}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::uncaught_exception;

    #[test]
    fn uncaught_exceptions_are_told_from_printed_ones() {
        let tb = "Traceback (most recent call last):\r\n  File \"<stdin>\", line 2, in <module>\r\n    raise ValueError('x')\r\nValueError: x\r\n";
        assert_eq!(uncaught_exception(tb).as_deref(), Some("ValueError: x"));
        let with_reboot = format!("hi\n{tb}MPY: soft reboot\r\n");
        assert_eq!(
            uncaught_exception(&with_reboot).as_deref(),
            Some("ValueError: x")
        );
        // Printed by a script that went on.
        assert_eq!(uncaught_exception(&format!("{tb}done: ok\n")), None);
        assert_eq!(uncaught_exception("all good\n"), None);
        assert_eq!(
            uncaught_exception("Traceback (most recent call last):\n"),
            None
        );
    }
}
