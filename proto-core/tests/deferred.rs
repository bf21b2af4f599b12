//! Backends that answer later ([`ChannelError::Pending`]): the endpoint
//! keeps the request, asks again whenever it is driven, and sends the
//! answer once it comes; reads are cut into the backend's own pieces; a
//! new request abandons a kept one.

mod common;

use std::sync::{Arc, Mutex};

use common::Link;
use omv_proto::backend::{ChannelBackend, ChannelError, Ops};
use omv_proto::host::{Command, Reply};
use omv_proto::{ChannelId, Duration, Instant, Opcode, Status};

const CH: ChannelId = ChannelId(5);

/// Answers every call only after it was asked `delay` times; logs calls.
struct Slow {
    delay: u32,
    asked: u32,
    calls: Arc<Mutex<Vec<String>>>,
    data: Vec<u8>,
}

impl Slow {
    fn ready(&mut self, call: String) -> Result<(), ChannelError> {
        self.calls.lock().unwrap().push(call);
        if self.asked < self.delay {
            self.asked += 1;
            return Err(ChannelError::Pending);
        }
        self.asked = 0;
        Ok(())
    }
}

impl ChannelBackend for Slow {
    fn ops(&self) -> Ops {
        Ops::READ | Ops::WRITE | Ops::SIZE | Ops::IOCTL
    }
    fn size(&mut self) -> Result<u32, ChannelError> {
        self.ready("size".into())?;
        Ok(self.data.len() as u32)
    }
    fn read(&mut self, offset: u32, buf: &mut [u8]) -> Result<usize, ChannelError> {
        self.ready(format!("read {offset} {}", buf.len()))?;
        let start = (offset as usize).min(self.data.len());
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), ChannelError> {
        self.ready(format!("write {offset} {}", data.len()))?;
        Err(ChannelError::Failed)
    }
    fn ioctl(&mut self, request: u32, _args: &[u8]) -> Result<(), ChannelError> {
        if request == 9 {
            return Err(ChannelError::Pending);
        }
        self.ready(format!("ioctl {request}"))?;
        Err(ChannelError::Timeout)
    }
    fn read_piece(&self) -> Option<u16> {
        Some(512)
    }
    fn next_deadline(&self) -> Option<Instant> {
        // Ask to be driven while an answer is pending.
        (self.asked > 0).then_some(Instant::ZERO + Duration::from_millis(1))
    }
}

fn link(delay: u32) -> (Link, Arc<Mutex<Vec<String>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let mut link = Link::with_buffer(3, ChannelId(1), vec![0; 16]);
    let data: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
    let b = Slow {
        delay,
        asked: 0,
        calls: calls.clone(),
        data,
    };
    link.cam.register_at(CH, "slow", Box::new(b)).unwrap();
    link.connect().unwrap();
    (link, calls)
}

#[test]
fn pending_answers_arrive_and_reads_use_the_backends_pieces() {
    let (mut link, calls) = link(2);
    let size = link
        .request(&Command::new(Opcode::CHANNEL_SIZE, CH))
        .unwrap();
    assert_eq!(size.into_bytes().as_ref(), 2000u32.to_le_bytes());
    let data = link.request(&Command::read(CH, 0, 2000)).unwrap();
    let want: Vec<u8> = (0..2000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(data.into_bytes().as_ref(), want.as_slice());
    let w = link.request(&Command::write(CH, 0, b"abc"));
    assert_eq!(w, Err(omv_proto::host::RequestError::Nak(Status::FAILED)));
    let io = link.request(&Command::ioctl(CH, 1, &[]));
    assert_eq!(io, Err(omv_proto::host::RequestError::Nak(Status::TIMEOUT)));
    let calls = calls.lock().unwrap().clone();
    // Each call asked three times (two pending answers, then the answer),
    // with the same arguments; the read in pieces of at most 512 bytes.
    let reads: Vec<&String> = calls.iter().filter(|c| c.starts_with("read")).collect();
    assert_eq!(reads.len(), 4 * 3, "{calls:?}");
    for (i, (off, len)) in [(0, 512), (512, 512), (1024, 512), (1536, 464)]
        .iter()
        .enumerate()
    {
        for r in &reads[i * 3..i * 3 + 3] {
            assert_eq!(**r, format!("read {off} {len}"));
        }
    }
    assert_eq!(calls.iter().filter(|c| *c == "size").count(), 3);
    assert_eq!(calls.iter().filter(|c| *c == "write 0 3").count(), 3);
}

#[test]
fn a_new_request_abandons_a_pending_one() {
    let (mut link, _) = link(0);
    // ioctl 9 never answers: the host times out, and the next request is
    // served normally.
    let io = link.request(&Command::ioctl(CH, 9, &[]));
    assert!(
        matches!(io, Err(omv_proto::host::RequestError::Timeout(_))),
        "{io:?}"
    );
    let size = link
        .request(&Command::new(Opcode::CHANNEL_SIZE, CH))
        .unwrap();
    assert!(matches!(size, Reply::Data(_)));
}

#[test]
fn a_channel_removed_mid_call_answers_failed() {
    // What a script that dies inside a backend call gets: its channels go
    // while the request waits for the backend's answer.
    let (mut link, _) = link(0);
    link.host
        .request(link.now, &Command::ioctl(CH, 9, &[]))
        .unwrap();
    while let Some(bytes) = link.host.poll_transmit() {
        link.cam.handle_input(link.now, &bytes);
    }
    // The cam holds the request; nothing is answered yet.
    assert!(link.cam.poll_transmit(link.now).is_none());
    assert!(link.cam.unregister(CH).is_some());
    let io = match link.run() {
        omv_proto::host::Completion::Request(r) => r,
        other => panic!("{other:?}"),
    };
    assert_eq!(io, Err(omv_proto::host::RequestError::Nak(Status::FAILED)));
    // The next request on the gone channel is INVALID, as for any unknown id.
    let size = link.request(&Command::new(Opcode::CHANNEL_SIZE, CH));
    assert_eq!(
        size,
        Err(omv_proto::host::RequestError::Nak(Status::INVALID))
    );
}
