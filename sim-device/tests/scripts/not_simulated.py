# What the simulator does not model fails loudly.
import csi
import machine
import omv
import time

print("board", omv.board_type(), omv.version_string(), len(machine.unique_id()))
led = machine.LED("LED_BLUE")
led.on()
led.toggle()
assert led.value() == 0
for what in (lambda: csi.CSI().auto_exposure(True), lambda: machine.I2C(1),
             lambda: csi.CSI().pixformat(csi.BAYER), lambda: omv.disable_fb(True)):
    try:
        what()
        print("no error")
    except NotImplementedError as e:
        print("error:", e)
try:
    import tof  # a firmware module the simulator does not model
    print("no error")
except ImportError as e:
    print("error:", e)
print("checked")
while True:
    time.sleep_ms(50)
