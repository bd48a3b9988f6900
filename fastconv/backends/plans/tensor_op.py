"""What the tensor-core plans (csrc/*/*_tensor_op_sm80.h, sm_80+ mma.sync; conv2d.py and gemm.py) share: operand
types, tiles, the instantiations we build, split-k, bf16 bits, and the residual input of the fused epilogue."""
from __future__ import annotations

import numpy as np

from .. import kernel_table
from .common import TARGET_BLOCKS, ceil_div


# Operand dtype -> (C++ element type, traits prefix). bfloat16 travels as uint16 raw bits (NumPy and
# CuPy have no bfloat16), so a uint16 array means bf16 operands; float32 operands run as tf32.
TENSOR_OP_TYPES = {np.dtype(np.float32): ("float", "Tf32"), np.dtype(np.float16): ("__half", "F16"),
                   np.dtype(np.uint16): ("__nv_bfloat16", "Bf16")}
# Mirrors csrc/gemm/gemm_tensor_op_sm80.h: traits suffix -> (BM, BN, threads).
TENSOR_OP_TILES = {"Tile64": (64, 64, 128), "Tile128": (128, 128, 256)}
# C % TENSOR_OP_CONV_CHANNELS == 0 selects the tensor-core conv fprop (the vector path; 16-byte
# cp.async of 8 halves, or 2 x 4 floats); other shapes run the CUDA-core kernel.
TENSOR_OP_CONV_CHANNELS = 8
# Operand dtype -> the dtype name of tuning-file entries (fastconv/backends/tuning.py).
TENSOR_OP_TUNING_DTYPES = {np.dtype(np.float32): "tf32", np.dtype(np.float16): "float16",
                           np.dtype(np.uint16): "bfloat16"}


def tensor_op_kernel_names() -> list[str]:
    """The sm_80+ tensor-core instantiations: a view of fastconv/backends/kernel_table.py."""
    return kernel_table.kernel_names(("sm80",))


def tensor_op_splits(rows, cols, kdim, tile="Tile64", bk=32, force=None):
    """Split-k of conv2d_wgrad_tensor_op, from the shape alone (so a shape always sums in one order), as
    common.choose_splits does for the CUDA-core wgrad: enough CTAs to fill the GPU, each split at least
    16 k-slices long. Returns (splits, k_per_split), k_per_split a multiple of BK."""
    bm, bn, _ = TENSOR_OP_TILES[tile]
    if force:
        splits = force
    else:
        splits = max(1, min(ceil_div(TARGET_BLOCKS, ceil_div(rows, bm) * ceil_div(cols, bn)), kdim // (bk * 16), 64))
    k_per_split = max(bk, ceil_div(ceil_div(kdim, splits), bk) * bk)
    return ceil_div(kdim, k_per_split), k_per_split


def tensor_op_types(dtype, out_dtype):
    """(operand dtype, output dtype) of a tensor-core plan, or a TypeError saying what it takes."""
    dt = np.dtype(dtype)
    if dt not in TENSOR_OP_TYPES:
        raise TypeError(f"tensor-core kernels take float32 (tf32), float16 or uint16 (bfloat16 bits), got {dt}")
    out = np.dtype(np.float32 if out_dtype is None else out_dtype)
    if out not in (np.dtype(np.float32), dt):
        raise TypeError(f"tensor-core output must be float32 or the operand type {dt}, got {out}")
    return dt, out


def bf16_bits_to_float32(xp, bits):
    return (bits.astype(xp.uint32) << 16).view(xp.float32)


def float32_to_bf16_bits(xp, f):
    """Round to nearest even (as __float2bfloat16); NaN -> 0x7fff, CUDA's canonical bf16 NaN."""
    u = xp.ascontiguousarray(f, dtype=xp.float32).view(xp.uint32)
    r = ((u + xp.uint32(0x7FFF) + ((u >> 16) & xp.uint32(1))) >> 16).astype(xp.uint16)
    return xp.where(xp.isnan(f), xp.uint16(0x7FFF), r)


def widen(xp, a):
    """Operand array -> float32 values (bf16 bits widened exactly)."""
    return bf16_bits_to_float32(xp, a) if a.dtype == np.uint16 else a.astype(np.float32)


def narrow(xp, y, out):
    """float32 values -> the output dtype (bf16 bits rounded to nearest even)."""
    return float32_to_bf16_bits(xp, y) if out == np.uint16 else y.astype(out, copy=False)


def tensor_op_name(op, prefix, tile, vec, out_ctype=None):
    """The instantiation's name, or None when the kernel table does not list it."""
    out = {"out": out_ctype} if out_ctype else {}
    try:
        return kernel_table.kernel_name(op, traits=f"TensorOp{prefix}{tile}", vec=vec, **out)
    except kernel_table.NotInstantiated:
        return None


def tensor_op_residual(lx, residual, shape, dt, out):
    """The residual input of the epilogue, converted to the output dtype: (array, has_residual)."""
    if residual is None:
        return lx.xp.zeros((1,), out), 0
    r = lx.c(residual)
    if tuple(r.shape) != tuple(shape):
        raise ValueError(f"residual has shape {tuple(r.shape)}, expected the output's {tuple(shape)}")
    if r.dtype not in (np.dtype(np.float32), dt):
        raise TypeError(f"residual must be float32 or the operand dtype {dt}, got {r.dtype}")
    if r.dtype == out:
        return r, 1
    return lx.c(narrow(lx.xp, widen(lx.xp, r), out)), 1
