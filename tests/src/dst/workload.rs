//! The random workload: host operations and cam-side activity, drawn from
//! the seed and shaped by the model (so that e.g. reads hit existing
//! channels at mostly valid offsets).

use omv_proto::host::Command;
use omv_proto::{ChannelId, Duration, Opcode};

use super::cam::UserSpec;
use super::dice::Dice;
use super::model::Model;

/// Caps a renegotiation asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// CRCs.
    pub crc: bool,
    /// Sequence checking.
    pub seq: bool,
    /// ACKs and retransmission.
    pub ack: bool,
    /// Events.
    pub events: bool,
    /// Requested max_payload (may be outside 50..=4082: the host clips it).
    pub max_payload: u16,
}

impl Wanted {
    /// Random caps: each flag on with probability 0.7, max_payload mostly
    /// in range (often small: long answers), sometimes the extremes or out
    /// of range.
    pub fn random(d: &mut Dice) -> Wanted {
        let max_payload = match d.weighted(&[30, 10, 5, 15, 40]) {
            0 => 4082,
            1 => 4096,
            2 => d.range(0, 49) as u16,
            3 => d.range(50, 128) as u16,
            _ => d.range(50, 4082) as u16,
        };
        Wanted {
            crc: d.chance(0.7),
            seq: d.chance(0.7),
            ack: d.chance(0.7),
            events: d.chance(0.7),
            max_payload,
        }
    }
}

/// One event the cam application sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// Channel (0: system event).
    pub channel: ChannelId,
    /// Event id (`None`: NOTIFY).
    pub event: Option<u16>,
    /// Ask the host for an ACK.
    pub ack_req: bool,
}

/// A host operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// CHANNEL_READ of a user channel (possibly out of range or invalid).
    Read {
        /// Channel.
        ch: ChannelId,
        /// Offset.
        offset: u32,
        /// Length.
        len: u32,
    },
    /// A resumable write (the session splits it).
    Write {
        /// Channel.
        ch: ChannelId,
        /// Offset.
        offset: u32,
        /// Bytes.
        data: Vec<u8>,
    },
    /// The session's exactly-once `Exec` (RESET, writes from 0, EXEC).
    Upload {
        /// The script.
        script: Vec<u8>,
    },
    /// CHANNEL_IOCTL.
    Ioctl {
        /// Channel.
        ch: ChannelId,
        /// Request code.
        request: u32,
        /// Raw arguments.
        args: Vec<u8>,
    },
    /// A consuming read of everything stdout holds.
    ReadStdout,
    /// CHANNEL_SIZE.
    Size {
        /// Channel.
        ch: ChannelId,
    },
    /// CHANNEL_SHAPE (no channel here has one).
    Shape {
        /// Channel.
        ch: ChannelId,
    },
    /// CHANNEL_POLL.
    Poll,
    /// CHANNEL_LOCK.
    Lock {
        /// Channel.
        ch: ChannelId,
    },
    /// CHANNEL_UNLOCK.
    Unlock {
        /// Channel.
        ch: ChannelId,
    },
    /// Lock, unlock, lock again at once (within the cam's lock interval),
    /// unlock.
    LockCycle {
        /// Channel.
        ch: ChannelId,
    },
    /// New caps asked for (`full`: by a whole resync, else `UpdateCaps`).
    Renegotiate {
        /// The caps asked for.
        want: Wanted,
        /// Resync instead of renegotiating.
        full: bool,
    },
    /// CHANNEL_LIST (compared with the cam's list).
    List,
    /// A system query: STATS, VERSION, SYS_INFO, GET_CAPS (raw), SYS_MEMORY.
    Query {
        /// Opcode.
        opcode: Opcode,
    },
    /// A malformed or invalid raw request: the cam NAKs it INVALID.
    Bad {
        /// The request.
        cmd: Command,
        /// What is wrong with it.
        why: &'static str,
    },
    /// SYS_RESET: the cam reboots and the link drops.
    SysReset,
    /// A frame from the stream channel (lock, size, read, unlock).
    ReadFrame,
    /// CHANNEL_POLL and the channel list, as `ReadStatus`.
    Status,
    /// Stop the running script.
    Stop,
}

