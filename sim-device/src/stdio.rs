//! The built-in stdin (id 1) and stdout (id 2) channels (section 9).
//!
//! * [`StdinChannel`] collects the uploaded script and runs it with a
//!   [`ScriptRunner`]; it sends "script started" (1) and "script stopped"
//!   (0) channel events and queues a SOFT_REBOOT system event on a shared
//!   [`SystemEvents`] queue whenever a script ends.
//! * [`StdoutChannel`] lets the host drain the cam's text output, a
//!   [`SharedOutput`] ring buffer the runner writes into; it sends NOTIFY
//!   when the buffer passes half full and every 50 ms while unread text
//!   remains.

use omv_proto::ioctl::{STDIN_EXEC, STDIN_RESET, STDIN_STOP};
use std::collections::VecDeque;

use omv_proto::backend::{ChannelBackend, ChannelError, ChannelEventOut, Ops};
use omv_proto::event::EventId;
use omv_proto::{ChannelFlags, Duration, Instant};

use crate::args::{no_args, size_u32};
use crate::events::SystemEvents;
use crate::output::SharedOutput;
use crate::script::ScriptRunner;

/// Largest script the stdin channel accepts by default (1 MiB).
pub const DEFAULT_MAX_SCRIPT: usize = 1 << 20;

/// How often stdin checks whether a running script has ended.
pub const SCRIPT_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The stdin channel: flags WRITE|EXEC.
///
/// A write at offset 0 clears the script buffer, any other write appends
/// (the offset is otherwise ignored, as on the firmware). ioctls, all
/// without arguments: [`STDIN_STOP`], [`STDIN_EXEC`] (FAILED on an empty
/// buffer), [`STDIN_RESET`]. `poll` is true while a script runs.
///
/// The cam loop must call [`poll_event`](ChannelBackend::poll_event)
/// regularly (at least by [`next_deadline`](ChannelBackend::next_deadline),
/// which asks for a check every 20 ms while a script
/// runs): that is where the end of a script is noticed, the "stopped" event
/// produced and SOFT_REBOOT queued on the cam's system events.
pub struct StdinChannel {
    script: Vec<u8>,
    max_script: usize,
    runner: Box<dyn ScriptRunner>,
    output: SharedOutput,
    system: SystemEvents,
    /// A script was started and its end has not been reported yet.
    active: bool,
    pending: VecDeque<EventId>,
    /// An EXEC replaced a running script: its "started" event waits for
    /// the soft reset the old script's end causes (the protocol reset calls
    /// [`ChannelBackend::reset`]), as on the firmware, where the new script
    /// starts after the soft reboot.
    started_after_reset: bool,
    last_now: Instant,
}

impl std::fmt::Debug for StdinChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdinChannel")
            .field("script_len", &self.script.len())
            .field("active", &self.active)
            .field("pending", &self.pending)
            .finish()
    }
}

impl StdinChannel {
    /// A stdin channel running scripts with `runner`, their output going
    /// to `output`, SOFT_REBOOT events to `system`.
    pub fn new(runner: Box<dyn ScriptRunner>, output: SharedOutput, system: SystemEvents) -> Self {
        StdinChannel {
            script: Vec::new(),
            max_script: DEFAULT_MAX_SCRIPT,
            runner,
            output,
            system,
            active: false,
            pending: VecDeque::new(),
            started_after_reset: false,
            last_now: Instant::ZERO,
        }
    }

    /// Sets the largest accepted script; writes beyond it fail.
    pub fn with_max_script(mut self, max: usize) -> Self {
        self.max_script = max;
        self
    }

    /// The uploaded script so far.
    pub fn script(&self) -> &[u8] {
        &self.script
    }

    /// True while a started script has not been seen to end.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Runs the uploaded script as EXEC does (for a cam loop that runs a
    /// boot script itself).
    pub fn exec(&mut self) -> Result<(), ChannelError> {
        if self.script.is_empty() {
            return Err(ChannelError::Failed);
        }
        let replaced = self.active;
        if replaced {
            self.runner.stop();
            self.script_ended();
        }
        if let Err(e) = self.runner.start(&self.script, &self.output) {
            log::warn!("stdin: could not start the script: {e}");
            return Err(ChannelError::Failed);
        }
        self.active = true;
        if replaced {
            self.started_after_reset = true;
        } else {
            self.pending.push_back(EventId::SCRIPT_STARTED);
        }
        Ok(())
    }

