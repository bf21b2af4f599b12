//! Running the script the host uploads through stdin.
//!
//! A [`ScriptRunner`] starts a script, writes everything it prints into the
//! cam's stdout buffer ([`SharedOutput`]) and reports whether it is still
//! running. Starting never blocks the protocol loop: the work happens on
//! threads (or in a child process), and the stdin channel polls
//! [`ScriptRunner::is_running`] to notice the end of a script.
//!
//! * [`PythonRunner`] runs the script with a real Python interpreter in a
//!   child process, so `print` output and tracebacks look like a cam's.
//! * [`InProcessRunner`] runs a Rust closure instead, for tests.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant as StdInstant};

use crate::output::{SharedOutput, Waker};

/// Runs uploaded scripts.
pub trait ScriptRunner: Send {
    /// Starts `script`, first stopping any script still running. Its output
    /// goes to `output` as it is produced. Must return promptly.
    fn start(&mut self, script: &[u8], output: &SharedOutput) -> io::Result<()>;

    /// Stops the running script, if any.
    fn stop(&mut self);

    /// True while a started script has not ended.
    fn is_running(&self) -> bool;

    /// Environment for the scripts started from now on (the cam runtime's
    /// `PYTHONPATH`, bridge socket and board facts). Runners that do not
    /// start processes ignore it.
    fn set_env(&mut self, _env: Vec<(String, String)>) {}
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How long the exit watcher waits for the output pipes to drain after the
/// child exited (a grandchild may hold them open).
const DRAIN_TIMEOUT: Duration = Duration::from_millis(300);
/// How often the exit watcher checks the child.
const WAIT_POLL: Duration = Duration::from_millis(5);

/// One started child process.
struct Job {
    child: Arc<Mutex<Child>>,
    running: Arc<AtomicBool>,
}

/// Runs scripts with a real Python interpreter in a child process
/// (`python3 -u -`, the script fed on its stdin, so tracebacks name
/// `<stdin>` as on a cam). Standard output and standard error are both
/// streamed into the cam's stdout buffer by reader threads.
///
/// On unix the child leads a process group of its own, and stopping a
/// script (STOP, a new EXEC, a reboot, dropping the runner) kills the whole
/// group: the processes the script started too, not only the interpreter.
///
/// If no interpreter can be found, [`start`](ScriptRunner::start) still
/// succeeds but writes a message into the output saying why nothing ran.
pub struct PythonRunner {
    interpreter: Option<PathBuf>,
    job: Option<Job>,
    exit_waker: Option<Waker>,
    env: Vec<(String, String)>,
}

impl Default for PythonRunner {
    fn default() -> Self {
        PythonRunner::new()
    }
}

impl std::fmt::Debug for PythonRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PythonRunner")
            .field("interpreter", &self.interpreter)
            .field("running", &self.is_running())
            .finish()
    }
}

impl PythonRunner {
    /// A runner that looks for `python3` on `PATH` each time it starts a script.
    pub fn new() -> Self {
        PythonRunner {
            interpreter: None,
            job: None,
            exit_waker: None,
            env: Vec::new(),
        }
    }

    /// A runner using the given interpreter (a path, or a bare name looked
    /// up on `PATH`).
    pub fn with_interpreter(path: impl Into<PathBuf>) -> Self {
        PythonRunner {
            interpreter: Some(path.into()),
            job: None,
            exit_waker: None,
            env: Vec::new(),
        }
    }

    /// Sets a callback run when a script ends by itself (after its output
    /// has been collected), e.g. to wake the cam loop.
    pub fn set_exit_waker(&mut self, waker: Option<Waker>) {
        self.exit_waker = waker;
    }

    /// The interpreter that would be used now, if one is found.
    pub fn resolve_interpreter(&self) -> Option<PathBuf> {
        match &self.interpreter {
            Some(p) if p.components().count() > 1 || p.is_absolute() => {
                is_executable(p).then(|| p.clone())
            }
            Some(name) => find_on_path(name.as_os_str()),
            None => find_on_path("python3".as_ref()),
        }
    }

