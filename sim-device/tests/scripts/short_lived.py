# Registers a channel, then ends: the soft reset drops it.
import protocol


class Once:
    def size(self):
        return 1

    def read(self, offset, size):
        return b"x"


protocol.register(name="once", backend=Once())
print("registered once")