impl Op {
    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Read { .. } => "read",
            Op::Write { .. } => "write",
            Op::Upload { .. } => "upload",
            Op::Ioctl { .. } => "ioctl",
            Op::ReadStdout => "read_stdout",
            Op::Size { .. } => "size",
            Op::Shape { .. } => "shape",
            Op::Poll => "poll",
            Op::Lock { .. } => "lock",
            Op::Unlock { .. } => "unlock",
            Op::LockCycle { .. } => "lock_cycle",
            Op::Renegotiate { full: false, .. } => "renegotiate",
            Op::Renegotiate { full: true, .. } => "reconnect",
            Op::List => "list",
            Op::Query { .. } => "query",
            Op::Bad { .. } => "bad_request",
            Op::SysReset => "sys_reset",
            Op::ReadFrame => "read_frame",
            Op::Status => "status",
            Op::Stop => "stop",
        }
    }

    /// One-line description for the trace.
    pub fn describe(&self) -> String {
        match self {
            Op::Write { ch, offset, data } => format!("write {ch:?} @{offset} +{}", data.len()),
            Op::Upload { script } => format!("upload {} bytes", script.len()),
            Op::Bad { cmd, why } => format!("bad {} on {:?}: {why}", cmd.opcode, cmd.channel),
            other => format!("{other:?}"),
        }
    }
}

/// Cam-side activity between operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Between {
    /// The host application thinks for a while (timers run).
    Think(Duration),
    /// The cam application prints text (stdout).
    Print(Vec<u8>),
    /// The cam registers a user channel at run time.
    Register(UserSpec),
    /// The cam unregisters a user channel.
    Unregister(ChannelId),
    /// The cam sends a burst of events.
    Events(Vec<EventSpec>),
}

/// Draws operations and activity.
#[derive(Debug)]
pub struct Workload {
    d: Dice,
    scripts: u64,
    prints: u64,
    registered: u64,
}

fn printable(d: &mut Dice, n: usize) -> Vec<u8> {
    d.bytes(n).into_iter().map(|b| b' ' + b % 94).collect()
}

impl Workload {
    /// A workload drawing from `d`.
    pub fn new(d: Dice) -> Workload {
        Workload {
            d,
            scripts: 0,
            prints: 0,
            registered: 0,
        }
    }

    /// The workload's dice (for mid-operation activity).
    pub fn dice(&mut self) -> &mut Dice {
        &mut self.d
    }

    fn any_channel(&mut self, m: &Model) -> ChannelId {
        let d = &mut self.d;
        match d.weighted(&[70, 8, 8, 7, 7]) {
            0 if !m.users.is_empty() => {
                let ids: Vec<u8> = m.users.keys().copied().collect();
                ChannelId(d.pick(&ids))
            }
            1 => ChannelId::STDIN,
            2 => ChannelId::STDOUT,
            3 => ChannelId::SYSTEM,
            _ => ChannelId(d.range(1, 31) as u8),
        }
    }

    fn user(&mut self, m: &Model) -> Option<(ChannelId, usize)> {
        if m.users.is_empty() {
            return None;
        }
        let ids: Vec<(u8, usize)> = m.users.iter().map(|(&i, b)| (i, b.len())).collect();
        let (id, len) = self.d.pick(&ids);
        Some((ChannelId(id), len))
    }

    /// A length for a transfer from a buffer of `size` bytes.
    fn length(&mut self, size: usize, max_payload: usize) -> usize {
        let d = &mut self.d;
        let cap = size.max(1);
        match d.weighted(&[30, 35, 35]) {
            0 => d.range_usize(1, 64.min(cap)),
            1 => d.range_usize(1, (2 * max_payload).min(cap)),
            _ => d.range_usize(1, cap),
        }
    }

    /// A script: a unique first line, then random text (3% empty).
    pub fn script(&mut self) -> Vec<u8> {
        self.scripts += 1;
        if self.d.chance(0.03) {
            return Vec::new();
        }
        let len = match self.d.weighted(&[40, 40, 20]) {
            0 => self.d.range_usize(20, 200),
            1 => self.d.range_usize(200, 2000),
            _ => self.d.range_usize(2000, 8000),
        };
        let mut s = format!("# script {}\n", self.scripts).into_bytes();
        while s.len() < len {
            let n = self.d.range_usize(1, 70);
            s.extend(printable(&mut self.d, n));
            s.push(b'\n');
        }
        s
    }

