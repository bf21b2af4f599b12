"""omv: the stock ``openmv`` package's API on the omv Rust engine.

Change ``from openmv.camera import Camera`` to ``from omv import Camera``::

    from omv import Camera

    with Camera("/dev/ttyACM0") as cam:
        cam.exec("print('hello')")
        print(cam.read_stdout())

``Camera(tcp="host:port")`` / ``Camera(udp="host:port")`` reach a cam over
the network; ``Camera.simulated()`` starts a simulated cam in this process.
"""

from .exceptions import (
    ChecksumException,
    InvalidArgumentException,
    OMVException,
    PortException,
    ResyncedChecksumException,
    ResyncedSequenceException,
    ResyncedTimeoutException,
    ResyncException,
    SequenceException,
    TimeoutException,
)
from .camera import Camera

__version__ = "0.1.0"

__all__ = [
    "Camera",
    "OMVException",
    "TimeoutException",
    "ChecksumException",
    "SequenceException",
    "ResyncException",
    "ResyncedTimeoutException",
    "ResyncedChecksumException",
    "ResyncedSequenceException",
    "PortException",
    "InvalidArgumentException",
]
