"""Image files to 8-bit RGB PIL images, decoding JPEGs at a reduced scale when that still covers the need.

JPEGs are decoded by simplejpeg (a thin libjpeg-turbo binding, `pip install fastconv[images]`) when it is
installed: the same pixels as Pillow's decode (both are libjpeg-turbo's default IDCT and upsampling),
faster: 1.5 vs 1.9 ms median over 200 photos of 500x375 on a shared 2-core machine (benchmarks/NOTES.md).
A crop (crop_pixels) is decoded by fastconv._host's decode_jpeg_region where it was built with
libjpeg-turbo: the same pixels again, without the rows below the crop and the IDCT outside it. Everything
else, and any JPEG these refuse (CMYK, truncated, corrupt), goes to Pillow, so the outcome for bad files is
Pillow's. FASTCONV_JPEG_DECODER=simplejpeg turns the region decode off, =pillow both. All ask
libjpeg-turbo for its DCT scaling (1/2, 1/4, 1/8) when asked for a smaller size: the IDCT then produces
the smaller image directly. Every other format is decoded at full size.

Modes have one defined outcome each (torchvision's ImageFolder converts with .convert("RGB") too):
grayscale, palette, CMYK, YCbCr and alpha images are converted to RGB (alpha dropped); 16-bit images
keep their top 8 bits (Pillow's own convert would clip them at 255); anything else (float images) is
a DecodeError, as is a truncated, corrupt or non-image file.
"""
from __future__ import annotations

import io
import math
import os

import numpy as np

