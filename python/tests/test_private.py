"""The documented "private" surface (by-id primitives, raw requests, the
event hook, retry_if_failed), against both implementations."""

from __future__ import annotations

from conftest import pattern, read_output, until

PROTO_VERSION = 0x04
STREAM_CTRL = 0
STDIN_STOP = 1


def test_by_id_primitives(session):
    cam = session.camera(session.sim("--channel", "bulk:64K", "--profiler"))
    bulk = cam.get_channel(name="bulk")
    assert cam._channel_size(bulk) == 64 * 1024
    assert cam._channel_read(bulk, 1000, 500) == pattern(500, start=1000)
    assert cam._channel_write(bulk, b"hello", 10) is None
    assert cam._channel_read(bulk, 8, 9) == pattern(2, start=8) + b"hello" + pattern(2, start=15)
    # A multi-packet write at an offset.
    data = bytes(range(256)) * 40
    cam._channel_write(bulk, bytearray(data), 100)
    assert cam._channel_read(bulk, 100, len(data)) == data

    listed = cam._channel_list()
    assert listed[bulk]["name"] == "bulk" and listed[1]["name"] == "stdin"
    assert all(set(v) == {"name", "flags"} for v in listed.values())

    shape = cam._channel_shape(4)
    assert isinstance(shape, tuple) and len(shape) >= 2

    payload = cam._send_cmd_wait_resp(PROTO_VERSION)
    assert isinstance(payload, bytes) and len(payload) == 16 and payload[:3] == bytes((1, 0, 2))

    cam._resync()
    assert cam._channel_read(bulk, 0, 10) == pattern(10)


def test_lock_and_ioctl_on_the_stream(session):
    cam = session.camera(session.sim("--free-running-frames"))
    stream = cam.get_channel(name="stream")
    # A plain-ACK ioctl answers True, like the stock package.
    assert cam._channel_ioctl(stream, STREAM_CTRL, "I", 1) is True

    def locked():
        return cam._channel_lock(stream)

    until(10, "a stream lock (a frame waiting)", locked, 0.02)
    try:
        size = cam._channel_size(stream)
        assert size > 20
        header = cam._channel_read(stream, 0, 20)
        assert len(header) == 20
    finally:
        assert cam._channel_unlock(stream) is True
    assert cam._channel_ioctl(stream, STREAM_CTRL, "I", 0) is True
    assert cam._channel_ioctl(cam.get_channel(name="stdin"), STDIN_STOP) is True


def test_subclass_hook_without_super(session, impl):
    class Quiet(impl.Camera):
        def __init__(self, *a, **k):
            self.got = []
            super().__init__(*a, **k)

        def _handle_event(self, channel_id, event):
            self.got.append((channel_id, event))

    cam = session.camera(session.sim("--channel", "bulk:4K"), cls=Quiet)
    cam.exec("print('one')\n")
    read_output(cam, "one", 15)
    until(5, "SOFT_REBOOT", lambda: cam.read_status() is not None and (0, 2) in cam.got)
    # The session keeps working after the soft reboot without super().
    cam.exec("print('two')\n")
    read_output(cam, "two", 15)
    assert cam.channel_read("bulk", 16) == pattern(16)
    assert cam.channels_by_name["bulk"] >= 4


def test_retry_if_failed(session, impl):
    class Flaky(impl.Camera):
        calls = 0

        @impl.Camera.retry_if_failed
        def version_bytes(self):
            """Docstring kept."""
            self.calls += 1
            if self.calls == 1:
                raise impl.ResyncException()
            return self._send_cmd_wait_resp(PROTO_VERSION)

        @impl.Camera.retry_if_failed
        def always(self):
            self.calls += 1
            raise impl.ResyncException()

    cam = session.camera(session.sim(), cls=Flaky)
    assert len(cam.version_bytes()) == 16 and cam.calls == 2
    assert Flaky.version_bytes.__doc__ == "Docstring kept."
    cam.calls = 0
    try:
        cam.always()
    except impl.ResyncException:
        pass
    else:
        raise AssertionError("a second ResyncException must propagate")
    assert cam.calls == 2
