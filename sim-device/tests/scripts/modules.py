# The smaller modules: sensor (4.x calls mapped onto csi), micropython,
# gc, machine.Pin, uprotocol.
import gc
import image
import machine
import micropython
import protocol
import sensor
import threading
import time
import uprotocol

sensor.reset()
sensor.set_pixformat(sensor.GRAYSCALE)
sensor.set_framesize(sensor.QQVGA)
assert sensor.get_pixformat() == sensor.GRAYSCALE == image.GRAYSCALE
assert sensor.get_framesize() == sensor.QQVGA
assert (sensor.width(), sensor.height()) == (160, 120)
sensor.set_windowing((64, 48))
sensor.set_hmirror(True)
sensor.set_vflip(True)
sensor.skip_frames(2)
img = sensor.snapshot()
print("sensor", img.width(), img.height(), img.format() == image.GRAYSCALE, img.size())
try:
    sensor.set_auto_gain(False)
except NotImplementedError as e:
    print("sensor:", e)

N = micropython.const(7)
done = threading.Event()
got = []


def scheduled(arg):
    got.append(arg)
    done.set()


micropython.schedule(scheduled, N * 6)
print("schedule", done.wait(10), got)

free, alloc = gc.mem_free(), gc.mem_alloc()
print("gc", free > 0, alloc > 0, free + alloc)

button = machine.Pin("P0", machine.Pin.IN, machine.Pin.PULL_UP)
led = machine.Pin("P1", machine.Pin.OUT)
led.on()
high = led()
led.low()
print("pin", button.value(), high, led.value())
try:
    button.irq(lambda p: None)
except NotImplementedError as e:
    print("pin:", e)


class Hello:
    def size(self):
        return 5

    def read(self, offset, size):
        return b"hello"[offset:offset + size]


assert uprotocol.register is protocol.register
uprotocol.register(name="uproto", backend=Hello())
print("uprotocol", uprotocol.CHANNEL_ID_STREAM)
while True:
    time.sleep_ms(20)