    /// The next host operation.
    /// The next operation (`frames`: the cam streams frames).
    pub fn op(&mut self, m: &Model, max_payload: usize, frames: bool) -> Op {
        let kind = self
            .d
            .weighted(&[18, 14, 8, 5, 8, 5, 2, 4, 7, 5, 4, 3, 5, 6, 1, 3]);
        match kind {
            0 => match self.user(m) {
                Some((ch, size)) if self.d.chance(0.9) => {
                    let len = self.length(size, max_payload);
                    let offset = if self.d.chance(0.9) {
                        self.d.range_usize(0, size.saturating_sub(len))
                    } else {
                        self.d.range_usize(size.saturating_sub(len), size + 64)
                    };
                    Op::Read {
                        ch,
                        offset: offset as u32,
                        len: len as u32,
                    }
                }
                _ => {
                    let mut ch = self.any_channel(m);
                    // A read by id of stdout, which consumes what it
                    // sends, cannot resume: the session's ReadStdout is
                    // the way (a by-id read has no idea).
                    if ch == ChannelId::STDOUT {
                        ch = ChannelId::STDIN;
                    }
                    let len = if self.d.chance(0.3) {
                        0
                    } else {
                        self.d.range(1, 100) as u32
                    };
                    Op::Read { ch, offset: 0, len }
                }
            },
            1 => match self.user(m) {
                Some((ch, size)) if size > 0 && self.d.chance(0.93) => {
                    let len = self.length(size, max_payload);
                    let offset = if self.d.chance(0.9) {
                        self.d.range_usize(0, size - len)
                    } else {
                        self.d.range_usize(size.saturating_sub(len), size + 64)
                    };
                    Op::Write {
                        ch,
                        offset: offset as u32,
                        data: self.d.bytes(len),
                    }
                }
                _ => {
                    let ch = if self.d.coin() {
                        ChannelId::STDOUT
                    } else {
                        ChannelId(self.d.range(20, 31) as u8)
                    };
                    Op::Write {
                        ch,
                        offset: 0,
                        data: {
                            let n = self.d.range_usize(1, 20);
                            self.d.bytes(n)
                        },
                    }
                }
            },
            2 => Op::Upload {
                script: self.script(),
            },
            3 => {
                let ch = if self.d.chance(0.7) {
                    ChannelId::STDIN
                } else {
                    self.any_channel(m)
                };
                // No raw STDIN_EXEC: only the session's Exec runs scripts
                // (a raw one would run whatever stdin holds).
                let request = match self.d.weighted(&[3, 4, 2, 1]) {
                    0 => omv_proto::ioctl::STDIN_STOP,
                    1 => omv_proto::ioctl::STDIN_RESET,
                    2 => omv_proto::ioctl::STDIN_STOP,
                    _ => self.d.pick(&[0, 4, 99, u32::MAX]),
                };
                let args = if self.d.chance(0.1) {
                    let n = self.d.range_usize(1, 8);
                    self.d.bytes(n)
                } else {
                    Vec::new()
                };
                Op::Ioctl { ch, request, args }
            }
            4 => Op::ReadStdout,
            5 => Op::Size {
                ch: self.any_channel(m),
            },
            6 => Op::Shape {
                ch: self.any_channel(m),
            },
            7 => match self.d.weighted(&[2, 1, 1, 1]) {
                0 => Op::Poll,
                1 => Op::Status,
                2 if frames => Op::ReadFrame,
                _ => Op::Stop,
            },
            8 => Op::Lock {
                ch: self.any_channel(m),
            },
            9 => Op::Unlock {
                ch: self.any_channel(m),
            },
            10 => Op::Renegotiate {
                want: Wanted::random(&mut self.d),
                full: self.d.chance(0.3),
            },
            11 => Op::List,
            12 => Op::Query {
                opcode: self.d.pick(&[
                    Opcode::PROTO_STATS,
                    Opcode::PROTO_STATS,
                    Opcode::PROTO_VERSION,
                    Opcode::SYS_INFO,
                    Opcode::PROTO_GET_CAPS,
                    Opcode::SYS_MEMORY,
                ]),
            },
            13 => self.bad(m),
            14 => Op::SysReset,
            _ => {
                let lockable: Vec<u8> = m
                    .users
                    .iter()
                    .filter(|(_, b)| b.spec.lockable)
                    .map(|(&id, _)| id)
                    .collect();
                let ch = if lockable.is_empty() {
                    self.any_channel(m)
                } else {
                    ChannelId(self.d.pick(&lockable))
                };
                Op::LockCycle { ch }
            }
        }
    }

