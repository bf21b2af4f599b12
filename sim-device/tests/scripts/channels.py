# Channels of every kind, as a cam script registers them.
import protocol
import time


class Status:
    """Read-only: size samples the state, read serves the sample."""

    def __init__(self):
        self.count = 0

    def size(self):
        self.count += 1
        self._buf = b"status %04d" % self.count
        return len(self._buf)

    def read(self, offset, size):
        return self._buf[offset:offset + size]


class Store:
    """Read-write: a 1000-byte store the host can overwrite."""

    def __init__(self):
        self.data = bytearray(i % 251 for i in range(1000))

    def size(self):
        return len(self.data)

    def read(self, offset, size):
        return memoryview(self.data)[offset:offset + size]

    def write(self, offset, data):
        self.data[offset:offset + len(data)] = data
        return len(data)


class Latched:
    """Lockable: the host locks, reads, unlocks."""

    def __init__(self):
        self.locked = False

    def lock(self):
        if self.locked:
            return False
        self.locked = True
        return True

    def unlock(self):
        was = self.locked
        self.locked = False
        return was

    def size(self):
        return 4

    def read(self, offset, size):
        return b"LOCK"[offset:offset + size]


class Shaped:
    def shape(self):
        return (3, 4, 5)

    def size(self):
        return 60

    def read(self, offset, size):
        return bytes(range(offset, offset + size))

    def poll(self):
        return True


protocol.register(name="status", backend=Status())
protocol.register(name="store", backend=Store())
protocol.register(name="latched", backend=Latched())
protocol.register(name="shaped_and_very_long_name", backend=Shaped())
print("channels ready")
while True:
    time.sleep_ms(20)
