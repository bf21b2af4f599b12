#!/usr/bin/env python3
"""Generate byte streams that exercise a protocol receiver, as NAME.bin files.

Packets are encoded by the stock OpenMV host SDK itself (openmv 1.0.7:
``Transport.send_packet``, i.e. header struct ``<HBBBBHH`` with sync 0xD5AA,
``openmv.crc.crc16`` over the first 8 header bytes and ``crc32`` over the
payload), cross-checked against a direct struct/CRC encoding. Everything is
derived from a fixed seed, so the same version of this script always writes
the same bytes.

Usage::

    gen_streams.py [OUT_DIR] [--seed N] [--list]

OUT_DIR defaults to ./streams. ``--list`` prints the stream names and what
each one covers.
"""

import argparse
import os
import random
import struct
import sys

try:
    from openmv.crc import crc16, crc32
    from openmv.transport import Transport
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("gen_streams.py: the 'openmv' package (1.0.7) is required; run scripts/setup-venv.sh")

SYNC = 0xD5AA
HEADER = 10
MAX_PAYLOAD = 4082

# Flags and a few opcodes, for realistic-looking traffic.
ACK, NAK, RTX, ACK_REQ, FRAGMENT, EVENT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
OPCODES = [0x00, 0x01, 0x02, 0x03, 0x04, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23,
           0x24, 0x25, 0x26, 0x27, 0x28, 0x29]


class _Capture:
    """A serial port stand-in that records what the stock host writes."""

    is_open = True
    in_waiting = 0

    def __init__(self):
        self.data = bytearray()

    def write(self, data):
        self.data += bytes(data)

    def read(self, _n=0):
        return b""


class Encoder:
    """Encodes packets with the stock SDK's Transport.send_packet."""

    def __init__(self):
        self.port = _Capture()
        # max_payload 0xFFFF so that over-long packets can be built too.
        self.t = Transport(self.port, crc=True, seq=True, max_payload=0xFFFF,
                           timeout=0.01, event_callback=lambda *_: None)

    def packet(self, seq, chan, flags, opcode, payload=b""):
        self.port.data.clear()
        self.t.send_packet(opcode, chan, flags, data=payload if payload else None,
                           sequence=seq & 0xFF)
        wire = bytes(self.port.data)
        assert wire == manual_packet(seq, chan, flags, opcode, payload), "encoder mismatch"
        return wire


def manual_packet(seq, chan, flags, opcode, payload=b""):
    """The same encoding written out by hand (used to cross-check)."""
    hdr = struct.pack("<HBBBBH", SYNC, seq & 0xFF, chan, flags, opcode, len(payload))
    hdr += struct.pack("<H", crc16(hdr))
    if not payload:
        return hdr
    return hdr + payload + struct.pack("<L", crc32(payload))


def raw_header(seq, chan, flags, opcode, length, good_crc=True):
    """A header only (any length field), with a correct or broken hcrc."""
    hdr = struct.pack("<HBBBBH", SYNC, seq & 0xFF, chan, flags, opcode, length & 0xFFFF)
    c = crc16(hdr)
    return hdr + struct.pack("<H", c if good_crc else c ^ 0x5A5A)


