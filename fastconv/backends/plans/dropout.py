"""Launch plans of dropout (csrc/ops/elementwise.h): the mask drawn from a counter-based hash on the device,
and the multiply that applies it forward and backward."""
from __future__ import annotations

import numpy as np

from ..kernel_table import kernel_name
from .common import ctype


def dropout_mask(lx, shape, rate, seed, offset=0, dtype=np.float32):
    """offset: an int, or a 0-d int64 array on this device that the kernel reads when it runs (the
    Dropout layer's counter: a CUDA graph replay then draws from the counter's current value)."""
    shape = tuple(int(s) for s in shape)
    mask = lx.xp.empty(shape, dtype)
    threshold = min(round(rate * 2**32), 2**32 - 1)
    scale = np.dtype(dtype).type(1.0 / (1.0 - rate))
    if isinstance(offset, (int, np.integer)):
        offset = lx.xp.asarray(np.array(int(offset) & (2**64 - 1), np.uint64).view(np.int64))
    if mask.size:
        lx.run1d(kernel_name("dropout_mask_kernel", t=ctype(dtype)), mask.size,
                 (mask, np.int64(mask.size), np.uint64(int(seed) & (2**64 - 1)), offset,
                  np.uint32(threshold), scale))
    return mask


def _multiply(lx, a, b):
    a, b = lx.c(a), lx.c(b)
    out = lx.xp.empty_like(a)
    if a.size:
        lx.run1d(kernel_name("multiply_kernel", t=ctype(a.dtype)), a.size, (a, b, out, np.int64(a.size)))
    return out


def dropout_fprop(lx, x, mask):
    return _multiply(lx, x, mask)


def dropout_bprop(lx, dy, mask):
    return _multiply(lx, dy, mask)
