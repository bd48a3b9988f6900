"""Launch plan of the input-image step (csrc/ops/normalize.h): uint8 NHWC images widened and normalized per
channel on the device."""
from __future__ import annotations

import numpy as np

from ..kernel_table import kernel_name

# output dtype -> the kernel that widens uint8 images to it (csrc/ops/normalize.h); bf16 comes back as uint16 bits
NORMALIZE_KERNELS = {"float32": kernel_name("normalize_uint8_kernel", t="float"),
                     "bf16": kernel_name("normalize_uint8_kernel", t="__nv_bfloat16")}


def normalize_uint8(lx, x, scale, bias, dtype="float32"):
    """uint8 NHWC -> x * scale[c] + bias[c] (float32 scale, bias per channel) as float32, or bf16
    bits (uint16); the oracle is fastconv/data/images/normalize.py."""
    if dtype not in NORMALIZE_KERNELS:
        raise ValueError(f"dtype must be one of {sorted(NORMALIZE_KERNELS)}, got {dtype!r}")
    x = lx.c(x)
    scale, bias = lx.c(lx.xp.asarray(scale, np.float32)), lx.c(lx.xp.asarray(bias, np.float32))
    out = lx.xp.empty(x.shape, np.float32 if dtype == "float32" else np.uint16)
    if x.size:
        lx.run1d(NORMALIZE_KERNELS[dtype], x.size, (x, scale, bias, out, np.int64(x.size), np.int32(x.shape[-1])))
    return out