    fn spawn(&mut self, interp: &Path, script: &[u8], output: &SharedOutput) -> io::Result<()> {
        let mut command = Command::new(interp);
        command
            .arg("-u")
            .arg("-")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::piped());
        for (k, v) in &self.env {
            if k == "PYTHONPATH" {
                // The runtime's modules come first, then the user's path.
                let mut path = std::ffi::OsString::from(v);
                if let Some(old) = std::env::var_os("PYTHONPATH").filter(|o| !o.is_empty()) {
                    path.push(if cfg!(windows) { ";" } else { ":" });
                    path.push(old);
                }
                command.env(k, path);
            } else {
                command.env(k, v);
            }
        }
        // Its own process group, so that stop() can kill everything the
        // script starts (subprocesses, their children) in one signal.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        // A cam prints stdout and stderr into one stream. With two pipes and
        // two reader threads, `print("2")` (two writes under `-u`: "2" and
        // "\n") could be split by a traceback written in between, so both
        // go into one pipe, in the order the script wrote them.
        let merged = merged_output(&mut command)?;
        let mut child = command.spawn()?;
        // The parent's copies of the write end live in `command`; drop them
        // so the reader sees end-of-file when the script exits.
        drop(command);
        let stdin = child.stdin.take();
        let (stdout, stderr): (Option<Box<dyn Read + Send>>, _) = match merged {
            Some(reader) => (Some(Box::new(reader)), None),
            None => (
                child
                    .stdout
                    .take()
                    .map(|r| Box::new(r) as Box<dyn Read + Send>),
                child.stderr.take(),
            ),
        };

        // Feed the script on a thread: a large script must not block the
        // protocol loop on a full pipe.
        if let Some(mut stdin) = stdin {
            let script = script.to_vec();
            thread::Builder::new()
                .name("sim-script-stdin".into())
                .spawn(move || {
                    // A child killed early closes the pipe: nothing to report.
                    let _ = stdin.write_all(&script);
                })?;
        }

        let (done_tx, done_rx) = mpsc::channel::<()>();
        let mut readers = 0;
        if let Some(r) = stdout {
            spawn_reader("sim-script-stdout", r, output.clone(), done_tx.clone())?;
            readers += 1;
        }
        if let Some(r) = stderr {
            spawn_reader("sim-script-stderr", r, output.clone(), done_tx.clone())?;
            readers += 1;
        }
        drop(done_tx);

        let child = Arc::new(Mutex::new(child));
        let running = Arc::new(AtomicBool::new(true));
        let (c, r, waker) = (child.clone(), running.clone(), self.exit_waker.clone());
        thread::Builder::new()
            .name("sim-script-wait".into())
            .spawn(move || {
                while !has_exited(&mut lock(&c)) {
                    thread::sleep(WAIT_POLL);
                }
                // Let the readers hand over the last output before the script
                // counts as stopped.
                let deadline = StdInstant::now() + DRAIN_TIMEOUT;
                for _ in 0..readers {
                    let left = deadline.saturating_duration_since(StdInstant::now());
                    if done_rx.recv_timeout(left).is_err() {
                        break;
                    }
                }
                r.store(false, Ordering::SeqCst);
                if let Some(w) = waker {
                    w();
                }
            })?;
        self.job = Some(Job { child, running });
        Ok(())
    }
}

/// Points the child's stdout and stderr at one pipe and returns its read
/// end. `None` where that is not available (the caller then pipes each
/// stream on its own).
#[cfg(unix)]
fn merged_output(command: &mut Command) -> io::Result<Option<std::fs::File>> {
    // Close-on-exec, so no other child spawned meanwhile inherits the write
    // end and holds the pipe open (the child's own fds 1 and 2 are dup2'd
    // copies, which do not inherit the flag). Atomic where pipe2 exists.
    #[cfg(target_os = "linux")]
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    #[cfg(not(target_os = "linux"))]
    let (read, write) = {
        use nix::fcntl::{fcntl, FcntlArg, FdFlag};
        let (read, write) = nix::unistd::pipe().map_err(io::Error::from)?;
        for fd in [&read, &write] {
            fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(io::Error::from)?;
        }
        (read, write)
    };
    let write_err = write.try_clone()?;
    command
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write_err));
    Ok(Some(std::fs::File::from(read)))
}

#[cfg(not(unix))]
fn merged_output(command: &mut Command) -> io::Result<Option<std::fs::File>> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    Ok(None)
}

