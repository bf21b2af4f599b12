//! `device_endpoint`: a cam with a few backends fed arbitrary byte chunks at
//! arbitrary, monotonically increasing times.
//!
//! Input layout: `u8 config`, then steps until the input ends, each
//! `u8 dt, u8 len, len bytes`: time advances by `dt² × 40 µs` (0 to 2.6 s),
//! the bytes go to `handle_input`, due timeouts fire, and every transmit
//! is drained. config bit 0: SYNC check by padding (else by recovery);
//! bit 1: 512-byte read pieces; bit 2: chatty event channel; bits 3-4:
//! rtx_retries.
//!
//! Checks: no panic; the framer holds less than one max-size packet after
//! every input; every transmit is one well-formed packet (CRCs valid while
//! CRC is on, payload within the negotiated max_payload). At the end,
//! whatever state the junk left: either 4 KiB of padding and a SYNC, or a
//! SYNC on its own (SYNC recovery) followed by a second SYNC, must be
//! answered with exactly the ACK of SYNC, and a GET_CAPS right after it
//! with the cam's caps.

use omv_proto::caps::Caps;
use omv_proto::device::{DeviceConfig, DeviceEndpoint, DeviceEvent};
use omv_proto::header::{HEADER_SIZE, TRAILER_SIZE};
// The largest payload of a default cam (4082), what these harnesses were written for.
use omv_proto::{
    ChannelId, Duration, Flags, Instant, Opcode, FIRMWARE_DEFAULT_PAYLOAD as MAX_PAYLOAD,
};

use crate::backends::{pattern, shared, AppendChan, BufChan, Shared, ViewChan};
use crate::reader::Reader;
use crate::wire;

/// Size of channel 1's buffer.
pub const BUF_LEN: usize = 3000;
/// Size of channel 3's view.
pub const VIEW_LEN: usize = 5000;

/// A cam with a buffer (1, `pattern(BUF_LEN, 0)`), an append channel (2,
/// empty, 8 KiB capacity) and a zero-copy view (3, `pattern(VIEW_LEN,
/// 0x5a)`), and the shared bytes of channels 1 and 2.
pub fn cam(config: DeviceConfig, chatty: bool) -> (DeviceEndpoint, Shared, Shared) {
    let mut cam = DeviceEndpoint::new(config);
    let buf = shared(pattern(BUF_LEN, 0));
    let app = shared(Vec::new());
    cam.register_at(ChannelId(1), "buf", Box::new(BufChan::new(buf.clone())))
        .unwrap();
    cam.register_at(
        ChannelId(2),
        "stdin",
        Box::new(AppendChan {
            data: app.clone(),
            capacity: 8192,
        }),
    )
    .unwrap();
    cam.register_at(
        ChannelId(3),
        "view",
        Box::new(ViewChan::new(pattern(VIEW_LEN, 0x5a), chatty)),
    )
    .unwrap();
    (cam, buf, app)
}

struct Driver {
    cam: DeviceEndpoint,
    now: Instant,
}

impl Driver {
    /// Feeds bytes, fires due timeouts, drains and checks transmits.
    fn input(&mut self, bytes: &[u8]) -> Vec<Vec<u8>> {
        let before = self.cam.caps();
        self.cam.handle_input(self.now, bytes);
        assert!(
            self.cam.buffered() < HEADER_SIZE + usize::from(MAX_PAYLOAD) + TRAILER_SIZE,
            "cam buffers {} bytes",
            self.cam.buffered()
        );
        self.settle(before)
    }

    fn settle(&mut self, before: Caps) -> Vec<Vec<u8>> {
        if self.cam.poll_timeout().is_some_and(|t| t <= self.now) {
            self.cam.handle_timeout(self.now);
        }
        // A caps change or reset during this step may have queued status
        // packets under the previous caps: check CRCs only when stable.
        let mut changed = false;
        while let Some(ev) = self.cam.poll_event() {
            changed |= matches!(
                ev,
                DeviceEvent::CapsChanged(_) | DeviceEvent::ProtocolReset(_)
            );
        }
        let caps = self.cam.caps();
        let stable = !changed && before == caps;
        let mut out = Vec::new();
        while let Some(w) = self.cam.poll_transmit(self.now) {
            let status = w.len() > 4 && Flags(w[4]).intersects(Flags::ACK | Flags::NAK);
            let crc = caps.flags.crc() && (stable || !status);
            let p = wire::check_packet(
                &w,
                crc,
                if status {
                    MAX_PAYLOAD
                } else {
                    caps.max_payload
                },
            );
            if status {
                assert!(
                    p.payload.len() <= 2,
                    "status packet with payload {:?}",
                    p.header
                );
            }
            out.push(w);
            assert!(out.len() < 100_000, "transmit queue does not drain");
        }
        out
    }
}

/// The check behind `device_endpoint`.
pub fn check(data: &[u8]) {
    let mut r = Reader::new(data);
    let cfg = r.u8();
    let config = DeviceConfig::default()
        .read_piece((cfg & 2 != 0).then_some(512))
        .rtx_retries((cfg >> 3) & 3)
        // After a SYNC: CRC and sequence numbers only (no ACKs, no events),
        // so that the recovery check below sees a plain GET_CAPS answer.
        .startup_caps(Some(Caps {
            max_payload: MAX_PAYLOAD,
            ..Caps::DEFAULT
        }));
    let mut d = Driver {
        cam: cam(config, cfg & 4 != 0).0,
        now: Instant::ZERO,
    };
    while !r.is_empty() {
        let dt = u64::from(r.u8());
        let len = usize::from(r.u8());
        let chunk = r.bytes(len);
        d.now = d.now + Duration::from_micros(dt * dt * 40);
        d.input(chunk);
    }

    // Recovery.
    d.now = d.now + Duration::from_millis(1);
    let sync = wire::sync();
    if cfg & 1 != 0 {
        // Enough bytes to complete any torn packet, then a SYNC.
        d.input(&[0u8; HEADER_SIZE + MAX_PAYLOAD as usize + TRAILER_SIZE]);
        let out = d.input(&sync);
        assert_eq!(
            out.first().map(Vec::as_slice),
            Some(&wire::SYNC_ACK[..]),
            "no ACK of SYNC after padding"
        );
    } else {
        // SYNC recovery finds a SYNC behind a torn packet, unless the torn
        // packet completes within the SYNC's 10 bytes; then the second one
        // (pushed separately) is clean.
        d.input(&sync);
        let out = d.input(&sync);
        assert_eq!(
            out.first().map(Vec::as_slice),
            Some(&wire::SYNC_ACK[..]),
            "no ACK of the second SYNC"
        );
    }
    assert_eq!(d.cam.sequence(), 0);
    assert_eq!(d.cam.buffered(), 0);
    let out = d.input(&wire::packet(
        0,
        0,
        Flags::NONE,
        Opcode::PROTO_GET_CAPS,
        &[],
    ));
    assert_eq!(out.len(), 1, "GET_CAPS answer: {out:02x?}");
    let p = wire::check_packet(&out[0], true, 50);
    assert_eq!(
        (p.header.opcode, p.header.sequence, p.header.flags),
        (Opcode::PROTO_GET_CAPS, 0, Flags::NONE)
    );
    let caps = Caps::decode_exact(&p.payload).expect("caps");
    assert_eq!(caps.max_payload, MAX_PAYLOAD);
}
