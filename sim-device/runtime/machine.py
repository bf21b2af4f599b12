# omv-sim's `machine` module: LED, Pin, reset, unique_id, freq.
import os as _os
import sys as _sys

import _omvsim

_LEDS = ("LED_RED", "LED_GREEN", "LED_BLUE", "LED_IR")


class LED:
    def __init__(self, name):
        if name not in _LEDS:
            raise ValueError("invalid LED %r" % (name,))
        self.name = name
        self._on = False

    def on(self):
        self._on = True

    def off(self):
        self._on = False

    def toggle(self):
        self._on = not self._on

    def value(self, v=None):
        if v is None:
            return 1 if self._on else 0
        self._on = bool(v)


class Pin:
    IN, OUT, OPEN_DRAIN, ALT = 0, 1, 2, 3
    PULL_UP, PULL_DOWN = 1, 2
    IRQ_RISING, IRQ_FALLING = 1, 2

    def __init__(self, name, mode=IN, pull=None, value=None):
        self.name = name
        self.mode = mode
        self.pull = pull
        # An unconnected input reads its pull (high with PULL_UP).
        self._v = 1 if pull == Pin.PULL_UP else 0
        if value is not None:
            self._v = 1 if value else 0

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0

    __call__ = value

    def on(self):
        self._v = 1

    def off(self):
        self._v = 0

    high = on
    low = off

    def init(self, mode=IN, pull=None, value=None):
        self.__init__(self.name, mode, pull, value)

    def irq(self, *args, **kwargs):
        raise _omvsim.not_simulated("machine.Pin.irq")


def unique_id():
    return bytes.fromhex(_omvsim.env("UNIQUE_ID", "000000000000000000000000"))


def freq():
    return int(_omvsim.env("CPU_MHZ", "480")) * 1_000_000


def reset():
    """A hard reset ends the script (the simulated cam soft-resets)."""
    _sys.stdout.flush()
    _os._exit(0)


soft_reset = reset


def __getattr__(name):
    if name.startswith("__"):
        # Python's own probes (__all__, __path__, ...): not there.
        raise AttributeError(name)
    raise _omvsim.not_simulated("machine." + name)
