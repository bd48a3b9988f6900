"""Casts of float32 operands to a tensor-core compute format (csrc/ops/cast.h) under a tf32 / bf16 / fp16
precision policy (fastconv/precision.py): the routing conv2d.py and gemm.py share. Weights stay float32
masters; the casts are one-pass kernels of ours."""
from __future__ import annotations

import numpy as np

from ...explain import note
from .. import kernel_table
from .tensor_op import bf16_bits_to_float32

# precision -> (cast kernel, the operand dtype the tensor-core plans take; bf16 travels as uint16 raw bits)
CASTS = {"tf32": (kernel_table.kernel_name("round_tf32_kernel", t="float"), np.dtype(np.float32)),
         "fp16": (kernel_table.kernel_name("cast_fp32_kernel", t="__half"), np.dtype(np.float16)),
         "bf16": (kernel_table.kernel_name("cast_fp32_kernel", t="__nv_bfloat16"), np.dtype(np.uint16))}


def cast_kernel_names() -> list[str]:
    """The cast kernels (csrc/ops/cast.h); all_kernel_names() registers them. A view of
    fastconv/backends/kernel_table.py."""
    return kernel_table.kernel_names(headers=("ops/cast.h",))


def reduced(lx, precision, *arrays) -> bool:
    """True when `precision` asks for a tensor-core format and every operand is float32."""
    if precision in (None, "fp32"):
        return False
    if precision not in CASTS:
        raise ValueError(f"precision must be one of ['fp32', 'tf32', 'bf16', 'fp16'], got {precision!r}")
    if any(a.dtype != np.float32 for a in arrays):
        note(f"precision {precision} ignored: it applies to float32 operands, these are "
             f"{sorted({str(a.dtype) for a in arrays})}")
        return False
    return True


def to_compute(lx, a, precision):
    """float32 a -> the tensor-core operand: tf32-rounded float32 (cvt.rna, as the tensor-core kernel
    does itself; the CUDA-core fallbacks need the rounded values too, and rounding a tf32 value again
    changes nothing), float16, or bfloat16 bits (uint16). One kernel launch."""
    a = lx.c(a)
    kernel, dtype = CASTS[precision]
    out = lx.xp.empty(a.shape, dtype)
    if a.size:
        lx.run1d(kernel, a.size, (a, out, np.int64(a.size)))
    return out


def to_float32(lx, a):
    """The float32 values of a compute operand or of a 16-bit output."""
    if a.dtype == np.uint16:
        return bf16_bits_to_float32(lx.xp, lx.c(a))
    return a.astype(np.float32, copy=False)