_CONVERTIBLE = {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr", "La", "RGBa"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


class DecodeError(ValueError):
    """A file that is not a readable image: corrupt, truncated, not an image, or of an unsupported mode."""


def _decoder_setting() -> str:
    setting = os.environ.get("FASTCONV_JPEG_DECODER", "auto").strip().lower()
    if setting not in ("auto", "simplejpeg", "pillow"):
        raise ValueError(f"FASTCONV_JPEG_DECODER must be auto, simplejpeg or pillow, got {setting!r}")
    return setting


def _region_decoder():
    """fastconv._host where it was built with libjpeg-turbo and is not turned off, else None."""
    if _decoder_setting() != "auto":
        return None
    try:
        from ... import _host
    except ImportError:
        return None
    return _host if _host.jpeg else None


def _simplejpeg():
    """The simplejpeg module when it is installed and not turned off, else None."""
    if _decoder_setting() == "pillow":
        return None
    try:
        import simplejpeg
    except ImportError:
        return None
    return simplejpeg


def decoder_name() -> str:
    """What decodes images here, for `fastconv info`."""
    try:
        from PIL import Image, features
    except ImportError:
        return "none (pip install fastconv[images] for Pillow)"
    turbo = features.version_feature("libjpeg_turbo") if features.check_feature("libjpeg_turbo") else None
    jpeg = f"libjpeg-turbo {turbo}, DCT scaling 1/2 1/4 1/8" if turbo else f"libjpeg {features.version('jpg')}"
    pillow = f"Pillow {Image.__version__} ({jpeg})"
    fast, region = _simplejpeg(), _region_decoder()
    if fast is None:
        return pillow
    crops = f"fastconv._host ({region.jpeg}) for the crops of JPEGs, " if region is not None else ""
    return (f"{crops}simplejpeg {getattr(fast, '__version__', '?')} for JPEG (libjpeg-turbo, DCT scaling 1/2 1/4 1/8), "
            f"{pillow} for the rest")


def jpeg_scale(size, request) -> int:
    """The DCT scale divisor, 1, 2, 4 or 8, that Pillow's Image.draft() picks for `request`: the largest
    power of two that divides both sides at least as often (so the decode still covers the request).
    libjpeg-turbo also has N/8 scales, but they blur more than decode-then-resize (measured: mean
    error 2.0 levels at 5/8 against 1.1 at 1/2 on a 500x375 photo), so they are not used."""
    times = min(size[0] // max(1, int(request[0])), size[1] // max(1, int(request[1])))
    return next(a for a in (8, 4, 2, 1) if times >= a)


class EncodedImage:
    """One encoded image: its full (width, height) from the header, and decode(request) to RGB."""

    def __init__(self, data: bytes, name: str = "<bytes>"):
        self.data, self.name, self._pil = data, name, None
        fast = _simplejpeg() if data[:2] == b"\xff\xd8" else None
        self._fast = None
        if fast is not None:
            try:
                height, width, colorspace, _ = fast.decode_jpeg_header(data)
                if colorspace in ("Gray", "YCbCr", "RGB"):   # CMYK and YCCK go to Pillow's conversion
                    self._fast, self.size = fast, (width, height)
            except ValueError:
                pass   # let Pillow report what is wrong with it
        if self._fast is None:
            self._pil = open_image(data, name)
            self.size = self._pil.size

    def _scaled(self, request):
        """(scale, (width, height)): Pillow's DCT scale for `request` (so every decoder gives the same size and
        pixels) and libjpeg's size at 1/scale, rounded up as Pillow's draft and simplejpeg's are."""
        scale = 1 if request is None else jpeg_scale(self.size, request)
        return scale, (-(-self.size[0] // scale), -(-self.size[1] // scale))

    def _fast_pixels(self, request):
        """simplejpeg's (H, W, 3) uint8 decode at `request`'s scale, or None where Pillow must decode. A fresh
        array each time: a buffer kept per thread saved 0.045 of a 1.2 ms decode but held a full-size image per
        decoding thread outside the loader's memory_limit."""
        if self._fast is None:
            return None
        _, (width, height) = self._scaled(request)
        try:
            return self._fast.decode_jpeg(self.data, "RGB", min_width=width, min_height=height)
        except ValueError:   # strict: truncation and corruption are errors; Pillow names them
            self._pil, self._fast = open_image(self.data, self.name), None
            return None

    def decode(self, request: tuple[int, int] | None = None):
        """An 8-bit RGB PIL image; request=(w, h): a JPEG may come at the smallest DCT scale of at
        least that size (load_rgb's rule)."""
        pixels = self._fast_pixels(request)
        if pixels is None:
            return load_rgb(self._pil, self.name, request)
        from PIL import Image
        return Image.frombuffer("RGB", (pixels.shape[1], pixels.shape[0]), pixels, "raw", "RGB", 0, 1)

    def pixels(self, request: tuple[int, int] | None = None) -> np.ndarray:
        """decode(request) as an (H, W, 3) uint8 array (simplejpeg's own, without a copy)."""
        pixels = self._fast_pixels(request)
        return np.asarray(load_rgb(self._pil, self.name, request)) if pixels is None else pixels

    def crop_pixels(self, box, request: tuple[int, int] | None = None):
        """pixels(request), cut to the whole pixels around `box` = (left, top, right, bottom) in full-size
        pixels: -> (that (h, w, 3) array, `box` in its coordinates). The resize then reads only the crop,
        as torchvision's crop-then-resize does; Image.resize(box=) on the whole image would not (its
        filter reads pixels outside the box near the box's edges). Where the region decoder takes the
        JPEG, only the crop is decoded."""
        region = _region_decoder() if self._fast is not None else None
        if region is not None:
            scale, size = self._scaled(request)
            whole, inner = _whole_pixels(box, size, self.size)
            try:
                return region.decode_jpeg_region(self.data, scale, whole), inner
            except ValueError:   # strict as simplejpeg is; the whole decode below names the trouble
                pass
        pixels = self.pixels(request)
        (left, top, right, bottom), inner = _whole_pixels(box, (pixels.shape[1], pixels.shape[0]), self.size)
        return pixels[top:bottom, left:right], inner


def _whole_pixels(box, decoded, full):
    """The whole pixels (left, top, right, bottom) around `box` (full-size pixels) in a decode of size
    `decoded` = (width, height) of an image of size `full`, and `box` in their coordinates."""
    width, height = decoded
    fx, fy = width / full[0], height / full[1]
    box = (box[0] * fx, box[1] * fy, box[2] * fx, box[3] * fy)
    left, top = math.floor(box[0]), math.floor(box[1])
    right, bottom = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
    inner = (box[0] - left, box[1] - top, min(box[2], right) - left, min(box[3], bottom) - top)
    return (left, top, right, bottom), inner


def open_image(data: bytes, name: str = "<bytes>"):
    """A lazily decoded PIL image from encoded bytes; only the header is parsed here."""
    from PIL import Image, UnidentifiedImageError
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise DecodeError(f"{name}: not an image file (no format Pillow reads matches its header)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"{name}: corrupt or truncated image header ({exc})") from None


def load_rgb(image, name: str, request: tuple[int, int] | None = None):
    """Decode `image` (from open_image) to an 8-bit RGB PIL image. request=(w, h): a JPEG may be
    decoded at the smallest DCT scale whose size still is at least (w, h); the caller maps its
    coordinates by the returned size."""
    try:
        if request is not None and image.format == "JPEG":
            image.draft("RGB", (max(1, int(request[0])), max(1, int(request[1]))))
        image.load()
        mode = image.mode
        if mode in _SIXTEEN_BIT:
            wide = np.asarray(image, dtype=np.uint32 if mode == "I" else np.uint16)
            if mode == "I" and wide.size and int(wide.max()) > 65535:
                raise DecodeError(f"{name}: 32-bit integer images are not supported (values above 65535)")
            from PIL import Image
            return Image.fromarray((wide >> 8).astype(np.uint8), "L").convert("RGB")
        if mode not in _CONVERTIBLE:
            raise DecodeError(f"{name}: unsupported image mode {mode!r} (expected 8- or 16-bit grayscale, "
                              "palette, RGB, RGBA or CMYK)")
        return image if mode == "RGB" else image.convert("RGB")
    except DecodeError:
        raise
    except (OSError, SyntaxError, ValueError) as exc:   # Pillow reports truncation and corruption this way
        raise DecodeError(f"{name}: corrupt or truncated image ({exc})") from None