class Gen:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.enc = Encoder()
        self.seq = 0

    # -- building blocks ---------------------------------------------------
    def garbage(self, n, allow_sync=True):
        b = bytearray(self.rng.randbytes(n))
        if not allow_sync:
            for i in range(len(b) - 1):
                if b[i] == 0xAA and b[i + 1] == 0xD5:
                    b[i + 1] = 0xD4
        return bytes(b)

    def payload(self, n):
        return self.rng.randbytes(n)

    def pkt(self, length=None, flags=None, chan=None, opcode=None, payload=None):
        r = self.rng
        if payload is None:
            if length is None:
                length = r.choice([0, 0, 1, 2, 4, 8, 16, 50, 52, 100, 255, 512, 1000])
            payload = self.payload(length)
        if flags is None:
            flags = r.choice([0, ACK, NAK, ACK_REQ, FRAGMENT, FRAGMENT | ACK_REQ,
                              EVENT, RTX | ACK_REQ, 0xC0])
        if chan is None:
            chan = r.choice([0, 0, 1, 2, 3, 4, 31, 255])
        if opcode is None:
            opcode = r.choice(OPCODES + [0xFF])
        self.seq = (self.seq + 1) & 0xFF
        return self.enc.packet(self.seq, chan, flags, opcode, payload)

    def pkts(self, n, **kw):
        return b"".join(self.pkt(**kw) for _ in range(n))

    def flip(self, data, lo, hi, bits=1):
        """Flips `bits` random bits in data[lo:hi]."""
        b = bytearray(data)
        for _ in range(bits):
            i = self.rng.randrange(lo, hi)
            b[i] ^= 1 << self.rng.randrange(8)
        return bytes(b)

    # -- streams -----------------------------------------------------------
    def s_garbage(self):
        return self.garbage(64 * 1024)

    def s_garbage_syncs(self):
        out = bytearray()
        for _ in range(2000):
            out += self.garbage(self.rng.randrange(0, 40))
            out += self.rng.choice([b"\xaa\xd5", b"\xaa\xaa\xd5", b"\xaa", b"\xd5\xaa", b"\xaa\xd5\xaa\xd5"])
        return bytes(out)

    def s_valid(self):
        return self.pkts(300)

    def s_valid_zero_length(self):
        return self.pkts(200, length=0)

    def s_mixed(self):
        out = bytearray()
        for _ in range(300):
            out += self.garbage(self.rng.randrange(0, 64))
            out += self.pkt()
        return bytes(out)

    def s_torn_header(self):
        out = bytearray()
        for _ in range(200):
            p = self.pkt(length=self.rng.choice([0, 5, 64]))
            out += p[: self.rng.randrange(1, HEADER)]  # cut inside the header
            out += self.pkt()
        return bytes(out)

    def s_torn_payload(self):
        out = bytearray()
        for _ in range(150):
            p = self.pkt(length=self.rng.choice([8, 20, 64, 200]))
            out += p[: self.rng.randrange(HEADER, len(p))]  # cut in payload or CRC
            # Enough valid traffic afterwards to cover the torn packet's
            # declared length, so the receiver gets to rescan it.
            out += self.pkts(self.rng.randrange(1, 6))
        return bytes(out)

    def s_torn_long(self):
        """A torn packet that declared a big payload swallows the next ones."""
        out = bytearray()
        for _ in range(20):
            p = self.pkt(length=MAX_PAYLOAD)
            out += p[: self.rng.randrange(HEADER, 200)]
            out += self.pkts(self.rng.randrange(1, 60), length=self.rng.choice([0, 10, 100]))
        return bytes(out)

    def s_corrupt_header(self):
        out = bytearray()
        for i in range(300):
            p = self.pkt(length=self.rng.choice([0, 4, 40, 300]))
            # Flip bits anywhere in bytes 2..10: seq, chan, flags, opcode,
            # length, hcrc; sometimes the sync word too.
            lo = 0 if i % 10 == 0 else 2
            out += self.flip(p, lo, HEADER, bits=self.rng.choice([1, 1, 2, 3]))
            out += self.pkt()
        return bytes(out)

    def s_corrupt_length(self):
        """Length field changed but hcrc recomputed: a header that passes."""
        out = bytearray()
        for _ in range(150):
            payload = self.payload(self.rng.randrange(1, 200))
            good = self.pkt(payload=payload)
            claimed = max(1, len(payload) + self.rng.choice([-3, -1, 1, 2, 50]))
            hdr = raw_header(good[2], good[3], good[4], good[5], claimed)
            out += hdr + good[HEADER:]
            out += self.pkts(self.rng.randrange(1, 4))
        return bytes(out)

    def s_corrupt_payload(self):
        out = bytearray()
        for _ in range(200):
            p = self.pkt(length=self.rng.choice([1, 16, 128, 1024]))
            out += self.flip(p, HEADER, len(p) - 4, bits=self.rng.choice([1, 2, 8]))
            out += self.pkt()
        return bytes(out)

    def s_corrupt_crc(self):
        out = bytearray()
        for i in range(200):
            p = self.pkt(length=self.rng.choice([1, 16, 128]))
            if i % 2:
                out += self.flip(p, len(p) - 4, len(p))  # payload CRC
            else:
                out += self.flip(p, HEADER - 2, HEADER)  # header CRC
            out += self.pkt()
        return bytes(out)

    def s_nested(self):
        out = bytearray()
        for i in range(120):
            inner = self.pkts(self.rng.randrange(1, 4), length=self.rng.choice([0, 6, 30]))
            if len(inner) > MAX_PAYLOAD:
                inner = self.pkt(length=0)
            outer = self.pkt(payload=inner)
            kind = i % 4
            if kind == 0:
                out += outer  # valid outer: inner packets are only payload
            elif kind == 1:
                out += self.flip(outer, 2, HEADER)  # bad outer header: inner ones surface
            elif kind == 2:
                out += self.flip(outer, len(outer) - 4, len(outer))  # bad outer pcrc
            else:
                # Outer packet torn right after its header, then the inner
                # packets and more traffic.
                out += outer[:HEADER] + inner + self.pkts(3)
            out += self.pkt()
        # Doubly nested.
        p = self.pkt(length=0)
        for _ in range(4):
            p = self.pkt(payload=p)
        out += self.flip(p, 2, HEADER)
        return bytes(out)

    def s_false_sync(self):
        out = bytearray()
        for _ in range(200):
            body = bytearray(self.payload(self.rng.randrange(4, 200)))
            for _ in range(self.rng.randrange(1, 5)):
                i = self.rng.randrange(0, len(body) - 1)
                body[i:i + 2] = b"\xaa\xd5"
            # Sometimes a whole fake-but-valid-looking header inside.
            if self.rng.random() < 0.3 and len(body) >= HEADER:
                i = self.rng.randrange(0, len(body) - HEADER + 1)
                body[i:i + HEADER] = raw_header(1, 0, 0, 0, 0)
            p = self.pkt(payload=bytes(body))
            if self.rng.random() < 0.3:
                p = self.flip(p, len(p) - 4, len(p))  # force a rescan of the payload
            out += p
            out += self.rng.choice([b"", b"\xaa", b"\xaa\xd5", b"\xaa\xaa", b"\xd5"])
        return bytes(out)

    def s_max_payload(self):
        out = bytearray()
        for i in range(12):
            out += self.pkt(length=MAX_PAYLOAD, flags=FRAGMENT if i % 4 != 3 else 0,
                            chan=3, opcode=0x26)
        out += self.pkt(length=MAX_PAYLOAD - 1)
        out += self.pkt(length=0)
        return bytes(out)

    def s_over_max(self):
        """Well-formed packets longer than max_payload, with valid CRCs."""
        out = bytearray()
        for length in [MAX_PAYLOAD + 1, MAX_PAYLOAD + 2, 4096, 8192, 65535]:
            out += self.pkt(length=length)
            out += self.pkt(length=10)
        # Headers alone claiming huge lengths, then normal traffic.
        for length in [4083, 0x8000, 0xFFFF]:
            out += raw_header(7, 0, 0, 0x26, length) + self.pkts(3)
        return bytes(out)

    def s_wraparound(self):
        """Over 4 MiB, so the stock host's 4 MiB ring buffer wraps."""
        out = bytearray()
        while len(out) < 4 * 1024 * 1024 + 300 * 1024:
            r = self.rng.random()
            if r < 0.8:
                out += self.pkt(length=self.rng.choice([MAX_PAYLOAD, 3000, 777]))
            elif r < 0.9:
                out += self.garbage(self.rng.randrange(1, 100))
            else:
                p = self.pkt(length=500)
                out += self.flip(p, 0, len(p))
        return bytes(out)

    def s_everything(self):
        parts = [self.s_mixed(), self.s_torn_header(), self.s_corrupt_header(),
                 self.s_nested(), self.s_false_sync(), self.s_over_max()]
        self.rng.shuffle(parts)
        return b"".join(parts)


