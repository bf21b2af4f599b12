//! The cam runtime's modules come first on a script's import path: files
//! named like them in the simulator's working directory do not shadow them
//! (the script comes on stdin, so Python puts the working directory first
//! on `sys.path`). A test binary of its own, because it changes the
//! process's working directory.
#![cfg(unix)]

use std::thread;
use std::time::{Duration, Instant};

use omv_sim::runtime::{Bridge, FrameBuffer, RuntimeFacts};
use omv_sim::script::{PythonRunner, ScriptRunner};
use omv_sim::source::PatternSource;
use omv_sim::SharedOutput;

#[test]
fn modules_in_the_working_directory_do_not_shadow_the_runtime() {
    if PythonRunner::new().resolve_interpreter().is_none() {
        eprintln!("python3 not on PATH: skipping");
        return;
    }
    let dir = std::env::temp_dir().join(format!("omv-sim-cwd-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["protocol.py", "image.py", "csi.py", "machine.py"] {
        std::fs::write(dir.join(name), "raise SystemExit('SHADOWED')\n").unwrap();
    }
    // The script's own modules there still import, as with plain Python.
    std::fs::write(dir.join("helper.py"), "VALUE = 42\n").unwrap();
    std::env::set_current_dir(&dir).unwrap();

    let bridge = Bridge::new(
        Box::new(PatternSource::new(64, 48)),
        FrameBuffer::new(),
        RuntimeFacts::default(),
    )
    .unwrap();
    let mut runner = PythonRunner::new();
    runner.set_env(bridge.env());
    let out = SharedOutput::with_exact_capacity(64 * 1024);
    let script = "import protocol, image, csi, machine, helper\n\
                  print('stream', protocol.CHANNEL_ID_STREAM)\n\
                  print('rgb565', image.RGB565 == csi.RGB565)\n\
                  print('helper', helper.VALUE)\n\
                  print('done')\n";
    runner.start(script.as_bytes(), &out).unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    while runner.is_running() {
        assert!(Instant::now() < end, "the script did not end");
        thread::sleep(Duration::from_millis(10));
    }
    let text = String::from_utf8_lossy(&out.take_all()).into_owned();
    assert!(!text.contains("SHADOWED"), "{text}");
    for want in ["stream 3", "rgb565 True", "helper 42", "done"] {
        assert!(text.contains(want), "{want}: {text}");
    }
    drop(bridge);
    let _ = std::fs::remove_dir_all(&dir);
}
