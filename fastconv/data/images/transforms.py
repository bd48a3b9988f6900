"""Per-sample image transforms on uint8, with torchvision's parameters and semantics, that decode as little as they need.

    RandomResizedCrop(224)              training: torchvision's RandomResizedCrop(224) + RandomHorizontalFlip()
    CenterCrop(224, resize=256)         evaluation: torchvision's Resize(256) + CenterCrop(224)

Each is called as transform(data, rng, name) on the encoded bytes of one image and returns an
(H, W, 3) uint8 array. The crop is drawn from the full image size (read from the header, as torchvision
draws it from the decoded image), then the JPEG is decoded at the smallest DCT scale that still covers
the crop at the output size (reduced_decode=True) and the crop is mapped into that scale. With
reduced_decode=False the pixels are those of torchvision's PIL path exactly: crop, then bilinear
(antialiased) resize, which resize.py does with Pillow's arithmetic in our own kernel.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ..._checks import _describe, check_int
from .decode import EncodedImage
from .resize import resize


def _size_pair(size, name):
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        size = (size, size)
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in size)):
        raise ValueError(f"{name} must be a positive int or a (height, width) pair of them, got {size!r}")
    return int(size[0]), int(size[1])


def _range(value, name, positive=False):
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value)
            or not value[0] <= value[1] or (positive and value[0] <= 0)):
        raise ValueError(f"{name} must be a (min, max) pair with min <= max{' and min > 0' if positive else ''}, "
                         f"got {value!r}")
    return float(value[0]), float(value[1])


class RandomResizedCrop:
    """A random crop of area fraction in `scale` and aspect ratio (w/h) in `ratio`, resized to `size`
    (bilinear), then flipped left-right with probability `flip` (0.5: torchvision's RandomHorizontalFlip)."""

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip: float = 0.5,
                 reduced_decode: bool = True):
        self.size = _size_pair(size, "size")
        self.scale = _range(scale, "scale", positive=True)
        self.ratio = _range(ratio, "ratio", positive=True)
        if isinstance(flip, bool) or not isinstance(flip, numbers.Real) or not 0.0 <= flip <= 1.0:
            raise ValueError(f"flip must be a probability in [0, 1], got {flip!r}")
        self.flip = float(flip)
        self.reduced_decode = bool(reduced_decode)

    @property
    def output_shape(self):
        return (*self.size, 3)

    def get_params(self, width: int, height: int, rng: np.random.Generator):
        """(top, left, height, width) of the crop: torchvision's RandomResizedCrop.get_params, drawing
        from `rng`: ten tries at a random area and log-uniform aspect ratio, then the centre crop of the
        whole image clamped to `ratio`."""
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * rng.uniform(self.scale[0], self.scale[1])
            aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
        in_ratio = width / height
        if in_ratio < min(self.ratio):
            w, h = width, int(round(width / min(self.ratio)))
        elif in_ratio > max(self.ratio):
            w, h = int(round(height * max(self.ratio))), height
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, data: bytes, rng: np.random.Generator, name: str = "<bytes>") -> np.ndarray:
        image = EncodedImage(data, name)
        width, height = image.size
        top, left, h, w = self.get_params(width, height, rng)
        flip = rng.random() < self.flip
        out_h, out_w = self.size
        request = None
        if self.reduced_decode:   # the smallest decode in which the crop still has out_w x out_h pixels
            request = (min(width, math.ceil(width * out_w / w)), min(height, math.ceil(height * out_h / h)))
        # only the whole pixels around the crop, so the filter sees none outside it (torchvision's F.resized_crop)
        crop, box = image.crop_pixels((left, top, left + w, top + h), request)
        return resize(crop, (out_w, out_h), box, flip)

    def __repr__(self):
        return (f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio={self.ratio}, flip={self.flip}, "
                f"reduced_decode={self.reduced_decode})")


class CenterCrop:
    """torchvision's Resize(resize) then CenterCrop(size): the shorter side scaled to `resize` (bilinear,
    antialiased; the longer side rounded down as torchvision does), then the centre size x size."""

    def __init__(self, size, resize: int | None = None, reduced_decode: bool = True):
        self.size = _size_pair(size, "size")
        # torchvision's ImageNet recipe: 256 for 224, i.e. crop 87.5% of the shorter side
        self.resize = int(round(max(self.size) * 256 / 224)) if resize is None else check_int(resize, "resize", 1)
        if self.resize < max(self.size):
            raise ValueError(f"resize must be >= the crop size {max(self.size)} (no padding), got {self.resize}")
        self.reduced_decode = bool(reduced_decode)

    @property
    def output_shape(self):
        return (*self.size, 3)

    def resized_size(self, width: int, height: int):
        """(width, height) after Resize(resize): torchvision's _compute_resized_output_size for an int."""
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = self.resize, int(self.resize * long / short)
        return (new_short, new_long) if width <= height else (new_long, new_short)

    def crop(self, pixels: np.ndarray, full_size=None) -> np.ndarray:
        """Resize then centre-crop an (H, W, 3) uint8 array: torchvision's Resize + CenterCrop. full_size:
        the (width, height) the image has before a reduced-scale decode, which fixes the resized size."""
        height, width = pixels.shape[:2]
        new_w, new_h = self.resized_size(*(full_size or (width, height)))
        if (width, height) != (new_w, new_h):
            pixels = resize(pixels, (new_w, new_h))
        out_h, out_w = self.size
        if out_w > new_w or out_h > new_h:
            raise ValueError(f"the crop {out_h}x{out_w} is larger than the resized image {new_h}x{new_w}")
        top, left = int(round((new_h - out_h) / 2.0)), int(round((new_w - out_w) / 2.0))
        return np.ascontiguousarray(pixels[top:top + out_h, left:left + out_w])

    def __call__(self, data: bytes, rng: np.random.Generator | None = None, name: str = "<bytes>") -> np.ndarray:
        image = EncodedImage(data, name)
        request = self.resized_size(*image.size) if self.reduced_decode else None
        return self.crop(image.pixels(request), image.size)

    def __repr__(self):
        return f"CenterCrop(size={self.size}, resize={self.resize}, reduced_decode={self.reduced_decode})"


def check_transform(transform, name="transform"):
    if not callable(transform) or not hasattr(transform, "output_shape"):
        raise TypeError(f"{name} must be a RandomResizedCrop, a CenterCrop or a callable with an output_shape, "
                        f"got {_describe(transform)}")
    return transform
