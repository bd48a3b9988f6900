"""Image files to 8-bit RGB PIL images, decoding JPEGs at a reduced scale when that still covers the need.

Pillow does the decoding (libjpeg-turbo in its wheels). `Image.draft()` asks libjpeg-turbo for its DCT
scaling (1/2, 1/4, 1/8): the IDCT then produces the smaller image directly, which is where most of the
decode time goes for a 224-pixel crop of a 500x375 photo. Every other format is decoded at full size.

Modes have one defined outcome each (torchvision's ImageFolder converts with .convert("RGB") too):
grayscale, palette, CMYK, YCbCr and alpha images are converted to RGB (alpha dropped); 16-bit images
keep their top 8 bits (Pillow's own convert would clip them at 255); anything else (float images) is
a DecodeError, as is a truncated, corrupt or non-image file.
"""
from __future__ import annotations

import io

import numpy as np

_CONVERTIBLE = {"RGB", "RGBA", "RGBX", "L", "LA", "P", "PA", "1", "CMYK", "YCbCr", "La", "RGBa"}
_SIXTEEN_BIT = {"I;16", "I;16B", "I;16L", "I;16N", "I"}


class DecodeError(ValueError):
    """A file that is not a readable image: corrupt, truncated, not an image, or of an unsupported mode."""


def decoder_name() -> str:
    """What decodes images here, for `fastconv info`."""
    try:
        from PIL import Image, features
    except ImportError:
        return "none (pip install fastconv[images] for Pillow)"
    turbo = features.version_feature("libjpeg_turbo") if features.check_feature("libjpeg_turbo") else None
    jpeg = f"libjpeg-turbo {turbo}, DCT scaling 1/2 1/4 1/8" if turbo else f"libjpeg {features.version('jpg')}"
    return f"Pillow {Image.__version__} ({jpeg})"


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
