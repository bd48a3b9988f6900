"""Operand rounding of the precision policy (fastconv/precision.py): the oracle of what the tensor-core
kernels multiply. Each function maps float32 to float32 values representable in the compute format;
the conv/dense reference then multiplies in float32, where every product of two such values is exact
(at most 11 x 11 significand bits), so only the summation order can differ from a tensor core.

    tf32: 10 mantissa bits, round to nearest, ties away from zero (PTX cvt.rna.tf32.f32); a carry
          past the largest finite gives inf; NaN -> 0x7fffffff (the canonical NaN).
    bf16: 7 mantissa bits, round to nearest, ties to even (__float2bfloat16); NaN -> a quiet NaN.
    fp16: NumPy's float16 cast: nearest even, subnormals kept, |x| >= 65520 -> inf.
Written independently of the kernels' helpers (plans/tensor_op.py) so that it can check them.
"""
from __future__ import annotations

import numpy as np


def round_tf32(x):
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    sign, mag = u & np.uint32(0x80000000), u & np.uint32(0x7FFFFFFF)
    # half an ulp of tf32 (bit 12) added to the magnitude, then the 13 low bits dropped: ties go up
    # in magnitude, i.e. away from zero
    rounded = sign | ((mag + np.uint32(1 << 12)) & np.uint32(0x7FFFE000))
    out = np.where(mag > np.uint32(0x7F800000), np.uint32(0x7FFFFFFF), rounded)
    return out.view(np.float32).reshape(np.shape(x))


def round_bf16(x):
    u = np.ascontiguousarray(x, np.float32).view(np.uint32)
    low, keep = u & np.uint32(0xFFFF), u & np.uint32(0xFFFF0000)
    odd = (u >> np.uint32(16)) & np.uint32(1)
    up = (low > np.uint32(0x8000)) | ((low == np.uint32(0x8000)) & (odd == 1))
    rounded = keep + np.where(up, np.uint32(0x10000), np.uint32(0))   # a carry moves to the next binade / inf
    nan = (u & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    out = np.where(nan, np.uint32(0x7FC00000) | (u & np.uint32(0x80000000)), rounded)
    return out.view(np.float32).reshape(np.shape(x))


def round_fp16(x):
    with np.errstate(over="ignore"):   # overflow to inf is the point: fp16 training must see it
        return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


ROUNDING = {"tf32": round_tf32, "bf16": round_bf16, "fp16": round_fp16}


def round_operand(x, precision):
    """x rounded to the compute format of `precision`; fp32 / None, and non-float32 arrays, unchanged."""
    if precision in (None, "fp32") or np.asarray(x).dtype != np.float32:
        return x
    return ROUNDING[precision](x)
