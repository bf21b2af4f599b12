# The omv-sim side of the cam runtime: the bridge between this script's
# process and the simulated cam (a Unix socket named by OMV_SIM_BRIDGE).
#
# Frames: u32 little-endian body length, then the body: u8 kind, u32 id,
# kind-specific fields. The cam calls backend methods (CALL); the script
# asks the cam for channels, events, protocol settings and frames
# (REQUEST kinds), each answered by a REPLY with the same id.
import os
import socket
import struct
import sys
import threading
import traceback

# Script -> cam requests.
REGISTER = 1
EVENT = 2
INIT = 3
ACTIVE = 4
SNAPSHOT = 5
FLUSH = 6
JPEG = 7
# Cam -> script.
CALL = 0x40
REPLY = 0x80
# Script -> cam answer to a CALL.
ANSWER = 0x81

# Backend methods, by CALL method number (and bit in REGISTER's mask).
METHODS = ("poll", "lock", "unlock", "size", "shape", "read", "write", "ioctl", "readp")

# ANSWER kinds.
A_RAISED, A_NONE, A_BOOL, A_INT, A_BYTES, A_TUPLE, A_OTHER = range(7)

I64_MIN, I64_MAX = -(1 << 63), (1 << 63) - 1


class NotSimulatedError(NotImplementedError):
    """Raised by whatever the simulator does not model."""


def not_simulated(what):
    return NotSimulatedError(what + " is not simulated by omv-sim")


def env(name, default=""):
    return os.environ.get("OMV_SIM_" + name, default)


def _clamp(v):
    return max(I64_MIN, min(I64_MAX, int(v)))


def encode_answer(result):
    if result is None:
        return bytes([A_NONE])
    if isinstance(result, bool):
        return bytes([A_BOOL, 1 if result else 0])
    if isinstance(result, int):
        return bytes([A_INT]) + struct.pack("<q", _clamp(result))
    if isinstance(result, str):
        return bytes([A_BYTES]) + result.encode("utf-8")
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes([A_BYTES]) + bytes(result)
    if isinstance(result, tuple):
        ints = []
        for v in result[:4]:
            try:
                ints.append(_clamp(v))
            except Exception:
                ints.append(0)
        return bytes([A_TUPLE, len(ints)]) + b"".join(struct.pack("<q", v) for v in ints)
    try:
        truthy = bool(result)
    except Exception:
        truthy = False
    return bytes([A_OTHER, 1 if truthy else 0])


class Bridge:
    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.wlock = threading.Lock()
        self.next_id = 1
        self.waiting = {}
        self.cond = threading.Condition()
        self.backends = {}
        self.closed = False
        t = threading.Thread(target=self._reader, name="omv-sim-bridge", daemon=True)
        t.start()

    def _send(self, kind, ident, body):
        frame = struct.pack("<IBI", 5 + len(body), kind, ident) + body
        with self.wlock:
            self.sock.sendall(frame)

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    def _reader(self):
        try:
            while True:
                (length,) = struct.unpack("<I", self._recv_exact(4))
                body = self._recv_exact(length)
                kind, ident = struct.unpack_from("<BI", body)
                rest = body[5:]
                if kind == REPLY:
                    with self.cond:
                        if ident in self.waiting:
                            self.waiting[ident] = rest
                            self.cond.notify_all()
                elif kind == CALL:
                    self._call(ident, rest)
        except (EOFError, OSError):
            pass
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def _call(self, ident, rest):
        chan, method = rest[0], rest[1]
        args = rest[2:]
        backend = self.backends.get(chan)
        name = METHODS[method] if method < len(METHODS) else None
        try:
            if backend is None or name is None:
                raise RuntimeError("no such channel or method")
            if name in ("read", "readp"):
                offset, size = struct.unpack_from("<II", args)
                fn = getattr(backend, "read", None) or getattr(backend, "readp")
                result = fn(offset, size)
            elif name == "write":
                (offset,) = struct.unpack_from("<I", args)
                result = backend.write(offset, bytearray(args[4:]))
            elif name == "ioctl":
                cmd, n = struct.unpack_from("<II", args)
                data = bytearray(args[8:]) if n else None
                result = backend.ioctl(cmd, n, data)
            else:
                result = getattr(backend, name)()
            answer = encode_answer(result)
        except BaseException:
            answer = bytes([A_RAISED])
        try:
            self._send(ANSWER, ident, answer)
        except OSError:
            pass

    def request(self, kind, body=b"", timeout=None):
        """Sends a request and waits for its reply (None: the cam is gone)."""
        with self.cond:
            ident = self.next_id
            self.next_id = (self.next_id + 1) & 0xFFFFFFFF or 1
            self.waiting[ident] = None
        try:
            self._send(kind, ident, body)
        except OSError:
            with self.cond:
                self.waiting.pop(ident, None)
            return None
        with self.cond:
            ok = self.cond.wait_for(
                lambda: self.waiting.get(ident) is not None or self.closed, timeout
            )
            reply = self.waiting.pop(ident, None)
        return reply if ok else None


_bridge = None

# The frame buffer: the image the last csi snapshot returned (published to
# the stream, as it is then, by the next snapshot), and whether the cam
# said at the last snapshot that a host streams (True until known).
framebuffer = None
streaming = True


def bridge():
    """The connection to the simulated cam; RuntimeError without one."""
    global _bridge
    if _bridge is None:
        path = env("BRIDGE")
        if not path:
            raise RuntimeError("omv-sim: this script is not running in omv-sim (no OMV_SIM_BRIDGE)")
        _bridge = Bridge(path)
    return _bridge


def print_exception_short(e):
    traceback.print_exception(type(e), e, e.__traceback__, file=sys.stderr)
