"""``omv.Camera``: the stock ``openmv.camera.Camera`` API on the omv engine.

The protocol (framing, CRCs, ACKs, retransmits, resync, the channel cache,
frame decoding) runs in Rust (``omv._omv``, built on ``omv_blocking``); this
class keeps the stock method names, arguments, return values, attributes and
subclassing hooks. Every call that waits on the port releases the GIL.
"""

from __future__ import annotations

import collections
import functools
import logging
import struct
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple, TypeVar

from . import _omv
from .exceptions import InvalidArgumentException, ResyncException

__all__ = ["Camera"]

log = logging.getLogger("omv")

_F = TypeVar("_F", bound=Callable[..., Any])

# System event ids (channel 0).
_CHANNEL_REGISTERED = 0x00
_CHANNEL_UNREGISTERED = 0x01
_SOFT_REBOOT = 0x02
_EVENT_BACKLOG = 4096
_SYSTEM_EVENTS = {
    _CHANNEL_REGISTERED: "CHANNEL_REGISTERED",
    _CHANNEL_UNREGISTERED: "CHANNEL_UNREGISTERED",
    _SOFT_REBOOT: "SOFT_REBOOT",
}


class Camera:
    """The host-side proxy for an OpenMV cam, over a serial port, TCP or UDP.

    ``Camera(port)`` opens a serial device (``/dev/ttyACM0``, ``COM3``);
    ``Camera(tcp="host:port")`` and ``Camera(udp="host:port")`` reach a cam
    over the network instead. The keyword arguments are the stock ones with
    the stock defaults; ``seed`` makes ``drop_rate`` replayable.
    :meth:`simulated` starts a simulated cam in this process.

    As a context manager, ``with Camera(port) as cam:`` connects on entry
    and disconnects on exit.

    Events: every event the cam sends is handed to :meth:`_handle_event`
    (override it in a subclass) once the call during which it arrived has
    finished. The engine itself refreshes the channel list after a
    registration event and resynchronises when it must, so an override
    need not call ``super()``.
    """

    def __init__(
        self,
        port: Optional[str] = None,
        *,
        baudrate: int = 921600,
        crc: bool = True,
        seq: bool = True,
        ack: bool = True,
        events: bool = True,
        timeout: float = 1.0,
        max_retry: int = 3,
        max_payload: int = 4096,
        drop_rate: float = 0.0,
        tcp: Optional[str] = None,
        udp: Optional[str] = None,
        seed: int = 0,
    ) -> None:
        for name, value, low, high in (
            ("baudrate", baudrate, 1, 2**32 - 1),
            ("max_retry", max_retry, 1, 255),
            ("max_payload", max_payload, 1, 2**32 - 1),
            ("seed", seed, 0, 2**64 - 1),
        ):
            if not isinstance(value, int) or not low <= value <= high:
                raise InvalidArgumentException(f"{name} must be an integer in {low}..={high}, got {value!r}")
        self.port = port if port is not None else (tcp if tcp is not None else udp)
        self.baudrate = baudrate
        self.timeout = timeout
        self.max_retry = max_retry
        self.drop_rate = drop_rate
        #: The capabilities asked for; after connect, the negotiated ones.
        self.caps: Dict[str, Any] = {
            "crc": crc,
            "seq": seq,
            "ack": ack,
            "events": events,
            "max_payload": max_payload,
        }
        #: System information cached by :meth:`connect` (the
        #: :meth:`system_info` dict).
        self.sysinfo: Dict[str, Any] = {}
        #: Versions cached by :meth:`connect` (the :meth:`version` dict).
        self.verinfo: Dict[str, Tuple[int, int, int]] = {}
        # Events not yet handed to the hook (left over when a hook raised);
        # bounded: the oldest are dropped past _EVENT_BACKLOG.
        self._events: Deque[Tuple[int, int]] = collections.deque(maxlen=_EVENT_BACKLOG)
        self._channels_seen: Dict[int, Dict[str, Any]] = {}
        self._sim: Optional[_omv.SimulatedCam] = None
        self._engine = _omv.Engine(
            port, tcp, udp, baudrate, crc, seq, ack, events, float(timeout),
            max_retry, max_payload, float(drop_rate), seed,
        )

    # ------------------------------------------------------------------
    # Construction helpers and the context manager
    # ------------------------------------------------------------------

    @classmethod
    def simulated(
        cls,
        *,
        channels: Optional[Dict[str, int]] = None,
        board: Optional[str] = None,
        profiler: bool = False,
        resolution: Optional[Tuple[int, int]] = None,
        fps: Optional[float] = None,
        python: Optional[str] = None,
        sim_seed: int = 1,
        sim_drop_rate: float = 0.0,
        sim_rx_drop_rate: float = 0.0,
        sim_corrupt_rate: float = 0.0,
        sim_latency: float = 0.0,
        free_running_frames: bool = True,
        **camera_kwargs: Any,
    ) -> "Camera":
        """A camera (not yet connected) on a simulated cam that runs in this
        process and listens on a loopback TCP port; it stops when the camera
        is garbage-collected or :meth:`close_simulation` is called.

        ``channels`` maps names to sizes of byte-buffer channels (byte
        ``i`` is ``i % 251``); ``board`` is a board name (``h7plus``,
        ``rt1062``, ``ae3``, ``n6``...); ``python`` is the interpreter that
        runs scripts (default ``sys.executable``); the ``sim_*`` rates
        inject faults into what the simulated cam sends and receives;
        ``free_running_frames`` streams frames without a script (False: only
        a script's snapshots are streamed, as on a real cam). The
        other keyword arguments go to the constructor (``timeout``,
        ``max_payload``...)."""
        import sys

        sim = _omv.SimulatedCam(
            channels=list((channels or {}).items()),
            board=board,
            profiler=profiler,
            resolution=resolution,
            fps=fps,
            python=python if python is not None else sys.executable,
            seed=sim_seed,
            drop_rate=sim_drop_rate,
            rx_drop_rate=sim_rx_drop_rate,
            corrupt_rate=sim_corrupt_rate,
            latency=sim_latency,
            free_running_frames=free_running_frames,
        )
        cam = cls(tcp=sim.address, **camera_kwargs)
        cam._sim = sim
        return cam

    def close_simulation(self) -> None:
        """Disconnects and stops the simulated cam started by
        :meth:`simulated` (nothing else happens for a real cam)."""
        self.disconnect()
        if self._sim is not None:
            self._sim.close()

    def __enter__(self) -> "Camera":
        self.connect()
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.disconnect()

    def __repr__(self) -> str:
        state = "connected" if self.is_connected() else "not connected"
        return f"<omv.Camera {self.port!r} {state}>"

    # ------------------------------------------------------------------
    # Events
    # ------------------------------------------------------------------

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs an engine call, then hands the events that arrived meanwhile
        to :meth:`_handle_event` (also when the call raised)."""
        try:
            return fn(*args)
        finally:
            self._dispatch_events()

    def _dispatch_events(self) -> None:
        self._events.extend(self._engine.take_events())
        # One at a time, so that a hook that raises leaves the later events
        # queued for the next call, and a hook that calls back into the
        # camera sees them in order.
        while self._events:
            channel_id, event = self._events.popleft()
            self._handle_event(channel_id, event)

    def _handle_event(self, channel_id: int, event: int) -> None:
        """Called once for every event the cam sends (``channel_id`` 0 for
        system events). Override in a subclass to react to events; the
        default only logs them, like the stock package. The engine already
        refreshed the channel list on CHANNEL_REGISTERED and tracks
        frame-ready events, so an override need not call ``super()``."""
        if channel_id == 0:
            name = _SYSTEM_EVENTS.get(event, f"0x{event:04X}")
            log.info("System event: %s", name)
            return
        channel = self._channels_seen.get(channel_id, {}).get("name")
        if channel is None:
            log.warning("Event on unknown channel %d: 0x%04X", channel_id, event)
        elif channel == "stdin":
            what = "script started" if event == 1 else "script stopped"
            log.info("Channel event: stdin 0x%04X (%s)", event, what)
        else:
            log.info("Channel event: %s 0x%04X", channel, event)

    @property
    def frame_event(self) -> bool:
        """True when a frame-ready event arrived since the last frame read."""
        return self._engine.frame_ready()

    def poll_events(self) -> None:
        """Takes in the events the cam already sent, without sending a
        command and without waiting, and hands them to
        :meth:`_handle_event`."""
        self._call(self._engine.poll_events)

    def wait_events(self, timeout: float) -> int:
        """Waits up to ``timeout`` seconds for at least one event (the GIL
        is released meanwhile); returns how many arrived. Not in the stock
        package."""
        return self._call(self._engine.wait_events, float(timeout))

    @staticmethod
    def retry_if_failed(func: _F) -> _F:
        """Decorator: calls the method once more when it raises
        :class:`~omv.ResyncException` (the stock meaning: one retry after a
        resync). The shipped methods do not need it: the engine already
        resyncs and retries once on its own; this is one more retry, on top,
        for a subclass's own multi-step methods built on
        :meth:`_send_cmd_wait_resp` or the ``_channel_*`` primitives, which
        do not retry. The resync released every channel lock, so the method
        must redo all its steps."""

        @functools.wraps(func)
        def wrapper(self: "Camera", *args: Any, **kwargs: Any) -> Any:
            try:
                return func(self, *args, **kwargs)
            except ResyncException:
                return func(self, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    # ------------------------------------------------------------------
    # Connection
    # ------------------------------------------------------------------

    def connect(self) -> None:
        """Opens the port and runs the handshake (SYNC, GET_CAPS,
        SET_CAPS); caches the channel list, the version and the system
        information, and logs the system information at INFO level."""
        # Logging levels set since the last connect apply to the engine's
        # messages too.
        _omv.reset_log_cache()
        self._call(self._engine.connect)
        crc, seq, ack, events, max_payload = self._engine.caps()
        self.caps.update(crc=crc, seq=seq, ack=ack, events=events, max_payload=max_payload)
        self.verinfo = self.version()
        self.sysinfo = self.system_info()
        self._refresh_channels()

    def disconnect(self) -> None:
        """Closes the port (also done when the camera is garbage-collected)."""
        self._engine.disconnect()

    def is_connected(self) -> bool:
        """True while the port is open and the link synchronised."""
        return self._engine.is_connected()

    def reset(self) -> None:
        """Reboots the cam (SYS_RESET); the port is closed. Call
        :meth:`connect` again once the cam is back."""
        self._call(self._engine.reset)

    def boot(self) -> None:
        """Makes the cam enter its bootloader (SYS_BOOT); the port is closed."""
        self._call(self._engine.boot)

    def update_capabilities(self) -> None:
        """Renegotiates CRC, sequence, ACK, events and max payload with the
        cam (done by :meth:`connect`)."""
        self._call(self._engine.update_capabilities)
        crc, seq, ack, events, max_payload = self._engine.caps()
        self.caps.update(crc=crc, seq=seq, ack=ack, events=events, max_payload=max_payload)

    # ------------------------------------------------------------------
    # Scripts
    # ------------------------------------------------------------------

    def exec(self, script: str) -> None:
        """Uploads ``script`` (MicroPython source) and runs it. A retried
        upload never runs the script twice."""
        self._call(self._engine.exec, script)

    def stop(self) -> None:
        """Interrupts the running script (the IDE's Stop button)."""
        self._call(self._engine.stop)

    def read_stdout(self) -> Optional[str]:
        """The text the script printed since the last call, or None when
        there is none. A UTF-8 character split across reads is kept whole."""
        return self._call(self._engine.read_stdout)

    # ------------------------------------------------------------------
    # Streaming
    # ------------------------------------------------------------------

    def streaming(
        self,
        enable: bool,
        raw: bool = False,
        resolution: Optional[Tuple[int, int]] = None,
    ) -> None:
        """Turns the frame stream on or off. ``raw=True`` sends uncompressed
        frames scaled to ``resolution`` ``(width, height)`` (required with
        ``raw``); otherwise the cam JPEG-compresses every frame."""
        res = None if resolution is None else (int(resolution[0]), int(resolution[1]))
        self._call(self._engine.streaming, bool(enable), bool(raw), res)

    def read_frame(self, *, numpy: bool = False) -> Optional[Dict[str, Any]]:
        """The waiting frame, decoded to RGB888 in Rust, or None when no
        frame is waiting (or it cannot be decoded, which is logged).

        The dict has ``width``, ``height``, ``format`` (the pixel format
        id), ``depth``, ``data`` (``bytes``, ``width * height * 3``) and
        ``raw_size`` (bytes the cam sent). With ``numpy=True``, ``data`` is
        a ``numpy.ndarray`` of shape ``(height, width, 3)`` instead (not
        in the stock package; needs numpy)."""
        frame = self._call(self._engine.read_frame)
        if frame is not None and numpy:
            import numpy as np

            frame["data"] = np.frombuffer(frame["data"], dtype=np.uint8).reshape(
                frame["height"], frame["width"], 3
            )
        return frame

    # ------------------------------------------------------------------
    # Channels by name
    # ------------------------------------------------------------------

    def _refresh_channels(self) -> Dict[int, Dict[str, Any]]:
        try:
            entries = self._call(self._engine.channels)
        except Exception as e:  # noqa: BLE001 - an attribute must not raise
            if self.is_connected():
                log.warning("channel list unavailable: %s", e)
            return dict(self._channels_seen) if self.is_connected() else {}
        self._channels_seen = {cid: {"name": name, "flags": flags} for cid, flags, name in entries}
        return dict(self._channels_seen)

    @property
    def channels_by_id(self) -> Dict[int, Dict[str, Any]]:
        """``{id: {'name': str, 'flags': int}}`` for every channel on the
        cam (refreshed first when a registration event arrived; empty when
        not connected). A fresh dict on every access."""
        return {cid: dict(v) for cid, v in self._refresh_channels().items()}

    @property
    def channels_by_name(self) -> Dict[str, int]:
        """``{name: id}`` for every channel on the cam (see
        :attr:`channels_by_id`)."""
        return {v["name"]: cid for cid, v in self._refresh_channels().items()}

    def update_channels(self) -> None:
        """Refreshes the cached channel list from the cam now."""
        self._call(self._engine.update_channels)
        self._refresh_channels()

    def get_channel(self, name: Optional[str] = None, channel_id: Optional[int] = None) -> Any:
        """The id of the channel named ``name``, or the name of channel
        ``channel_id``; None when there is no such channel."""
        if name is not None:
            return self._call(self._engine.channel_id, name)
        if channel_id is not None:
            return self._call(self._engine.channel_name, channel_id)
        raise ValueError("Must specify either name or channel_id")

    def has_channel(self, name: str) -> bool:
        """True when a channel named ``name`` exists on the cam."""
        return self._call(self._engine.has_channel, name)

    def channel_size(self, name: str) -> int:
        """Bytes available on the channel ``name`` (0 when it does not exist)."""
        return self._call(self._engine.channel_size, name)

    def channel_read(self, name: str, size: Optional[int] = None) -> Optional[bytes]:
        """``size`` bytes from the channel ``name`` (everything available
        when None), or None when the channel does not exist."""
        return self._call(self._engine.channel_read, name, size)

    def channel_write(self, name: str, data: Any) -> bool:
        """Writes ``data`` (bytes-like) to the channel ``name``, split into
        packets; False when the channel does not exist."""
        return self._call(self._engine.channel_write, name, _as_bytes(data))

    def read_status(self) -> Dict[str, bool]:
        """``{name: ready}`` for every channel (CHANNEL_POLL)."""
        return dict(self._call(self._engine.read_status))

    # ------------------------------------------------------------------
    # Introspection and statistics
    # ------------------------------------------------------------------

    def version(self) -> Dict[str, Tuple[int, int, int]]:
        """``protocol_version``, ``bootloader_version`` and
        ``firmware_version`` as ``(major, minor, patch)`` (cached by
        :meth:`connect`)."""
        p, b, f = self._call(self._engine.version)
        return {"protocol_version": p, "bootloader_version": b, "firmware_version": f}

    def system_info(self) -> Dict[str, Any]:
        """The cam's identity, memory sizes and capability flags, with the
        stock keys (cached by :meth:`connect`)."""
        return self._call(self._engine.system_info)

    def print_system_info(self) -> None:
        """Logs the formatted system information block at INFO level."""
        for line in self._call(self._engine.system_info_lines):
            log.info("%s", line)

    def host_stats(self) -> Dict[str, int]:
        """Host-side counters: ``sent``, ``received``, ``checksum``,
        ``sequence`` (the stock keys), plus the engine's own
        (``timeouts``, ``duplicates``, ``events``...)."""
        return self._engine.host_stats()

    def device_stats(self) -> Dict[str, int]:
        """Cam-side counters (PROTO_STATS): ``sent``, ``received``,
        ``checksum``, ``sequence``, ``retransmit``, ``transport``,
        ``sent_events``, ``max_ack_queue_depth``."""
        return self._call(self._engine.device_stats)

    # ------------------------------------------------------------------
    # Profiler (no-ops without a profile channel)
    # ------------------------------------------------------------------

    def profiler_mode(self, exclusive: bool = False) -> None:
        """Exclusive (True) or inclusive (False) timing."""
        self._call(self._engine.profiler_mode, bool(exclusive))

    def profiler_reset(self, config: Optional[List[int]] = None) -> None:
        """Clears the profile counters and assigns the default PMU events
        (CPU cycles, L1I/L1D/L2D cache events) to the cam's counters. Here
        ``config`` may be a list of event ids for counters 0, 1, ...; only
        the cam's ``pmu_eventcnt`` counters are assigned."""
        events = None if config is None else [int(e) for e in config]
        self._call(self._engine.profiler_reset, events)

    def profiler_event(self, counter_num: int, event_id: int) -> None:
        """Binds PMU counter ``counter_num`` to event ``event_id``."""
        self._call(self._engine.profiler_event, counter_num, event_id)

    def read_profile(self) -> Optional[List[Dict[str, Any]]]:
        """The profile records since the last reset (``address``,
        ``caller``, ``call_count``, ``min_ticks``, ``max_ticks``,
        ``total_ticks``, ``total_cycles``, ``events``), or None without a
        profile channel, without data, or while the cam refuses the lock."""
        return self._call(self._engine.read_profile)

    # ------------------------------------------------------------------
    # The "private" surface: by-id primitives (no retry; a failure
    # resyncs the link and raises a ResyncException)
    # ------------------------------------------------------------------

    def _channel_lock(self, channel_id: int) -> bool:
        """Locks a channel: True when granted, False when the cam answers BUSY."""
        return self._call(self._engine.channel_lock, channel_id)

    def _channel_unlock(self, channel_id: int) -> bool:
        """Unlocks a channel: False when the cam answers BUSY."""
        return self._call(self._engine.channel_unlock, channel_id)

    def _channel_shape(self, channel_id: int) -> Tuple[int, ...]:
        """The channel's shape descriptor (u32 values)."""
        return tuple(self._call(self._engine.channel_shape, channel_id))

    def _channel_ioctl(self, channel_id: int, cmd: int, fmt: Optional[str] = None, *args: Any) -> Any:
        """CHANNEL_IOCTL ``cmd`` with ``args`` packed little-endian by
        ``fmt`` (a :mod:`struct` format). Returns the answer's payload as
        bytes, True for a plain ACK and False for NAK BUSY, like the stock
        package."""
        payload = struct.pack("<" + fmt, *args) if fmt and args else b""
        r = self._call(self._engine.channel_ioctl, channel_id, cmd, payload)
        if r is None:
            return False
        return r if r else True

    def _channel_size(self, channel_id: int) -> int:
        """Bytes available on a channel."""
        return self._call(self._engine.channel_size_at, channel_id)

    def _channel_read(self, channel_id: int, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (one request; the cam fragments)."""
        return self._call(self._engine.channel_read_at, channel_id, offset, length)

    def _channel_write(self, channel_id: int, data: Any, offset: int = 0) -> None:
        """Writes ``data`` at ``offset``, split into packets."""
        self._call(self._engine.channel_write_at, channel_id, offset, _as_bytes(data))

    def _send_cmd_wait_resp(self, opcode: int, channel: int = 0, data: Any = b"") -> Any:
        """Sends a raw request and waits for its answer. Returns the
        answer's data as bytes, True for an answer without data, False for
        NAK BUSY (as the stock package does), and None for SYS_RESET and
        SYS_BOOT, which have no answer (the port is then closed). Other
        failures resync the link and raise."""
        return self._call(self._engine.request, int(opcode), int(channel), _as_bytes(data))

    def _channel_list(self) -> Dict[int, Dict[str, Any]]:
        """CHANNEL_LIST as the cam sends it, ``{id: {'name', 'flags'}}``,
        without touching the cache."""
        return {
            cid: {"name": name, "flags": flags}
            for cid, flags, name in self._call(self._engine.channel_list)
        }

    def _resync(self) -> None:
        """Runs the protocol handshake again (releases every channel lock)."""
        self._call(self._engine.resync)


def _as_bytes(data: Any) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)
