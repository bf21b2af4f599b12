"""The stock Camera (``openmv==1.0.7``) made to survive the cam's soft reset,
for the tests that drive omv-sim with it (tests/interop/stock_sdk.py and
python/tests). Only the stock SDK needs this; omv recovers by itself.

When a script ends the cam soft-resets its protocol: sequence 0 and its
start-up configuration, everything on (PROTOCOL.md section 6). The stock
1.0.7 package only logs SOFT_REBOOT. A request it sends after the reset
carries its own sequence number; the cam NAKs it under its restarted
counter; the SDK drops that NAK, and stdout NOTIFYs (the soft-reboot banner
is unread) restart its receive timeout each time, so it stalls for good.
And when it does resync, it does not drain what is still in the port, so a
late answer to the abandoned request is taken as the answer to SYNC, and
every later answer is off by one. A real cam does the same; the OpenMV IDE
resyncs on SOFT_REBOOT. So does this subclass:

* it watches events on the transport itself, so a further subclass's
  ``_handle_event`` that does not call super cannot hide SOFT_REBOOT;
* SOFT_REBOOT outside a request: resync before the next request;
* SOFT_REBOOT while a request waits: the cam answers a request it got
  before its reset (a consuming read's answer carries data that exists
  nowhere else), so the wait goes on, and the resync comes before the next
  request; only when a later event arrives more than ``GRACE_SECONDS``
  after SOFT_REBOOT with the request still unanswered (it crossed the
  reset, and the cam NAKed it under its new sequence) does the wait end
  with an ``OMVException``, on which the stock package resyncs and raises
  ``ResyncException`` (its ``retry_if_failed`` methods retry once);
* every resync first lets the abandoned answer arrive and drops what the
  port holds.
"""

import time

# The cam answers within milliseconds on a pty; this covers it with margin.
DRAIN_SECONDS = 0.05
# How long a request that waits when SOFT_REBOOT arrives may still get its
# answer (sent before the cam's reset) before later events end the wait.
GRACE_SECONDS = 0.25
SOFT_REBOOT = 2


def resyncing(base, omv_exception):
    """A subclass of the stock Camera class ``base`` (see the module doc)."""

    class SoftRebooted(omv_exception):
        """SOFT_REBOOT arrived while a stock request waited."""

    class Resyncing(base):
        _soft_rebooted = False
        _in_request = False
        _rebooted_at = None

        def _resync(self):
            if getattr(self, "_serial", None) is not None:
                time.sleep(DRAIN_SECONDS)
                self._serial.reset_input_buffer()
            super()._resync()
            forward = self.transport.event_callback

            def on_event(channel_id, event):
                forward(channel_id, event)
                if channel_id == 0 and event == SOFT_REBOOT:
                    self._soft_rebooted = True
                    if self._in_request and self._rebooted_at is None:
                        self._rebooted_at = time.monotonic()
                elif (self._in_request and self._rebooted_at is not None
                      and time.monotonic() - self._rebooted_at > GRACE_SECONDS):
                    raise SoftRebooted("SOFT_REBOOT while a request waited, "
                                       "and no answer came")

            self.transport.event_callback = on_event

        def _send_cmd_wait_resp(self, opcode, channel=0, data=b""):
            if self._soft_rebooted:
                self._soft_rebooted = False
                self._resync()
            self._in_request = True
            self._rebooted_at = None
            try:
                return super()._send_cmd_wait_resp(opcode, channel, data)
            finally:
                self._in_request = False
                self._rebooted_at = None

    Resyncing.__name__ = base.__name__
    Resyncing.__qualname__ = base.__qualname__
    return Resyncing
