#!/usr/bin/env python3
"""Decode a raw byte stream with the stock OpenMV Python host's own parser.

This is the reference decoder: bytes are pushed through
``openmv.transport.Transport._process`` (openmv 1.0.7) exactly as the stock
host does after reading its serial port, with CRC checking on and sequence
checking off.

Output, one line per accepted packet (identical to the Rust
``proto-core/examples/decode.rs``, so the two can be diffed)::

    {"sequence":S,"channel":C,"flags":F,"opcode":O,"payload":"<lowercase hex>"}

or, with ``--count-only``, the single line ``N packets, B bytes`` where B is
the total payload length.

Usage::

    stock_decode.py [--input FILE] [--chunk N] [--max-payload N] [--count-only]

Reads stdin when no ``--input`` is given. Bytes left in the parser at the end
of input (a torn packet) are dropped, as a stock host that stops reading
would.
"""

import argparse
import json
import logging
import sys

try:
    from openmv.transport import Transport
except ImportError:  # pragma: no cover - depends on the environment
    sys.exit("stock_decode.py: the 'openmv' package (1.0.7) is required; run scripts/setup-venv.sh")


class _NoSerial:
    """Stands in for the serial port: never open, never readable or writable."""

    is_open = False
    in_waiting = 0

    def read(self, _n=0):
        return b""

    def write(self, _data):
        raise OSError("stock_decode: no serial port")


def make_transport(max_payload):
    return Transport(
        _NoSerial(),
        crc=True,
        seq=False,
        max_payload=max_payload,
        timeout=0.01,
        event_callback=lambda *_args: None,
    )


def iter_chunks(stream, chunk):
    while True:
        data = stream.read(chunk)
        if not data:
            return
        yield data


def decode(stream, chunk, max_payload):
    """Yields (sequence, channel, flags, opcode, payload bytes) per packet."""
    t = make_transport(max_payload)
    for data in iter_chunks(stream, chunk):
        view = memoryview(data)
        while view:
            # Never overflow the ring buffer (max(max_payload * 4, 4 MiB)):
            # feed what fits, then drain complete packets to make room.
            room = t.buf.size - len(t.buf)
            part, view = view[:room], view[room:]
            t.buf.extend(part)
            while (pkt := t._process()) is not None:
                payload = bytes(pkt["payload"]) if pkt["payload"] is not None else b""
                yield pkt["sequence"], pkt["channel"], pkt["flags"], pkt["opcode"], payload


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--input", "-i", metavar="FILE", help="read FILE instead of stdin")
    ap.add_argument("--chunk", type=int, default=4096, metavar="N",
                    help="feed the parser N bytes at a time (default 4096)")
    ap.add_argument("--max-payload", type=int, default=4082, metavar="N",
                    help="negotiated max payload (default 4082)")
    ap.add_argument("--count-only", action="store_true",
                    help="print only 'N packets, B bytes'")
    ap.add_argument("--verbose", "-v", action="store_true",
                    help="log the stock transport's debug lines (rejects) to stderr")
    args = ap.parse_args(argv)
    if args.chunk < 1:
        ap.error("--chunk must be >= 1")
    if not 0 <= args.max_payload <= 0xFFFF:
        ap.error("--max-payload must be in 0..65535")

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        stream=sys.stderr, format="%(message)s")

    out = sys.stdout
    count = total = 0
    try:
        stream = open(args.input, "rb") if args.input else sys.stdin.buffer
    except OSError as e:
        print(f"stock_decode.py: cannot open {args.input}: {e.strerror}", file=sys.stderr)
        return 2
    try:
        for seq, chan, flags, opcode, payload in decode(stream, args.chunk, args.max_payload):
            count += 1
            total += len(payload)
            if not args.count_only:
                out.write(json.dumps(
                    {"sequence": seq, "channel": chan, "flags": flags,
                     "opcode": opcode, "payload": payload.hex()},
                    separators=(",", ":")))
                out.write("\n")
    finally:
        if args.input:
            stream.close()
    if args.count_only:
        out.write(f"{count} packets, {total} bytes\n")
    out.flush()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:
        # Output cut short (e.g. piped into head): not an error of ours.
        sys.stderr.close()
        sys.exit(0)
