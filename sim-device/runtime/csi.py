# omv-sim's `csi` module (firmware 5): a simulated camera sensor whose
# pixels come from the simulator's frame source (the moving test pattern
# or --frames DIR), scaled and converted to the frame size and pixel
# format the script asked for. The image a snapshot returns is the frame
# buffer the host streams: the next snapshot publishes it (with the
# script's drawings), img.flush() publishes an image at once.
import struct as _struct
import time as _time

import _omvsim
import image as _image

RGB565 = _image.RGB565
GRAYSCALE = _image.GRAYSCALE
JPEG = _image.JPEG
BAYER = _image.BAYER
YUV422 = _image.YUV422

_SIZES = {
    "QQCIF": (88, 72), "QCIF": (176, 144), "CIF": (352, 288),
    "QQSIF": (88, 60), "QSIF": (176, 120), "SIF": (352, 240),
    "QQQQVGA": (40, 30), "QQQVGA": (80, 60), "QQVGA": (160, 120), "QVGA": (320, 240),
    "VGA": (640, 480), "HQQQQVGA": (30, 20), "HQQQVGA": (60, 40), "HQQVGA": (120, 80),
    "HQVGA": (240, 160), "HVGA": (480, 320), "B64X32": (64, 32), "B64X64": (64, 64),
    "B128X64": (128, 64), "B128X128": (128, 128), "B160X160": (160, 160),
    "B320X320": (320, 320), "LCD": (128, 160), "QQVGA2": (128, 160), "WVGA": (720, 480),
    "WVGA2": (752, 480), "SVGA": (800, 600), "XGA": (1024, 768), "WXGA": (1280, 768),
    "SXGA": (1280, 1024), "SXGAM": (1280, 960), "UXGA": (1600, 1200), "HD": (1280, 720),
    "FHD": (1920, 1080), "QHD": (2560, 1440), "QXGA": (2048, 1536), "WQXGA": (2560, 1600),
    "WQXGA2": (2592, 1944),
}
# Frame size constants are indexes into this table, in its order.
_ORDER = list(_SIZES)
for _i, _n in enumerate(_ORDER):
    globals()[_n] = _i + 1


class CSI:
    def __init__(self, cid=-1, delays=True, fb_size=None):
        self._fmt = RGB565
        self._size = _SIZES["QVGA"]
        self._window = None
        self._hmirror = False
        self._vflip = False
        self._fps = None
        self._last = None

    def reset(self, hard=True):
        self.__init__()

    def pixformat(self, fmt=None):
        if fmt is None:
            return self._fmt
        if fmt in (BAYER, YUV422):
            raise _omvsim.not_simulated("csi pixel format BAYER/YUV422")
        if fmt not in (RGB565, GRAYSCALE, JPEG):
            raise ValueError("invalid pixel format")
        self._fmt = fmt

    def framesize(self, size=None):
        if size is None:
            return _ORDER.index(self._name()) + 1 if self._name() else 0
        if isinstance(size, tuple):
            self._size = (int(size[0]), int(size[1]))
        elif 1 <= size <= len(_ORDER):
            self._size = _SIZES[_ORDER[size - 1]]
        else:
            raise ValueError("invalid frame size")
        self._window = None

    def _name(self):
        for n, s in _SIZES.items():
            if s == self._size:
                return n
        return None

    def window(self, roi=None):
        if roi is None:
            return self._window or (0, 0) + self._size
        if len(roi) == 2:
            roi = ((self._size[0] - roi[0]) // 2, (self._size[1] - roi[1]) // 2) + tuple(roi)
        self._window = tuple(int(v) for v in roi)

    def width(self):
        return (self._window or (0, 0) + self._size)[2]

    def height(self):
        return (self._window or (0, 0) + self._size)[3]

    def hmirror(self, enable=None):
        if enable is None:
            return self._hmirror
        self._hmirror = bool(enable)

    def vflip(self, enable=None):
        if enable is None:
            return self._vflip
        self._vflip = bool(enable)

    def framerate(self, rate=None):
        if rate is None:
            return self._fps or 0
        self._fps = max(1, int(rate))

    def snapshot(self, time=None, blocking=True, image=None, update=True):
        if self._fps:
            now = _time.monotonic()
            if self._last is not None:
                wait = self._last + 1.0 / self._fps - now
                if wait > 0:
                    _time.sleep(wait)
            self._last = _time.monotonic()
        w, h = self.width(), self.height()
        code = {RGB565: 0, GRAYSCALE: 1, JPEG: 2}[self._fmt]
        body = _struct.pack("<IIBBBB", w, h, code, self._hmirror, self._vflip, 1 if update else 0)
        # As on a cam, the host streams the frame buffer: a snapshot first
        # publishes the previous frame, with what the script drew on it, in
        # its pixel format. Sent only while the cam said a host streams.
        fb = _omvsim.framebuffer
        if update and fb is not None and _omvsim.streaming:
            body += fb._wire()
        reply = _omvsim.bridge().request(_omvsim.SNAPSHOT, body, timeout=30)
        if not reply:
            raise RuntimeError("csi: snapshot failed (frame source)")
        _omvsim.streaming = reply[0] == 1
        img = _image.Image._raw(w, h, self._fmt, reply[1:])
        _omvsim.framebuffer = img
        return img

    def skip_frames(self, n=10, time=None):
        if time is not None:
            _time.sleep(time / 1000)
        else:
            for _ in range(int(n)):
                self.snapshot(update=False)

    def get_id(self):
        return int(_omvsim.env("SENSOR_ID", "0"), 0)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise _omvsim.not_simulated("csi.CSI." + name)


def __getattr__(name):
    if name.startswith("__"):
        # Python's own probes (__all__, __path__, ...): not there.
        raise AttributeError(name)
    raise _omvsim.not_simulated("csi." + name)
