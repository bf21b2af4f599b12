"""What only omv.Camera has: the embedded simulated cam, UDP, numpy
frames, the GIL released while waiting, hooks that raise, exact exception
classes and argument checks."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

import omv
from conftest import Sim, pattern, read_output, until

PIXFORMAT_JPEG = 0x06060000


def test_simulated_cam_in_process():
    cam = omv.Camera.simulated(channels={"bulk": 10_000}, board="n6", profiler=True)
    try:
        with cam:
            assert cam.sysinfo["pmu_eventcnt"] == 8
            assert cam.channel_read("bulk") == pattern(10_000)
            assert cam.has_channel("profile")
            cam.exec("print('in process')\n")
            read_output(cam, "in process", 15)
        # The simulated cam serves one client after the other.
        cam.connect()
        assert cam.channel_size("bulk") == 10_000
    finally:
        cam.close_simulation()
    assert not cam._sim.running
    with pytest.raises(ValueError):
        omv.Camera.simulated(board="no-such-board")


def test_udp():
    sim = Sim("--channel", "bulk:64K", udp=True)
    try:
        cam = omv.Camera(udp=sim.path, max_payload=1400)
        with cam:
            assert cam.caps["max_payload"] <= 1400
            assert cam.channel_read("bulk") == pattern(64 * 1024)
            data = bytes(range(256)) * 20
            assert cam.channel_write("bulk", data)
            assert cam.channel_read("bulk", len(data)) == data
            t = time.monotonic()
            for _ in range(200):
                assert cam.has_channel("bulk")
            assert time.monotonic() - t < 0.5, "zero-timeout reads wait over UDP"
        # A new UDP transport at every connect.
        cam.connect()
        assert cam.channel_size("bulk") == 64 * 1024
        cam.disconnect()
    finally:
        sim.stop()


def test_numpy_frame():
    np = pytest.importorskip("numpy")
    cam = omv.Camera.simulated()
    try:
        with cam:
            cam.streaming(True)
            f = until(10, "a frame", lambda: cam.read_frame(numpy=True))
            assert isinstance(f["data"], np.ndarray)
            assert f["data"].shape == (240, 320, 3) and f["data"].dtype == np.uint8
            assert f["format"] == PIXFORMAT_JPEG
    finally:
        cam.close_simulation()


def test_gil_released_during_a_long_read():
    cam = omv.Camera.simulated(channels={"bulk": 4 << 20})
    try:
        with cam:
            counter = 0
            done = threading.Event()

            def spin():
                nonlocal counter
                while not done.is_set():
                    counter += 1

            t = threading.Thread(target=spin)
            t.start()
            try:
                time.sleep(0.01)
                start, before = time.monotonic(), counter
                data = cam.channel_read("bulk")
                took, ran = time.monotonic() - start, counter - before
            finally:
                done.set()
                t.join()
            assert data == pattern(4 << 20)
            # With the GIL held for the whole read the spinning thread could
            # not run between the two samples of the counter.
            assert ran > 10_000, f"the other thread ran {ran} times in {took:.3f}s"
    finally:
        cam.close_simulation()


def test_ctrl_c_interrupts_a_long_read():
    # 50 ms each way: a 4 MiB read would take minutes. Ctrl-C (SIGINT) must
    # end it promptly with KeyboardInterrupt, and the camera keep working.
    cam = omv.Camera.simulated(channels={"bulk": 4 << 20}, sim_latency=0.05)
    try:
        with cam:
            timer = threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT))
            start = time.monotonic()
            timer.start()
            try:
                with pytest.raises(KeyboardInterrupt):
                    cam.channel_read("bulk")
            finally:
                timer.cancel()
            took = time.monotonic() - start
            assert took < 3, f"Ctrl-C took {took:.1f}s to end the read"
            assert cam.channel_read("bulk", 16) == pattern(16)
    finally:
        cam.close_simulation()


def test_concurrent_calls_are_serialised():
    cam = omv.Camera.simulated(channels={"a": 100_000, "b": 100_000})
    try:
        with cam:
            errors = []

            def reader(name):
                try:
                    for _ in range(20):
                        assert cam.channel_read(name) == pattern(100_000)
                except Exception as e:  # noqa: BLE001
                    errors.append(e)

            threads = [threading.Thread(target=reader, args=(n,)) for n in "abab"]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors
    finally:
        cam.close_simulation()


def test_hook_that_raises_keeps_later_events():
    class Boom(Exception):
        pass

    class Raising(omv.Camera):
        def __init__(self, *a, **k):
            self.got = []
            self.armed = False
            super().__init__(*a, **k)

        def _handle_event(self, channel_id, event):
            self.got.append((channel_id, event))
            if self.armed:
                self.armed = False
                raise Boom()

    cam = Raising.simulated()
    try:
        with cam:
            cam.armed = True
            # The hook's exception surfaces from the call that delivered it.
            with pytest.raises(Boom):
                cam.streaming(True)
                for _ in range(250):
                    cam.read_status()
                    time.sleep(0.02)
            n = len(cam.got)
            until(5, "more events", lambda: cam.read_status() is not None and len(cam.got) > n)
            cam.streaming(False)
    finally:
        cam.close_simulation()


def test_exception_classes_and_arguments():
    assert issubclass(omv.ResyncedTimeoutException, omv.TimeoutException)
    assert issubclass(omv.ResyncedTimeoutException, omv.ResyncException)
    assert issubclass(omv.PortException, OSError)
    for bad in ({"timeout": 0}, {"timeout": -1.0}, {"timeout": float("nan")},
                {"max_retry": 0}, {"max_retry": 300}, {"max_retry": -1}, {"baudrate": -5},
                {"drop_rate": 1.5}, {"max_payload": 10}, {"max_payload": -1}, {"seed": -1}):
        with pytest.raises(omv.InvalidArgumentException):
            omv.Camera("/dev/null", **bad)
    with pytest.raises(omv.InvalidArgumentException):
        omv.Camera("/dev/null", tcp="127.0.0.1:1")
    with pytest.raises(omv.InvalidArgumentException):
        omv.Camera()
    cam = omv.Camera("/nonexistent/port")
    with pytest.raises(omv.PortException):
        cam.connect()
    with pytest.raises(omv.OMVException):
        cam.version()

    sim = omv.Camera.simulated()
    try:
        with sim:
            with pytest.raises(omv.InvalidArgumentException):
                sim.streaming(True, raw=True)
            for bad in (256, -1):
                with pytest.raises(omv.InvalidArgumentException):
                    sim._channel_size(bad)
            with pytest.raises(omv.InvalidArgumentException):
                sim._send_cmd_wait_resp(300)
            assert sim._channel_lock(3) is False  # no frame: BUSY
    finally:
        sim.close_simulation()


def test_tcp_by_name_calls_do_not_wait():
    """A by-name call first takes in pending events with a zero-timeout
    read; over TCP that read must not wait (a 1 us SO_RCVTIMEO sleeps a
    scheduler tick: 200 calls took 1.7 s)."""
    cam = omv.Camera.simulated(channels={"bulk": 4096})
    try:
        with cam:
            t = time.monotonic()
            for _ in range(200):
                assert cam.has_channel("bulk")
            took = time.monotonic() - t
            assert took < 0.5, f"200 has_channel() calls took {took:.2f} s"
            t = time.monotonic()
            for _ in range(200):
                assert cam.channel_read("bulk", 64) == pattern(64)
            took = time.monotonic() - t
            assert took < 1.0, f"200 small reads took {took:.2f} s"
    finally:
        cam.close_simulation()


def test_example_tour_runs():
    import subprocess
    import sys
    from pathlib import Path

    tour = Path(__file__).resolve().parents[1] / "examples" / "tour.py"
    r = subprocess.run([sys.executable, str(tour)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "hello 2" in r.stdout and "read 262144 bytes" in r.stdout
