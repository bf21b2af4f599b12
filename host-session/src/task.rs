//! The task interface between the engine and the operations.

use alloc::boxed::Box;
use core::any::Any;

use bytes::Bytes;
use omv_proto::host::{Command, Reply};

use crate::error::Result;
use crate::session::{Cache, SendInfo};

/// What happened to the task's last action.
#[derive(Debug)]
pub enum Input {
    /// The task starts (the link is up).
    Start,
    /// The request's answer.
    Reply(Reply),
    /// The request failed and will not be retried by the engine.
    Failed(crate::Error),
    /// The request failed, the link was resynced (or an
    /// [`Action::Wait`] ended): go on from where the task stands. `partial` is what arrived of a read's answer before the
    /// failure; `rebooted` when the cam soft-rebooted in between.
    Resumed {
        /// Data of the failed read received before it failed.
        partial: Bytes,
        /// The cam soft-rebooted since the task started or last resumed.
        rebooted: bool,
    },
}

/// What the task wants next.
pub enum Action {
    /// Send a request.
    Send(Command, SendInfo),
    /// Send a request that has no answer (SYS_RESET, SYS_BOOT); the task
    /// ends with the value.
    Oneway(Command, Box<dyn Any + Send>),
    /// Resync the link (the connect's handshake); then `Resumed`.
    Resync,
    /// Wait this long (the link idle), then `Resumed`; when the wait would
    /// pass the operation's deadline, `Failed` with
    /// [`Error::DeadlineExceeded`](crate::Error::DeadlineExceeded) at once.
    Wait {
        /// How long.
        time: core::time::Duration,
        /// The request sent after the wait (for the error).
        op: omv_proto::Opcode,
        /// Its channel.
        channel: u8,
    },
    /// The task ended.
    Done(Result<Box<dyn Any + Send>>),
}

/// One operation as a state machine. Private to the crate in practice:
/// the type is not reachable from outside.
pub trait Task: Send {
    /// The next action, given the last one's outcome.
    fn step(&mut self, cx: &mut Cache, input: Input) -> Action;
    /// Bytes the operation moves (for its deadline and progress).
    fn size(&self) -> u64 {
        0
    }
    /// Bytes done (received or acknowledged).
    fn done(&self) -> u64 {
        0
    }
}

/// Ends a task with a value.
pub fn done<T: Any + Send>(v: T) -> Action {
    Action::Done(Ok(Box::new(v)))
}

/// Ends a task with an error.
pub fn fail(e: crate::Error) -> Action {
    Action::Done(Err(e))
}
