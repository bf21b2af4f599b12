# omv-sim's `micropython` module.
import threading as _threading

import _omvsim


def const(value):
    return value


def schedule(func, arg):
    """Runs func(arg) soon, outside the caller (on a helper thread)."""
    t = _threading.Timer(0, func, args=(arg,))
    t.daemon = True
    t.start()


def opt_level(*args):
    return 0


def native(f):
    return f


viper = native


def alloc_emergency_exception_buf(size):
    return None


def __getattr__(name):
    if name.startswith("__"):
        # Python's own probes (__all__, __path__, ...): not there.
        raise AttributeError(name)
    raise _omvsim.not_simulated("micropython." + name)
