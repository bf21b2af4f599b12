# omv-sim's small cbor2 (the cam ships one): dumps/loads of ints, floats,
# bool, None, str, bytes, lists/tuples and dicts (RFC 8949, definite lengths).
import struct

__all__ = ["dumps", "loads", "dump", "load", "CBORDecodeError", "CBOREncodeError"]


class CBOREncodeError(ValueError):
    pass


class CBORDecodeError(ValueError):
    pass


def _head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for ai, fmt, top in ((24, ">B", 0xFF), (25, ">H", 0xFFFF), (26, ">I", 0xFFFFFFFF),
                         (27, ">Q", 0xFFFFFFFFFFFFFFFF)):
        if n <= top:
            return bytes([major << 5 | ai]) + struct.pack(fmt, n)
    raise CBOREncodeError("integer too large for CBOR: %d" % n)


def _enc(v, out):
    if v is None:
        out.append(b"\xf6")
    elif v is True:
        out.append(b"\xf5")
    elif v is False:
        out.append(b"\xf4")
    elif isinstance(v, int):
        out.append(_head(0, v) if v >= 0 else _head(1, -1 - v))
    elif isinstance(v, float):
        out.append(b"\xfb" + struct.pack(">d", v))
    elif isinstance(v, str):
        b = v.encode("utf-8")
        out.append(_head(3, len(b)))
        out.append(b)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        out.append(_head(2, len(b)))
        out.append(b)
    elif isinstance(v, (list, tuple)):
        out.append(_head(4, len(v)))
        for x in v:
            _enc(x, out)
    elif isinstance(v, dict):
        out.append(_head(5, len(v)))
        for k, x in v.items():
            _enc(k, out)
            _enc(x, out)
    else:
        raise CBOREncodeError("cannot serialize type %s" % type(v).__name__)


def dumps(obj):
    out = []
    _enc(obj, out)
    return b"".join(out)


def dump(obj, fp):
    fp.write(dumps(obj))


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise CBORDecodeError("premature end of CBOR data")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def arg(self, ai):
        if ai < 24:
            return ai
        sizes = {24: ">B", 25: ">H", 26: ">I", 27: ">Q"}
        if ai not in sizes:
            raise CBORDecodeError("indefinite or reserved length %d not supported" % ai)
        fmt = sizes[ai]
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def item(self, depth=0):
        if depth > 64:
            raise CBORDecodeError("CBOR nested too deeply")
        ib = self.take(1)[0]
        major, ai = ib >> 5, ib & 31
        if major == 7:
            if ai == 20:
                return False
            if ai == 21:
                return True
            if ai in (22, 23):
                return None
            if ai == 25:
                return struct.unpack(">e", self.take(2))[0]
            if ai == 26:
                return struct.unpack(">f", self.take(4))[0]
            if ai == 27:
                return struct.unpack(">d", self.take(8))[0]
            raise CBORDecodeError("unsupported simple value %d" % ai)
        n = self.arg(ai)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return bytes(self.take(n))
        if major == 3:
            return bytes(self.take(n)).decode("utf-8")
        if major == 4:
            return [self.item(depth + 1) for _ in range(n)]
        if major == 5:
            d = {}
            for _ in range(n):
                k = self.item(depth + 1)
                d[k] = self.item(depth + 1)
            return d
        # major 6: a tag; keep the tagged value.
        return self.item(depth + 1)


def loads(data):
    r = _Reader(bytes(data))
    v = r.item()
    if r.pos != len(r.data):
        raise CBORDecodeError("extra data after the CBOR item")
    return v


def load(fp):
    return loads(fp.read())
