# A snapshot loop at the script's own frame size, drawing on each frame.
import csi
import image
import time

cam = csi.CSI()
cam.reset()
cam.pixformat(csi.RGB565)
cam.framesize(csi.QQVGA)
clock = time.clock()
img = cam.snapshot()
assert (img.width(), img.height(), img.format()) == (160, 120, image.RGB565), img
assert img.size() == 160 * 120 * 2
img.set_pixel(1, 1, (255, 0, 0))
assert img.get_pixel(1, 1) == (255, 0, 0), img.get_pixel(1, 1)
gray = image.Image(8, 4, image.GRAYSCALE)
gray.draw_rectangle(0, 0, 8, 4, color=200, fill=True)
assert gray.get_pixel(7, 3) == 200
jpeg = img.to_jpeg(quality=80)
assert jpeg.format() == image.JPEG and jpeg.bytearray()[:2] == b"\xff\xd8"
jpeg.save("/flash/first.jpg")
print("snapshot ok")
while True:
    clock.tick()
    img = cam.snapshot()
    img.draw_string(4, 4, "%.1f FPS" % clock.fps(), color=(255, 255, 255))
    img.draw_cross(80, 60, color=(0, 255, 0))