    /// Stops the running script, if any.
    pub fn stop(&mut self) {
        if self.active {
            self.runner.stop();
            self.script_ended();
        }
    }

    fn script_ended(&mut self) {
        self.active = false;
        self.pending.push_back(EventId::SCRIPT_STOPPED);
        self.system.push(EventId::SOFT_REBOOT);
    }

    fn check_ended(&mut self) {
        if self.active && !self.runner.is_running() {
            self.script_ended();
        }
    }
}

impl ChannelBackend for StdinChannel {
    fn ops(&self) -> Ops {
        Ops::WRITE | Ops::IOCTL | Ops::POLL
    }

    fn flags(&self) -> Option<ChannelFlags> {
        Some(ChannelFlags::WRITE | ChannelFlags::EXEC)
    }

    fn poll(&mut self, now: Instant) -> bool {
        self.last_now = self.last_now.max(now);
        self.active && self.runner.is_running()
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), ChannelError> {
        if offset == 0 {
            self.script.clear();
        }
        let total = self
            .script
            .len()
            .checked_add(data.len())
            .ok_or(ChannelError::Failed)?;
        if total > self.max_script {
            return Err(ChannelError::Failed);
        }
        self.script.extend_from_slice(data);
        Ok(())
    }

    fn ioctl(&mut self, request: u32, args: &[u8]) -> Result<(), ChannelError> {
        match request {
            STDIN_STOP => {
                no_args(args)?;
                self.stop();
                Ok(())
            }
            STDIN_EXEC => {
                no_args(args)?;
                self.exec()
            }
            STDIN_RESET => {
                no_args(args)?;
                self.script.clear();
                Ok(())
            }
            _ => Err(ChannelError::Invalid),
        }
    }

    fn reset(&mut self) {
        if std::mem::take(&mut self.started_after_reset) {
            self.pending.push_back(EventId::SCRIPT_STARTED);
        }
    }

    fn poll_event(&mut self, now: Instant) -> Option<ChannelEventOut> {
        self.last_now = self.last_now.max(now);
        self.check_ended();
        let id = self.pending.pop_front()?;
        Some(ChannelEventOut {
            event: Some(id.0),
            ack_req: false,
        })
    }

    fn next_deadline(&self) -> Option<Instant> {
        if !self.pending.is_empty() {
            Some(self.last_now)
        } else if self.active {
            Some(self.last_now + SCRIPT_POLL_INTERVAL)
        } else {
            None
        }
    }
}

/// Period of the stdout NOTIFY while unread text remains.
pub const STDOUT_NOTIFY_PERIOD: Duration = Duration::from_millis(50);

/// The stdout channel: flags READ, backed by a [`SharedOutput`].
///
/// `size` = unread bytes; `read` consumes up to the requested length (the
/// offset is ignored) and returns 0 when there is nothing to read (the cam
/// NAKs FAILED a read that gets nothing, and ends a read whose text runs
/// out exactly at a piece boundary); `poll` = unread text. Events (NOTIFY): as soon as the buffer is seen more than
/// half full (once per crossing), and every 50 ms while
/// unread text remains, the first one a period after the text is first
/// seen. Text written by other threads is seen at the next
/// [`poll_event`](ChannelBackend::poll_event) call; `next_deadline` asks
/// for one immediately when it notices unseen text.
#[derive(Debug)]
pub struct StdoutChannel {
    output: SharedOutput,
    half_notified: bool,
    next_notify: Option<Instant>,
    last_now: Instant,
}

impl StdoutChannel {
    /// A stdout channel draining `output`.
    pub fn new(output: SharedOutput) -> Self {
        StdoutChannel {
            output,
            half_notified: false,
            next_notify: None,
            last_now: Instant::ZERO,
        }
    }

    /// The buffer this channel drains.
    pub fn output(&self) -> &SharedOutput {
        &self.output
    }

    fn half(&self) -> usize {
        self.output.capacity() / 2
    }
}

