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
    raise _omvsim.not_simulated("protocol." + name)


# CBORChannel: a frozen Python package on the cam.
_FIELD_TYPES = ("label", "toggle", "slider", "select", "depth")

_K_NAME, _K_UNIT, _K_VALUE, _K_DATA = 0, 1, 2, 8
_K_WIDTH, _K_HEIGHT, _K_MIN, _K_MAX = -20, -21, -23, -24
_K_WIDGET, _K_SMIN, _K_SMAX, _K_SSTEP, _K_OPTIONS = -30, -31, -32, -33, -34


class CBORChannel:
    """A backend holding named fields, read as a CBOR array of SenML-style
    maps and written back as an array of {name, value} maps."""

    def __init__(self, on_read=None, on_write=None):
        self._fields = {}
        self._order = []
        self._on_read = on_read
        self._on_write = on_write
        self._dirty = True
        self._buf = b""

    def add(self, name, type="label", value=None, unit=None, min=None, max=None,
            step=None, options=None, width=None, height=None):
        if type not in _FIELD_TYPES:
            raise ValueError("unknown field type %r" % (type,))
        if name not in self._fields:
            self._order.append(name)
        self._fields[name] = {
            "type": type, "value": value, "unit": unit, "min": min, "max": max,
            "step": step, "options": options, "width": width, "height": height,
        }
        self._dirty = True

    def __getitem__(self, name):
        return self._fields[name]["value"]

    def __setitem__(self, name, value):
        if name not in self._fields:
            raise KeyError(name)
        self._fields[name]["value"] = value
        self._dirty = True

    def __contains__(self, name):
        return name in self._fields

    def _encode(self):
        import cbor2

        records = []
        for name in self._order:
            f = self._fields[name]
            rec = {_K_NAME: name, _K_WIDGET: f["type"]}
            v = f["value"]
            if isinstance(v, (bytes, bytearray, memoryview)):
                rec[_K_DATA] = bytes(v)
            elif v is not None:
                rec[_K_VALUE] = v
            for key, k in (("unit", _K_UNIT), ("width", _K_WIDTH), ("height", _K_HEIGHT)):
                if f[key] is not None:
                    rec[k] = f[key]
            if f["type"] == "slider":
                for key, k in (("min", _K_SMIN), ("max", _K_SMAX), ("step", _K_SSTEP)):
                    if f[key] is not None:
                        rec[k] = f[key]
            else:
                for key, k in (("min", _K_MIN), ("max", _K_MAX)):
                    if f[key] is not None:
                        rec[k] = f[key]
            if f["options"] is not None:
                rec[_K_OPTIONS] = list(f["options"])
            records.append(rec)
        return cbor2.dumps(records)

    def poll(self):
        return self._dirty or self._on_read is not None

    def size(self):
        if self._on_read is not None:
            self._on_read(self)
        self._buf = self._encode()
        self._dirty = False
        return len(self._buf)

    def read(self, offset, size):
        return self._buf[offset:offset + size]

    def write(self, offset, data):
        import cbor2

        records = cbor2.loads(bytes(data))
        if not isinstance(records, list):
            records = [records]
        for rec in records:
            if not isinstance(rec, dict) or _K_NAME not in rec:
                continue
            name = rec[_K_NAME]
            if name not in self._fields:
                continue
            value = rec.get(_K_VALUE, rec.get(_K_DATA))
            self._fields[name]["value"] = value
            self._dirty = True
            if self._on_write is not None:
                self._on_write(self, name, value)
        return len(data)
