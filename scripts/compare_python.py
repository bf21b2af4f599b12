#!/usr/bin/env python3
"""omv.Camera next to the stock openmv.camera.Camera, on the same omv-sim.

Usage: compare_python.py [--sim PATH] [--reps N] [--small N] [--small-size B]

Starts one ``omv-sim --pty --channel bulk:4M`` and, against it, connects
each implementation in turn (the stock one first, then omv, then again,
``--reps`` rounds) and times:

* ``channel_read("bulk")``: the whole 4 MiB channel, checked against its
  pattern (byte i == i % 251);
* ``--small`` (200) calls of ``channel_read("bulk", --small-size)`` (64 B).

Prints one line per measurement, then the medians side by side and the
ratios (stock time / omv time: how many times faster omv is). Run it with a
Python that has both ``omv`` (``pip install ./python``, a release build) and
``openmv==1.0.7`` (``scripts/setup-venv.sh``). Exits 1 when a read is wrong
or a host fails.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SIZE = 4 << 20


def start_sim(binary: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([binary, "--pty", "--channel", f"bulk:{SIZE}"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
    buf = b""
    deadline = time.monotonic() + 10
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            proc.kill()
            sys.exit("compare_python: omv-sim printed no pty path")
        if select.select([proc.stdout], [], [], left)[0]:
            buf += os.read(proc.stdout.fileno(), 256)
    return proc, buf.split(b"\n", 1)[0].decode().strip()


def expected() -> bytes:
    period = bytes(i % 251 for i in range(251))
    return (period * (SIZE // 251 + 1))[:SIZE]


def measure(cls, path: str, small: int, small_size: int, want: bytes) -> tuple[float, float]:
    """(seconds for the 4 MiB read, seconds per small read)."""
    cam = cls(path)
    cam.connect()
    try:
        t = time.perf_counter()
        data = cam.channel_read("bulk")
        big = time.perf_counter() - t
        if data is None or bytes(data) != want:
            raise SystemExit(f"compare_python: {cls.__module__}: the 4 MiB read is wrong")
        t = time.perf_counter()
        for _ in range(small):
            d = cam.channel_read("bulk", small_size)
            if d is None or len(d) != small_size:
                raise SystemExit(f"compare_python: {cls.__module__}: a small read is wrong")
        per_small = (time.perf_counter() - t) / small
        return big, per_small
    finally:
        cam.disconnect()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sim", default=os.environ.get("OMV_SIM") or str(REPO / "target/release/omv-sim"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--small", type=int, default=200)
    ap.add_argument("--small-size", type=int, default=64)
    args = ap.parse_args()
    try:
        import omv
        from openmv.camera import Camera as Stock
    except ImportError as e:
        sys.exit(f"compare_python: needs both omv and openmv installed ({e})")

    proc, path = start_sim(args.sim)
    want = expected()
    results: dict[str, list[tuple[float, float]]] = {"stock": [], "omv": []}
    try:
        for rep in range(args.reps):
            for name, cls in (("stock", Stock), ("omv", omv.Camera)):
                big, small = measure(cls, path, args.small, args.small_size, want)
                results[name].append((big, small))
                print(f"round {rep + 1} {name:5}: 4 MiB read {big:7.3f} s ({SIZE / big / 1e6:6.1f} MB/s); "
                      f"{args.small} x {args.small_size} B reads {small * 1e3:7.3f} ms each", flush=True)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()

    med = {k: (statistics.median(b for b, _ in v), statistics.median(s for _, s in v))
           for k, v in results.items()}
    (sb, ss), (ob, os_) = med["stock"], med["omv"]
    print()
    print(f"{'median':22} {'stock openmv':>14} {'omv':>10} {'ratio':>8}")
    print(f"{'4 MiB channel_read':22} {SIZE / sb / 1e6:10.1f} MB/s {SIZE / ob / 1e6:5.1f} MB/s {sb / ob:7.1f}x")
    print(f"{'small channel_read':22} {ss * 1e3:11.3f} ms {os_ * 1e3:7.3f} ms {ss / os_:7.1f}x")


if __name__ == "__main__":
    main()
