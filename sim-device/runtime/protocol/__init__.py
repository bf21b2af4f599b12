# omv-sim's `protocol` module: script channels served by the simulated cam.
# See sim-device/README.md ("The cam runtime") and CAM-RUNTIME.md.
import struct as _struct

import _omvsim

CHANNEL_FLAG_READ = 1
CHANNEL_FLAG_WRITE = 2
CHANNEL_FLAG_LOCK = 8
CHANNEL_FLAG_PHYSICAL = 64
CHANNEL_ID_TRANSPORT = 0
CHANNEL_ID_STDIN = 1
CHANNEL_ID_STDOUT = 2
CHANNEL_ID_STREAM = 3
CHANNEL_ID_PROFILE = 4

_NAME_SIZE = 14  # the firmware's name buffer, NUL included


class ProtocolChannel:
    """The handle protocol.register returns."""

    def __init__(self, cid, name):
        self._id = cid
        self._name = name

    def send_event(self, event, wait_ack=False):
        event = int(event) & 0xFFFF
        body = _struct.pack("<BHB", self._id, event, 1 if wait_ack else 0)
        reply = _omvsim.bridge().request(_omvsim.EVENT, body, timeout=30)
        if reply is None or reply[0] != 0:
            raise RuntimeError("Failed to send channel event")

    def __repr__(self):
        return "<ProtocolChannel: %s>" % self._name


def is_active():
    reply = _omvsim.bridge().request(_omvsim.ACTIVE, timeout=30)
    return bool(reply) and reply[0] == 1


def init(crc=True, seq=True, ack=True, events=True, max_payload=None,
         rtx_retries=3, rtx_timeout_ms=500, lock_interval_ms=10, poll_ms=0):
    if max_payload is None:
        max_payload = int(_omvsim.env("MAX_PAYLOAD", "4082"))
    body = _struct.pack(
        "<BBBBIIIII", bool(crc), bool(seq), bool(ack), bool(events),
        int(max_payload) & 0xFFFFFFFF, int(rtx_retries) & 0xFFFFFFFF,
        int(rtx_timeout_ms) & 0xFFFFFFFF, int(lock_interval_ms) & 0xFFFFFFFF,
        int(poll_ms) & 0xFFFFFFFF,
    )
    if max_payload < 0 or lock_interval_ms < 0:
        raise RuntimeError("Failed to initialize protocol")
    reply = _omvsim.bridge().request(_omvsim.INIT, body, timeout=30)
    if reply is None or reply[0] != 0:
        raise RuntimeError("Failed to initialize protocol")


def register(name, flags=0, backend=None):
    if backend is None:
        raise TypeError("register() needs a backend")
    if not isinstance(name, str):
        raise TypeError("name must be a str")
    if flags & CHANNEL_FLAG_PHYSICAL:
        raise _omvsim.not_simulated("a script transport (CHANNEL_FLAG_PHYSICAL)")
    name = name.encode("utf-8")[: _NAME_SIZE - 1].split(b"\0")[0].decode("utf-8", "ignore")
    mask = 0
    for bit, method in enumerate(_omvsim.METHODS):
        if callable(getattr(backend, method, None)):
            mask |= 1 << bit
    init_fn = getattr(backend, "init", None)
    if callable(init_fn):
        try:
            init_fn()
        except Exception:
            raise RuntimeError("Failed to register protocol channel")
    br = _omvsim.bridge()
    reply = br.request(_omvsim.REGISTER, _struct.pack("<H", mask) + name.encode("utf-8"), timeout=30)
    if reply is None:
        raise RuntimeError("Failed to register protocol channel")
    (cid,) = _struct.unpack("<i", reply[:4])
    if cid < 0:
        raise RuntimeError("Failed to register protocol channel")
    br.backends[cid] = backend
    return ProtocolChannel(cid, name)


