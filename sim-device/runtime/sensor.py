# omv-sim's `sensor` module: firmware 4.x's camera calls, mapped onto csi.
import csi as _csi
import _omvsim

RGB565 = _csi.RGB565
GRAYSCALE = _csi.GRAYSCALE
JPEG = _csi.JPEG
BAYER = _csi.BAYER
YUV422 = _csi.YUV422
for _n in _csi._ORDER:
    globals()[_n] = getattr(_csi, _n)

_cam = _csi.CSI()


def reset():
    _cam.reset()


def set_pixformat(fmt):
    _cam.pixformat(fmt)


def get_pixformat():
    return _cam.pixformat()


def set_framesize(size):
    _cam.framesize(size)


def get_framesize():
    return _cam.framesize()


def set_windowing(roi):
    _cam.window(roi)


def set_hmirror(enable):
    _cam.hmirror(enable)


def set_vflip(enable):
    _cam.vflip(enable)


def set_framerate(rate):
    _cam.framerate(rate)


def snapshot(**kw):
    return _cam.snapshot(**kw)


def skip_frames(n=10, time=None):
    _cam.skip_frames(n, time)


def width():
    return _cam.width()


def height():
    return _cam.height()


def get_id():
    return _cam.get_id()


def set_auto_gain(*args, **kwargs):
    raise _omvsim.not_simulated("sensor.set_auto_gain")


def set_auto_whitebal(*args, **kwargs):
    raise _omvsim.not_simulated("sensor.set_auto_whitebal")


def __getattr__(name):
    if name.startswith("__"):
        # Python's own probes (__all__, __path__, ...): not there.
        raise AttributeError(name)
    raise _omvsim.not_simulated("sensor." + name)