fn spawn_reader(
    name: &str,
    mut pipe: impl Read + Send + 'static,
    output: SharedOutput,
    done: mpsc::Sender<()>,
) -> io::Result<()> {
    thread::Builder::new().name(name.into()).spawn(move || {
        let mut buf = [0u8; 512];
        loop {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => output.write(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let _ = done.send(());
    })?;
    Ok(())
}

impl ScriptRunner for PythonRunner {
    fn start(&mut self, script: &[u8], output: &SharedOutput) -> io::Result<()> {
        self.stop();
        let Some(interp) = self.resolve_interpreter() else {
            let wanted = self
                .interpreter
                .as_ref()
                .map_or_else(|| "python3".to_string(), |p| p.display().to_string());
            let msg = format!(
                "sim-device: no Python interpreter found ({wanted} is not on PATH or not \
                 executable); the script ({} bytes) was not run.\r\n",
                script.len()
            );
            log::warn!("{}", msg.trim_end());
            output.write_str(&msg);
            return Ok(());
        };
        if let Err(e) = self.spawn(&interp, script, output) {
            let msg = format!(
                "sim-device: could not start {}: {e}; the script was not run.\r\n",
                interp.display()
            );
            log::warn!("{}", msg.trim_end());
            output.write_str(&msg);
        }
        Ok(())
    }

    fn stop(&mut self) {
        if let Some(job) = self.job.take() {
            kill_tree(&mut lock(&job.child));
            job.running.store(false, Ordering::SeqCst);
        }
    }

    fn is_running(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|j| j.running.load(Ordering::SeqCst))
    }

    fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }
}

impl Drop for PythonRunner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// True once the script's interpreter has exited.
///
/// On Linux the exited child is left unreaped (`waitid` with `WNOWAIT`)
/// until [`kill_tree`] reaps it: while it is a zombie its pid, which is
/// also the script's process group id, cannot be reused, so signalling the
/// group later can only reach the script's own processes.
fn has_exited(child: &mut Child) -> bool {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
        let Ok(pid) = i32::try_from(child.id()) else {
            return !matches!(child.try_wait(), Ok(None));
        };
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
        match waitid(Id::Pid(nix::unistd::Pid::from_raw(pid)), flags) {
            Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::EINTR) => false,
            // Exited (still a zombie), or already reaped (ECHILD).
            Ok(_) | Err(_) => true,
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        !matches!(child.try_wait(), Ok(None))
    }
}

/// Kills the script's interpreter and, on unix, every process in its
/// process group (what the script started), then reaps the interpreter.
fn kill_tree(child: &mut Child) {
    #[cfg(unix)]
    {
        use nix::sys::signal::{killpg, Signal};
        // The group id is the interpreter's pid. On Linux it is unreaped
        // until the wait() below (see has_exited), so the id is still ours
        // even after the interpreter exited and only its children remain;
        // elsewhere the group is signalled only while the interpreter runs.
        let ours = cfg!(target_os = "linux") || matches!(child.try_wait(), Ok(None));
        if let (true, Ok(pgid)) = (ours, i32::try_from(child.id())) {
            match killpg(nix::unistd::Pid::from_raw(pgid), Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => log::warn!("script: cannot kill process group {pgid}: {e}"),
            }
        }
    }
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    // SIGKILL is immediate; reaping right after keeps no zombie.
    let _ = child.wait();
}

/// Finds an executable called `name` in the directories of `PATH`.
pub fn find_on_path(name: &std::ffi::OsStr) -> Option<PathBuf> {
    let path: OsString = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(p) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// What an [`InProcessRunner`] closure gets: the output sink and a stop flag.
#[derive(Clone, Debug)]
pub struct ScriptContext {
    output: SharedOutput,
    stop: Arc<AtomicBool>,
}

impl ScriptContext {
    /// The cam's stdout buffer.
    pub fn output(&self) -> &SharedOutput {
        &self.output
    }

    /// Writes text to the cam's stdout buffer.
    pub fn print(&self, s: &str) {
        self.output.write_str(s);
    }

    /// True once the script has been asked to stop; long-running closures
    /// should check it and return.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// The closure an [`InProcessRunner`] runs: the script bytes and a context.
pub type ScriptFn = dyn Fn(&[u8], &ScriptContext) + Send + Sync;

/// Runs a Rust closure as "the script", for tests.
///
/// Synchronous mode ([`new`](Self::new)) runs the closure inside `start`, so
/// the script has ended when `start` returns. Threaded mode
/// ([`threaded`](Self::threaded)) runs it on a thread; `stop` raises the
/// context's stop flag and the script counts as stopped at once.
pub struct InProcessRunner {
    f: Arc<ScriptFn>,
    threaded: bool,
    job: Option<(Arc<AtomicBool>, Arc<AtomicBool>)>,
}

impl std::fmt::Debug for InProcessRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessRunner")
            .field("threaded", &self.threaded)
            .field("running", &self.is_running())
            .finish()
    }
}

