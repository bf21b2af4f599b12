# omv-sim: runs before the script (this directory is first on PYTHONPATH).
# Puts the cam runtime's modules ahead of everything else on the script's
# import path, and gives the built-in `time` and `gc` modules MicroPython's
# extras, which cannot be shadowed by files because they are compiled into
# CPython.
import gc as _gc
import os as _os
import sys as _sys
import time as _time

# The script comes on stdin (`python3 -u -`), so Python puts the current
# directory ('') first on sys.path once this module has run: a protocol.py
# or image.py there would shadow the runtime. A finder ahead of the path
# finders serves the runtime's modules from this directory whatever
# sys.path holds; the script's other imports (its own helpers in the
# current directory, PYTHONPATH, the standard library) work as usual.
import importlib.machinery as _machinery

_RUNTIME_DIR = _os.path.dirname(_os.path.abspath(__file__))


def _runtime_names():
    names = set()
    for entry in _os.listdir(_RUNTIME_DIR):
        full = _os.path.join(_RUNTIME_DIR, entry)
        if entry.endswith(".py"):
            names.add(entry[:-3])
        elif _os.path.isfile(_os.path.join(full, "__init__.py")):
            names.add(entry)
    names.discard("sitecustomize")
    return frozenset(names)


_RUNTIME_NAMES = _runtime_names()


class _RuntimeFirstFinder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name in _RUNTIME_NAMES:
            return _machinery.PathFinder.find_spec(name, [_RUNTIME_DIR])
        return None


_sys.meta_path.insert(0, _RuntimeFirstFinder())

# The standard modules the runtime uses, loaded now, while the current
# directory is not yet on sys.path (a socket.py there cannot break the
# bridge).
import socket as _socket  # noqa: E402,F401
import struct as _struct  # noqa: E402,F401
import threading as _threading  # noqa: E402,F401
import traceback as _traceback  # noqa: E402,F401

_T0 = _time.monotonic_ns()
_TICKS_PERIOD = 1 << 30
_TICKS_MAX = _TICKS_PERIOD - 1
_TICKS_HALF = _TICKS_PERIOD // 2


def _ticks_ms():
    return ((_time.monotonic_ns() - _T0) // 1_000_000) & _TICKS_MAX


def _ticks_us():
    return ((_time.monotonic_ns() - _T0) // 1_000) & _TICKS_MAX


def _ticks_cpu():
    return ((_time.monotonic_ns() - _T0) // 10) & _TICKS_MAX


def _ticks_diff(end, start):
    return ((end - start + _TICKS_HALF) & _TICKS_MAX) - _TICKS_HALF


def _ticks_add(ticks, delta):
    return (ticks + delta) & _TICKS_MAX


def _sleep_ms(ms):
    if ms > 0:
        _time.sleep(ms / 1000)


def _sleep_us(us):
    if us > 0:
        _time.sleep(us / 1_000_000)


class _Clock:
    """time.clock(): frame timing as on the cam (tick, fps, avg)."""

    def __init__(self):
        self._start = None
        self._avg_ms = 0.0
        self._fps = 0.0
        self._n = 0

    def tick(self):
        now = _time.monotonic()
        if self._start is not None:
            dt = now - self._start
            if dt > 0:
                self._n += 1
                self._fps = 1.0 / dt
                self._avg_ms += (dt * 1000 - self._avg_ms) / min(self._n, 16)
        self._start = now

    def fps(self):
        if self._start is None:
            return 0.0
        dt = _time.monotonic() - self._start
        return 1.0 / dt if dt > 0 else self._fps

    def avg(self):
        return self._avg_ms

    def reset(self):
        self.__init__()

    def __repr__(self):
        return "<Clock fps=%.2f avg=%.2fms>" % (self.fps(), self._avg_ms)


for _name, _fn in {
    "ticks_ms": _ticks_ms,
    "ticks_us": _ticks_us,
    "ticks_cpu": _ticks_cpu,
    "ticks_diff": _ticks_diff,
    "ticks_add": _ticks_add,
    "sleep_ms": _sleep_ms,
    "sleep_us": _sleep_us,
    "clock": _Clock,
}.items():
    setattr(_time, _name, _fn)

_HEAP = int(_os.environ.get("OMV_SIM_HEAP", str(256 * 1024)))


def _mem_alloc():
    # A plausible share of the board's GC heap, growing with live objects.
    return min(_HEAP - 1024, 16 * 1024 + 64 * len(_gc.get_objects()) // 8)


def _mem_free():
    return max(1024, _HEAP - _mem_alloc())


_gc.mem_alloc = _mem_alloc
_gc.mem_free = _mem_free


def _threshold(*args):
    raise NotImplementedError("gc.threshold is not simulated by omv-sim")


_gc.threshold = _threshold


# Firmware modules the simulator does not model: importing one fails with a
# message that says so, instead of a bare ModuleNotFoundError.
_NOT_SIMULATED_MODULES = frozenset(
    (
        "tof", "fir", "ml", "lcd", "display", "tv", "audio", "mjpeg", "gif",
        "rpc", "rtsp", "pyb", "network", "bluetooth", "tfp410", "buzzer",
        "imu", "mutex", "openamp", "ulab", "lvgl",
    )
)


class _NotSimulatedFinder:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in _NOT_SIMULATED_MODULES:
            raise ModuleNotFoundError(
                "the firmware module %r is not simulated by omv-sim" % name, name=name
            )
        return None


_sys.meta_path.append(_NotSimulatedFinder())