def __getattr__(name):
    if name.startswith("__"):
        # Python's own probes (__all__, __path__, ...): not there.
        raise AttributeError(name)
    raise _omvsim.not_simulated("protocol." + name)


# CBORChannel: a frozen Python package on the cam. Fields are kept as the
# CBOR maps the host reads (integer keys, SenML style); the buffer is
# re-encoded whenever a field is added or set.
_K_NAME, _K_UNIT, _K_VALUE, _K_DATA = 0, 1, 2, 8
_K_WIDTH, _K_HEIGHT, _K_MIN, _K_MAX = -20, -21, -23, -24
_K_WIDGET, _K_SMIN, _K_SMAX, _K_SSTEP, _K_OPTIONS = -30, -31, -32, -33, -34


def _or(v, default):
    return default if v is None else v


class CBORChannel:
    """A backend of named widget fields (label, toggle, slider, select,
    depth), read by the host as a CBOR array of maps and written back as an
    array of {name, value} maps. Set a slider to (min, max, value) to move
    its range too."""

    def __init__(self, on_read=None, on_write=None):
        self._records = []
        self._by_name = {}
        self._on_read = on_read
        self._on_write = on_write
        self._buf = b""
        self._dirty = False

    def add(self, name, type, value=None, unit=None, min=None, max=None,
            step=None, options=None, width=None, height=None):
        rec = {_K_NAME: name, _K_WIDGET: type}
        if type in ("label", "slider") and unit:
            rec[_K_UNIT] = unit
        if type == "label":
            rec[_K_VALUE] = _or(value, 0)
        elif type == "toggle":
            rec[_K_VALUE] = _or(value, False)
        elif type == "slider":
            rec[_K_VALUE] = _or(value, _or(min, 0))
            rec[_K_SMIN] = _or(min, 0)
            rec[_K_SMAX] = _or(max, 100)
            rec[_K_SSTEP] = _or(step, 1)
        elif type == "select":
            rec[_K_VALUE] = _or(value, "")
            rec[_K_OPTIONS] = _or(options, [])
        elif type == "depth":
            rec[_K_DATA] = b""
            rec[_K_WIDTH] = width
            rec[_K_HEIGHT] = height
            rec[_K_MIN] = _or(min, 0)
            rec[_K_MAX] = _or(max, 1000)
        else:
            raise ValueError("unknown widget type %r" % (type,))
        self._by_name[name] = len(self._records)
        self._records.append(rec)
        self._encode()

    def __getitem__(self, name):
        rec = self._records[self._by_name[name]]
        return rec[_K_DATA] if _K_DATA in rec else rec.get(_K_VALUE)

    def __setitem__(self, name, value):
        rec = self._records[self._by_name[name]]
        if _K_DATA in rec:
            rec[_K_DATA] = value
        elif isinstance(value, tuple) and rec[_K_WIDGET] == "slider":
            rec[_K_SMIN], rec[_K_SMAX], rec[_K_VALUE] = value[0], value[1], value[2]
        elif isinstance(value, tuple):
            rec[_K_VALUE] = list(value)
        else:
            rec[_K_VALUE] = value
        self._encode()

    def _encode(self):
        import cbor2

        self._buf = cbor2.dumps(self._records)
        self._dirty = True

    def poll(self):
        if self._on_read is not None:
            return bool(self._records)
        return self._dirty

    def size(self):
        if self._on_read is not None:
            self._on_read(self)
        self._dirty = False
        return len(self._buf)

    def read(self, offset, size):
        return bytes(self._buf[offset:offset + size])

    def write(self, offset, data):
        import cbor2

        for rec in cbor2.loads(bytes(data)):
            name, value = rec.get(_K_NAME), rec.get(_K_VALUE)
            if name is None or value is None or name not in self._by_name:
                continue
            self._records[self._by_name[name]][_K_VALUE] = value
            if self._on_write is not None:
                self._on_write(self, name, value)
        return len(data)
