"""The interop scenarios of tests/interop/stock_sdk.py, run against both
implementations (the `impl` fixture): omv.Camera and the stock
openmv.camera.Camera, each driving omv-sim --pty."""

from __future__ import annotations

import random
import time

from conftest import pattern, read_frame, read_output, until

PIXFORMAT_RGB565 = 0x0C030002
PIXFORMAT_JPEG = 0x06060000
MIB = 1 << 20


def test_connect_version_sysinfo_channels(session):
    cam = session.camera(session.sim("--channel", "bulk:1M"))
    assert cam.is_connected()
    v = cam.version()
    assert v["protocol_version"] == (1, 0, 2)
    assert v["firmware_version"] == (5, 0, 0)
    assert all(isinstance(t, tuple) and len(t) == 3 for t in v.values())
    info = cam.system_info()
    assert info["usb_vid"] == 0x37C5
    assert info["chip_id"][0] != 0 and len(info["device_id"]) == 3
    assert info["ram_size_kb"] > 0 and info["stream_buffer_size_kb"] > 0
    assert isinstance(info["jpeg_present"], bool) and info["pmu_eventcnt"] == 0
    assert cam.sysinfo["usb_pid"] == info["usb_pid"]

    cam.update_channels()
    names = cam.channels_by_name
    for name, cid in (("stdin", 1), ("stdout", 2), ("stream", 3)):
        assert names.get(name) == cid
    assert cam.has_channel("bulk") and not cam.has_channel("profile")
    assert cam.channels_by_id[names["bulk"]]["flags"] & 0x23 == 0x23
    assert cam.get_channel(name="bulk") == names["bulk"]
    assert cam.get_channel(channel_id=names["stdout"]) == "stdout"
    assert cam.channel_size("bulk") == MIB


def test_exec_output_events_and_stop(session):
    cam = session.camera(session.sim())
    cam.exec("import sys\nfor i in range(3):\n    print('line', i)\nprint('sum', sum(range(10)))\n")
    text = read_output(cam, "sum 45", 15)
    assert "line 0" in text and "line 2" in text
    until(10, "the script to end", lambda: not cam.read_status()["stdin"])
    until(5, "SOFT_REBOOT and script started/stopped events",
          lambda: cam.read_status() is not None and cam.seen(0, 2)
          and cam.seen(1, 1) and cam.seen(1, 0))

    cam.exec("import time\nwhile True:\n    print('tick', flush=True)\n    time.sleep(0.05)\n")
    read_output(cam, "tick", 15)
    assert cam.read_status()["stdin"]
    cam.stop()
    until(5, "stdin poll false after stop", lambda: not cam.read_status()["stdin"])
    # The link still works after the script's SOFT_REBOOT.
    cam.exec("print('again')\n")
    read_output(cam, "again", 15)


def test_frames_jpeg_and_raw(session):
    # Frames from the sim's own stream (no script takes snapshots).
    cam = session.camera(session.sim("--free-running-frames"))
    assert cam.read_frame() is None, "a frame before streaming was turned on"
    cam.streaming(True)
    f = read_frame(cam, PIXFORMAT_JPEG, 10)
    assert (f["width"], f["height"]) == (320, 240)
    assert isinstance(f["data"], bytes) and len(f["data"]) == 320 * 240 * 3
    assert f["raw_size"] > 0 and f["depth"] > 0
    cam.streaming(True, raw=True, resolution=(160, 120))
    f = read_frame(cam, PIXFORMAT_RGB565, 10)
    assert (f["width"], f["height"]) == (160, 120)
    assert f["raw_size"] == 160 * 120 * 2
    assert len(f["data"]) == 160 * 120 * 3
    cam.streaming(False)


def test_resolution(session):
    cam = session.camera(session.sim("--resolution", "200x150", "--fps", "60", "--free-running-frames"))
    cam.streaming(True)
    f = read_frame(cam, PIXFORMAT_JPEG, 10)
    assert (f["width"], f["height"]) == (200, 150)
    assert len(f["data"]) == 200 * 150 * 3
    cam.streaming(False)


def test_channel_read_write(session):
    cam = session.camera(session.sim("--channel", "bulk:1M"))
    data = cam.channel_read("bulk")
    assert isinstance(data, bytes) and data == pattern(MIB)
    assert cam.channel_read("bulk", 1000) == pattern(1000)

    payload = bytes((i * 7 + 3) % 256 for i in range(5000))
    assert cam.channel_write("bulk", payload) is True
    back = cam.channel_read("bulk", 8192)
    assert back[:5000] == payload and back[5000:] == pattern(8192 - 5000, start=5000)

    big = random.Random(7).randbytes(MIB)
    assert cam.channel_write("bulk", memoryview(big)) is True
    assert cam.channel_read("bulk") == big


