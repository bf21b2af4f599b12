# MicroPython's utime: the same as `time` (with omv-sim's extras).
from time import *  # noqa: F401,F403
from time import clock, sleep_ms, sleep_us, ticks_add, ticks_diff, ticks_ms, ticks_us  # noqa: F401
