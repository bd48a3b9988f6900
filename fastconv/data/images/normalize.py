"""uint8 NHWC images to normalised float32: y = (x / 255 - mean[c]) / std[c], one pass on the batch's device.

Batches travel to the GPU as uint8 (a quarter of float32's bytes) and are widened there. Computed as
y = x * scale[c] + bias[c] with scale = 1 / (255 std), bias = -mean / std rounded to float32 once, a
product and a sum each rounded to float32 (the reference below; the device computes the same two
roundings, so the paths agree bit for bit unless a compiler contracts them into one FMA).
"""
from __future__ import annotations

import numpy as np

from ..._checks import _describe


def _coefficients(mean, std, channels):
    mean, std = np.asarray(mean, np.float64).ravel(), np.asarray(std, np.float64).ravel()
    if mean.size != channels or std.size != channels or not (np.all(np.isfinite(mean)) and np.all(std > 0)):
        raise ValueError(f"mean and std must have one finite value per channel ({channels}) and std > 0, "
                         f"got mean={mean.tolist()} std={std.tolist()}")
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def normalize(x, mean, std):
    """(N, H, W, C) uint8 -> float32 of the same shape, on the device x is on (NumPy or CuPy)."""
    if not hasattr(x, "dtype") or x.dtype != np.uint8 or x.ndim != 4:
        raise TypeError(f"x must be a uint8 NHWC batch (N, H, W, C), got {_describe(x)}")
    scale, bias = _coefficients(mean, std, x.shape[-1])
    if isinstance(x, np.ndarray):
        return x.astype(np.float32) * scale + bias
    import cupy as cp
    return _device_kernel(cp)(x, cp.asarray(scale), cp.asarray(bias), x.shape[-1])


_KERNEL = None


def _device_kernel(cp):
    global _KERNEL
    if _KERNEL is None:
        # __fmul_rn / __fadd_rn: two roundings like the NumPy reference, never contracted into an FMA
        _KERNEL = cp.ElementwiseKernel(
            "uint8 x, raw float32 scale, raw float32 bias, int32 channels", "float32 y",
            "const int c = i % channels; y = __fadd_rn(__fmul_rn((float)x, scale[c]), bias[c]);",
            "fastconv_normalize_uint8")
    return _KERNEL