def test_status_stats_poll_events(session):
    cam = session.camera(session.sim("--channel", "bulk:4K"))
    status = cam.read_status()
    for name in ("stdin", "stdout", "stream", "bulk"):
        assert isinstance(status[name], bool)
    stats = cam.device_stats()
    assert set(stats) >= {"sent", "received", "checksum", "sequence", "retransmit",
                          "transport", "sent_events", "max_ack_queue_depth"}
    assert stats["sent"] > 0 and stats["received"] > 0

    # stdout NOTIFYs (every 50 ms while the script runs and its text is
    # unread) and the SOFT_REBOOT at its end arrive while only poll_events()
    # runs.
    cam.exec("import time\nprint('unread')\ntime.sleep(0.5)\n")
    cam.events.clear()

    def poll():
        assert cam.poll_events() is None
        return cam.seen(2, 0xFFFF) and cam.seen(0, 2)

    until(5, "stdout NOTIFY and SOFT_REBOOT through poll_events()", poll)
    assert "unread" in read_output(cam, "unread", 5)

    host = cam.host_stats()
    assert host["sent"] > 0 and host["received"] > 0
    # No CRC errors on a clean link. (Sequence drops are not zero for omv:
    # after the script's SOFT_REBOOT the cam's protocol restarts at sequence
    # 0 and its first answer is dropped until the host resyncs.)
    assert host["checksum"] == 0


def test_reset_and_reconnect(session):
    sim = session.sim("--channel", "bulk:64K")
    cam = session.camera(sim)
    bulk = cam.channels_by_name["bulk"]
    assert cam.channel_write("bulk", b"\xff" * 100)
    for _ in range(20):
        assert cam.channel_size("bulk") == 64 * 1024
    before = cam.device_stats()
    assert cam.reset() is None
    assert not cam.is_connected()
    cam.connect()
    after = cam.device_stats()
    assert after["received"] < before["received"], "the cam's counters were not reset"
    assert cam.version()["firmware_version"] == (5, 0, 0)
    assert cam.channels_by_name.get("bulk") == bulk
    assert cam.channel_read("bulk") == pattern(64 * 1024), "bulk did not start fresh"
    cam.exec("print('after reset')\n")
    read_output(cam, "after reset", 15)


def test_context_manager(session, impl):
    sim = session.sim()
    with impl.Camera(sim.path) as cam:
        assert cam.is_connected()
        assert cam.version()["protocol_version"] == (1, 0, 2)
    assert not cam.is_connected()


# The stock profiler_reset() sets counters 0..7 whatever the board.
def _check_profile(recs, pmu):
    assert isinstance(recs, list) and recs
    by_addr = {r["address"]: r for r in recs}
    for r in recs:
        n = r["call_count"]
        assert n > 0 and r["min_ticks"] <= r["max_ticks"]
        assert n * r["min_ticks"] <= r["total_ticks"] <= n * r["max_ticks"]
        assert isinstance(r["events"], tuple) and len(r["events"]) == pmu
    assert any(r["caller"] in by_addr for r in recs)
    return by_addr


def test_profiler(session):
    for board, pmu in (("h7plus", 0), ("ae3", 4), ("n6", 8)):
        cam = session.camera(session.sim("--board", board, "--profiler"))
        assert cam.sysinfo["pmu_eventcnt"] == pmu
        assert cam.get_channel(name="profile") == 4
        cam.profiler_reset()

        def tree():
            recs = cam.read_profile()
            addrs = {r["address"] for r in recs or ()}
            return recs if any(r["caller"] in addrs for r in recs or ()) else None

        incl = _check_profile(until(5, "a call tree", tree), pmu)
        cam.profiler_mode(exclusive=True)
        excl = _check_profile(until(2, "a profile", cam.read_profile, 0.005), pmu)
        cam.profiler_mode(exclusive=False)
        common = set(incl) & set(excl)
        assert any(excl[a]["total_ticks"] / excl[a]["call_count"]
                   < 0.5 * incl[a]["total_ticks"] / incl[a]["call_count"] for a in common)
        cam.profiler_event(0, 0x0011)
        _check_profile(until(2, "a profile", cam.read_profile, 0.005), pmu)
        cam.disconnect()


def test_cam_drops_2_percent(session):
    cam = session.camera(session.sim("--channel", "bulk:1M", "--drop-rate", "0.02", "--seed", "1"))
    t = time.monotonic()
    assert cam.channel_read("bulk") == pattern(MIB)
    assert cam.device_stats()["retransmit"] > 0
    assert time.monotonic() - t < 60


def test_host_drop_rate(session, impl):
    # The stock host's drop simulation uses `random`; seed it for a replay.
    random.seed(5)
    kwargs = {} if impl.stock else {"seed": 5}
    cam = session.camera(session.sim("--channel", "bulk:256K"), drop_rate=0.02, **kwargs)
    assert cam.channel_read("bulk") == pattern(256 * 1024)
    assert cam.device_stats()["retransmit"] > 0