impl InProcessRunner {
    /// Runs `f` synchronously inside `start`.
    pub fn new(f: impl Fn(&[u8], &ScriptContext) + Send + Sync + 'static) -> Self {
        InProcessRunner {
            f: Arc::new(f),
            threaded: false,
            job: None,
        }
    }

    /// Runs `f` on a thread; the script is running until `f` returns or
    /// `stop` is called.
    pub fn threaded(f: impl Fn(&[u8], &ScriptContext) + Send + Sync + 'static) -> Self {
        InProcessRunner {
            f: Arc::new(f),
            threaded: true,
            job: None,
        }
    }
}

impl ScriptRunner for InProcessRunner {
    fn start(&mut self, script: &[u8], output: &SharedOutput) -> io::Result<()> {
        self.stop();
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = ScriptContext {
            output: output.clone(),
            stop: stop.clone(),
        };
        if !self.threaded {
            (self.f)(script, &ctx);
            return Ok(());
        }
        let running = Arc::new(AtomicBool::new(true));
        let (f, r, script) = (self.f.clone(), running.clone(), script.to_vec());
        thread::Builder::new()
            .name("sim-script-inproc".into())
            .spawn(move || {
                f(&script, &ctx);
                r.store(false, Ordering::SeqCst);
            })?;
        self.job = Some((running, stop));
        Ok(())
    }

    fn stop(&mut self) {
        if let Some((running, stop)) = self.job.take() {
            stop.store(true, Ordering::SeqCst);
            running.store(false, Ordering::SeqCst);
        }
    }

