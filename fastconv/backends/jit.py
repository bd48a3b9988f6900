"""jit backend: the csrc/ kernels compiled at run time by NVRTC through CuPy's RawModule.

Same API and semantics as the NumPy reference (fastconv/backends/reference), on CuPy arrays.

This module also holds the *launch plans* — which kernel instantiation, grid, block and arguments
each op uses — in `KernelOps`, written once against an array module (`xp`) and a launch function.
The jit backend runs the plans on CuPy + RawModule; fastconv/backends/emulated.py runs the very
same plans on NumPy + the CPU SIMT emulator, which is how CI checks them without a GPU. The native
backend's C++ launchers (csrc/launch/) make the same choices; tests/kernels/test_plans.py checks
that the C++ choice functions (csrc/launch/plan.h) agree with the ones here.

Kernel names are C++ template-ids, e.g. ``fc::conv2d_fprop_implicit_gemm<fc::TileSmall, 4, int, float>``:
the jit backend passes them to RawModule(name_expressions=...) and the emulator registers kernels
under the same strings (csrc/emu/kernel_table.inc), so one name means one instantiation everywhere.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
from pathlib import Path

import numpy as np

from ..explain import active as explain_active, note, traced_launch

from ..shapes import conv_output_hw, needs_64bit_index

CSRC = Path(__file__).resolve().parents[2] / "csrc"
KERNEL_HEADER = "launch/all_kernels.h"

# Mirrors csrc/epilogue/activation.h ActivationKind.
ACTIVATIONS = {None: 0, "identity": 0, "linear": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}

# Mirrors csrc/gemm/gemm_mainloop.h: name -> (BM, BN, BK, threads).
TILES = {"TileSmall": (32, 32, 8, 64), "TileMedium": (64, 64, 8, 256), "TileLarge": (128, 128, 8, 256)}

# Enough blocks to fill an H100/H200 (132 SMs) twice. A fixed number, not the device's SM count, so
# that a shape always gets the same plan (and so the same summation order) on every GPU.
TARGET_BLOCKS = 264
ELEMENTWISE_THREADS = 256
MAX_ELEMENTWISE_BLOCKS = 1 << 16

# Mirrors csrc/common/problem.h (16 and 12 ints).
CONV2D_PROBLEM_FIELDS = ("N", "H", "W", "C", "K", "R", "S", "P", "Q", "pad_h", "pad_w", "stride_h", "stride_w",
                         "dilation_h", "dilation_w", "groups")
POOL2D_PROBLEM_FIELDS = ("N", "H", "W", "C", "P", "Q", "R", "S", "pad_h", "pad_w", "stride_h", "stride_w")
CONV2D_PROBLEM_DTYPE = np.dtype([(f, np.int32) for f in CONV2D_PROBLEM_FIELDS], align=True)
POOL2D_PROBLEM_DTYPE = np.dtype([(f, np.int32) for f in POOL2D_PROBLEM_FIELDS], align=True)
MULTI_TENSOR_WORDS = 6       # csrc/ops/optimizer.h MultiTensorEntry: 4 pointers + size + first_chunk
OPTIMIZER_CHUNK = 65536      # elements per block of the multi-tensor update

CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
ARGMAX_CTYPES = {np.dtype(np.uint8): "uint8_t", np.dtype(np.uint16): "uint16_t", np.dtype(np.uint32): "uint32_t"}


def ctype(dtype) -> str:
    dt = np.dtype(dtype)
    if dt not in CTYPES:
        raise TypeError(f"the CUDA kernels take float32 or float64 arrays, got {dt}")
    return CTYPES[dt]


def argmax_dtype(pool):
    area = pool[0] * pool[1]
    return np.dtype(np.uint8 if area <= 255 else np.uint16 if area <= 65535 else np.uint32)


def ceil_div(a, b):
    return -(-a // b)


def conv2d_problem(x_shape, w_shape, stride, padding, dilation, groups):
    n, h, w, c = (int(v) for v in x_shape)
    r, s, cg, k = (int(v) for v in w_shape)
    if cg * groups != c or k % groups:
        raise ValueError(f"groups={groups} does not fit x channels {c} and filter shape {tuple(w_shape)}")
    p, q = conv_output_hw((h, w), (r, s), stride, padding, dilation)
    values = (n, h, w, c, k, r, s, p, q, padding[0][0], padding[1][0], stride[0], stride[1], dilation[0],
              dilation[1], groups)
    for name, v in zip(CONV2D_PROBLEM_FIELDS, values):
        if not 0 <= v <= 2**31 - 1:
            raise ValueError(f"conv2d {name}={v} does not fit a 32-bit int")
    return np.array([values], CONV2D_PROBLEM_DTYPE)[0], (n, p, q, k)


def pool2d_problem(x_shape, pool, stride, padding):
    n, h, w, c = (int(v) for v in x_shape)
    p, q = conv_output_hw((h, w), pool, stride, padding, what="pool_size")
    values = (n, h, w, c, p, q, pool[0], pool[1], padding[0][0], padding[1][0], stride[0], stride[1])
    return np.array([values], POOL2D_PROBLEM_DTYPE)[0], (n, p, q, c)


def check_fusable_pool(pool, pool_stride):
    """The fused conv + max-pool kernels cover the 2x2 stride-2 'valid' pool only (3x3/2: next)."""
    if tuple(pool) != (2, 2) or tuple(pool_stride) != (2, 2):
        raise NotImplementedError(f"the fused conv2d + max-pool kernels take pool (2, 2) stride (2, 2), got pool "
                                  f"{tuple(pool)} stride {tuple(pool_stride)}")


# ---- tile, vector-width and index choices (mirrored in csrc/launch/plan.h) --------------------------
def choose_tile(m, n, batches=1):
    """The largest tile that still gives TARGET_BLOCKS blocks; small problems get TileSmall."""
    for name in ("TileLarge", "TileMedium"):
        bm, bn, _, _ = TILES[name]
        if n > bn // 2 and m >= bm and ceil_div(m, bm) * ceil_div(n, bn) * batches >= TARGET_BLOCKS:
            return name
    return "TileSmall"


def choose_splits(rows, cols, kdim, tile, batches=1):
    """Split-k for wgrad: enough blocks to fill the GPU, each split at least 16 k-slices long.
    Returns (splits, k_per_split) with k_per_split a multiple of the tile's BK."""
    bm, bn, bk, _ = TILES[tile]
    blocks = ceil_div(rows, bm) * ceil_div(cols, bn) * batches
    splits = max(1, min(ceil_div(TARGET_BLOCKS, blocks), kdim // (bk * 16), 64))
    k_per_split = ceil_div(ceil_div(kdim, splits), bk) * bk
    return ceil_div(kdim, k_per_split) if kdim else 1, max(k_per_split, bk)


def choose_row_splits(rows):
    """Splits of a column reduction over `rows` rows (bias gradient, batch-norm statistics)."""
    return max(1, min(ceil_div(rows, 4096), 128))


def vector_width(dtype, divisible, pointers):
    """4 (16-byte loads) for float32 when every channel count is a multiple of 4 and every pointer
    16-byte aligned; else 1 (the scalar path)."""
    if np.dtype(dtype) != np.float32 or any(d % 4 for d in divisible):
        return 1
    return 4 if all(p % 16 == 0 for p in pointers) else 1


def gemm_configs():
    """Every (tile, vec, index, ctype) a GEMM-shaped plan can choose (KernelOps._gemm_config)."""
    out = [(tile, vec, "int", "float") for tile in TILES for vec in (1, 4)]
    out += [("TileMedium", vec, "int64_t", "float") for vec in (1, 4)]
    return out + [("TileSmall", 1, "int64_t", "double")]


def all_kernel_names() -> list[str]:
    """Every kernel instantiation the plans below can launch: the native build's registry
    (csrc/launch/kernel_list.inc, written by scripts/gen_kernel_list.py) holds exactly these."""
    names = []
    for tile, vec, index, t in gemm_configs():
        for op in ("fprop", "dgrad", "wgrad"):
            names.append(f"fc::conv2d_{op}_implicit_gemm<fc::{tile}, {vec}, {index}, {t}>")
        for ta in ("false", "true"):
            for tb in ("false", "true"):
                names.append(f"fc::gemm_bias_act<fc::{tile}, {vec}, {index}, {t}, {ta}, {tb}>")
    for tile, vec, index, t in gemm_configs():   # csrc/fused/conv2d_bias_relu_maxpool.h
        names.append(f"fc::conv2d_bias_relu_maxpool2x2_fprop<fc::{tile}, {vec}, {index}, {t}>")
    names += [f"fc::relu_maxpool2x2_bprop<{t}>" for t in CTYPES.values()]
    for t in CTYPES.values():
        for op in ("fprop", "dgrad", "wgrad"):
            names.append(f"fc::conv2d_{op}_depthwise<{t}>")
        for a in ARGMAX_CTYPES.values():
            names += [f"fc::max_pool2d_fprop<{t}, {a}>", f"fc::max_pool2d_bprop<{t}, {a}>"]
        for k in ("split_k_reduce", "avg_pool2d_fprop", "avg_pool2d_bprop", "global_avg_pool_fprop",
                  "global_avg_pool_bprop", "column_reduce_partial", "column_finalize", "reduce_to_scalar",
                  "activation_fprop_kernel", "activation_bprop_kernel", "softmax_fprop_kernel",
                  "softmax_bprop_kernel", "dropout_mask_kernel", "multiply_kernel", "batchnorm_apply_kernel",
                  "batchnorm_infer_kernel", "batchnorm_dx_kernel", "mse_bprop_kernel", "sgd_update_multi",
                  "adam_update_multi"):
            names.append(f"fc::{k}<{t}>")
        for lt in ("int64_t", t):
            for k in ("softmax_xent_fprop_kernel", "softmax_xent_bprop_kernel", "cross_entropy_fprop_kernel",
                      "cross_entropy_bprop_kernel"):
                names.append(f"fc::{k}<{t}, {lt}>")
    return names



# ---- tensor-core kernels (csrc/tensor_core/, sm_80+ mma.sync) ---------------------------------------
# Operand dtype -> (C++ element type, traits prefix). bfloat16 travels as uint16 raw bits (NumPy and
# CuPy have no bfloat16), so a uint16 array means bf16 operands; float32 operands run as tf32.
TENSOR_OP_TYPES = {np.dtype(np.float32): ("float", "Tf32"), np.dtype(np.float16): ("__half", "F16"),
                   np.dtype(np.uint16): ("__nv_bfloat16", "Bf16")}
# Mirrors csrc/tensor_core/gemm_tensor_op.h: traits suffix -> (BM, BN, threads).
TENSOR_OP_TILES = {"Tile64": (64, 64, 128), "Tile128": (128, 128, 256)}
# C % TENSOR_OP_CONV_CHANNELS == 0 selects the tensor-core conv fprop (the vector path; 16-byte
# cp.async of 8 halves, or 2 x 4 floats); other shapes run the CUDA-core kernel.
TENSOR_OP_CONV_CHANNELS = 8


def tensor_op_kernel_names() -> list[str]:
    """The tensor-core instantiations (csrc/tensor_core/kernel_list.inc lists the same, in this order)."""
    g = "fc::gemm_tensor_op"
    c = "fc::conv2d_fprop_tensor_op"
    return [f"{g}<fc::TensorOpTf32Tile64, 4, float>", f"{g}<fc::TensorOpTf32Tile64, 1, float>",
            f"{g}<fc::TensorOpF16Tile64, 8, float>", f"{g}<fc::TensorOpF16Tile64, 8, __half>",
            f"{g}<fc::TensorOpF16Tile64, 2, float>",
            f"{g}<fc::TensorOpBf16Tile64, 8, float>", f"{g}<fc::TensorOpBf16Tile64, 8, __nv_bfloat16>",
            f"{g}<fc::TensorOpBf16Tile64, 2, float>",
            f"{g}<fc::TensorOpF16Tile128, 8, float>", f"{g}<fc::TensorOpBf16Tile128, 8, __nv_bfloat16>",
            f"{c}<fc::TensorOpTf32Tile64, 4, float>",
            f"{c}<fc::TensorOpF16Tile64, 8, float>", f"{c}<fc::TensorOpF16Tile64, 8, __half>",
            f"{c}<fc::TensorOpBf16Tile64, 8, float>", f"{c}<fc::TensorOpBf16Tile64, 8, __nv_bfloat16>"]


def _tensor_op_types(dtype, out_dtype):
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


class KernelOps:
    """The reference API implemented by launching the csrc/ kernels.

    xp: the array module (cupy or numpy); launch(kernel, grid, block, args, shared_bytes=0);
    ptr(a): the address of an array's data (for alignment checks). Test knobs: force_tile,
    force_vec (1 disables 16-byte loads), force_index64, force_splits.
    """

    def __init__(self, xp, launch, ptr):
        self.xp, self._launch, self._ptr = xp, traced_launch(launch), ptr
        self.force_tile = self.force_vec = self.force_index64 = self.force_splits = None

    # ---- helpers -------------------------------------------------------------------------------
    def _c(self, a):
        return self.xp.ascontiguousarray(a)

    def _scalar(self, dtype, v):
        return np.dtype(dtype).type(v)

    def _elementwise_grid(self, n):
        return (max(1, min(ceil_div(n, ELEMENTWISE_THREADS), MAX_ELEMENTWISE_BLOCKS)),)

    def _run1d(self, kernel, n, args):
        self._launch(kernel, self._elementwise_grid(n), (ELEMENTWISE_THREADS,), args)

    def _gemm_config(self, dtype, m, n, divisible, pointers, shapes, batches=1):
        """(tile, vec, index-ctype) of a GEMM-shaped kernel; see gemm_configs() for the full set."""
        if np.dtype(dtype) == np.float64:   # one double instantiation per kernel: correctness, not speed
            note("float64 runs the one TileSmall, scalar-load, 64-bit-index instantiation (correctness, not speed)")
            return "TileSmall", 1, "int64_t"
        vec = vector_width(dtype, divisible, pointers)
        if self.force_vec is not None:
            vec = min(vec, self.force_vec)
        if explain_active():
            if vec == 4:
                note("16-byte loads: every channel count is a multiple of 4 and every pointer 16-byte aligned")
            elif any(d % 4 for d in divisible):
                note(f"scalar loads: channel counts {tuple(int(d) for d in divisible)} are not all multiples of 4")
            else:
                note("scalar loads: a pointer is not 16-byte aligned, or the test knob force_vec asked for them")
        if self.force_index64 or needs_64bit_index(*shapes):
            note("64-bit index arithmetic: a tensor has more than 2^31 - 1 elements (or force_index64)")
            return "TileMedium", vec, "int64_t"   # 64-bit offsets: one tile (huge problems fill any tile)
        tile = self.force_tile or choose_tile(m, n, batches)
        note(f"{tile} for a {m} x {n} GEMM ({batches} batch(es)); 32-bit index arithmetic is safe")
        return tile, vec, "int"

    # ---- conv2d ----------------------------------------------------------------------------------
    def conv2d_fprop(self, x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, bias=None,
                     activation=None, alpha=0.0):
        x, w = self._c(x), self._c(w)
        pb, y_shape = conv2d_problem(x.shape, w.shape, stride, padding, dilation, groups)
        y = self.xp.empty(y_shape, x.dtype)
        t = ctype(x.dtype)
        act = ACTIVATIONS[activation]
        b = self._c(bias) if bias is not None else w    # w: a placeholder the kernel never reads
        n, p, q, k = y_shape
        if y.size == 0:
            return y
        cg, kg = w.shape[2], k // groups
        if cg == 1:
            self._run1d(f"fc::conv2d_fprop_depthwise<{t}>", y.size,
                        (pb, x, w, y, b, np.int32(bias is not None), np.int32(act), self._scalar(x.dtype, alpha)))
            return y
        m = n * p * q
        tile, vec, index = self._gemm_config(x.dtype, m, kg, (x.shape[3], cg, k, kg), (self._ptr(x), self._ptr(w)),
                                             (x.shape, w.shape, y_shape), groups)
        bm, bn, _, threads = TILES[tile]
        self._launch(f"fc::conv2d_fprop_implicit_gemm<fc::{tile}, {vec}, {index}, {t}>",
                     (ceil_div(m, bm), ceil_div(kg, bn), groups), (threads,),
                     (pb, x, w, y, b, np.int32(bias is not None), np.int32(act), self._scalar(x.dtype, alpha)))
        return y

    def conv2d_dgrad(self, dy, w, x_shape, stride, padding, dilation, groups):
        dy, w = self._c(dy), self._c(w)
        pb, y_shape = conv2d_problem(x_shape, w.shape, stride, padding, dilation, groups)
        if tuple(dy.shape) != tuple(y_shape):
            raise ValueError(f"dy has shape {tuple(dy.shape)}, expected {y_shape}")
        dx = self.xp.empty(tuple(x_shape), dy.dtype)
        if dx.size == 0:
            return dx
        t = ctype(dy.dtype)
        n, h, wd, c = x_shape
        cg, k = w.shape[2], w.shape[3]
        kg = k // groups
        if cg == 1:
            self._run1d(f"fc::conv2d_dgrad_depthwise<{t}>", dx.size, (pb, dy, w, dx))
            return dx
        m = n * h * wd
        tile, vec, index = self._gemm_config(dy.dtype, m, cg, (k, kg), (self._ptr(dy), self._ptr(w)),
                                             (x_shape, w.shape, y_shape), groups)
        bm, bn, _, threads = TILES[tile]
        self._launch(f"fc::conv2d_dgrad_implicit_gemm<fc::{tile}, {vec}, {index}, {t}>",
                     (ceil_div(m, bm), ceil_div(cg, bn), groups), (threads,), (pb, dy, w, dx))
        return dx

    def conv2d_wgrad(self, x, dy, w_shape, stride, padding, dilation, groups):
        x, dy = self._c(x), self._c(dy)
        pb, y_shape = conv2d_problem(x.shape, w_shape, stride, padding, dilation, groups)
        if tuple(dy.shape) != tuple(y_shape):
            raise ValueError(f"dy has shape {tuple(dy.shape)}, expected {y_shape}")
        r, s, cg, k = (int(v) for v in w_shape)
        dw = self.xp.empty((r, s, cg, k), x.dtype)
        t = ctype(x.dtype)
        n, p, q, _ = y_shape
        kdim = n * p * q
        if kdim == 0:
            dw[...] = 0
            return dw
        if cg == 1:
            splits = self.force_splits or max(1, min(ceil_div(kdim, 2048), 64))
            rows_per_split = ceil_div(kdim, splits)
            splits = ceil_div(kdim, rows_per_split)
            out = dw if splits == 1 else self.xp.empty((splits, r * s, k), x.dtype)
            self._launch(f"fc::conv2d_wgrad_depthwise<{t}>", (ceil_div(k, 32), r * s, splits), (32, 8),
                         (pb, x, dy, out, np.int64(rows_per_split)))
        else:
            kg = k // groups
            rows = r * s * cg
            tile, vec, index = self._gemm_config(x.dtype, rows, kg, (x.shape[3], cg, k, kg),
                                                 (self._ptr(x), self._ptr(dy)), (x.shape, w_shape, y_shape), groups)
            splits, k_per_split = choose_splits(rows, kg, kdim, tile, groups)
            if self.force_splits:
                bk = TILES[tile][2]
                k_per_split = ceil_div(ceil_div(kdim, self.force_splits), bk) * bk
                splits = ceil_div(kdim, k_per_split)
            out = dw if splits == 1 else self.xp.empty((splits, rows, k), x.dtype)
            bm, bn, _, threads = TILES[tile]
            self._launch(f"fc::conv2d_wgrad_implicit_gemm<fc::{tile}, {vec}, {index}, {t}>",
                         (ceil_div(rows, bm), ceil_div(kg, bn), groups * splits), (threads,),
                         (pb, x, dy, out, np.int32(splits),
                          np.int64(k_per_split) if index == "int64_t" else np.int32(k_per_split)))
        if splits > 1:
            self._run1d(f"fc::split_k_reduce<{t}>", dw.size, (out, dw, np.int32(splits), np.int64(dw.size)))
        return dw

    # ---- fused conv2d + bias + relu + 2x2/2 max-pool (csrc/fused/conv2d_bias_relu_maxpool.h) -----
    def conv2d_bias_relu_maxpool_fprop(self, x, w, b, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1),
                                       groups=1, pool=(2, 2), pool_stride=(2, 2)):
        """-> (y, argmax) of max_pool2d(relu(conv2d(x, w) + b), 2x2, stride 2, 'valid'); b may be None.
        The full-resolution conv output is never written."""
        check_fusable_pool(pool, pool_stride)
        x, w = self._c(x), self._c(w)
        pb, (n, p, q, k) = conv2d_problem(x.shape, w.shape, stride, padding, dilation, groups)
        conv_output_hw((p, q), pool, pool_stride, ((0, 0), (0, 0)), what="pool_size")   # the pool's own checks
        y_shape = (n, p // 2, q // 2, k)
        y = self.xp.empty(y_shape, x.dtype)
        argmax = self.xp.empty(y_shape, np.uint8)
        if y.size == 0:
            return y, argmax
        t = ctype(x.dtype)
        bias = self._c(b) if b is not None else w    # w: a placeholder the kernel never reads
        cg, kg = w.shape[2], k // groups
        m = n * (p // 2) * (q // 2) * 4              # GEMM rows: the 4 taps of every pool window
        tile, vec, index = self._gemm_config(x.dtype, m, kg, (x.shape[3], cg, k, kg), (self._ptr(x), self._ptr(w)),
                                             (x.shape, w.shape, (n, p, q, k)), groups)
        bm, bn, _, threads = TILES[tile]
        self._launch(f"fc::conv2d_bias_relu_maxpool2x2_fprop<fc::{tile}, {vec}, {index}, {t}>",
                     (ceil_div(m, bm), ceil_div(kg, bn), groups), (threads,),
                     (pb, x, w, bias, np.int32(b is not None), y, argmax))
        return y, argmax

    def relu_maxpool_bprop(self, dy, argmax, y, conv_shape, pool=(2, 2), pool_stride=(2, 2)):
        """-> (dz, db): the conv output gradient from the pooled gradient (max-pool backward and the
        ReLU mask, recovered from the pooled y, in one pass) and the bias gradient (its column sums,
        reduced in the same pass in a fixed order)."""
        check_fusable_pool(pool, pool_stride)
        dy, argmax, y = self._c(dy), self._c(argmax), self._c(y)
        n, p, q, k = (int(v) for v in conv_shape)
        if tuple(dy.shape) != (n, p // 2, q // 2, k) or argmax.dtype != np.uint8:
            raise ValueError(f"dy {tuple(dy.shape)} / argmax {argmax.dtype} do not fit conv output {tuple(conv_shape)}")
        t = ctype(dy.dtype)
        dz = self.xp.empty((n, p, q, k), dy.dtype)
        db = self.xp.empty((k,), dy.dtype)
        windows = n * (p // 2) * (q // 2)
        if windows == 0 or k == 0:
            dz[...] = 0
            db[...] = 0
            return dz, db
        splits = self.force_splits or choose_row_splits(windows)
        per_split = ceil_div(windows, splits)
        splits = ceil_div(windows, per_split)
        partial = db if splits == 1 else self.xp.empty((splits, k), dy.dtype)
        self._launch(f"fc::relu_maxpool2x2_bprop<{t}>", (ceil_div(k, 32), splits), (32, 8),
                     (np.int32(n), np.int32(p), np.int32(q), np.int32(k), dy, argmax, y, dz, partial,
                      np.int64(per_split)))
        if splits > 1:
            self._launch(f"fc::column_finalize<{t}>", (ceil_div(k, 256),), (256,),
                         (partial, np.int32(splits), np.int32(k), np.int32(0), np.int64(windows),
                          self._scalar(dy.dtype, 0.0), db))
        return dz, db

    # ---- pooling -------------------------------------------------------------------------------
    def max_pool2d_fprop(self, x, pool, stride, padding):
        x = self._c(x)
        pb, y_shape = pool2d_problem(x.shape, pool, stride, padding)
        y = self.xp.empty(y_shape, x.dtype)
        adt = argmax_dtype(pool)
        argmax = self.xp.empty(y_shape, adt)
        if y.size:
            self._run1d(f"fc::max_pool2d_fprop<{ctype(x.dtype)}, {ARGMAX_CTYPES[adt]}>", y.size, (pb, x, y, argmax))
        return y, argmax

    def max_pool2d_bprop(self, dy, argmax, x_shape, pool, stride, padding):
        dy, argmax = self._c(dy), self._c(argmax)
        pb, y_shape = pool2d_problem(x_shape, pool, stride, padding)
        adt = argmax_dtype(pool)
        if argmax.dtype != adt:
            raise TypeError(f"argmax must be {adt} for a {pool} window, got {argmax.dtype}")
        dx = self.xp.empty(tuple(x_shape), dy.dtype)
        if dx.size:
            self._run1d(f"fc::max_pool2d_bprop<{ctype(dy.dtype)}, {ARGMAX_CTYPES[adt]}>", dx.size,
                        (pb, dy, argmax, dx))
        return dx

    def avg_pool2d_fprop(self, x, pool, stride, padding, count_include_pad=False):
        x = self._c(x)
        pb, y_shape = pool2d_problem(x.shape, pool, stride, padding)
        y = self.xp.empty(y_shape, x.dtype)
        if y.size:
            self._run1d(f"fc::avg_pool2d_fprop<{ctype(x.dtype)}>", y.size, (pb, x, y, np.int32(bool(count_include_pad))))
        return y

    def avg_pool2d_bprop(self, dy, x_shape, pool, stride, padding, count_include_pad=False):
        dy = self._c(dy)
        pb, _ = pool2d_problem(x_shape, pool, stride, padding)
        dx = self.xp.empty(tuple(x_shape), dy.dtype)
        if dx.size:
            self._run1d(f"fc::avg_pool2d_bprop<{ctype(dy.dtype)}>", dx.size,
                        (pb, dy, dx, np.int32(bool(count_include_pad))))
        return dx

    def global_avg_pool_fprop(self, x):
        x = self._c(x)
        n, h, w, c = x.shape
        y = self.xp.empty((n, c), x.dtype)
        if y.size:
            self._run1d(f"fc::global_avg_pool_fprop<{ctype(x.dtype)}>", y.size,
                        (x, y, np.int64(n), np.int64(h * w), np.int32(c)))
        return y

    def global_avg_pool_bprop(self, dy, x_shape):
        dy = self._c(dy)
        n, h, w, c = x_shape
        dx = self.xp.empty(tuple(x_shape), dy.dtype)
        if dx.size:
            self._run1d(f"fc::global_avg_pool_bprop<{ctype(dy.dtype)}>", dx.size,
                        (dy, dx, np.int64(n), np.int64(h * w), np.int32(c)))
        return dx

    # ---- GEMM / dense --------------------------------------------------------------------------
    def gemm(self, a, b, trans_a=False, trans_b=False, bias=None, activation=None, alpha=0.0):
        """op(a) @ op(b) (+ bias, activation) for 2-D row-major a, b."""
        a, b = self._c(a), self._c(b)
        m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
        kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
        if k != kb:
            raise ValueError(f"gemm inner dimensions differ: op(a) is {m}x{k}, op(b) is {kb}x{n}")
        c = self.xp.empty((m, n), a.dtype)
        if c.size == 0:
            return c
        if k == 0:
            c[...] = 0
            if bias is not None or activation not in (None, "identity", "linear"):
                raise ValueError("gemm with K == 0 and an epilogue is not supported")
            return c
        t = ctype(a.dtype)
        lda, ldb = a.shape[1], b.shape[1]
        tile, vec, index = self._gemm_config(a.dtype, m, n, (m, n, k, lda, ldb), (self._ptr(a), self._ptr(b)),
                                             (a.shape, b.shape, c.shape))
        it = np.int64 if index == "int64_t" else np.int32
        bm, bn, _, threads = TILES[tile]
        ta, tb = ("true" if trans_a else "false"), ("true" if trans_b else "false")
        self._launch(f"fc::gemm_bias_act<fc::{tile}, {vec}, {index}, {t}, {ta}, {tb}>",
                     (ceil_div(m, bm), ceil_div(n, bn)), (threads,),
                     (it(m), it(n), it(k), a, it(lda), b, it(ldb), c, it(n),
                      b if bias is None else self._c(bias), np.int32(bias is not None), np.int32(ACTIVATIONS[activation]),
                      self._scalar(a.dtype, alpha)))
        return c

    def bias_grad(self, dy):
        """Column sums of dy seen as (rows, dy.shape[-1]): the bias gradient of dense and conv2d."""
        dy = self._c(dy)
        cols = dy.shape[-1]
        rows = dy.size // cols if cols else 0
        return self._column_reduce(0, dy, dy, dy, dy, rows, cols, 0)

    def dense_fprop(self, x, w, b=None):
        return self.gemm(x, w, bias=b)

    def dense_bprop(self, dy, x, w, need_dx=True):
        dx = self.gemm(dy, w, trans_b=True) if need_dx else None
        return dx, self.gemm(x, dy, trans_a=True), self.bias_grad(dy)

    # ---- reductions ----------------------------------------------------------------------------
    def _column_reduce(self, mode, a, b, mean, invstd, rows, cols, final, eps=0.0):
        t = ctype(a.dtype)
        out = self.xp.empty((cols,), a.dtype)
        if cols == 0:
            return out
        splits = self.force_splits or choose_row_splits(rows)
        rows_per_split = max(1, ceil_div(rows, splits))
        splits = max(1, ceil_div(rows, rows_per_split))
        partial = self.xp.empty((splits, cols), a.dtype)
        self._launch(f"fc::column_reduce_partial<{t}>", (ceil_div(cols, 32), splits), (32, 8),
                     (np.int32(mode), a, b, mean, invstd, np.int64(rows), np.int32(cols), np.int64(rows_per_split),
                      partial))
        self._launch(f"fc::column_finalize<{t}>", (ceil_div(cols, 256),), (256,),
                     (partial, np.int32(splits), np.int32(cols), np.int32(final), np.int64(rows),
                      self._scalar(a.dtype, eps), out))
        return out

    def _to_scalar(self, mode, a, b, n, divisor):
        out = self.xp.empty((), a.dtype)
        self._launch(f"fc::reduce_to_scalar<{ctype(a.dtype)}>", (1,), (256,),
                     (np.int32(mode), a, b, np.int64(n), self._scalar(a.dtype, divisor), out))
        return out

    # ---- activations ---------------------------------------------------------------------------
    def _act_fprop(self, name, x, alpha=0.0):
        x = self._c(x)
        y = self.xp.empty_like(x)
        if x.size:
            self._run1d(f"fc::activation_fprop_kernel<{ctype(x.dtype)}>", x.size,
                        (np.int32(ACTIVATIONS[name]), x, y, np.int64(x.size), self._scalar(x.dtype, alpha)))
        return y

    def _act_bprop(self, name, dy, saved, alpha=0.0):
        dy, saved = self._c(dy), self._c(saved)
        dx = self.xp.empty_like(dy)
        if dy.size:
            self._run1d(f"fc::activation_bprop_kernel<{ctype(dy.dtype)}>", dy.size,
                        (np.int32(ACTIVATIONS[name]), dy, saved, dx, np.int64(dy.size), self._scalar(dy.dtype, alpha)))
        return dx

    def relu_fprop(self, x):
        return self._act_fprop("relu", x)

    def relu_bprop(self, dy, x):
        return self._act_bprop("relu", dy, x)

    def leaky_relu_fprop(self, x, alpha):
        return self._act_fprop("leaky_relu", x, alpha)

    def leaky_relu_bprop(self, dy, x, alpha):
        return self._act_bprop("leaky_relu", dy, x, alpha)

    def sigmoid_fprop(self, x):
        return self._act_fprop("sigmoid", x)

    def sigmoid_bprop(self, dy, y):
        return self._act_bprop("sigmoid", dy, y)

    def tanh_fprop(self, x):
        return self._act_fprop("tanh", x)

    def tanh_bprop(self, dy, y):
        return self._act_bprop("tanh", dy, y)

    @staticmethod
    def _axis_split(shape, axis):
        axis = axis % len(shape) if shape else 0
        outer = math.prod(shape[:axis])
        return outer, shape[axis], math.prod(shape[axis + 1:])

    def softmax_fprop(self, x, axis=-1):
        x = self._c(x)
        y = self.xp.empty_like(x)
        outer, d, inner = self._axis_split(x.shape, axis)
        if x.size:
            self._run1d(f"fc::softmax_fprop_kernel<{ctype(x.dtype)}>", outer * inner,
                        (x, y, np.int64(outer), np.int64(d), np.int64(inner)))
        return y

    def softmax_bprop(self, dy, y, axis=-1):
        dy, y = self._c(dy), self._c(y)
        dx = self.xp.empty_like(dy)
        outer, d, inner = self._axis_split(dy.shape, axis)
        if dy.size:
            self._run1d(f"fc::softmax_bprop_kernel<{ctype(dy.dtype)}>", outer * inner,
                        (dy, y, dx, np.int64(outer), np.int64(d), np.int64(inner)))
        return dx

    # ---- dropout -------------------------------------------------------------------------------
    def dropout_mask(self, shape, rate, seed, offset=0, dtype=np.float32):
        shape = tuple(int(s) for s in shape)
        mask = self.xp.empty(shape, dtype)
        threshold = min(round(rate * 2**32), 2**32 - 1)
        scale = np.dtype(dtype).type(1.0 / (1.0 - rate))
        if mask.size:
            self._run1d(f"fc::dropout_mask_kernel<{ctype(dtype)}>", mask.size,
                        (mask, np.int64(mask.size), np.uint64(int(seed) & (2**64 - 1)),
                         np.uint64(int(offset) & (2**64 - 1)), np.uint32(threshold), scale))
        return mask

    def _multiply(self, a, b):
        a, b = self._c(a), self._c(b)
        out = self.xp.empty_like(a)
        if a.size:
            self._run1d(f"fc::multiply_kernel<{ctype(a.dtype)}>", a.size, (a, b, out, np.int64(a.size)))
        return out

    def dropout_fprop(self, x, mask):
        return self._multiply(x, mask)

    def dropout_bprop(self, dy, mask):
        return self._multiply(dy, mask)

    # ---- batch normalization -------------------------------------------------------------------
    def batchnorm_fprop_train(self, x, gamma, beta, eps):
        x, gamma, beta = self._c(x), self._c(gamma), self._c(beta)
        c = x.shape[-1]
        rows = x.size // c
        mean = self._column_reduce(0, x, x, x, x, rows, c, 1)
        invstd = self._column_reduce(1, x, x, mean, mean, rows, c, 2, eps)
        y = self.xp.empty_like(x)
        self._run1d(f"fc::batchnorm_apply_kernel<{ctype(x.dtype)}>", x.size,
                    (x, mean, invstd, gamma, beta, y, np.int64(x.size), np.int32(c)))
        return y, mean, invstd

    def batchnorm_fprop_infer(self, x, gamma, beta, mean, var, eps):
        x = self._c(x)
        y = self.xp.empty_like(x)
        self._run1d(f"fc::batchnorm_infer_kernel<{ctype(x.dtype)}>", x.size,
                    (x, self._c(gamma), self._c(beta), self._c(mean), self._c(var), self._scalar(x.dtype, eps), y,
                     np.int64(x.size), np.int32(x.shape[-1])))
        return y

    def batchnorm_bprop(self, dy, x, gamma, mean, invstd):
        dy, x, gamma, mean, invstd = (self._c(a) for a in (dy, x, gamma, mean, invstd))
        c = x.shape[-1]
        rows = x.size // c
        dbeta = self._column_reduce(0, dy, dy, dy, dy, rows, c, 0)
        dgamma = self._column_reduce(2, dy, x, mean, invstd, rows, c, 0)
        dx = self.xp.empty_like(dy)
        self._run1d(f"fc::batchnorm_dx_kernel<{ctype(x.dtype)}>", x.size,
                    (dy, x, gamma, mean, invstd, dgamma, dbeta, dx, np.int64(x.size), np.int32(c)))
        return dx, dgamma, dbeta

    # ---- losses --------------------------------------------------------------------------------
    def _labels(self, labels, like):
        if labels.ndim == 1:
            return self._c(labels.astype(np.int64, copy=False)), "int64_t"
        return self._c(labels.astype(like.dtype, copy=False)), ctype(like.dtype)

    def _dloss(self, dloss, dtype):
        return self.xp.asarray(dloss, dtype=dtype).reshape(1)

    def softmax_cross_entropy_fprop(self, logits, labels):
        logits = self._c(logits)
        n, c = logits.shape
        lab, lt = self._labels(labels, logits)
        probs = self.xp.empty_like(logits)
        nll = self.xp.empty((n,), logits.dtype)
        t = ctype(logits.dtype)
        self._run1d(f"fc::softmax_xent_fprop_kernel<{t}, {lt}>", n, (logits, lab, np.int64(n), np.int32(c), probs, nll))
        return self._to_scalar(0, nll, nll, n, float(n)), probs

    def softmax_cross_entropy_bprop(self, probs, labels, dloss=1.0):
        probs = self._c(probs)
        n, c = probs.shape
        lab, lt = self._labels(labels, probs)
        out = self.xp.empty_like(probs)
        self._run1d(f"fc::softmax_xent_bprop_kernel<{ctype(probs.dtype)}, {lt}>", probs.size,
                    (probs, lab, self._dloss(dloss, probs.dtype), np.int64(n), np.int32(c), out))
        return out

    def cross_entropy_fprop(self, probs, labels, eps=1e-7):
        probs = self._c(probs)
        n, c = probs.shape
        lab, lt = self._labels(labels, probs)
        nll = self.xp.empty((n,), probs.dtype)
        dt = probs.dtype.type
        self._run1d(f"fc::cross_entropy_fprop_kernel<{ctype(probs.dtype)}, {lt}>", n,
                    (probs, lab, np.int64(n), np.int32(c), dt(eps), dt(1 - eps), nll))
        return self._to_scalar(0, nll, nll, n, float(n))

    def cross_entropy_bprop(self, probs, labels, dloss=1.0, eps=1e-7):
        probs = self._c(probs)
        n, c = probs.shape
        lab, lt = self._labels(labels, probs)
        out = self.xp.empty_like(probs)
        dt = probs.dtype.type
        self._run1d(f"fc::cross_entropy_bprop_kernel<{ctype(probs.dtype)}, {lt}>", probs.size,
                    (probs, lab, self._dloss(dloss, probs.dtype), np.int64(n), np.int32(c), dt(eps), dt(1 - eps), out))
        return out

    def mse_fprop(self, pred, target):
        pred, target = self._c(pred), self._c(target.astype(pred.dtype, copy=False))
        return self._to_scalar(1, pred, target, pred.size, float(pred.size))

    def mse_bprop(self, pred, target, dloss=1.0):
        pred, target = self._c(pred), self._c(target.astype(pred.dtype, copy=False))
        out = self.xp.empty_like(pred)
        self._run1d(f"fc::mse_bprop_kernel<{ctype(pred.dtype)}>", pred.size,
                    (pred, target, self._dloss(dloss, pred.dtype), np.int64(pred.size), out))
        return out

    # ---- optimizers (one multi-tensor launch; used by fastconv.optimizers on the GPU) ------------
    def _table(self, tensors):
        """int64 words of the MultiTensorEntry table (csrc/ops/optimizer.h) and the chunk count."""
        words, chunks = [], 0
        for group in tensors:
            size = int(group[0].size)
            ptrs = [self._ptr(a) if a is not None else 0 for a in group] + [0] * (4 - len(group))
            words += ptrs + [size, chunks]
            chunks += ceil_div(size, OPTIMIZER_CHUNK)
        return np.array(words, np.int64), chunks

    def _multi_launch(self, kernel, tensors, scalars):
        tensors = [g for g in tensors if g[0].size]
        if not tensors:
            return
        for g in tensors:
            for a in g:
                if a is not None and not a.flags.c_contiguous:
                    raise ValueError("multi-tensor updates need contiguous parameters, gradients and slots")
        words, chunks = self._table(tensors)
        table = self.xp.asarray(words)
        self._launch(kernel, (chunks,), (256,), (table, np.int32(len(tensors)), np.int64(OPTIMIZER_CHUNK)) + scalars,
                     keep_alive=tensors)

    def sgd_update(self, params, grads, velocities, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        """In place, for every (param, grad, velocity); velocity may be None when momentum == 0."""
        dt = params[0].dtype.type if params else np.float32
        groups = [(p, g, v) for p, g, v in zip(params, grads, velocities)]
        self._multi_launch(f"fc::sgd_update_multi<{ctype(dt)}>", groups,
                           (dt(lr), dt(momentum), np.int32(bool(nesterov)), dt(weight_decay)))

    def adam_update(self, params, grads, ms, vs, lr, beta_1, beta_2, epsilon, weight_decay, t):
        """In place; t is the 1-based step count (already incremented, as in fastconv.optimizers.Adam)."""
        dt = params[0].dtype.type if params else np.float32
        step = lr * math.sqrt(1 - beta_2 ** t) / (1 - beta_1 ** t)
        groups = [(p, g, m, v) for p, g, m, v in zip(params, grads, ms, vs)]
        self._multi_launch(f"fc::adam_update_multi<{ctype(dt)}>", groups,
                           (dt(1 - beta_1), dt(1 - beta_2), np.float64(step), dt(lr * weight_decay), dt(epsilon)))


    # ---- tensor cores (sm_80+ mma.sync; csrc/tensor_core/) ----------------------------------------
    def _tensor_op_name(self, op, prefix, tile, vec, out_ctype):
        name = f"fc::{op}<fc::TensorOp{prefix}{tile}, {vec}, {out_ctype}>"
        return name if name in tensor_op_kernel_names() else None

    def gemm_tensor_op(self, a, b, bias=None, activation=None, alpha=0.0, out_dtype=None):
        """C = act(A @ B + bias) on tensor cores, fp32 accumulation. A (M, K) and B (K, N) row-major, both
        float32 (tf32 mma), float16 or uint16 (bfloat16 bits); bias float32 (N,); C float32 (default) or the
        operand dtype. Knob: force_tensor_op_tile ('Tile64' / 'Tile128')."""
        a, b = self._c(a), self._c(b)
        dt, out = _tensor_op_types(a.dtype, out_dtype)
        if b.dtype != dt:
            raise TypeError(f"A is {dt} but B is {b.dtype}")
        (m, kdim), (kb, n) = a.shape, b.shape
        if kdim != kb:
            raise ValueError(f"gemm_tensor_op: A is {a.shape}, B is {b.shape}")
        if needs_64bit_index(a.shape, b.shape, (m, n)):
            raise ValueError("gemm_tensor_op: 32-bit offsets only; a tensor has more than 2^31 - 1 elements")
        ct, prefix = TENSOR_OP_TYPES[dt]
        out_ct = "float" if out == np.float32 else ct
        c = self.xp.empty((m, n), out)
        if c.size == 0:
            return c
        full = 16 // dt.itemsize   # one 16-byte cp.async
        narrow = 4 // dt.itemsize   # one 4-byte cp.async
        ptrs = (self._ptr(a), self._ptr(b))
        if kdim % full == 0 and n % full == 0 and all(p % 16 == 0 for p in ptrs):
            vec = full
            note("tensor cores, 16-byte cp.async: K and N are multiples of 16 bytes, pointers aligned")
        elif kdim % narrow == 0 and n % narrow == 0 and all(p % 4 == 0 for p in ptrs):
            vec = narrow
            note("tensor cores, 4-byte cp.async: K or N is not a multiple of 16 bytes (or a pointer unaligned)")
        else:
            raise ValueError(f"gemm_tensor_op: 16-bit operands need even K and N (got K={kdim}, N={n})")
        tile = getattr(self, "force_tensor_op_tile", None)
        if tile is None:
            bm, bn, _ = TENSOR_OP_TILES["Tile128"]
            big = ceil_div(m, bm) * ceil_div(n, bn) >= TARGET_BLOCKS
            tile = "Tile128" if big and self._tensor_op_name("gemm_tensor_op", prefix, "Tile128", vec, out_ct) else "Tile64"
        name = self._tensor_op_name("gemm_tensor_op", prefix, tile, vec, out_ct)
        if name is None:
            raise ValueError(f"no tensor-core GEMM instantiation for {prefix} {tile}, {vec}-element copies, {out_ct} out")
        bm, bn, threads = TENSOR_OP_TILES[tile]
        bias_arr = self._c(bias).astype(np.float32, copy=False) if bias is not None else self.xp.zeros((1,), np.float32)
        self._launch(name, (ceil_div(m, bm), ceil_div(n, bn)), (threads,),
                     (np.int32(m), np.int32(n), np.int32(kdim), a, np.int32(kdim), b, np.int32(n), c, np.int32(n),
                      bias_arr, np.int32(bias is not None), np.int32(ACTIVATIONS[activation]), np.float32(alpha)))
        return c

    def conv2d_fprop_tensor_op(self, x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1,
                               bias=None, activation=None, alpha=0.0, out_dtype=None):
        """conv2d_fprop on tensor cores (implicit GEMM, fp32 accumulation) when groups == 1, C % 8 == 0,
        K a multiple of 16 bytes and x, w 16-byte aligned; otherwise the CUDA-core fp32 kernel on operands
        widened to float32 (same values). Operand/output dtypes as in gemm_tensor_op; bias float32."""
        x, w = self._c(x), self._c(w)
        dt, out = _tensor_op_types(x.dtype, out_dtype)
        if w.dtype != dt:
            raise TypeError(f"x is {dt} but w is {w.dtype}")
        pb, y_shape = conv2d_problem(x.shape, w.shape, stride, padding, dilation, groups)
        ct, prefix = TENSOR_OP_TYPES[dt]
        out_ct = "float" if out == np.float32 else ct
        c, k = x.shape[3], w.shape[3]
        vec = 16 // dt.itemsize
        reasons = []
        if groups != 1:
            reasons.append(f"groups={groups} (the tensor-core kernel takes groups == 1)")
        if c % TENSOR_OP_CONV_CHANNELS:
            reasons.append(f"C={c} is not a multiple of {TENSOR_OP_CONV_CHANNELS}")
        if k % vec:
            reasons.append(f"K={k} is not a multiple of {vec}")
        if self._ptr(x) % 16 or self._ptr(w) % 16:
            reasons.append("x or w is not 16-byte aligned")
        if needs_64bit_index(x.shape, w.shape, y_shape):
            reasons.append("a tensor has more than 2^31 - 1 elements")
        name = self._tensor_op_name("conv2d_fprop_tensor_op", prefix, "Tile64", vec, out_ct)
        if name is None:
            reasons.append(f"no tensor-core instantiation for {prefix} with {out_ct} output")
        if reasons:
            note("CUDA-core conv2d_fprop (fp32) instead of tensor cores: " + "; ".join(reasons))
            widen = (lambda v: bf16_bits_to_float32(self.xp, v)) if dt == np.uint16 else (lambda v: v.astype(np.float32))
            y = self.conv2d_fprop(widen(x), widen(w), stride, padding, dilation, groups,
                                  None if bias is None else self._c(bias).astype(np.float32), activation, alpha)
            if out == np.uint16:
                return float32_to_bf16_bits(self.xp, y)
            return y.astype(out, copy=False)
        note("tensor-core implicit GEMM: groups == 1, C % 8 == 0, K a multiple of 16 bytes, pointers aligned")
        y = self.xp.empty(y_shape, out)
        if y.size == 0:
            return y
        n, p, q, _ = y_shape
        bm, bn, threads = TENSOR_OP_TILES["Tile64"]
        bias_arr = self._c(bias).astype(np.float32, copy=False) if bias is not None else self.xp.zeros((1,), np.float32)
        self._launch(name, (ceil_div(n * p * q, bm), ceil_div(k, bn)), (threads,),
                     (pb, x, w, y, bias_arr, np.int32(bias is not None), np.int32(ACTIVATIONS[activation]),
                      np.float32(alpha)))
        return y


# ---- the CuPy + NVRTC executor ------------------------------------------------------------------
# CuPy compiles with NVRTC and passes -ftz=true (denormals flushed); the native build uses
# --ftz=true too (setup.py), so both GPU paths round alike; the emulator does not flush, which the
# tests' tolerances cover (exact comparisons use small integers, far from the denormal range).
NVRTC_OPTIONS = ("-std=c++17", f"-I{CSRC}")


def kernel_sources() -> list[Path]:
    """Every file the kernels are built from (the hash of their contents keys the jit cache)."""
    dirs = ("common", "conv", "gemm", "pool", "epilogue", "ops", "launch", "fused", "tensor_core")
    return sorted(p for d in dirs for p in (CSRC / d).glob("*") if p.suffix in (".h", ".cuh"))


@functools.lru_cache(maxsize=None)
def source_hash() -> str:
    h = hashlib.sha256()
    for p in kernel_sources():
        h.update(p.relative_to(CSRC).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def kernel_code() -> str:
    """The code string handed to NVRTC: the umbrella header, and a hash of every header it pulls in,
    because CuPy's compile cache keys on the code string and options only, not on included files."""
    return f"// fastconv kernel sources {source_hash()}\n#include \"{KERNEL_HEADER}\"\n"


def status() -> tuple[bool, str]:
    from ..device import cuda_status
    ok, reason = cuda_status()
    if not ok:
        return False, reason
    if not (CSRC / KERNEL_HEADER).exists():
        return False, f"the kernel sources are not installed ({CSRC / KERNEL_HEADER} is missing)"
    return True, "CuPy + NVRTC compile csrc/ at first use (cached by CuPy)"


class _CupyExecutor:
    def __init__(self):
        import cupy
        self.cupy = cupy
        self.modules = {}

    def function(self, name):
        fn = self.modules.get(name)
        if fn is None:
            module = self.cupy.RawModule(code=kernel_code(), options=NVRTC_OPTIONS, name_expressions=(name,))
            fn = self.modules[name] = module.get_function(name)
        return fn

    def launch(self, kernel, grid, block, args, shared_bytes=0, keep_alive=None):
        fn = self.function(kernel)
        fn(tuple(grid), tuple(block), tuple(args), shared_mem=shared_bytes)


def _cupy_ptr(a):
    return int(a.data.ptr)


@functools.lru_cache(maxsize=None)
def _ops() -> KernelOps:
    ex = _CupyExecutor()
    return KernelOps(ex.cupy, ex.launch, _cupy_ptr)


def __getattr__(name):   # module-level op functions: jit.conv2d_fprop(...) etc.
    if name.startswith("_") or not hasattr(KernelOps, name):
        raise AttributeError(name)
    return getattr(_ops(), name)


REFERENCE_API = ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "max_pool2d_fprop", "max_pool2d_bprop",
                 "avg_pool2d_fprop", "avg_pool2d_bprop", "global_avg_pool_fprop", "global_avg_pool_bprop",
                 "dense_fprop", "dense_bprop", "relu_fprop", "relu_bprop", "leaky_relu_fprop", "leaky_relu_bprop",
                 "sigmoid_fprop", "sigmoid_bprop", "tanh_fprop", "tanh_bprop", "softmax_fprop", "softmax_bprop",
                 "dropout_mask", "dropout_fprop", "dropout_bprop", "batchnorm_fprop_train",
                 "batchnorm_fprop_infer", "batchnorm_bprop", "softmax_cross_entropy_fprop",
                 "softmax_cross_entropy_bprop", "cross_entropy_fprop", "cross_entropy_bprop", "mse_fprop",
                 "mse_bprop")
EXTRA_API = ("gemm", "bias_grad", "sgd_update", "adam_update")
FUSED_API = ("conv2d_bias_relu_maxpool_fprop", "relu_maxpool_bprop")   # reference/fused.py, csrc/fused/
REFERENCE_API += FUSED_API
