# A CBORChannel of widgets, refreshed on read and written back by the host.
import time
from protocol import CBORChannel
import protocol

writes = []


def on_read(ch):
    ch["ticks"] = time.ticks_ms() & 0x7FFF


def on_write(ch, name, value):
    writes.append((name, value))
    print("wrote", name, value)


fields = CBORChannel(on_read=on_read, on_write=on_write)
fields.add("ticks", type="label", value=0, unit="ms")
fields.add("gain", type="slider", value=5, min=0, max=10, step=1)
fields["gain"] = (0, 20, 5)  # a slider takes (min, max, value)
fields.add("led", type="toggle", value=False)
protocol.register(name="fields", backend=fields)
print("fields ready")
while True:
    time.sleep_ms(20)
