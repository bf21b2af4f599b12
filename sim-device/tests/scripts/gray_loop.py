# A GRAYSCALE snapshot loop drawing on each frame and never flushing: the
# stream gets each frame, drawing included, when the next snapshot starts.
import csi

cam = csi.CSI()
cam.reset()
cam.pixformat(csi.GRAYSCALE)
cam.framesize(csi.QQQVGA)
print("looping")
while True:
    img = cam.snapshot()
    img.draw_rectangle(40, 30, 16, 10, color=201, fill=True)
