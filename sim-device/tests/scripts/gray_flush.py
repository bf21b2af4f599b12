# A GRAYSCALE snapshot with a rectangle drawn on it, pushed to the stream
# with img.flush() (again and again: no further snapshot).
import csi
import time

cam = csi.CSI()
cam.reset()
cam.pixformat(csi.GRAYSCALE)
cam.framesize(csi.QQQVGA)
img = cam.snapshot()
img.draw_rectangle(10, 8, 20, 12, color=77, fill=True)
print("flushing")
while True:
    img.flush()
    time.sleep_ms(20)
