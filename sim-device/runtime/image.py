# omv-sim's `image` module: images a script can read, draw on, compress,
# save and flush to the host's frame stream. Pixels follow the format:
# RGB565 (2 bytes a pixel, little-endian) or GRAYSCALE (1 byte a pixel);
# JPEG images hold the compressed bytes.
import os as _os
import struct as _struct

import _omvsim


def _formats():
    fmts = {}
    for item in _omvsim.env("PIXFORMATS", "").split(","):
        if "=" in item:
            k, v = item.split("=", 1)
            fmts[k] = int(v, 0)
    return fmts


_F = _formats()
RGB565 = _F.get("RGB565", 0x0C030002)
GRAYSCALE = _F.get("GRAYSCALE", 0x08020001)
JPEG = _F.get("JPEG", 0x06060000)
BAYER = _F.get("BAYER", 0x18000001)
YUV422 = _F.get("YUV422", 0x1C040002)
BINARY = _F.get("BINARY", 0x01000001)

# Bridge codes of the formats the simulator models.
_CODE = {RGB565: 0, GRAYSCALE: 1, JPEG: 2}
_BPP = {RGB565: 2, GRAYSCALE: 1}

# A 3x5 font: rows top first, 3 bits each (bit 2 = left column).
_FONT = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), "A": (2, 5, 7, 5, 5), "B": (6, 5, 6, 5, 6),
    "C": (3, 4, 4, 4, 3), "D": (6, 5, 5, 5, 6), "E": (7, 4, 6, 4, 7), "F": (7, 4, 6, 4, 4),
    "G": (3, 4, 5, 5, 3), "H": (5, 5, 7, 5, 5), "I": (7, 2, 2, 2, 7), "J": (1, 1, 1, 5, 2),
    "K": (5, 5, 6, 5, 5), "L": (4, 4, 4, 4, 7), "M": (5, 7, 7, 5, 5), "N": (6, 5, 5, 5, 5),
    "O": (2, 5, 5, 5, 2), "P": (6, 5, 6, 4, 4), "Q": (2, 5, 5, 6, 3), "R": (6, 5, 6, 5, 5),
    "S": (3, 4, 2, 1, 6), "T": (7, 2, 2, 2, 2), "U": (5, 5, 5, 5, 7), "V": (5, 5, 5, 5, 2),
    "W": (5, 5, 7, 7, 5), "X": (5, 5, 2, 5, 5), "Y": (5, 5, 2, 2, 2), "Z": (7, 1, 2, 4, 7),
    " ": (0, 0, 0, 0, 0), ".": (0, 0, 0, 0, 2), ",": (0, 0, 0, 2, 4), ":": (0, 2, 0, 2, 0),
    "-": (0, 0, 7, 0, 0), "+": (0, 2, 7, 2, 0), "=": (0, 7, 0, 7, 0), "/": (1, 1, 2, 4, 4),
    "%": (5, 1, 2, 4, 5), "(": (1, 2, 2, 2, 1), ")": (4, 2, 2, 2, 4), "!": (2, 2, 2, 0, 2),
    "?": (6, 1, 2, 0, 2), "_": (0, 0, 0, 0, 7), "#": (5, 7, 5, 7, 5), "'": (2, 2, 0, 0, 0),
}
_UNKNOWN = (7, 7, 7, 7, 7)


def _jpeg_size(data):
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = _struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        (seg,) = _struct.unpack(">H", data[i + 2:i + 4])
        i += 2 + seg
    raise OSError("not a JPEG image (no frame header)")


def _flash_path(path):
    root = _omvsim.env("FLASH", "")
    if not root:
        return path
    path = path.lstrip("/")
    for prefix in ("flash/", "sd/", "sdcard/"):
        if path.startswith(prefix):
            path = path[len(prefix):]
    return _os.path.join(root, path)


