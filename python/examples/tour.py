#!/usr/bin/env python3
"""A short tour of omv.Camera on a simulated cam (no hardware needed).

Usage: python tour.py [PORT]   (a serial port, or nothing for the simulation)

Runs a script and prints its output, counts the events a subclass sees,
reads a few frames and a byte channel, and prints the link's counters.
"""

import sys
import time

from omv import Camera, OMVException


class CountingCamera(Camera):
    """Counts events by (channel, event); no super() needed."""

    def __init__(self, *args, **kwargs):
        self.counts = {}
        super().__init__(*args, **kwargs)

    def _handle_event(self, channel_id, event):
        key = (channel_id, event)
        self.counts[key] = self.counts.get(key, 0) + 1


def main():
    if len(sys.argv) > 1:
        cam = CountingCamera(sys.argv[1])
    else:
        cam = CountingCamera.simulated(channels={"data": 256 * 1024})
    try:
        with cam:
            v = cam.version()["firmware_version"]
            print(f"firmware {'.'.join(map(str, v))}, channels {sorted(cam.channels_by_name)}")

            cam.exec("for i in range(3):\n    print('hello', i)\n")
            text, deadline = "", time.monotonic() + 10
            while "hello 2" not in text and time.monotonic() < deadline:
                text += cam.read_stdout() or ""
                time.sleep(0.02)
            print("script said:", " | ".join(text.split("\n")[:3]))

            cam.streaming(True)
            frames, deadline = 0, time.monotonic() + 5
            while frames < 5 and time.monotonic() < deadline:
                f = cam.read_frame()
                if f is not None:
                    frames += 1
                    print(f"frame {f['width']}x{f['height']}, {f['raw_size']} bytes on the wire, "
                          f"{len(f['data'])} bytes RGB888")
                time.sleep(0.01)
            cam.streaming(False)

            if cam.has_channel("data"):
                t = time.perf_counter()
                data = cam.channel_read("data")
                print(f"read {len(data)} bytes in {time.perf_counter() - t:.3f} s")

            print("events seen:", dict(sorted(cam.counts.items())))
            print("host counters:", {k: cam.host_stats()[k] for k in ("sent", "received", "timeouts")})
    except OMVException as e:
        sys.exit(f"tour: {type(e).__name__}: {e}")
    finally:
        cam.close_simulation()


if __name__ == "__main__":
    main()
