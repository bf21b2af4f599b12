//! The `omv-sim` binary: first stdout line, transports, signals, usage errors.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

const SYNC: [u8; 10] = [0xaa, 0xd5, 0, 0, 0, 0, 0, 0, 0xb0, 0xac];
const SYNC_ACK: [u8; 10] = [0xaa, 0xd5, 0, 0, 1, 0, 0, 0, 0x08, 0x46];

fn sim(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_omv-sim"));
    c.args(args).stdin(Stdio::null());
    c
}

/// Starts the sim and returns it with its first stdout line.
fn start(args: &[&str]) -> (Child, String, BufReader<ChildStdout>) {
    let mut child = sim(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.ends_with('\n'), "first line {line:?}");
    (child, line.trim_end().to_string(), out)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> i32 {
    let end = Instant::now() + within;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if Instant::now() > end {
            child.kill().unwrap();
            panic!("omv-sim did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn tcp_prints_the_bound_address_and_exits_0_on_sigterm() {
    let (mut child, addr, mut out) = start(&["--tcp", "127.0.0.1:0"]);
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    for _ in 0..2 {
        let mut c = TcpStream::connect(&addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(&SYNC).unwrap();
        let mut ack = [0u8; 10];
        c.read_exact(&mut ack).unwrap();
        assert_eq!(ack, SYNC_ACK);
    }
    signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 0);
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "only one line on stdout");
}

#[test]
fn udp_answers_one_packet_per_datagram_with_max_payload_1400() {
    use omv_proto::header::Header;
    use omv_proto::host::{Completion, HostConfig, HostEndpoint};
    use std::net::UdpSocket;

    let (mut child, addr, _out) = start(&["--udp", "127.0.0.1:0"]);
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = [0u8; 2048];
    // A datagram that is not a packet is dropped; the sim keeps serving.
    s.send_to(b"\xaa\xd5 junk", &addr).unwrap();
    s.send_to(&SYNC, &addr).unwrap();
    let (n, _) = s.recv_from(&mut got).unwrap();
    assert_eq!(&got[..n], SYNC_ACK);
    // The whole handshake, from our host endpoint, one packet per datagram.
    let mut host = HostEndpoint::new(HostConfig::default());
    let t0 = Instant::now();
    let now = || omv_proto::Instant::from_micros(t0.elapsed().as_micros() as u64);
    host.connect(now());
    let caps = loop {
        while let Some(p) = host.poll_transmit() {
            s.send_to(&p, &addr).unwrap();
        }
        if let Some(c) = host.poll_completion() {
            match c {
                Completion::Connected(Ok(caps)) => break caps,
                other => panic!("handshake failed: {other:?}"),
            }
        }
        let (n, _) = s.recv_from(&mut got).unwrap();
        assert_eq!(
            Header::decode(&got[..n]).unwrap().wire_len(),
            n,
            "one packet per datagram"
        );
        host.handle_input(now(), &got[..n]);
    };
    assert_eq!(caps.max_payload, 1400);
    signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 0);
}

#[test]
fn remote_addresses_need_allow_remote_and_warn() {
    let mut child = sim(&["--udp", "0.0.0.0:0", "--allow-remote"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("0.0.0.0:"), "{line}");
    signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 0);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("anyone who can reach it can run code as this user"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn pty_prints_the_path_survives_reopen_and_exits_0_on_sigint() {
    use std::os::unix::fs::OpenOptionsExt;
    let (mut child, path, _out) = start(&["--pty", "--channel", "bulk:1K"]);
    assert!(path.starts_with("/dev/"), "{path}");
    for _ in 0..2 {
        let mut port = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits())
            .open(&path)
            .unwrap();
        let mut t = nix::sys::termios::tcgetattr(&port).unwrap();
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(&port, nix::sys::termios::SetArg::TCSANOW, &t).unwrap();
        port.write_all(&SYNC).unwrap();
        let mut ack = [0u8; 10];
        let mut got = 0;
        let end = Instant::now() + Duration::from_secs(5);
        while got < 10 {
            assert!(Instant::now() < end, "no ACK");
            let mut fds = [nix::poll::PollFd::new(
                std::os::fd::AsFd::as_fd(&port),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap() > 0 {
                got += port.read(&mut ack[got..]).unwrap();
            }
        }
        assert_eq!(ack, SYNC_ACK);
    }
    signal(&child, "-INT");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 0);
}

#[test]
fn invalid_options_print_one_line_and_exit_2() {
    for args in [
        &[][..],
        &["--pty", "--drop-rate", "1.5"],
        &["--pty", "--rx-drop-rate", "-0.1"],
        &["--pty", "--corrupt-rate", "x"],
        &["--pty", "--channel", "noname"],
        &["--pty", "--channel", "waytoolongname:1"],
        &["--pty", "--channel", "a:100M"],
        &["--pty", "--channel", "a:12Q"],
        &["--pty", "--board", "h8"],
        &["--pty", "--tcp", "127.0.0.1:0"],
        &["--pty", "--latency-ms", "99999999"],
        &["--pty", "--fps", "0"],
        &["--pty", "--resolution", "0x240"],
        &["--pty", "--resolution", "640"],
        &["--pty", "--resolution", "5000x5000"],
        &["--pty", "--resolution", "axb"],
        &["--pty", "--resolution", "64x48", "--frames", "/tmp"],
        &["--pty", "--frames", "/nonexistent/dir"],
        &["--tcp", "not an address"],
        &["--udp", "not an address"],
        &["--tcp", "0.0.0.0:0"],
        &["--udp", "0.0.0.0:0"],
        &["--udp", "127.0.0.1:0", "--tcp", "127.0.0.1:0"],
        &["--udp", "127.0.0.1:0", "--max-payload", "49"],
        &["--pty", "--bogus"],
    ] {
        let out = sim(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.starts_with("omv-sim: "), "{args:?}: {err:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = sim(&["--pty", "--resolution", "0x240"]).output().unwrap();
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "omv-sim: invalid value '0x240' for '--resolution <WxH>': resolution must be 1x1 to 4096x4096 pixels, got 0x240\n"
    );
    let help = sim(&["--help"]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--drop-rate"));
}

#[test]
fn a_port_in_use_prints_one_line_and_exits_1() {
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let tcp_addr = tcp.local_addr().unwrap().to_string();
    let udp_addr = udp.local_addr().unwrap().to_string();
    for (flag, addr, what) in [
        ("--tcp", &tcp_addr, "cannot listen on"),
        ("--udp", &udp_addr, "cannot bind"),
    ] {
        let out = sim(&[flag, addr]).output().unwrap();
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(out.status.code(), Some(1), "{flag}: {err:?}");
        assert_eq!(err.lines().count(), 1, "{flag}: {err:?}");
        assert!(
            err.starts_with(&format!("omv-sim: {what} {addr}: ")),
            "{flag}: {err:?}"
        );
        #[cfg(target_os = "linux")]
        assert!(err.contains("Address already in use"), "{flag}: {err:?}");
        assert!(out.stdout.is_empty(), "{flag}: nothing announced");
    }
    drop((tcp, udp));
}

/// One packet as a host sends it (CRC on).
fn host_packet(seq: u8, channel: u8, flags: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let h = omv_proto::Header {
        sequence: seq,
        channel: omv_proto::ChannelId(channel),
        flags: omv_proto::Flags(flags),
        opcode: omv_proto::Opcode(opcode),
        length: 0,
    };
    let mut w = Vec::new();
    omv_proto::packet::encode_packet(&h, payload, true, &mut w);
    w
}

/// `--board h7` announces its 512-byte buffer (498), and with
/// `--abandoned-reads` a read the client left unfinished ends when the TCP
/// connection closes: the next client's SYNC gets its ACK and nothing more.
#[test]
fn board_buffer_and_abandoned_read_over_tcp() {
    let (mut child, addr, _out) = start(&[
        "--tcp",
        "127.0.0.1:0",
        "--board",
        "h7",
        "--abandoned-reads",
        "--channel",
        "bulk:64K",
    ]);
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&SYNC).unwrap();
    let mut ack = [0u8; 10];
    c.read_exact(&mut ack).unwrap();
    assert_eq!(ack, SYNC_ACK);
    c.write_all(&host_packet(0, 0, 0, 0x01, &[])).unwrap(); // GET_CAPS
    let mut caps = [0u8; 10 + 16 + 4];
    c.read_exact(&mut caps).unwrap();
    assert_eq!(u16::from_le_bytes([caps[14], caps[15]]), 498);
    // ACK the caps (they asked for one), then a 64 KiB read of bulk (id 4).
    c.write_all(&host_packet(0, 0, 0x01, 0x01, &[])).unwrap();
    let req = [0u32.to_le_bytes(), (64u32 << 10).to_le_bytes()].concat();
    c.write_all(&host_packet(1, 4, 0, 0x26, &req)).unwrap();
    let mut first = [0u8; 10 + 498 + 4];
    c.read_exact(&mut first).unwrap();
    assert_eq!(first[5], 0x26, "a CHANNEL_READ piece");
    assert_eq!(u16::from_le_bytes([first[6], first[7]]), 498);
    // Leave without ACKing it.
    drop(c);
    std::thread::sleep(Duration::from_millis(100));
    let mut c = TcpStream::connect(&addr).unwrap();
    c.write_all(&SYNC).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.read_exact(&mut ack).unwrap();
    assert_eq!(ack, SYNC_ACK);
    let quiet_until = Instant::now() + Duration::from_millis(700);
    let mut more = [0u8; 64];
    loop {
        let left = quiet_until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        c.set_read_timeout(Some(left)).unwrap();
        match c.read(&mut more) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            other => panic!("the old read went on: {other:?}"),
        }
    }
    signal(&child, "-TERM");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(5)), 0);
}
