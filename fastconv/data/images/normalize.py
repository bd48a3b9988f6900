"""uint8 NHWC images to normalised float32 or bf16: y = (x / 255 - mean[c]) / std[c], on the batch's device.

Batches travel to the GPU as uint8 (a quarter of float32's bytes) and are widened there by one kernel
of ours (csrc/ops/normalize.h, through the native or jit backend). This is its oracle, in NumPy:
y = x * scale[c] + bias[c] with scale = 1 / (255 std) and bias = -mean / std rounded to float32 once,
then a product and a sum each rounded to float32; bf16 is that float32 rounded to nearest even, and
travels as its uint16 bits (NumPy has no bfloat16).
"""
from __future__ import annotations

import numpy as np

from ..._checks import _describe

DTYPES = ("float32", "bf16")


def coefficients(mean, std, channels: int):
    """(scale, bias) float32 per channel, or a ValueError naming what is wrong with mean / std."""
    mean, std = np.asarray(mean, np.float64).ravel(), np.asarray(std, np.float64).ravel()
    if mean.size != channels or std.size != channels or not (np.all(np.isfinite(mean)) and np.all(std > 0)):
        raise ValueError(f"mean and std must have one finite value per channel ({channels}) and std > 0, "
                         f"got mean={mean.tolist()} std={std.tolist()}")
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


def normalize(x, mean, std, dtype: str = "float32"):
    """(N, H, W, C) uint8 -> float32 (or bf16 bits, uint16) of the same shape, on x's device (NumPy or CuPy)."""
    if not hasattr(x, "dtype") or x.dtype != np.uint8 or x.ndim != 4:
        raise TypeError(f"x must be a uint8 NHWC batch (N, H, W, C), got {_describe(x)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
    scale, bias = coefficients(mean, std, x.shape[-1])
    if not isinstance(x, np.ndarray):   # a device array: our kernel, on the backend that runs 'cuda'
        from ...backends import backend_for
        return backend_for("cuda").normalize_uint8(x, scale, bias, dtype)
    y = x.astype(np.float32) * scale + bias
    if dtype == "float32":
        return y
    from ...backends.reference.rounding import round_bf16
    return (round_bf16(y).view(np.uint32) >> np.uint32(16)).astype(np.uint16)
