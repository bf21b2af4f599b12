//! The `omv` binary: on the embedded cam, and every subcommand against a
//! cam served on a pseudo-terminal (as `omv-sim --pty` does).

#[path = "../../host-blocking/tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;

fn omv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_omv"))
        .args(args)
        .output()
        .expect("omv runs")
}

fn ok(args: &[&str]) -> (String, Vec<u8>) {
    let o = omv(args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "omv {args:?} failed: {err}");
    (err, o.stdout)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn fails(args: &[&str], code: i32) -> String {
    let o = omv(args);
    assert_eq!(
        o.status.code(),
        Some(code),
        "omv {args:?}: {}",
        text(&o.stderr)
    );
    let err = text(&o.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("omv: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("omv-cli-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn info_on_the_embedded_cam() {
    let (_, out) = ok(&["info"]);
    let out = text(&out);
    assert!(out.contains("Firmware version: 5.0.0"), "{out}");
    assert!(out.contains("ticks"), "{out}");
    assert!(out.contains("Memory:"), "{out}");
    assert!(out.contains("Cam stats:"), "{out}");
}

#[test]
fn read_on_the_embedded_cam() {
    let (err, out) = ok(&["read", "bulk", "--size", "1000", "--offset", "7"]);
    assert_eq!(out, pattern(7, 1000));
    assert!(err.contains("read 1000 bytes from bulk"), "{err}");
    let (_, out) = ok(&["read", "6", "--size", "3", "--repeat", "2"]);
    assert_eq!(out, [pattern(0, 3), pattern(0, 3)].concat());
}

#[test]
fn demo_on_the_embedded_cam() {
    let dir = temp_dir("demo");
    let (_, out) = ok(&["demo", "--dir", dir.to_str().unwrap()]);
    let out = text(&out);
    let ran = out.contains("Hello from the cam!") || out.contains("no Python interpreter");
    assert!(ran, "{out}");
    for part in [
        "== Channels",
        "frame 5:",
        "ticks (10 bytes)",
        "Host stats:",
        "Cam stats:",
    ] {
        assert!(out.contains(part), "missing {part:?} in {out}");
    }
    let png = std::fs::read(dir.join("frame.png")).expect("the demo saved a PNG");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn errors_are_one_line() {
    let e = fails(&["--port", "/dev/does-not-exist", "info"], 1);
    assert!(e.contains("/dev/does-not-exist"), "{e}");
    let e = fails(&["read", "nope"], 1);
    assert!(e.contains("no channel named \"nope\""), "{e}");
    let e = fails(&["read", "30"], 1);
    assert!(e.contains("no channel with id 30"), "{e}");
    fails(&["--bogus", "info"], 2);
    fails(&["--drop-rate", "3", "info"], 2);
    fails(&["stream", "--raw"], 2);
    let e = fails(&["--tcp", "127.0.0.1:1", "info"], 1);
    assert!(e.contains("127.0.0.1:1"), "{e}");
}

#[cfg(unix)]
#[test]
fn every_subcommand_against_a_pty_cam() {
    use omv_blocking::sim::EmbeddedSim;
    init_log();
    let log = ScriptLog::default();
    let sim = EmbeddedSim::start_pty(standard_sim(log.clone()), standard_setup).unwrap();
    let port = sim.path().unwrap().display().to_string();
    let p = |rest: &[&str]| -> Vec<String> {
        let mut v = vec!["--port".to_string(), port.clone()];
        v.extend(rest.iter().map(|s| s.to_string()));
        v
    };
    let run = |rest: &[&str]| {
        let args = p(rest);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&args)
    };
    let dir = temp_dir("pty");

    let (_, out) = run(&["info"]);
    assert!(text(&out).contains("Protocol version: 1.0.2"));

    let f = dir.join("bulk.bin");
    let (err, _) = run(&["read", "bulk", "--out", f.to_str().unwrap()]);
    assert!(err.contains("MiB/s") || err.contains("KiB/s"), "{err}");
    assert_eq!(std::fs::read(&f).unwrap(), pattern(0, 1 << 20));

    run(&["write", "bulk", "--data", "hello", "--offset", "10"]);
    let (_, out) = run(&["read", "bulk", "--offset", "10", "--size", "5"]);
    assert_eq!(out, b"hello");
    let src = dir.join("src.bin");
    std::fs::write(&src, vec![3u8; 10_000]).unwrap();
    run(&["write", "5", "--file", src.to_str().unwrap()]);
    let (_, out) = run(&["read", "bulk", "--size", "10000"]);
    assert_eq!(out, vec![3u8; 10_000]);

    let script = dir.join("s.py");
    std::fs::write(&script, "print('x')\n").unwrap();
    let (_, out) = run(&["run", script.to_str().unwrap()]);
    assert!(text(&out).contains("ran 11 bytes"), "{}", text(&out));
    assert_eq!(log.lock().unwrap().last().unwrap(), b"print('x')\n");

    let (_, out) = run(&["stop"]);
    assert!(text(&out).contains("stopped"));

    // The stdin poll bit tells whether a script runs, even with no stdin
    // event seen by this fresh connection.
    let (_, out) = run(&["status"]);
    let out = text(&out);
    assert!(
        out.contains("stdin") && out.contains("Script: stopped"),
        "{out}"
    );
    let forever = dir.join("forever.py");
    std::fs::write(&forever, "# runs forever\n").unwrap();
    run(&["run", "--detach", forever.to_str().unwrap()]);
    let (_, out) = run(&["status"]);
    let out = text(&out);
    assert!(out.contains("Script: running"), "{out}");
    // Benchmarking stdout: reads of whatever the script printed, also once
    // a first read has emptied it.
    let (_, out) = run(&["bench", "--seconds", "0.3", "--channel", "stdout"]);
    assert!(text(&out).contains("reads in"), "{}", text(&out));
    run(&["stop"]);
    let (_, out) = run(&["status"]);
    assert!(text(&out).contains("Script: stopped"), "{}", text(&out));

    let frames = dir.join("frames");
    let (_, out) = run(&[
        "stream",
        "--frames",
        "3",
        "--save",
        frames.to_str().unwrap(),
    ]);
    let out = text(&out);
    assert!(out.contains("3 frames in") && out.contains("fps"), "{out}");
    assert!(frames.join("frame-0003.png").exists());
    let (_, out) = run(&["stream", "--frames", "2", "--raw", "--resolution", "80x60"]);
    assert!(text(&out).contains("80x60 RGB565"), "{}", text(&out));

    let cap = dir.join("capture.py");
    std::fs::write(&cap, "# capture frames\n").unwrap();
    let (_, out) = run(&["stream", "--frames", "1", "--script", cap.to_str().unwrap()]);
    assert!(text(&out).contains("1 frames in"), "{}", text(&out));
    assert_eq!(log.lock().unwrap().last().unwrap(), b"# capture frames\n");

    let (_, out) = run(&["profile", "--exclusive", "--reset", "--top", "3"]);
    let out = text(&out);
    assert!(
        out.contains("function") && out.contains("exclusive"),
        "{out}"
    );

    let (_, out) = run(&["bench", "--seconds", "0.5", "--channel", "bulk"]);
    assert!(text(&out).contains("reads in"), "{}", text(&out));
    let (_, out) = run(&["bench", "--seconds", "0.5"]);
    assert!(text(&out).contains("frames in"), "{}", text(&out));

    let (_, out) = run(&["demo", "--dir", dir.to_str().unwrap()]);
    assert!(text(&out).contains("== Statistics"));

    // Capability options are honoured.
    let (_, out) = run(&[
        "--crc",
        "false",
        "--ack",
        "no",
        "--max-payload",
        "256",
        "info",
    ]);
    assert!(
        text(&out).contains("CRC=false, SEQ=true, ACK=false, EVENTS=true, PAYLOAD=256"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[test]
fn run_stops_the_script_on_ctrl_c() {
    use omv_blocking::sim::EmbeddedSim;
    use omv_blocking::{Camera, CameraConfig};
    use std::time::{Duration, Instant};
    init_log();
    let log = ScriptLog::default();
    let sim = EmbeddedSim::start_pty(standard_sim(log.clone()), standard_setup).unwrap();
    let port = sim.path().unwrap().display().to_string();
    let dir = temp_dir("ctrlc");
    let script = dir.join("forever.py");
    std::fs::write(&script, "# forever\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_omv"))
        .args(["--port", &port, "run", script.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the script runs, then interrupt.
    let end = Instant::now() + Duration::from_secs(5);
    while log.lock().unwrap().is_empty() {
        assert!(Instant::now() < end, "the script never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "omv run ignored Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let out = child.wait_with_output().unwrap();
    assert!(status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("ran 10 bytes"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("interrupted"),
        "{}",
        text(&out.stderr)
    );
    // The script was stopped on the cam.
    let mut cam = Camera::open(CameraConfig::new(&port)).unwrap();
    assert!(!cam.read_status().unwrap().ready("stdin"));
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(unix)]
#[test]
fn profile_names_functions_from_a_firmware_elf() {
    use omv_blocking::sim::EmbeddedSim;
    use omv_blocking::{Camera, CameraConfig};
    init_log();
    let sim = EmbeddedSim::start_pty(standard_sim(ScriptLog::default()), standard_setup).unwrap();
    let port = sim.path().unwrap().display().to_string();
    // The functions the cam profiles, then a firmware ELF naming them.
    let mut cam = Camera::open(CameraConfig::new(&port)).unwrap();
    let mut recs = None;
    assert!(wait_until(&mut cam, 3, |c| {
        recs = c.read_profile(None).unwrap();
        recs.is_some()
    }));
    drop(cam);
    // read_profile locked the profile channel: the cam refuses another lock
    // (of any channel, even after a SYNC) within lock_interval (10 ms).
    std::thread::sleep(std::time::Duration::from_millis(30));
    let addrs: Vec<u32> = recs.unwrap().iter().map(|r| r.record.address).collect();
    let dir = temp_dir("profile-elf");
    let elf = dir.join("firmware.elf");
    std::fs::write(&elf, elf_with_functions(addrs.iter().copied())).unwrap();

    let (_, out) = ok(&[
        "--port",
        &port,
        "profile",
        "--firmware",
        elf.to_str().unwrap(),
        "--top",
        "100",
    ]);
    let out = text(&out);
    let rows: Vec<&str> = out.lines().skip(1).collect();
    for a in &addrs {
        let name = format!("f_{a:x} ");
        assert!(
            rows.iter().any(|l| l.starts_with(&name)),
            "no row for {name:?} in {out}"
        );
        assert!(!out.contains(&format!("0x{a:08x}")), "{out}");
    }
    // Without the ELF the same functions are bare addresses (after
    // lock_interval again: the previous omv locked the profile channel, and
    // a connect takes less than 10 ms).
    std::thread::sleep(std::time::Duration::from_millis(30));
    let (_, out) = ok(&["--port", &port, "profile", "--top", "100"]);
    let out = text(&out);
    assert!(!out.contains("f_"), "{out}");
    for a in &addrs {
        assert!(out.contains(&format!("0x{a:08x} ")), "{out}");
    }
    // An unreadable or invalid firmware file: one line.
    let missing = dir.join("missing.elf");
    let e = fails(
        &[
            "--port",
            &port,
            "profile",
            "--firmware",
            missing.to_str().unwrap(),
        ],
        1,
    );
    assert!(e.contains("missing.elf"), "{e}");
    let junk = dir.join("junk.elf");
    std::fs::write(&junk, b"not an ELF").unwrap();
    fails(
        &[
            "--port",
            &port,
            "profile",
            "--firmware",
            junk.to_str().unwrap(),
        ],
        1,
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Waits up to `secs` for `child` to exit, killing it after that.
fn exit_within(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    use std::time::{Duration, Instant};
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            panic!("omv did not exit within {secs}s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn clean_exit(status: std::process::ExitStatus, stderr: &[u8]) {
    let err = text(stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.contains("omv: "), "an error line: {err}");
    assert!(status.success(), "{status:?}: {err}");
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_omv_cleanly() {
    use omv_blocking::sim::EmbeddedSim;
    use std::io::{BufRead, Read};
    use std::process::Stdio;
    init_log();
    // `omv info | head -0`: the reader is gone before omv prints anything,
    // because the cam only starts answering after the pipe was closed.
    let pty = omv_sim::pty::Pty::open().unwrap();
    let port = pty.path().display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_omv"))
        .args(["--port", &port, "info"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let _sim =
        EmbeddedSim::serve_on(standard_sim(ScriptLog::default()), standard_setup, pty).unwrap();
    let status = exit_within(&mut child, 10);
    let mut err = Vec::new();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    clean_exit(status, &err);

    // `omv stream | head -1`: the reader takes one line and leaves; the
    // next frame line finds the pipe closed.
    let mut child = Command::new(env!("CARGO_BIN_EXE_omv"))
        .args(["stream", "--frames", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("frame 1: 320x240 JPEG"), "{line:?}");
    drop(reader);
    let status = exit_within(&mut child, 10);
    let mut err = Vec::new();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    clean_exit(status, &err);
}

#[cfg(target_os = "linux")]
#[test]
fn a_failing_stdout_is_a_one_line_error() {
    // /dev/full: every write fails with ENOSPC.
    for args in [&["info"][..], &["read", "bulk", "--size", "10"][..]] {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_omv"))
            .args(args)
            .stdout(full)
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("omv: cannot write the output: "),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn omv_over_tcp() {
    init_log();
    let sim = omv_blocking::sim::EmbeddedSim::start_tcp(
        standard_sim(ScriptLog::default()),
        standard_setup,
        "127.0.0.1:0",
    )
    .unwrap();
    let addr = sim.tcp_addr().unwrap().to_string();
    let o = omv(&["--tcp", &addr, "read", "bulk", "--size", "500"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, pattern(0, 500));
}

#[cfg(unix)]
#[test]
fn a_long_read_ends_promptly_on_sigterm() {
    use omv_blocking::sim::EmbeddedSim;
    use omv_sim::cam::SimConfig;
    use omv_sim::fault::FaultConfig;
    use std::time::{Duration, Instant};
    init_log();
    // 50 ms on every packet the cam sends: a 4 MiB read (1025 fragments,
    // each waiting for its ACK) takes about a minute.
    let faults = FaultConfig::default().latency(Duration::from_millis(50));
    let cfg = SimConfig::new().channel("bulk", 4 << 20).faults(faults);
    let sim = EmbeddedSim::start_pty(cfg, |_| {}).unwrap();
    let port = sim.path().unwrap().display().to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_omv"))
        .args(["--port", &port, "read", "bulk", "--out", "/dev/null"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Connected and reading by then (the handshake takes about 0.4 s).
    std::thread::sleep(Duration::from_millis(2000));
    assert!(child.try_wait().unwrap().is_none(), "the read ended early");
    let t = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = exit_within(&mut child, 2);
    let took = t.elapsed();
    let out = child.wait_with_output().unwrap();
    assert!(!status.success());
    assert!(took < Duration::from_millis(1000), "{took:?}");
    let err = text(&out.stderr);
    assert!(err.contains("cancelled"), "{err}");
}

/// `omv run` exits 1 when the script ends with an uncaught exception (the
/// traceback on stdout, one line on stderr), 0 when it ends normally.
#[test]
fn run_fails_on_an_uncaught_exception() {
    if omv_sim::script::PythonRunner::new()
        .resolve_interpreter()
        .is_none()
    {
        eprintln!("python3 not on PATH: skipping");
        return;
    }
    let dir = temp_dir("raise");
    let bad = dir.join("bad.py");
    std::fs::write(
        &bad,
        "import time\nprint(time.ticks_ms() >= 0)\nraise ValueError('boom')\n",
    )
    .unwrap();
    let o = omv(&["run", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("True"), "{out}");
    assert!(out.contains("Traceback (most recent call last):"), "{out}");
    assert!(out.contains("ValueError: boom"), "{out}");
    let err = text(&o.stderr);
    assert!(
        err.contains("omv: the script ended with an uncaught exception: ValueError: boom"),
        "{err}"
    );
    let good = dir.join("good.py");
    std::fs::write(
        &good,
        "import protocol\nprint('fine', protocol.CHANNEL_ID_STREAM)\n",
    )
    .unwrap();
    let (_, out) = ok(&["run", good.to_str().unwrap()]);
    assert!(text(&out).contains("fine 3"), "{}", text(&out));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn omv_over_udp() {
    use omv_sim::serve::{serve, MonotonicClock, ServeOptions};
    use omv_sim::udp::{UdpTransport, DEFAULT_UDP_MAX_PAYLOAD};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    init_log();
    let mut cam = standard_sim(ScriptLog::default())
        .max_payload(DEFAULT_UDP_MAX_PAYLOAD)
        .build()
        .unwrap();
    standard_setup(&mut cam);
    let mut udp = UdpTransport::bind("127.0.0.1:0").unwrap();
    let addr = udp.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let server = std::thread::spawn(move || {
        serve(
            &mut cam,
            &mut udp,
            &MonotonicClock::new(),
            &s,
            &ServeOptions::default(),
        )
        .unwrap();
    });
    let o = omv(&["--udp", &addr, "read", "bulk", "--size", "100000"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(o.stdout, pattern(0, 100_000));
    let o = omv(&["--udp", &addr, "--tcp", &addr, "info"]);
    assert_eq!(o.status.code(), Some(2), "--udp and --tcp conflict");
    stop.store(true, Ordering::SeqCst);
    server.join().unwrap();
}
