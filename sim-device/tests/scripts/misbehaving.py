# Backends that break the rules, each answered as the firmware answers.
import protocol
import time


class Bad:
    def size(self):
        raise ValueError("size fails")

    def read(self, offset, size):
        raise OSError("read fails")

    def write(self, offset, data):
        return None

    def shape(self):
        return [1, 2]

    def ioctl(self, cmd, length, arg):
        if cmd == 1:
            return None
        if cmd == 2:
            return 7
        raise RuntimeError("ioctl fails")


class Quirky:
    def size(self):
        return 3

    def read(self, offset, size):
        return b""

    def write(self, offset, data):
        raise ValueError("raising write is acknowledged")

    def lock(self):
        raise RuntimeError("lock fails")

    def unlock(self):
        return True


class Slow:
    def size(self):
        time.sleep(3)
        return 1


protocol.register(name="bad", backend=Bad())
protocol.register(name="quirky", backend=Quirky())
protocol.register(name="slow", backend=Slow())
print("misbehaving ready")
while True:
    time.sleep_ms(20)
