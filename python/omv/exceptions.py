"""The exception hierarchy of the stock ``openmv`` package, raised by ``omv``.

Every error the engine reports is an :class:`OMVException`, so one
``except OMVException`` covers the whole error surface. The engine
resynchronises the link after a timeout, a NAK CHECKSUM / SEQUENCE /
TIMEOUT or a response that does not match its request, then retries once
(the stock package's one retry); when that fails too, the exception raised
is both the specific class and a :class:`ResyncException`, as the stock
package raises ``ResyncException`` there:

* ``ResyncedTimeoutException``  (``TimeoutException``, ``ResyncException``)
* ``ResyncedChecksumException`` (``ChecksumException``, ``ResyncException``)
* ``ResyncedSequenceException`` (``SequenceException``, ``ResyncException``)

A handshake that gets no answer raises a plain :class:`TimeoutException`,
and so does an operation that could not finish within its deadline (10 s
plus 20 s per MiB) while the link kept failing. A read that a cam reboot
or a script's soft reboot cut short raises :class:`ResyncException`: the
link was resynchronised and reading again gets the new content.
Port errors are :class:`PortException` (also ``OSError``); bad arguments
are :class:`InvalidArgumentException` (also ``ValueError``).
"""

from __future__ import annotations

__all__ = [
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


class OMVException(Exception):
    """Base class of every error ``omv`` raises for the cam or the link."""


class TimeoutException(OMVException):
    """The cam did not answer within the timeout (or answered NAK TIMEOUT)."""


class ChecksumException(OMVException):
    """The cam received a request with a bad CRC (NAK CHECKSUM)."""


class SequenceException(OMVException):
    """The cam rejected a request's sequence number (NAK SEQUENCE)."""


class ResyncException(OMVException):
    """A request failed and the link was resynchronised: the operation can
    be retried (every channel lock was released by the resync).
    :meth:`omv.Camera.retry_if_failed` retries on it."""


class ResyncedTimeoutException(TimeoutException, ResyncException):
    """A timeout after which the link was resynchronised."""


class ResyncedChecksumException(ChecksumException, ResyncException):
    """A NAK CHECKSUM after which the link was resynchronised."""


class ResyncedSequenceException(SequenceException, ResyncException):
    """A NAK SEQUENCE after which the link was resynchronised."""


class PortException(OMVException, OSError):
    """Opening, reading or writing the port failed (the port is closed)."""


class InvalidArgumentException(OMVException, ValueError):
    """An argument is out of range (too long, missing resolution, ...)."""
