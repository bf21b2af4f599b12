# MicroPython-style alias of omv-sim's `protocol` module.
from protocol import *  # noqa: F401,F403
from protocol import CBORChannel, ProtocolChannel, init, is_active, register  # noqa: F401