class Image:
    """An image: Image(path), Image(width, height, format), or from
    csi.snapshot()."""

    def __init__(self, *args, **kwargs):
        if len(args) == 1 and isinstance(args[0], str):
            self._load(args[0])
            return
        if len(args) >= 2 and not isinstance(args[0], str):
            w, h = int(args[0]), int(args[1])
            fmt = args[2] if len(args) > 2 else kwargs.get("pixformat", RGB565)
            buf = args[3] if len(args) > 3 else kwargs.get("buffer")
            if fmt not in _BPP:
                raise _omvsim.not_simulated("image.Image of format %#x" % fmt)
            n = w * h * _BPP[fmt]
            data = bytearray(buf) if buf is not None else bytearray(n)
            if len(data) != n:
                raise ValueError("buffer size does not match the image")
            self._set(w, h, fmt, data)
            return
        raise TypeError("Image(path) or Image(width, height, format)")

    @classmethod
    def _raw(cls, w, h, fmt, data):
        img = cls.__new__(cls)
        img._set(w, h, fmt, bytearray(data))
        return img

    def _set(self, w, h, fmt, data):
        self._w, self._h, self._fmt, self._data = w, h, fmt, data

    def _load(self, path):
        with open(_flash_path(path), "rb") as f:
            data = f.read()
        if data[:2] == b"\xff\xd8":
            w, h = _jpeg_size(data)
            self._set(w, h, JPEG, bytearray(data))
        elif data[:2] in (b"P5", b"P6"):
            parts = data.split(None, 4)
            w, h, pix = int(parts[1]), int(parts[2]), parts[4]
            if data[:2] == b"P5":
                self._set(w, h, GRAYSCALE, bytearray(pix[: w * h]))
            else:
                img = Image(w, h, RGB565)
                for i in range(w * h):
                    r, g, b = pix[3 * i], pix[3 * i + 1], pix[3 * i + 2]
                    v = (r >> 3) << 11 | (g >> 2) << 5 | (b >> 3)
                    img._data[2 * i] = v & 0xFF
                    img._data[2 * i + 1] = v >> 8
                self._set(w, h, RGB565, img._data)
        else:
            raise _omvsim.not_simulated("loading %s (only JPEG, PGM and PPM files)" % path)

    # Facts.
    def width(self):
        return self._w

    def height(self):
        return self._h

    def format(self):
        return self._fmt

    def size(self):
        return len(self._data)

    def bytearray(self):
        return self._data

    def is_compressed(self):
        return self._fmt == JPEG

    def __repr__(self):
        return "{\"w\":%d, \"h\":%d, \"type\":\"%s\", \"size\":%d}" % (
            self._w, self._h,
            {RGB565: "rgb565", GRAYSCALE: "grayscale", JPEG: "jpeg"}.get(self._fmt, "?"),
            len(self._data))

    # Pixels.
    def _need_raw(self, what):
        if self._fmt not in _BPP:
            raise _omvsim.not_simulated("image.%s on a compressed image" % what)

    def get_pixel(self, x, y, rgbtuple=None):
        self._need_raw("get_pixel")
        if not (0 <= x < self._w and 0 <= y < self._h):
            return None
        i = y * self._w + x
        if self._fmt == GRAYSCALE:
            return self._data[i]
        v = self._data[2 * i] | self._data[2 * i + 1] << 8
        r, g, b = (v >> 11) & 31, (v >> 5) & 63, v & 31
        return ((r * 255 + 15) // 31, (g * 255 + 31) // 63, (b * 255 + 15) // 31)

    def _value(self, color):
        if color is None:
            color = (255, 255, 255)
        if self._fmt == GRAYSCALE:
            if isinstance(color, (tuple, list)):
                r, g, b = color
                return (r * 38 + g * 75 + b * 15) >> 7
            return int(color) & 0xFF
        if isinstance(color, (tuple, list)):
            r, g, b = (max(0, min(255, int(c))) for c in color)
            return (r >> 3) << 11 | (g >> 2) << 5 | (b >> 3)
        return int(color) & 0xFFFF

    def _put(self, x, y, v):
        if 0 <= x < self._w and 0 <= y < self._h:
            i = y * self._w + x
            if self._fmt == GRAYSCALE:
                self._data[i] = v
            else:
                self._data[2 * i] = v & 0xFF
                self._data[2 * i + 1] = v >> 8

    def set_pixel(self, x, y, color):
        self._need_raw("set_pixel")
        self._put(int(x), int(y), self._value(color))
        return self

    def _fill(self, x, y, w, h, v):
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self._w, x + w), min(self._h, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        if self._fmt == GRAYSCALE:
            row = bytes([v]) * (x1 - x0)
            for yy in range(y0, y1):
                s = yy * self._w + x0
                self._data[s:s + len(row)] = row
        else:
            row = bytes([v & 0xFF, v >> 8]) * (x1 - x0)
            for yy in range(y0, y1):
                s = 2 * (yy * self._w + x0)
                self._data[s:s + len(row)] = row

    # Drawing.
    def draw_rectangle(self, x, y, w=None, h=None, color=None, thickness=1, fill=False):
        if isinstance(x, (tuple, list)):
            x, y, w, h = x
            if color is None and not isinstance(y, int):
                color = y
        self._need_raw("draw_rectangle")
        x, y, w, h, t = int(x), int(y), int(w), int(h), max(1, int(thickness))
        v = self._value(color)
        if fill:
            self._fill(x, y, w, h, v)
        else:
            self._fill(x, y, w, t, v)
            self._fill(x, y + h - t, w, t, v)
            self._fill(x, y, t, h, v)
            self._fill(x + w - t, y, t, h, v)
        return self

    def draw_line(self, x0, y0, x1=None, y1=None, color=None, thickness=1):
        if isinstance(x0, (tuple, list)):
            color = y0 if color is None else color
            x0, y0, x1, y1 = x0
        self._need_raw("draw_line")
        x0, y0, x1, y1 = int(x0), int(y0), int(x1), int(y1)
        v, t = self._value(color), max(1, int(thickness))
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self._fill(x0 - t // 2, y0 - t // 2, t, t, v)
            if x0 == x1 and y0 == y1:
                break
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy
        return self

    def draw_circle(self, x, y, radius=None, color=None, thickness=1, fill=False):
        if isinstance(x, (tuple, list)):
            color = y if color is None else color
            x, y, radius = x
        self._need_raw("draw_circle")
        x, y, r = int(x), int(y), int(radius)
        v, t = self._value(color), max(1, int(thickness))
        inner = -1 if fill else max(-1, r - t)
        for yy in range(-r, r + 1):
            for xx in range(-r, r + 1):
                d = xx * xx + yy * yy
                if d <= r * r and d > inner * inner if inner >= 0 else d <= r * r:
                    self._put(x + xx, y + yy, v)
        return self

    def draw_cross(self, x, y, color=None, size=5, thickness=1):
        if isinstance(x, (tuple, list)):
            color = y if color is None else color
            x, y = x
        self.draw_line(x - size, y, x + size, y, color, thickness)
        self.draw_line(x, y - size, x, y + size, color, thickness)
        return self

    def draw_string(self, x, y, text, color=None, scale=1, x_spacing=0, y_spacing=0, mono_space=True, **kw):
        self._need_raw("draw_string")
        v = self._value(color)
        s = max(1, int(scale))
        cx, cy = int(x), int(y)
        for ch in str(text):
            if ch == "\n":
                cx, cy = int(x), cy + (6 + y_spacing) * s
                continue
            rows = _FONT.get(ch.upper(), _UNKNOWN)
            for ry, bits in enumerate(rows):
                for rx in range(3):
                    if bits & (4 >> rx):
                        self._fill(cx + rx * s, cy + ry * s, s, s, v)
            cx += (4 + x_spacing) * s
        return self

    def clear(self):
        self._need_raw("clear")
        for i in range(len(self._data)):
            self._data[i] = 0
        return self

    def copy(self):
        return Image._raw(self._w, self._h, self._fmt, self._data)

    # Compression, files, the frame stream.
    def _jpeg_bytes(self, quality):
        if self._fmt == JPEG:
            return bytes(self._data)
        body = _struct.pack("<IIBB", self._w, self._h, _CODE[self._fmt], max(1, min(100, int(quality))))
        reply = _omvsim.bridge().request(_omvsim.JPEG, body + bytes(self._data), timeout=30)
        if not reply:
            raise OSError("JPEG compression failed")
        return reply

    def compress(self, quality=90, **kw):
        self._set(self._w, self._h, JPEG, bytearray(self._jpeg_bytes(quality)))
        return self

    def to_jpeg(self, quality=90, **kw):
        return Image._raw(self._w, self._h, JPEG, self._jpeg_bytes(quality))

    def compressed(self, quality=90, **kw):
        return self.to_jpeg(quality)

    def save(self, path, roi=None, quality=50):
        if roi is not None:
            raise _omvsim.not_simulated("image.save with roi")
        full = _flash_path(path)
        d = _os.path.dirname(full)
        if d:
            _os.makedirs(d, exist_ok=True)
        low = path.lower()
        if low.endswith((".jpg", ".jpeg")):
            data = self._jpeg_bytes(quality)
        elif low.endswith(".pgm") and self._fmt == GRAYSCALE:
            data = b"P5\n%d %d\n255\n" % (self._w, self._h) + bytes(self._data)
        elif low.endswith(".ppm") and self._fmt == RGB565:
            out = bytearray()
            for yy in range(self._h):
                for xx in range(self._w):
                    out += bytes(self.get_pixel(xx, yy))
            data = b"P6\n%d %d\n255\n" % (self._w, self._h) + bytes(out)
        else:
            raise _omvsim.not_simulated("image.save to %s (JPEG, PGM or PPM)" % path)
        with open(full, "wb") as f:
            f.write(data)
        return self

    def _wire(self):
        """The image as the bridge sends it: w, h, format code, bytes."""
        if self._fmt not in _CODE:
            raise _omvsim.not_simulated("streaming an image of format %#x" % self._fmt)
        return _struct.pack("<IIB", self._w, self._h, _CODE[self._fmt]) + bytes(self._data)

    def flush(self):
        """Publishes the image to the host's stream now."""
        _omvsim.bridge().request(_omvsim.FLUSH, self._wire(), timeout=30)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise _omvsim.not_simulated("image.Image." + name)


def __getattr__(name):
    if name.startswith("__"):
        # Python's own probes (__all__, __path__, ...): not there.
        raise AttributeError(name)
    raise _omvsim.not_simulated("image." + name)
