#!/usr/bin/env python3
"""Interop test: the stock OpenMV host SDK (``openmv==1.0.7``) against ``omv-sim --pty``.

Usage: stock_sdk.py PATH/TO/omv-sim [-v]

Run it with a Python that has openmv 1.0.7, pillow and numpy installed
(``scripts/setup-venv.sh`` makes one; ``tests/interop/run.sh`` does it all).

It starts ``omv-sim --pty --channel bulk:1M``, reads the pseudo-terminal's
path from the first stdout line and drives the sim with ``openmv.Camera``:
version and system info, the channel list, running a script and reading its
output, stopping a looping script, a JPEG and a raw RGB565 frame, reading
the 1 MiB ``bulk`` channel (byte i == i % 251), writing it and reading it
back, the poll status; then the same 1 MiB read from a second sim that drops
2% of the packets it sends. Exits non-zero with a message on any failure.
"""

import argparse
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

try:
    from openmv.camera import Camera
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit(f"stock_sdk.py: cannot import the stock SDK ({e}); run scripts/setup-venv.sh")

PIXFORMAT_RGB565 = 0x0C030002
PIXFORMAT_JPEG = 0x06060000
BULK_SIZE = 1 << 20
START_TIMEOUT = 10.0
T0 = time.monotonic()


class Failure(Exception):
    """A check that failed."""


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def step(name):
    print(f"[{time.monotonic() - T0:6.2f}s] {name}", flush=True)


def until(timeout, what, fn, interval=0.02):
    """Calls fn() until it returns something truthy; fails after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def pattern_ok(data, size, start=0):
    """True when data is `size` bytes with byte i == (start + i) % 251."""
    if data is None or len(data) != size:
        return False
    expected = bytes((start + i) % 251 for i in range(251)) * (size // 251 + 1)
    return bytes(data) == expected[:size]


class Sim:
    """An omv-sim process serving on a pseudo-terminal."""

    def __init__(self, binary, *args):
        self.log = tempfile.TemporaryFile(mode="w+b")
        self.argv = [binary, "--pty", *args]
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        self.path = self._first_line()

    def _first_line(self):
        fd = self.proc.stdout.fileno()
        buf = b""
        deadline = time.monotonic() + START_TIMEOUT
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure(f"{' '.join(self.argv)}: no pty path on stdout within {START_TIMEOUT:.0f}s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 256)
                if not chunk:
                    raise Failure(f"{' '.join(self.argv)} exited (code {self.proc.wait()}) "
                                  f"before printing a path: {self.stderr_tail()}")
                buf += chunk
        path = buf.split(b"\n", 1)[0].decode().strip()
        check(path.startswith("/dev/"), f"first stdout line is not a device path: {path!r}")
        check(os.path.exists(path), f"{path} does not exist")
        return path

    def stderr_tail(self, lines=30):
        self.log.seek(0)
        text = self.log.read().decode(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self):
        """SIGTERM, and check the sim exits 0 promptly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise Failure("omv-sim did not exit within 5 s of SIGTERM")
            check(code == 0, f"omv-sim exited with code {code} after SIGTERM")
        self.proc.stdout.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class EventLog:
    """Records the events the stock SDK hands to Camera._handle_event."""

    def __init__(self, cam):
        self.events = []
        original = cam._handle_event

        def record(channel_id, event):
            self.events.append((channel_id, event))
            return original(channel_id, event)

        # The transport captures cam._handle_event when it is created (at
        # connect), so the instance attribute must be set before connecting.
        cam._handle_event = record

    def seen(self, channel_id, event):
        return (channel_id, event) in self.events


def connect(path, **kwargs):
    cam = Camera(path, **kwargs)
    events = EventLog(cam)
    cam.connect()
    return cam, events


def read_output(cam, want, timeout):
    """Reads stdout until `want` appears."""
    text = ""

    def poll():
        nonlocal text
        chunk = cam.read_stdout()
        if chunk:
            text += chunk
        return want in text

    until(timeout, f"{want!r} in the script output (so far {text!r})", poll)
    return text


def read_frame(cam, fmt, timeout):
    """Reads frames until one in pixel format `fmt` arrives."""
    def poll():
        f = cam.read_frame()
        return f if f and f["format"] == fmt else None
    return until(timeout, f"a frame in format {fmt:#010x}", poll)


