# A backend whose process dies while answering.
import os
import protocol
import time


class Fragile:
    def size(self):
        os._exit(3)


protocol.register(name="fragile", backend=Fragile())
print("fragile ready")
while True:
    time.sleep_ms(20)
