//! `omv-sim`: a simulated OpenMV cam (firmware 5.0, protocol 1.0.2) on a
//! pseudo-terminal or a TCP port.
//!
//! ```text
//! omv-sim --pty                 # prints e.g. /dev/pts/5, then serves
//! omv-sim --tcp 127.0.0.1:0     # prints the bound address, then serves
//! omv-sim --udp 127.0.0.1:0     # one packet per datagram; answers the last sender
//! ```
//!
//! `--tcp` and `--udp` bind loopback addresses only, unless `--allow-remote`
//! is given: the sim runs whatever script a host uploads, with the rights of
//! the user who started it.
//!
//! The first line on stdout is the device path (or address) and nothing
//! else; logs go to stderr. Runs until SIGINT/SIGTERM, then exits 0.
//! Invalid options print one line on stderr and exit 2; an address that
//! cannot be bound (a port in use) prints one line and exits 1.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::error::ErrorKind;
use clap::{ArgGroup, Parser};
use omv_proto::Duration;
use omv_sim::board::Board;
use omv_sim::cam::{ChannelSpec, SimConfig};
use omv_sim::fault::FaultConfig;
use omv_sim::serve::{serve, MonotonicClock, ServeOptions};

/// A simulated OpenMV cam for developing and testing host software without hardware.
#[derive(Parser, Debug)]
#[command(name = "omv-sim", version, about, long_about = None)]
#[command(group(ArgGroup::new("transport").required(true).args(["pty", "tcp", "udp"])))]
struct Cli {
    /// Serve on a new pseudo-terminal; its path is printed on the first stdout line.
    #[arg(long)]
    pty: bool,
    /// Serve on TCP at ADDR (port 0 picks one); the bound address is printed on the first stdout line.
    #[arg(long, value_name = "ADDR")]
    tcp: Option<String>,
    /// Serve on UDP at ADDR, one packet per datagram, answering whoever sent the last one; the bound address is printed on the first stdout line.
    #[arg(long, value_name = "ADDR")]
    udp: Option<String>,
    /// Let --tcp/--udp bind a non-loopback address (anyone who can reach it can run code as this user).
    #[arg(long)]
    allow_remote: bool,
    /// Largest payload the cam announces and accepts (50 to 65521), instead of the board's packet buffer (default 1400 with --udp).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(50..=65521))]
    max_payload: Option<u16>,
    /// Board profile: h7plus, rt1062, n6, ae3 or h7 (its max payload: 4082, 4082, 8178, 8178, 498).
    #[arg(long, default_value = "h7plus", value_parser = parse_board)]
    board: Board,
    /// Register the profile channel (id 4).
    #[arg(long)]
    profiler: bool,
    /// A user byte-buffer channel NAME:SIZE (SIZE with optional K/M suffix; byte i = i % 251). Repeatable.
    #[arg(long = "channel", value_name = "NAME:SIZE", value_parser = parse_channel)]
    channels: Vec<ChannelSpec>,
    /// Probability that a packet the cam sends is dropped.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    drop_rate: f64,
    /// Probability that a packet the cam receives is dropped.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    rx_drop_rate: f64,
    /// Probability that a packet the cam sends has one bit flipped.
    #[arg(long, value_name = "P", default_value_t = 0.0, value_parser = probability)]
    corrupt_rate: f64,
    /// Latency added to every packet the cam sends, in milliseconds.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    latency_ms: u64,
    /// Split every packet the cam sends into random chunks of 1..=N bytes (0: off).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=65_536))]
    chunk_max: u64,
    /// Seed of every random fault decision.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Stream the PNG/JPEG images of DIR instead of the test pattern.
    #[arg(long, value_name = "DIR")]
    frames: Option<PathBuf>,
    /// Size WxH of the test pattern's frames (default 320x240; each side 1 to 4096).
    #[arg(long, value_name = "WxH", value_parser = resolution)]
    resolution: Option<(u32, u32)>,
    /// Stream frame rate (0.1 to 1000).
    #[arg(long, value_name = "N", value_parser = fps)]
    fps: Option<f32>,
    /// The firmware's abandoned long read: a read the host gave up on goes
    /// on piece by piece (512-byte pieces), through SYNCs, until the port is
    /// closed (pty: the host closes it; TCP: the connection ends).
    #[arg(long)]
    abandoned_reads: bool,
    /// Python interpreter that runs scripts (default: python3 on PATH).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Stream frames with no script taking snapshots (the test pattern or
    /// --frames at --fps); by default frames come from the script, as on a cam.
    #[arg(long)]
    free_running_frames: bool,
    /// Simulated flash directory for the script's img.save (default: a temporary one).
    #[arg(long, value_name = "DIR")]
    flash: Option<PathBuf>,
    /// How long a script channel's backend may take to answer (ms, 1 to 600000).
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    script_timeout_ms: u64,
    /// More logging on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

fn parse_board(s: &str) -> Result<Board, String> {
    s.parse::<Board>().map_err(|e| e.to_string())
}

fn parse_channel(s: &str) -> Result<ChannelSpec, String> {
    s.parse::<ChannelSpec>().map_err(|e| e.to_string())
}

fn probability(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?} is not a probability between 0 and 1")),
    }
}

