# machine.reset() ends the script at once (the cam soft-resets).
import machine

print("resetting")
machine.reset()
print("not reached")