    /// A request the cam must NAK INVALID.
    fn bad(&mut self, m: &Model) -> Op {
        let ch = self.any_channel(m);
        let d = &mut self.d;
        let (cmd, why) = match d.below(9) {
            0 => {
                let op = loop {
                    let op = Opcode(d.below(256) as u8);
                    let known = op.name().is_some();
                    if !known {
                        break op;
                    }
                };
                (Command::new(op, ch), "unknown opcode")
            }
            1 => {
                // Not PROTO_SYNC: it is exempt from the sequence check on
                // both sides (whatever its channel), so its NAK would
                // "succeed" across a sequence desync without proving the
                // link works.
                let op = d.pick(&[
                    Opcode::PROTO_STATS,
                    Opcode::PROTO_VERSION,
                    Opcode::SYS_INFO,
                    Opcode::PROTO_GET_CAPS,
                    Opcode::SYS_RESET,
                ]);
                let data_ch = ChannelId(d.range(1, 31) as u8);
                (Command::new(op, data_ch), "system opcode on a data channel")
            }
            2 => {
                let mut p = vec![0u8; 16];
                p[4..6].copy_from_slice(&(d.range(0, 49) as u16).to_le_bytes());
                p[0] = 3;
                let cmd = Command {
                    opcode: Opcode::PROTO_SET_CAPS,
                    channel: ChannelId::SYSTEM,
                    payload: p.into(),
                };
                (cmd, "SET_CAPS with max_payload under 50")
            }
            3 => {
                let n = d.pick(&[0usize, 8, 15, 17]);
                let cmd = Command {
                    opcode: Opcode::PROTO_SET_CAPS,
                    channel: ChannelId::SYSTEM,
                    payload: d.bytes(n).into(),
                };
                (cmd, "SET_CAPS with a wrong payload size")
            }
            4 => {
                let n = d.range_usize(0, 7);
                let cmd = Command {
                    opcode: Opcode::CHANNEL_READ,
                    channel: ch,
                    payload: d.bytes(n).into(),
                };
                (cmd, "short CHANNEL_READ")
            }
            5 => (
                Command::read(ch, u32::MAX - d.range(0, 5) as u32, 100),
                "CHANNEL_READ whose offset + length overflows",
            ),
            6 => {
                let n = d.range_usize(1, 20);
                let mut c = Command::write(ch, 0, &d.bytes(n));
                let mut p = c.payload.to_vec();
                let len = u32::from_le_bytes([p[4], p[5], p[6], p[7]]);
                let bad = if d.coin() { len + 1 } else { len - 1 };
                p[4..8].copy_from_slice(&bad.to_le_bytes());
                c.payload = p.into();
                (c, "CHANNEL_WRITE whose length disagrees with its data")
            }
            7 => {
                let n = d.range_usize(0, 7);
                let cmd = Command {
                    opcode: Opcode::CHANNEL_WRITE,
                    channel: ch,
                    payload: d.bytes(n).into(),
                };
                (cmd, "short CHANNEL_WRITE")
            }
            _ => {
                let n = d.range_usize(0, 3);
                let cmd = Command {
                    opcode: Opcode::CHANNEL_IOCTL,
                    channel: ch,
                    payload: d.bytes(n).into(),
                };
                (cmd, "short CHANNEL_IOCTL")
            }
        };
        Op::Bad { cmd, why }
    }

    /// Activity before the next operation.
    pub fn between(&mut self, m: &Model) -> Vec<Between> {
        let mut v = Vec::new();
        let d = &mut self.d;
        if d.chance(0.15) {
            self.prints += 1;
            let n = d.range_usize(0, 300);
            let mut text = format!("cam line {}: ", self.prints).into_bytes();
            text.extend(printable(d, n));
            text.push(b'\n');
            v.push(Between::Print(text));
        }
        if d.chance(0.08) {
            v.push(Between::Events(self.events()));
        }
        let d = &mut self.d;
        if d.chance(0.03) && m.users.len() < 8 {
            self.registered += 1;
            let size = d.pick(&[0usize, 16, 700, 5000]);
            v.push(Between::Register(UserSpec {
                name: format!("dyn{}", self.registered),
                size,
                lockable: d.coin(),
                salt: d.u64(),
            }));
        } else if d.chance(0.02) && !m.users.is_empty() {
            let ids: Vec<u8> = m.users.keys().copied().collect();
            v.push(Between::Unregister(ChannelId(d.pick(&ids))));
        }
        let d = &mut self.d;
        let think = match d.weighted(&[30, 50, 20]) {
            0 => 0,
            1 => d.range(0, 15_000),
            _ => d.range(15_000, 120_000),
        };
        v.push(Between::Think(Duration::from_micros(think)));
        v
    }

    /// A burst of 1 to 6 events.
    pub fn events(&mut self) -> Vec<EventSpec> {
        let d = &mut self.d;
        (0..d.range(1, 6))
            .map(|_| {
                let channel = {
                    let any = d.range(0, 31) as u8;
                    ChannelId(d.pick(&[0, 0, 1, 2, 3, any]))
                };
                let mut event = if d.chance(0.3) {
                    None
                } else {
                    Some(d.range(0, 5) as u16)
                };
                // Never a lie about the script or the protocol: a
                // SOFT_REBOOT (system 2) or SCRIPT_STARTED (stdin 1) the
                // cam did not do would rightly mislead the host.
                if (channel == ChannelId::SYSTEM && event == Some(2))
                    || (channel == ChannelId::STDIN && event == Some(1))
                {
                    event = Some(4);
                }
                EventSpec {
                    channel,
                    event,
                    ack_req: d.chance(0.3),
                }
            })
            .collect()
    }
}