fn resolution(s: &str) -> Result<(u32, u32), String> {
    omv_sim::cam::parse_resolution(s).map_err(|e| e.to_string())
}

fn fps(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(f) if (0.1..=1000.0).contains(&f) => Ok(f),
        _ => Err(format!("{s:?} is not a frame rate between 0.1 and 1000")),
    }
}

/// Resolves a listening address; non-loopback addresses need
/// `--allow-remote` (then a one-line warning goes to stderr). Errors are
/// usage errors (exit 2).
fn listen_addrs(
    flag: &str,
    addr: &str,
    allow_remote: bool,
) -> Result<Vec<std::net::SocketAddr>, ExitCode> {
    let addrs: Vec<std::net::SocketAddr> = match std::net::ToSocketAddrs::to_socket_addrs(addr) {
        Ok(a) => a.collect(),
        Err(e) => {
            return Err(usage_error(&format!(
                "invalid value {addr:?} for '{flag} <ADDR>': {e}"
            )))
        }
    };
    if addrs.is_empty() {
        return Err(usage_error(&format!(
            "{flag} {addr:?} resolves to no address"
        )));
    }
    if let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
        if !allow_remote {
            return Err(usage_error(&format!(
                "{flag} {addr}: {} is not a loopback address; the sim runs any script a host uploads, \
                 so binding it needs --allow-remote",
                remote.ip()
            )));
        }
        eprintln!(
            "omv-sim: warning: listening on {addr}: anyone who can reach it can run code as this user"
        );
    }
    Ok(addrs)
}

