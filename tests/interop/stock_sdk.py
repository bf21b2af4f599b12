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
back, a full 1 MiB write of another pattern and its full read-back, the poll
status, poll_events(), host_stats(), reset() and a reconnect after it. Then,
on ``--board h7plus``, ``ae3`` and ``n6`` with ``--profiler`` (0, 4 and 8 PMU
counters): the stock profiler_reset() (which always sets counters 0..7),
profiler_mode() both ways, profiler_event() and read_profile(). A JPEG
frame from ``--resolution 200x150``. Then the cam runtime, frames coming
from scripts: the stock CLI's two built-in scripts (``test_script``: the
``ticks`` channel and JPEG frames from its snapshot loop; ``bench_script``:
flushed frames) and the named-channels StatusChannel read by name, its
events, its channel dropped when the script stops. The Camera is a test
subclass that resyncs after SOFT_REBOOT, as the OpenMV IDE does (see
``ResyncingCamera``). Last, the
same 1 MiB read from a sim that drops 2% of the packets it sends. Exits
non-zero with a message on any failure.
"""

import argparse
import logging
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback

try:
    from openmv.camera import Camera
    from openmv.cli import bench_script, test_script
    from openmv.exceptions import OMVException, ResyncException
    from stock_resync import resyncing
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit(f"stock_sdk.py: cannot import the stock SDK ({e}); run scripts/setup-venv.sh")



# The stock Camera, resyncing after SOFT_REBOOT as the OpenMV IDE does (see
# stock_resync.py for why the stock SDK 1.0.7 needs it against any cam).
ResyncingCamera = resyncing(Camera, OMVException)


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
    cam = ResyncingCamera(path, **kwargs)
    events = EventLog(cam)
    cam.connect()
    return cam, events


class Session:
    """A sim and the Camera driving it. On failure the sim's stderr is shown
    and the sim killed; either way the Camera is disconnected; on success the
    sim must exit 0 on SIGTERM."""

    def __init__(self, sim):
        self.sim = sim
        self.cam = None

    def connect(self, **kwargs):
        self.cam, events = connect(self.sim.path, **kwargs)
        return self.cam, events

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if kind is not None:
            sys.stderr.write(f"--- omv-sim stderr (last lines) ---\n{self.sim.stderr_tail()}\n")
            self.sim.kill()
        if self.cam is not None:
            self.cam.disconnect()
        if kind is None:
            self.sim.stop()
        return False


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
    # Frames here come from the sim's own stream (no script takes snapshots).
    sim = Sim(binary, "--channel", "bulk:1M", "--free-running-frames", "--python", python, "-v")
    step(f"omv-sim serving on {sim.path}")
    with Session(sim) as s:
        cam, events = s.connect()
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

        # A full 1 MiB write of a pattern unlike i % 251 and not periodic (so
        # a chunk landing at the wrong offset shows), then a full read-back.
        big = random.Random(7).randbytes(BULK_SIZE)
        t = time.monotonic()
        check(cam.channel_write("bulk", big), "channel_write of 1 MiB returned False")
        back = cam.channel_read("bulk")
        check(back is not None and len(back) == BULK_SIZE,
              f"read-back of the 1 MiB write has {None if back is None else len(back)} bytes")
        if bytes(back) != big:
            first = next(i for i in range(BULK_SIZE) if back[i] != big[i])
            raise Failure(f"1 MiB write read back wrong from byte {first}")
        step(f"channel_write 1 MiB and full read-back verified in {time.monotonic() - t:.2f}s")

        status = cam.read_status()
        for name in ("stdin", "stdout", "stream", "bulk"):
            check(name in status and isinstance(status[name], bool), f"read_status {status}")
        stats = cam.device_stats()
        check(stats["sent"] > 0 and stats["received"] > 0, f"device stats {stats}")
        step(f"read_status {status}; device stats {stats}")

        # poll_events(): events that arrive while no request is in flight.
        # stdout sends NOTIFY every 50 ms while it holds unread text, and the
        # cam SOFT_REBOOTs when the script ends; only poll_events() runs here.
        cam.exec("print('unread')\n")
        events.events.clear()

        def poll():
            got = cam.poll_events()
            check(got is None, f"poll_events() returned a response {got!r}")
            return events.seen(2, 0xFFFF) and events.seen(0, 2)

        until(5, "stdout NOTIFY and SOFT_REBOOT through poll_events()", poll)
        check("unread" in read_output(cam, "unread", 5), "script output lost")
        step(f"poll_events: {sorted(set(events.events))}")

        host = cam.host_stats()
        check(host["sent"] > 0 and host["received"] > 0, f"host stats {host}")
        check(host["checksum"] == 0 and host["sequence"] == 0, f"host stats on a clean link {host}")
        step(f"host_stats {host}")

        # reset(): SYS_RESET reboots the cam; the stock host disconnects.
        before = cam.device_stats()
        check(cam.reset() is None and not cam.is_connected(), "connected after reset()")
        cam, events = s.connect()
        v = cam.version()
        check(v["firmware_version"] == (5, 0, 0), f"firmware version after reset {v}")
        check(cam.channels_by_name.get("bulk") == names["bulk"], f"channels after reset {cam.channels_by_name}")
        check(pattern_ok(cam.channel_read("bulk"), BULK_SIZE),
              "bulk channel did not start fresh (i % 251) after reset")
        after = cam.device_stats()
        check(after["received"] < before["received"], f"device stats not reset by the reboot: {before} -> {after}")
        cam.exec("print('after reset')\n")
        read_output(cam, "after reset", 15)
        step(f"reset, reconnected: fresh channels, device stats {after['received']} received")
    step("omv-sim exited 0 on SIGTERM")


# The stock profiler_reset() sets counters 0..7 to these, whatever the board.
STOCK_PROFILE_EVENTS = (0x0039, 0x0023, 0x0024, 0x0001, 0x0003, 0xC102, 0x02CC, 0xC303)


def check_profile(recs, pmu, what):
    """Sanity of read_profile() records; returns them keyed by address."""
    check(isinstance(recs, list) and recs, f"{what}: read_profile returned {recs!r}")
    by_addr = {r["address"]: r for r in recs}
    check(len(by_addr) == len(recs), f"{what}: duplicate function addresses")
    for r in recs:
        n = r["call_count"]
        check(n > 0, f"{what}: a record with no calls {r}")
        check(r["min_ticks"] <= r["max_ticks"], f"{what}: min > max {r}")
        check(n * r["min_ticks"] <= r["total_ticks"] <= n * r["max_ticks"],
              f"{what}: mean call time outside [min, max] {r}")
        check(r["total_cycles"] >= r["total_ticks"], f"{what}: fewer cycles than ticks {r}")
        check(len(r["events"]) == pmu, f"{what}: {len(r['events'])} event totals, board has {pmu}")
        check(all(0 <= e <= r["total_cycles"] for e in r["events"]), f"{what}: event totals {r}")
    # A caller can be missing from a snapshot (the firmware adds a record when
    # a call returns, so a child shows before its caller's first call ends),
    # but the tree must be there.
    check(any(r["caller"] in by_addr for r in recs), f"{what}: no record's caller is listed")
    return by_addr


def read_profile(cam):
    """The stock read_profile(), which returns None while the lock is busy
    (the cam refuses a lock within 10 ms of the last one)."""
    return until(2, "read_profile() to lock the profile channel", cam.read_profile, interval=0.005)


def mean_ticks(r):
    return r["total_ticks"] / r["call_count"]


def profiler_sim(binary, python, board, pmu):
    """The stock profiler calls against omv-sim --profiler on `board`."""
    sim = Sim(binary, "--board", board, "--profiler", "--python", python, "-v")
    step(f"omv-sim --board {board} --profiler serving on {sim.path}")
    with Session(sim) as s:
        cam, _ = s.connect()
        check(cam.sysinfo["pmu_eventcnt"] == pmu,
              f"{board}: pmu_eventcnt {cam.sysinfo['pmu_eventcnt']}, want {pmu}")
        check(cam.get_channel(name="profile") == 4, f"{board}: channels {cam.channels_by_name}")

        # What the stock CLI does right after connect: RESET, counters 0..7.
        cam.profiler_reset()
        def tree():
            recs = cam.read_profile()
            addrs = {r["address"] for r in recs or ()}
            return recs if any(r["caller"] in addrs for r in recs or ()) else None

        incl = check_profile(until(5, "a call tree in read_profile() after profiler_reset()", tree),
                             pmu, f"{board} inclusive")

        cam.profiler_mode(exclusive=True)
        excl = check_profile(read_profile(cam), pmu, f"{board} exclusive")
        cam.profiler_mode(exclusive=False)
        incl2 = check_profile(read_profile(cam), pmu, f"{board} inclusive again")
        common = set(incl) & set(excl) & set(incl2)
        check(common, f"{board}: no function in all three reads")
        for a in common:
            # Read at different times, so a function that has no children
            # (the same in both modes) may differ by rounding.
            check(mean_ticks(excl[a]) <= mean_ticks(incl[a]) * 1.02 + 1,
                  f"{board}: exclusive mean above inclusive for {a:#x}")
            check(abs(mean_ticks(incl2[a]) - mean_ticks(incl[a])) <= 0.1 * mean_ticks(incl[a]),
                  f"{board}: inclusive mean changed after exclusive and back for {a:#x}")
        check(any(mean_ticks(excl[a]) < mean_ticks(incl[a]) * 0.5 for a in common),
              f"{board}: exclusive mode changed no function's mean")

        # profiler_event(): a counter the board has, and one it lacks.
        cam.profiler_event(pmu + 1, 0x0011)
        if pmu:
            def ratios(recs):
                return {a: r["events"][0] / r["total_cycles"] for a, r in recs.items()}
            old = ratios(incl2)
            cam.profiler_event(0, 0x0011)
            new = ratios(check_profile(read_profile(cam), pmu, f"{board} after profiler_event"))
            check(any(abs(new[a] - old[a]) > 1e-6 for a in set(new) & set(old)),
                  f"{board}: counter 0's event totals did not follow profiler_event(0, 0x11)")
        else:
            cam.profiler_event(0, 0x0011)
            check_profile(read_profile(cam), pmu, f"{board} after profiler_event")
        step(f"{board}: profiler_reset, profiler_mode both ways, profiler_event and read_profile "
             f"({len(incl)} records, {pmu} event counters)")


def resolution_sim(binary, python):
    """omv-sim --resolution: the stock host sees frames of that size."""
    sim = Sim(binary, "--resolution", "200x150", "--fps", "60", "--free-running-frames",
              "--python", python, "-v")
    step(f"omv-sim --resolution 200x150 serving on {sim.path}")
    with Session(sim) as s:
        cam, _ = s.connect()
        cam.streaming(True)
        f = read_frame(cam, PIXFORMAT_JPEG, 10)
        check((f["width"], f["height"]) == (200, 150), f"JPEG frame is {f['width']}x{f['height']}")
        check(len(f["data"]) == 200 * 150 * 3, f"JPEG frame decoded to {len(f['data'])} bytes")
        cam.streaming(False)
        step(f"JPEG frame {f['width']}x{f['height']}, {f['raw_size']} bytes")


STATUS_SCRIPT = '''
import json
import protocol
import time

trigger_count = 0

class StatusChannel:
    def size(self):
        self._buf = json.dumps({'uptime_s': time.ticks_ms() // 1000,
                                'triggers': trigger_count}).encode()
        return len(self._buf)

    def read(self, offset, size):
        return self._buf[offset:offset + size]

ch = protocol.register(name='status', backend=StatusChannel())
while True:
    trigger_count += 1
    try:
        ch.send_event(1)
    except RuntimeError:
        pass  # events off or no host yet (e.g. before the host resynced)
    time.sleep_ms(100)
'''


def has_channel(cam, name):
    """Refreshes the channel list; a request that met the SOFT_REBOOT of
    a script that just ended fails once with ResyncException (the stock
    SDK resynced): ask again."""
    for _ in range(3):
        try:
            cam.update_channels()
            return cam.has_channel(name)
        except ResyncException:
            continue
    return False


def frames_for(cam, seconds):
    """Frames read in `seconds` (and the last one)."""
    n, last, end = 0, None, time.monotonic() + seconds
    while time.monotonic() < end:
        f = cam.read_frame()
        if f:
            n, last = n + 1, f
        else:
            time.sleep(0.002)
    return n, last


def runtime_sim(binary, python):
    """The cam runtime: the stock CLI's two built-in scripts and the
    named-channels StatusChannel, unmodified, driven by the stock SDK."""
    sim = Sim(binary, "--python", python, "-v")
    step(f"omv-sim (frames from scripts) serving on {sim.path}")
    with Session(sim) as s:
        cam, events = s.connect()
        cam.streaming(True)
        time.sleep(0.3)
        check(cam.read_frame() is None, "a frame with no script taking snapshots")

        cam.exec(test_script)
        read_output(cam, "FPS", 20)
        until(10, "the ticks channel", lambda: has_channel(cam, "ticks"))
        a = int(bytes(cam.channel_read("ticks", cam.channel_size("ticks"))))
        time.sleep(0.1)
        b = int(bytes(cam.channel_read("ticks", cam.channel_size("ticks"))))
        check(0 <= a < b, f"ticks did not advance: {a} then {b}")
        n, f = frames_for(cam, 1.0)
        check(n > 0 and (f["width"], f["height"]) == (320, 240) and f["format"] == PIXFORMAT_JPEG,
              f"test_script frames: {n}, last {f and (f['width'], f['height'], hex(f['format']))}")
        step(f"test_script: ticks {a} -> {b}; {n} JPEG 320x240 frames in 1 s")

        cam.exec(bench_script)
        until(10, "bench frames", lambda: cam.read_frame() is not None)
        n, f = frames_for(cam, 2.0)
        check(n > 0 and f["format"] == PIXFORMAT_JPEG, f"bench_script frames: {n}")
        step(f"bench_script: {n / 2.0:.1f} fps of {f['raw_size']}-byte JPEG frames")
        cam.streaming(False)

        cam.exec(STATUS_SCRIPT)
        until(10, "the status channel", lambda: has_channel(cam, "status"))
        size = cam.channel_size("status")
        data = bytes(cam.channel_read("status", size))
        import json
        doc = json.loads(data)
        check(set(doc) == {"uptime_s", "triggers"}, f"status {doc}")
        sid = cam.channels_by_name["status"]
        until(5, "a status channel event", lambda: cam.read_status() is not None and events.seen(sid, 1))
        step(f"StatusChannel: {doc} and its events")
        cam.stop()
        # Take the SOFT_REBOOT that follows the stop before the next request
        # (the stock SDK would send it under the old sequence).
        time.sleep(0.3)
        cam.poll_events()
        until(10, "the status channel to go with the script",
              lambda: not has_channel(cam, "status"))
        step("the script's end dropped its channel")


def drop_sim(binary, python):
    sim = Sim(binary, "--channel", "bulk:1M", "--drop-rate", "0.02", "--seed", "1",
              "--python", python, "-v")
    step(f"omv-sim --drop-rate 0.02 serving on {sim.path}")
    with Session(sim) as s:
        cam, _ = s.connect()
        t = time.monotonic()
        data = cam.channel_read("bulk")
        check(pattern_ok(data, BULK_SIZE), "bulk channel bytes wrong under 2% drops")
        stats = cam.device_stats()
        step(f"1 MiB verified under 2% drops in {time.monotonic() - t:.2f}s; "
             f"cam retransmits {stats['retransmit']}")
        check(stats["retransmit"] > 0, "no retransmits: were packets really dropped?")


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
        for board, pmu in (("h7plus", 0), ("ae3", 4), ("n6", 8)):
            profiler_sim(args.omv_sim, sys.executable, board, pmu)
        resolution_sim(args.omv_sim, sys.executable)
        runtime_sim(args.omv_sim, sys.executable)
        drop_sim(args.omv_sim, sys.executable)
    except Failure as e:
        sys.exit(f"FAIL: {e}")
    except SystemExit as e:
        # The stock SDK calls sys.exit(0) on unexpected errors inside a request.
        sys.exit(f"FAIL: the stock SDK exited (code {e.code}) in the middle of the test")
    except Exception as e:  # noqa: BLE001 - report anything the SDK raises
        traceback.print_exc()
        sys.exit(f"FAIL: {type(e).__name__}: {e}")
    step("interop: all checks passed")


if __name__ == "__main__":
    main()
