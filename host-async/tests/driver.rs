//! What only the async driver has: cancellation by dropping a request's
//! future, requests from several clones served in order, the event stream.

use std::future::Future;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use omv_async::{Camera, CameraConfig, EventKind};
use omv_blocking::sim::EmbeddedSim;
use omv_proto::ChannelId;
use omv_sim::cam::SimConfig;
use omv_sim::script::ScriptContext;
use tokio_stream::StreamExt;

fn pattern(offset: usize, n: usize) -> Vec<u8> {
    (offset..offset + n).map(|i| (i % 251) as u8).collect()
}

/// A cam with a 1 MiB `bulk` channel (id 5) on TCP, whose scripts print
/// `ran` and whose stream runs free.
fn sim() -> (EmbeddedSim, String) {
    let config = SimConfig::new()
        .free_running_frames(true)
        .channel("bulk", 1 << 20)
        .in_process_threaded(|_: &[u8], ctx: &ScriptContext| ctx.print("ran\n"));
    let sim = EmbeddedSim::start_tcp(config, |_| {}, "127.0.0.1:0").expect("sim");
    let addr = sim.tcp_addr().expect("addr").to_string();
    (sim, addr)
}

async fn connected(addr: &str) -> Camera {
    let cam = Camera::tcp(addr, CameraConfig::new("x"));
    cam.connect().await.expect("connect");
    cam
}