impl ChannelBackend for StdoutChannel {
    fn ops(&self) -> Ops {
        Ops::READ | Ops::SIZE | Ops::POLL
    }

    fn flags(&self) -> Option<ChannelFlags> {
        Some(ChannelFlags::READ)
    }

    fn poll(&mut self, now: Instant) -> bool {
        self.last_now = self.last_now.max(now);
        !self.output.is_empty()
    }

    fn size(&mut self) -> Result<u32, ChannelError> {
        Ok(size_u32(self.output.len()))
    }

    fn read(&mut self, _offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        Ok(self.output.read(buf))
    }

    fn poll_event(&mut self, now: Instant) -> Option<ChannelEventOut> {
        self.last_now = self.last_now.max(now);
        let unread = self.output.len();
        if unread == 0 {
            self.half_notified = false;
            self.next_notify = None;
            return None;
        }
        let notify = Some(ChannelEventOut {
            event: None,
            ack_req: false,
        });
        if unread > self.half() {
            if !self.half_notified {
                self.half_notified = true;
                self.next_notify = Some(now + STDOUT_NOTIFY_PERIOD);
                return notify;
            }
        } else {
            self.half_notified = false;
        }
        match self.next_notify {
            None => {
                self.next_notify = Some(now + STDOUT_NOTIFY_PERIOD);
                None
            }
            Some(t) if now >= t => {
                self.next_notify = Some(now + STDOUT_NOTIFY_PERIOD);
                notify
            }
            Some(_) => None,
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let unread = self.output.len();
        if unread == 0 {
            return None;
        }
        if (unread > self.half() && !self.half_notified) || self.next_notify.is_none() {
            return Some(self.last_now);
        }
        self.next_notify
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::InProcessRunner;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    const NOTIFY: Option<ChannelEventOut> = Some(ChannelEventOut {
        event: None,
        ack_req: false,
    });

    fn ev(id: EventId) -> Option<ChannelEventOut> {
        Some(ChannelEventOut {
            event: Some(id.0),
            ack_req: false,
        })
    }

    fn echo_stdin() -> (StdinChannel, SharedOutput, SystemEvents) {
        let out = SharedOutput::new(1024);
        let sys = SystemEvents::new();
        let runner = InProcessRunner::new(|s, ctx| ctx.output().write(s));
        (
            StdinChannel::new(Box::new(runner), out.clone(), sys.clone()),
            out,
            sys,
        )
    }

    #[test]
    fn stdin_flags_and_ops() {
        let (s, _, _) = echo_stdin();
        assert_eq!(s.flags(), Some(ChannelFlags::WRITE | ChannelFlags::EXEC));
        assert!(s.ops().contains(Ops::WRITE | Ops::IOCTL));
        assert!(!s.ops().contains(Ops::READ));
    }

    #[test]
    fn stdin_offset_zero_clears_others_append() {
        let (mut s, _, _) = echo_stdin();
        s.write(0, b"abc").unwrap();
        s.write(3, b"def").unwrap();
        s.write(1234, b"g").unwrap();
        assert_eq!(s.script(), b"abcdefg");
        s.write(0, b"xy").unwrap();
        assert_eq!(s.script(), b"xy");
        s.write(u32::MAX, b"z").unwrap();
        assert_eq!(s.script(), b"xyz");
        s.ioctl(STDIN_RESET, &[]).unwrap();
        assert_eq!(s.script(), b"");
    }

    #[test]
    fn stdin_script_size_limit() {
        let (s, _, _) = echo_stdin();
        let mut s = s.with_max_script(4);
        s.write(0, b"1234").unwrap();
        assert_eq!(s.write(4, b"5"), Err(ChannelError::Failed));
        assert_eq!(s.script(), b"1234");
    }

    #[test]
    fn stdin_exec_empty_fails_and_bad_args_invalid() {
        let (mut s, _, sys) = echo_stdin();
        assert_eq!(s.ioctl(STDIN_EXEC, &[]), Err(ChannelError::Failed));
        s.write(0, b"x").unwrap();
        assert_eq!(s.ioctl(STDIN_EXEC, &[0]), Err(ChannelError::Invalid));
        assert_eq!(
            s.ioctl(STDIN_STOP, &[0, 0, 0, 0]),
            Err(ChannelError::Invalid)
        );
        assert_eq!(s.ioctl(STDIN_RESET, &[1]), Err(ChannelError::Invalid));
        assert_eq!(s.ioctl(0, &[]), Err(ChannelError::Invalid));
        assert_eq!(s.ioctl(99, &[]), Err(ChannelError::Invalid));
        assert_eq!(s.poll_event(ms(0)), None);
        assert!(sys.is_empty());
    }

    #[test]
    fn stdin_exec_runs_and_reports_start_stop_and_soft_reboot() {
        let (mut s, out, sys) = echo_stdin();
        s.write(0, b"print('hi')").unwrap();
        s.ioctl(STDIN_EXEC, &[]).unwrap();
        assert_eq!(out.take_all(), b"print('hi')");
        assert_eq!(s.next_deadline(), Some(ms(0)));
        assert_eq!(s.poll_event(ms(1)), ev(EventId::SCRIPT_STARTED));
        assert_eq!(s.poll_event(ms(2)), ev(EventId::SCRIPT_STOPPED));
        assert_eq!(s.poll_event(ms(3)), None);
        assert_eq!(s.next_deadline(), None);
        assert_eq!(sys.drain(), vec![EventId::SOFT_REBOOT]);
        assert!(!s.poll(ms(4)));
    }

    #[test]
    fn stdin_exec_interrupts_and_stop() {
        let out = SharedOutput::new(1024);
        let sys = SystemEvents::new();
        let stops = Arc::new(AtomicBool::new(false));
        let st = stops.clone();
        let runner = InProcessRunner::threaded(move |_, ctx| {
            while !ctx.stop_requested() {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            st.store(true, Ordering::SeqCst);
        });
        let mut s = StdinChannel::new(Box::new(runner), out, sys.clone());
        s.write(0, b"loop").unwrap();
        s.ioctl(STDIN_EXEC, &[]).unwrap();
        assert!(s.poll(ms(0)));
        assert_eq!(s.poll_event(ms(0)), ev(EventId::SCRIPT_STARTED));
        assert_eq!(s.poll_event(ms(1)), None);
        assert_eq!(s.next_deadline(), Some(ms(1) + SCRIPT_POLL_INTERVAL));
        // A second EXEC interrupts the running script and runs the new one;
        // its "started" event follows the soft reset (the protocol reset).
        s.ioctl(STDIN_EXEC, &[]).unwrap();
        assert_eq!(s.poll_event(ms(2)), ev(EventId::SCRIPT_STOPPED));
        assert_eq!(s.poll_event(ms(2)), None);
        assert_eq!(sys.drain(), vec![EventId::SOFT_REBOOT]);
        s.reset();
        assert_eq!(s.poll_event(ms(2)), ev(EventId::SCRIPT_STARTED));
        assert!(s.poll(ms(3)));
        s.ioctl(STDIN_STOP, &[]).unwrap();
        assert!(!s.poll(ms(3)));
        assert_eq!(s.poll_event(ms(3)), ev(EventId::SCRIPT_STOPPED));
        assert_eq!(sys.drain(), vec![EventId::SOFT_REBOOT]);
        // STOP with nothing running is a no-op.
        s.ioctl(STDIN_STOP, &[]).unwrap();
        assert_eq!(s.poll_event(ms(4)), None);
        assert!(sys.is_empty());
    }

    #[test]
    fn stdin_runs_python_into_stdout() {
        let runner = crate::script::PythonRunner::new();
        if runner.resolve_interpreter().is_none() {
            eprintln!("python3 not on PATH: skipping");
            return;
        }
        let out = SharedOutput::new(1024);
        let sys = SystemEvents::new();
        let mut stdin = StdinChannel::new(Box::new(runner), out.clone(), sys.clone());
        let mut stdout = StdoutChannel::new(out);
        stdin.write(0, b"print(1+1)\n").unwrap();
        stdin.write(12, b"raise ValueError('x')\n").unwrap();
        stdin.ioctl(STDIN_EXEC, &[]).unwrap();
        let mut events = Vec::new();
        let mut t = 0;
        while t < 30_000 && events.last() != Some(&EventId::SCRIPT_STOPPED) {
            while let Some(e) = stdin.poll_event(ms(t)) {
                events.extend(e.event.map(EventId));
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            t += 5;
        }
        assert_eq!(events, [EventId::SCRIPT_STARTED, EventId::SCRIPT_STOPPED]);
        assert_eq!(sys.drain(), vec![EventId::SOFT_REBOOT]);
        let n = stdout.size().unwrap() as usize;
        let mut buf = vec![0u8; n];
        assert_eq!(stdout.read(0, &mut buf), Ok(n));
        let text = String::from_utf8_lossy(&buf);
        assert!(text.lines().any(|l| l == "2"), "{text}");
        assert!(text.contains("ValueError: x"), "{text}");
    }

    #[test]
    fn stdout_read_consumes_and_size() {
        let out = SharedOutput::new(1024);
        let mut c = StdoutChannel::new(out.clone());
        assert_eq!(c.flags(), Some(ChannelFlags::READ));
        assert_eq!(c.size(), Ok(0));
        assert!(!c.poll(ms(0)));
        let mut buf = [0u8; 4];
        assert_eq!(c.read(0, &mut buf), Ok(0));
        out.write(b"hello");
        assert!(c.poll(ms(0)));
        assert_eq!(c.size(), Ok(5));
        assert_eq!(c.read(999, &mut buf), Ok(4));
        assert_eq!(&buf, b"hell");
        assert_eq!(c.size(), Ok(1));
        assert_eq!(c.read(0, &mut buf), Ok(1));
        assert_eq!(buf[0], b'o');
        assert_eq!(c.size(), Ok(0));
    }

    #[test]
    fn stdout_overflow_drops_oldest() {
        let out = SharedOutput::new(512);
        let mut c = StdoutChannel::new(out.clone());
        let text: Vec<u8> = (0..600u32).map(|i| b'a' + (i % 26) as u8).collect();
        out.write(&text);
        assert_eq!(c.size(), Ok(512));
        let mut buf = vec![0u8; 1024];
        assert_eq!(c.read(0, &mut buf), Ok(512));
        assert_eq!(&buf[..512], &text[88..]);
    }

    #[test]
    fn stdout_notify_timing() {
        let out = SharedOutput::new(1024);
        let mut c = StdoutChannel::new(out.clone());
        assert_eq!(c.poll_event(ms(0)), None);
        assert_eq!(c.next_deadline(), None);

        // A little text: the first NOTIFY comes one period after it is seen.
        out.write(b"abc");
        assert_eq!(c.next_deadline(), Some(ms(0)));
        assert_eq!(c.poll_event(ms(10)), None);
        assert_eq!(c.next_deadline(), Some(ms(60)));
        assert_eq!(c.poll_event(ms(59)), None);
        assert_eq!(c.poll_event(ms(60)), NOTIFY);
        assert_eq!(c.poll_event(ms(61)), None);
        assert_eq!(c.next_deadline(), Some(ms(110)));
        assert_eq!(c.poll_event(ms(110)), NOTIFY);

        // Passing half full notifies at once, once.
        out.write(&[b'x'; 509]);
        assert_eq!(c.size(), Ok(512));
        assert_eq!(c.poll_event(ms(111)), None, "exactly half is not past half");
        out.write(b"y");
        assert_eq!(c.next_deadline(), Some(ms(111)));
        assert_eq!(c.poll_event(ms(112)), NOTIFY);
        assert_eq!(c.poll_event(ms(113)), None);
        assert_eq!(c.next_deadline(), Some(ms(162)));
        assert_eq!(c.poll_event(ms(162)), NOTIFY);

        // Draining stops the notifications.
        let mut buf = vec![0u8; 2048];
        assert_eq!(c.read(0, &mut buf), Ok(513));
        assert_eq!(c.poll_event(ms(300)), None);
        assert_eq!(c.next_deadline(), None);

        // After draining below half, a new crossing notifies again.
        out.write(&[b'z'; 600]);
        assert_eq!(c.poll_event(ms(301)), NOTIFY);
        c.read(0, &mut buf[..200]).unwrap();
        assert_eq!(c.poll_event(ms(302)), None);
        out.write(&[b'z'; 200]);
        assert_eq!(c.poll_event(ms(303)), NOTIFY);
    }
}
