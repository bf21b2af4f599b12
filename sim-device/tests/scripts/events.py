# A channel that signals the host, with and without waiting for its ACK.
import protocol
import time


class Button:
    def size(self):
        return 0

    def read(self, offset, size):
        return b""


ch = protocol.register(name="button", backend=Button())
time.sleep_ms(300)
ch.send_event(7)
ch.send_event(8, wait_ack=True)
ch.send_event(0xFFFF)
print("events sent")
while True:
    time.sleep_ms(20)