async fn bulk(cam: &Camera) -> ChannelId {
    cam.get_channel_id("bulk").await.unwrap().expect("bulk")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_request_is_cancelled_and_the_next_one_resyncs_and_is_exact() {
    let (_sim, addr) = sim();
    let cam = connected(&addr).await;
    let id = bulk(&cam).await;
    // The progress handler stops the driver in the middle of a 1 MiB
    // read until the test has dropped the request.
    let (hit_tx, hit_rx) = mpsc::channel::<u64>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let go_rx = Mutex::new(go_rx);
    let mut first = true;
    cam.set_progress_handler(move |p| {
        if first && p.done > 0 && p.done < p.total {
            first = false;
            hit_tx.send(p.done).unwrap();
            go_rx.lock().unwrap().recv().unwrap();
        }
    })
    .await;
    let reader = cam.clone();
    let read = tokio::spawn(async move { reader.channel_read_at(id, 0, 1 << 20).await });
    let done =
        tokio::task::spawn_blocking(move || hit_rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .await
            .unwrap();
    assert!(done > 0 && done < 1 << 20);
    read.abort();
    assert!(read.await.unwrap_err().is_cancelled());
    go_tx.send(()).unwrap();
    // The session cancelled the read; the next request resyncs once (the
    // rest of the abandoned answer is discarded) and is exact.
    let resyncs = cam.resync_count();
    assert_eq!(
        cam.channel_read_at(id, 1000, 50_000).await.unwrap(),
        pattern(1000, 50_000)
    );
    assert_eq!(cam.resync_count(), resyncs + 1);
    assert_eq!(cam.channel_size_at(id).await.unwrap(), 1 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clones_are_served_one_at_a_time_in_order() {
    let (_sim, addr) = sim();
    let cam = connected(&addr).await;
    let id = bulk(&cam).await;
    let (a, b) = (cam.clone(), cam.clone());
    // join! polls the write first, so its request is queued first: the
    // read sees the written bytes.
    let (w, r) = tokio::join!(
        a.channel_write_at(id, 4096, &[0xA5; 3000]),
        b.channel_read_at(id, 4096, 3000)
    );
    w.unwrap();
    assert_eq!(r.unwrap(), vec![0xA5; 3000]);
    // Eight tasks at once, each on its own range: all exact.
    let tasks: Vec<_> = (0..8u32)
        .map(|i| {
            let c = cam.clone();
            tokio::spawn(async move {
                let at = 100_000 + i * 20_000;
                let data = vec![i as u8; 10_000];
                c.channel_write_at(id, at, &data).await.unwrap();
                assert_eq!(c.channel_read_at(id, at, 10_000).await.unwrap(), data);
                c.channel_read_at(id, at + 10_000, 10_000).await.unwrap()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let at = 110_000 + i * 20_000;
        assert_eq!(t.await.unwrap(), pattern(at, 10_000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stream_during_requests_and_between_them() {
    let (_sim, addr) = sim();
    let cam = connected(&addr).await;
    let mut events = cam.events();
    cam.exec("print(1)").await.unwrap();
    let mut kinds = Vec::new();
    while !kinds.contains(&EventKind::ScriptStopped) {
        let e = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on");
        kinds.push(e.kind);
    }
    let started = kinds.iter().position(|k| *k == EventKind::ScriptStarted);
    assert!(started.is_some(), "{kinds:?}");
    // With streaming on, frame-ready events arrive with no request in
    // flight: the driver reads the port while a stream exists.
    cam.streaming(true, false, None).await.unwrap();
    let mut frames = 0;
    while frames < 3 {
        let e = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on");
        frames += usize::from(e.kind == EventKind::FrameReady);
    }
    assert!(cam.frame_ready());
    assert_eq!(events.lagged(), 0);
    assert!(cam.read_frame().await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_async_stream_is_a_port() {
    let (_sim, addr) = sim();
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // As Camera::tcp does: without it, Nagle's algorithm holds a request
    // written right after an ACK until the cam's delayed TCP ACK (40 ms),
    // longer than the handshake's short attempts.
    stream.set_nodelay(true).unwrap();
    let cam = Camera::with_stream(stream, "my-stream", CameraConfig::new("x"));
    assert_eq!(cam.port_name(), "my-stream");
    cam.connect().await.unwrap();
    let id = bulk(&cam).await;
    let mut buf = Vec::with_capacity(1 << 20);
    let at = buf.as_ptr();
    assert_eq!(
        cam.channel_read_at_into(id, 0, 1 << 20, &mut buf)
            .await
            .unwrap(),
        1 << 20
    );
    assert_eq!(buf, pattern(0, 1 << 20));
    assert_eq!(buf.as_ptr(), at, "the caller's buffer is reused");
    // A caller's stream is not reopened after disconnect: a typed error.
    cam.disconnect().await;
    assert!(!cam.is_connected());
    let e = cam.connect().await.unwrap_err();
    assert!(
        matches!(&e, omv_async::Error::Io { port, source }
            if port == "my-stream" && source.kind() == std::io::ErrorKind::NotConnected),
        "{e}"
    );
}

/// CPU time (user + system) of the calling thread, from /proc.
#[cfg(target_os = "linux")]
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = after.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
    Duration::from_millis((f[11] + f[12]) * 10) // utime + stime, USER_HZ = 100
}

/// The driver task runs on this thread (current-thread runtime), so the
/// thread's CPU time is the driver's: waiting out a silent cam costs
/// next to nothing.
#[tokio::test(flavor = "current_thread")]
async fn a_silent_port_is_a_typed_error_without_spinning() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hold = tokio::spawn(async move {
        let c = listener.accept().await; // accept, never answer
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(c);
    });
    let cam = Camera::tcp(
        &addr,
        CameraConfig::new("x")
            .timeout(Duration::from_millis(300))
            .max_retry(3),
    );
    #[cfg(target_os = "linux")]
    let cpu0 = cpu_time();
    let t = std::time::Instant::now();
    let e = cam.connect().await.unwrap_err();
    assert!(
        matches!(e, omv_async::Error::ResyncFailed { attempts: 3, .. }),
        "{e}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(880),
        "{:?}",
        t.elapsed()
    );
    assert!(!cam.is_connected());
    #[cfg(target_os = "linux")]
    {
        let cpu = cpu_time() - cpu0;
        assert!(
            cpu < Duration::from_millis(200),
            "waiting burnt {cpu:?} of CPU"
        );
    }
    hold.abort();
}

#[test]
fn a_camera_made_outside_a_runtime_starts_in_one_and_fails_cleanly_elsewhere() {
    let (_sim, addr) = sim();
    // Made outside any runtime: no panic.
    let cam = Camera::tcp(&addr, CameraConfig::new("x"));
    // Polled outside any runtime: a clear error, no panic.
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut call = std::pin::pin!(cam.connect());
    match call.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Err(e)) => {
            assert!(e.to_string().contains("tokio runtime"), "{e}")
        }
        other => panic!("{other:?}"),
    }
    // Used within one: the driver task starts at the first call.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        cam.connect().await.expect("connect");
        let id = bulk(&cam).await;
        assert_eq!(
            cam.channel_read_at(id, 0, 100).await.unwrap(),
            pattern(0, 100)
        );
    });
}