    fn is_running(&self) -> bool {
        self.job
            .as_ref()
            .is_some_and(|(r, _)| r.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until_stopped(r: &dyn ScriptRunner, secs: u64) -> bool {
        let end = StdInstant::now() + Duration::from_secs(secs);
        while r.is_running() {
            if StdInstant::now() > end {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }

    fn text(out: &SharedOutput) -> String {
        String::from_utf8_lossy(&out.take_all()).into_owned()
    }

    fn python_available() -> bool {
        let found = PythonRunner::new().resolve_interpreter().is_some();
        if !found {
            eprintln!("python3 not on PATH: skipping");
        }
        found
    }

    #[test]
    fn python_prints() {
        if !python_available() {
            return;
        }
        let out = SharedOutput::new(1024);
        let mut r = PythonRunner::new();
        r.start(b"print(1+1)\n", &out).unwrap();
        assert!(wait_until_stopped(&r, 30));
        assert_eq!(text(&out).trim(), "2");
    }

    #[test]
    fn python_traceback_is_captured() {
        if !python_available() {
            return;
        }
        let out = SharedOutput::new(2048);
        let mut r = PythonRunner::new();
        r.start(b"print('before')\nraise ValueError('x')\n", &out)
            .unwrap();
        assert!(wait_until_stopped(&r, 30));
        let t = text(&out);
        assert!(t.contains("before"), "{t}");
        assert!(t.contains("Traceback"), "{t}");
        assert!(t.contains("ValueError: x"), "{t}");
        assert!(t.contains("<stdin>"), "{t}");
    }

    #[test]
    fn python_stdout_and_stderr_keep_their_order() {
        if !python_available() {
            return;
        }
        let out = SharedOutput::with_exact_capacity(64 * 1024);
        let mut r = PythonRunner::new();
        let script =
            b"import sys\nfor i in range(300):\n    print(i)\n    sys.stderr.write('e%d\\n' % i)\n";
        r.start(script, &out).unwrap();
        assert!(wait_until_stopped(&r, 30));
        let t = text(&out);
        let want: Vec<String> = (0..300)
            .flat_map(|i| [format!("{i}"), format!("e{i}")])
            .collect();
        assert_eq!(t.lines().collect::<Vec<_>>(), want, "{t}");
    }

    #[test]
    fn python_stop_kills_and_restart_replaces() {
        if !python_available() {
            return;
        }
        let out = SharedOutput::new(1024);
        let mut r = PythonRunner::new();
        r.start(b"import time\nwhile True:\n    time.sleep(0.01)\n", &out)
            .unwrap();
        thread::sleep(Duration::from_millis(100));
        assert!(r.is_running());
        r.start(b"import time\ntime.sleep(60)\n", &out).unwrap();
        assert!(r.is_running());
        r.stop();
        assert!(!r.is_running());
    }

    /// True while process `pid` exists and is not a zombie (a killed
    /// grandchild is reparented and may wait a while to be reaped).
    #[cfg(target_os = "linux")]
    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
                !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
            }
            Err(_) => false,
        }
    }

    /// Starts a script that starts a sleeping subprocess and prints its
    /// pid; returns the pid once printed and alive.
    #[cfg(target_os = "linux")]
    fn start_with_grandchild(r: &mut PythonRunner, out: &SharedOutput, then: &str) -> u32 {
        let script = format!(
            "import subprocess, sys\n\
             p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n\
             print('grandchild', p.pid, flush=True)\n{then}\n"
        );
        r.start(script.as_bytes(), out).unwrap();
        let end = StdInstant::now() + Duration::from_secs(30);
        let mut t = String::new();
        loop {
            t.push_str(&text(out));
            if let Some(pid) = t
                .split_once("grandchild ")
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .and_then(|p| p.parse::<u32>().ok())
                .filter(|_| t.contains('\n'))
            {
                assert!(alive(pid), "grandchild {pid} not running");
                return pid;
            }
            assert!(StdInstant::now() < end, "no grandchild pid in {t:?}");
            thread::sleep(Duration::from_millis(10));
        }
    }

    #[cfg(target_os = "linux")]
    fn gone_within(pid: u32, secs: u64) -> bool {
        let end = StdInstant::now() + Duration::from_secs(secs);
        while alive(pid) {
            if StdInstant::now() > end {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
        true
    }

    /// STOP, a new EXEC and dropping the runner kill the processes a script
    /// started, not only the interpreter; so does a STOP after the script
    /// ended by itself and left a subprocess behind.
    #[cfg(target_os = "linux")]
    #[test]
    fn python_stop_kills_the_whole_process_tree() {
        if !python_available() {
            return;
        }
        let out = SharedOutput::with_exact_capacity(4096);
        let mut r = PythonRunner::new();
        let sleep = "import time\ntime.sleep(30)";

        let g = start_with_grandchild(&mut r, &out, sleep);
        r.stop();
        assert!(gone_within(g, 5), "grandchild {g} survived STOP");

        let g = start_with_grandchild(&mut r, &out, sleep);
        r.start(b"pass\n", &out).unwrap();
        assert!(gone_within(g, 5), "grandchild {g} survived a new EXEC");

        // The interpreter exits at once and leaves its subprocess running.
        let g = start_with_grandchild(&mut r, &out, "");
        assert!(wait_until_stopped(&r, 30));
        assert!(alive(g), "grandchild {g} died with its parent");
        r.stop();
        assert!(
            gone_within(g, 5),
            "grandchild {g} survived STOP after the script ended"
        );

        let g = start_with_grandchild(&mut r, &out, sleep);
        drop(r);
        assert!(
            gone_within(g, 5),
            "grandchild {g} survived dropping the runner"
        );
    }

    #[test]
    fn missing_interpreter_explains() {
        let out = SharedOutput::new(1024);
        let mut r = PythonRunner::with_interpreter("/nonexistent/python3");
        assert!(r.resolve_interpreter().is_none());
        r.start(b"print(1)", &out).unwrap();
        assert!(!r.is_running());
        let t = text(&out);
        assert!(t.contains("no Python interpreter"), "{t}");
        assert!(t.contains("not run"), "{t}");
    }

    #[test]
    fn in_process_sync_and_threaded() {
        let out = SharedOutput::new(1024);
        let mut r = InProcessRunner::new(|s, ctx| ctx.print(&String::from_utf8_lossy(s)));
        r.start(b"hi", &out).unwrap();
        assert!(!r.is_running());
        assert_eq!(text(&out), "hi");

        let mut t = InProcessRunner::threaded(|_, ctx| {
            while !ctx.stop_requested() {
                thread::sleep(Duration::from_millis(1));
            }
        });
        t.start(b"", &out).unwrap();
        assert!(t.is_running());
        t.stop();
        assert!(!t.is_running());

        let mut quick = InProcessRunner::threaded(|_, ctx| ctx.print("done"));
        quick.start(b"", &out).unwrap();
        assert!(wait_until_stopped(&quick, 5));
        assert_eq!(text(&out), "done");
    }
}