/// A minimal `log` backend writing to stderr.
struct StderrLogger {
    level: log::LevelFilter,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let _ = writeln!(
                std::io::stderr().lock(),
                "omv-sim {:<5} {}",
                r.level(),
                r.args()
            );
        }
    }

    fn flush(&self) {}
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let logger = Box::leak(Box::new(StderrLogger { level }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Prints one line on stderr and returns exit code 2 (usage error).
fn usage_error(msg: &str) -> ExitCode {
    let mut lines = msg.lines().map(str::trim).filter(|l| !l.is_empty());
    let mut line = lines.next().unwrap_or("invalid arguments").to_string();
    if line.ends_with(':') {
        // "the following required arguments were not provided:" + the list
        if let Some(next) = lines.next() {
            line = format!("{line} {next}");
        }
    }
    let line = line.strip_prefix("error:").map_or(line.as_str(), str::trim);
    eprintln!("omv-sim: {line}");
    ExitCode::from(2)
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("omv-sim: {msg}");
    ExitCode::from(1)
}

/// Prints the first stdout line (the only stdout output) and flushes it.
fn announce(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return usage_error(&e.to_string()),
    };
    init_logging(cli.verbose);

    let faults = FaultConfig::default()
        .drop_rate(cli.drop_rate)
        .rx_drop_rate(cli.rx_drop_rate)
        .corrupt_rate(cli.corrupt_rate)
        .latency(Duration::from_millis(cli.latency_ms))
        .chunk_max(cli.chunk_max as usize)
        .seed(cli.seed);
    let max_payload = cli.max_payload.or(cli
        .udp
        .is_some()
        .then_some(omv_sim::udp::DEFAULT_UDP_MAX_PAYLOAD));
    let mut config = SimConfig::new()
        .board(cli.board)
        .profiler(cli.profiler)
        .faults(faults);
    if cli.abandoned_reads {
        // The firmware reads callback channels 512 bytes at a time.
        config.device.read_piece = Some(512);
        config = config.abandoned_reads(true);
    }
    for c in cli.channels {
        config = config.channel_spec(c);
    }
    if let Some(f) = cli.fps {
        config = config.fps(f);
    }
    if let Some((w, h)) = cli.resolution {
        config = config.resolution(w, h);
    }
    if let Some(d) = cli.frames {
        config = config.frames_dir(d);
    }
    if let Some(p) = cli.python {
        config = config.python(p);
    }
    if let Some(d) = cli.flash {
        config = config.flash_dir(d);
    }
    config = config
        .free_running_frames(cli.free_running_frames)
        .script_call_timeout(omv_proto::Duration::from_millis(cli.script_timeout_ms));
    if let Some(n) = max_payload {
        config = config.max_payload(n);
    }
    let mut cam = match config.build() {
        Ok(c) => c,
        Err(e) => return usage_error(&e.to_string()),
    };

    let shutdown = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        if let Err(e) = signal_hook::flag::register(sig, shutdown.clone()) {
            return fail(format_args!("cannot handle signal {sig}: {e}"));
        }
    }
    let clock = MonotonicClock::new();
    let options = ServeOptions::default();

    if cli.pty {
        let mut pty = match omv_sim::pty::Pty::open() {
            Ok(p) => p,
            Err(e) => return fail(format_args!("cannot create a pseudo-terminal: {e}")),
        };
        if let Err(e) = announce(&pty.path().display().to_string()) {
            return fail(format_args!("cannot write to stdout: {e}"));
        }
        log::info!("serving on {}", pty.path().display());
        match serve(&mut cam, &mut pty, &clock, &shutdown, &options) {
            // Shutdown, the peer closed, or an end a newer library adds.
            Ok(_) => {}
            Err(e) => return fail(e),
        }
    } else if let Some(addr) = cli.tcp {
        let addrs = match listen_addrs("--tcp", &addr, cli.allow_remote) {
            Ok(a) => a,
            Err(code) => return code,
        };
        let server = match omv_sim::tcp::TcpServer::bind(&addrs[..]) {
            Ok(s) => s,
            Err(e) => return fail(format_args!("cannot listen on {addr}: {e}")),
        };
        let bound = match server.local_addr() {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        if let Err(e) = announce(&bound.to_string()) {
            return fail(format_args!("cannot write to stdout: {e}"));
        }
        log::info!("listening on {bound}");
        if let Err(e) = server.run(&mut cam, &clock, &shutdown, &options) {
            return fail(e);
        }
    } else if let Some(addr) = cli.udp {
        let addrs = match listen_addrs("--udp", &addr, cli.allow_remote) {
            Ok(a) => a,
            Err(code) => return code,
        };
        let mut udp = match omv_sim::udp::UdpTransport::bind(&addrs[..]) {
            Ok(s) => s,
            Err(e) => return fail(format_args!("cannot bind {addr}: {e}")),
        };
        let bound = match udp.local_addr() {
            Ok(a) => a,
            Err(e) => return fail(e),
        };
        if let Err(e) = announce(&bound.to_string()) {
            return fail(format_args!("cannot write to stdout: {e}"));
        }
        log::info!("serving UDP on {bound}");
        // serve() returns only on shutdown: UDP has no connection to close.
        if let Err(e) = serve(&mut cam, &mut udp, &clock, &shutdown, &options) {
            return fail(e);
        }
        let u = udp.stats();
        log::info!(
            "udp: {} datagrams in, {} out, {} rejected, {} clients",
            u.received,
            u.sent,
            u.rejected,
            u.clients
        );
    }
    let s = cam.stats();
    log::info!(
        "shutting down: sent {} received {} packets; faults {:?}",
        s.device.sent,
        s.device.received,
        s.faults
    );
    drop(cam); // stops a running script
    ExitCode::SUCCESS
}
