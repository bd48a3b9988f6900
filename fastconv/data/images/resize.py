"""Antialiased bilinear resize of uint8 (H, W, C) arrays with Pillow's pixels, which are torchvision's.

fastconv._host's kernel (csrc/host/resize_bilinear_aa.h) does it where the extension is built: the same
arithmetic as Pillow's Image.resize(BILINEAR, box=...), ~6x faster on a 224x224 crop, flip included
(benchmarks/NOTES.md). Without the extension, Pillow does it. FASTCONV_RESIZE=pillow turns the kernel off.
"""
from __future__ import annotations

import functools
import os

import numpy as np


def _host():
    if os.environ.get("FASTCONV_RESIZE", "auto").strip().lower() == "pillow":
        return None
    try:
        from ... import _host
    except ImportError:
        return None
    return _host


def resizer_name() -> str:
    """What resizes here, for `fastconv info`."""
    return "fastconv._host (Pillow's arithmetic)" if _host() is not None else "Pillow"


@functools.cache   # read once, not on every resize of the hot path
def _pillow_major() -> int:
    from PIL import Image
    return int(Image.__version__.split(".")[0])


def pillow_vertical_first(width: int, height: int, out_w: int, out_h: int) -> bool:
    """Whether Pillow resizes a width x height image to out_w x out_h with the vertical pass first: from
    Pillow 13 on, when the height shrinks by more than twice as many pixels as the width (before it, the
    horizontal pass always came first). The 8-bit rounding between the passes makes the order visible."""
    if _pillow_major() < 13:
        return False
    return height - out_h > 0 and height - out_h > 2 * (width - out_w)


def resize(pixels: np.ndarray, size: tuple[int, int], box=None, flip: bool = False) -> np.ndarray:
    """pixels (H, W, C) uint8 (C = 1, 3 or 4; rows may be strided) -> a new (h, w, C) array, size = (w, h):
    the box (left, top, right, bottom; default all of it) resized as Pillow's Image.resize(size, BILINEAR,
    box) resizes an L, RGB or RGBX image (channels apart), then mirrored left-right when flip."""
    height, width = pixels.shape[:2]
    box = (0, 0, width, height) if box is None else tuple(box)
    out_w, out_h = size
    host = _host()
    if host is not None:
        out = np.empty((out_h, out_w, pixels.shape[2]), np.uint8)
        host.resize_bilinear_aa(pixels, box, out, pillow_vertical_first(width, height, out_w, out_h), flip)
        return out
    from PIL import Image
    mode = {1: "L", 3: "RGB", 4: "RGBX"}[pixels.shape[2]]
    image = Image.frombuffer(mode, (width, height), np.ascontiguousarray(pixels).tobytes(), "raw", mode, 0, 1)
    image = image.resize((out_w, out_h), Image.Resampling.BILINEAR, box=box)
    image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if flip else image
    return np.asarray(image).reshape(out_h, out_w, pixels.shape[2])