STREAMS = [
    ("garbage", "64 KiB of random bytes"),
    ("garbage_syncs", "random bytes sprinkled with AA D5 / AA / D5 AA fragments"),
    ("valid", "300 valid packets: varied lengths (0..1000), flags, channels, opcodes"),
    ("valid_zero_length", "200 valid 10-byte packets"),
    ("mixed", "valid packets separated by random garbage"),
    ("torn_header", "packets cut inside the header, each followed by a valid one"),
    ("torn_payload", "packets cut inside the payload/CRC, followed by valid ones"),
    ("torn_long", "torn packets declaring 4082 bytes, swallowing later packets"),
    ("corrupt_header", "bit flips in seq/chan/flags/opcode/length/hcrc (and sync)"),
    ("corrupt_length", "length field changed with hcrc recomputed"),
    ("corrupt_payload", "bit flips in payloads"),
    ("corrupt_crc", "bit flips in the hcrc or pcrc fields"),
    ("nested", "packets inside payloads; outer header/pcrc broken or torn"),
    ("false_sync", "AA D5 and fake headers inside payloads and between packets"),
    ("max_payload", "4082-byte payloads back to back, 4081, 0"),
    ("over_max", "valid packets with length 4083..65535, then normal traffic"),
    ("wraparound", "over 4 MiB of mostly max-size packets (ring buffer wrap)"),
    ("everything", "several of the above concatenated in random order"),
]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir", nargs="?", default="streams")
    ap.add_argument("--seed", type=int, default=0x0E4D5AA)
    ap.add_argument("--list", action="store_true", help="list the streams and exit")
    args = ap.parse_args(argv)

    if args.list:
        for name, what in STREAMS:
            print(f"{name}.bin: {what}")
        return 0

    os.makedirs(args.out_dir, exist_ok=True)
    for name, _what in STREAMS:
        # Each stream has its own derived seed, so adding or reordering
        # streams does not change the others.
        g = Gen(f"{args.seed}:{name}")
        data = getattr(g, "s_" + name)()
        path = os.path.join(args.out_dir, name + ".bin")
        with open(path, "wb") as f:
            f.write(data)
        print(f"{path}: {len(data)} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