def main_sim(binary, python):
    sim = Sim(binary, "--channel", "bulk:1M", "--python", python, "-v")
    step(f"omv-sim serving on {sim.path}")
    cam = None
    try:
        cam, events = connect(sim.path)
        step("connected")

        v = cam.version()
        check(v["protocol_version"] == (1, 0, 2), f"protocol version {v['protocol_version']}")
        check(v["firmware_version"] == (5, 0, 0), f"firmware version {v['firmware_version']}")
        info = cam.system_info()
        check(info["usb_vid"] == 0x37C5, f"usb vid {info['usb_vid']:#06x}")
        check(info["chip_id"][0] != 0, "no image sensor in system_info")
        check(info["ram_size_kb"] > 0 and info["stream_buffer_size_kb"] > 0, f"memory sizes {info}")
        step(f"version {v['firmware_version']} protocol {v['protocol_version']}, "
             f"usb {info['usb_vid']:04x}:{info['usb_pid']:04x}")

        cam.update_channels()
        names = cam.channels_by_name
        for name, cid in (("stdin", 1), ("stdout", 2), ("stream", 3)):
            check(names.get(name) == cid, f"channel {name} has id {names.get(name)}, want {cid}")
        check(cam.has_channel("bulk"), f"no bulk channel in {names}")
        check(not cam.has_channel("profile"), "profile channel without --profiler")
        check(cam.channels_by_id[names["bulk"]]["flags"] & 0x23 == 0x23,
              "bulk channel flags lack READ|WRITE|DYNAMIC")
        step(f"channels {names}")

        script = "import sys\nfor i in range(3):\n    print('line', i)\nprint('sum', sum(range(10)))\n"
        cam.exec(script)
        text = read_output(cam, "sum 45", 15)
        check("line 0" in text and "line 2" in text, f"script output {text!r}")
        until(10, "the script to end (stdin poll false)", lambda: not cam.read_status()["stdin"])
        until(5, "SOFT_REBOOT and script started/stopped events",
              lambda: cam.read_status() is not None and events.seen(0, 2)
              and events.seen(1, 1) and events.seen(1, 0))
        step(f"exec: {text.strip()!r}; events {sorted(set(events.events))}")

        loop = "import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)\n"
        cam.exec(loop)
        read_output(cam, "tick", 15)
        check(cam.read_status()["stdin"], "stdin poll false while the loop runs")
        cam.stop()
        until(5, "stdin poll false after stop", lambda: not cam.read_status()["stdin"])
        step("stop: the looping script stopped")

        cam.streaming(True)
        f = read_frame(cam, PIXFORMAT_JPEG, 10)
        w, h = f["width"], f["height"]
        check((w, h) == (320, 240), f"JPEG frame is {w}x{h}")
        check(len(f["data"]) == w * h * 3, f"JPEG frame decoded to {len(f['data'])} bytes")
        check(f["raw_size"] > 0, "empty JPEG data")
        step(f"JPEG frame {w}x{h}, {f['raw_size']} bytes")

        cam.streaming(True, raw=True, resolution=(160, 120))
        f = read_frame(cam, PIXFORMAT_RGB565, 10)
        check((f["width"], f["height"]) == (160, 120), f"raw frame is {f['width']}x{f['height']}")
        check(f["raw_size"] == 160 * 120 * 2, f"raw frame has {f['raw_size']} bytes")
        check(len(f["data"]) == 160 * 120 * 3, f"raw frame converted to {len(f['data'])} bytes")
        step(f"RGB565 frame {f['width']}x{f['height']}, {f['raw_size']} bytes")
        cam.streaming(False)

        check(cam.channel_size("bulk") == BULK_SIZE, f"bulk size {cam.channel_size('bulk')}")
        t = time.monotonic()
        data = cam.channel_read("bulk")
        check(pattern_ok(data, BULK_SIZE), "bulk channel bytes are not i % 251")
        step(f"channel_read bulk: 1 MiB verified in {time.monotonic() - t:.2f}s")

        payload = bytes((i * 7 + 3) % 256 for i in range(5000))
        check(cam.channel_write("bulk", payload), "channel_write returned False")
        back = cam.channel_read("bulk", 8192)
        check(back is not None and bytes(back[:5000]) == payload, "written bytes did not read back")
        check(pattern_ok(back[5000:], 8192 - 5000, start=5000), "bytes after the write changed")
        step("channel_write 5000 bytes and read back")

        status = cam.read_status()
        for name in ("stdin", "stdout", "stream", "bulk"):
            check(name in status and isinstance(status[name], bool), f"read_status {status}")
        stats = cam.device_stats()
        check(stats["sent"] > 0 and stats["received"] > 0, f"device stats {stats}")
        step(f"read_status {status}; device stats {stats}")
    except BaseException:
        sys.stderr.write(f"--- omv-sim stderr (last lines) ---\n{sim.stderr_tail()}\n")
        sim.kill()
        raise
    finally:
        if cam is not None:
            cam.disconnect()
    sim.stop()
    step("omv-sim exited 0 on SIGTERM")


def drop_sim(binary, python):
    sim = Sim(binary, "--channel", "bulk:1M", "--drop-rate", "0.02", "--seed", "1",
              "--python", python, "-v")
    step(f"omv-sim --drop-rate 0.02 serving on {sim.path}")
    cam = None
    try:
        cam, _ = connect(sim.path)
        t = time.monotonic()
        data = cam.channel_read("bulk")
        check(pattern_ok(data, BULK_SIZE), "bulk channel bytes wrong under 2% drops")
        stats = cam.device_stats()
        step(f"1 MiB verified under 2% drops in {time.monotonic() - t:.2f}s; "
             f"cam retransmits {stats['retransmit']}")
        check(stats["retransmit"] > 0, "no retransmits: were packets really dropped?")
    except BaseException:
        sys.stderr.write(f"--- omv-sim stderr (last lines) ---\n{sim.stderr_tail()}\n")
        sim.kill()
        raise
    finally:
        if cam is not None:
            cam.disconnect()
    sim.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("omv_sim", help="path to the omv-sim binary")
    ap.add_argument("-v", "--verbose", action="store_true", help="log the SDK's packets")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="sdk %(levelname)s %(message)s")
    if not os.access(args.omv_sim, os.X_OK):
        sys.exit(f"FAIL: {args.omv_sim} is not an executable")
    try:
        main_sim(args.omv_sim, sys.executable)
        drop_sim(args.omv_sim, sys.executable)
    except Failure as e:
        sys.exit(f"FAIL: {e}")
    except SystemExit as e:
        # The stock SDK calls sys.exit(0) on unexpected errors inside a request.
        sys.exit(f"FAIL: the stock SDK exited (code {e.code}) in the middle of the test")
    except Exception as e:  # noqa: BLE001 - report anything the SDK raises
        sys.exit(f"FAIL: {type(e).__name__}: {e}")
    step("interop: all checks passed")


if __name__ == "__main__":
    main()
