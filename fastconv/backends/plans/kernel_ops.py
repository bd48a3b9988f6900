"""KernelOps: the reference API (fastconv/backends/reference) implemented by launching the csrc/ kernels.

Written once against an array module (`xp`: cupy or numpy) and a launch function, so the jit backend
(CuPy + NVRTC), the native backend (fastconv._C) and the emulator (fastconv._emu) all run the very
same plans: which kernel instantiation, grid, block and arguments each op uses. Kernel names are C++
template-ids, e.g. ``fc::conv2d_fprop_implicit_gemm<fc::TileSmall, 4, int, float>``; every backend
registers or compiles kernels under the same strings, so one name means one instantiation everywhere.
"""
from __future__ import annotations

import math

import numpy as np

from ... import tuning
from ...explain import active as explain_active, note, traced_launch
from ...shapes import needs_64bit_index
from .common import *  # noqa: F401,F403  (the constants and choices the plans below use)
from .. import kernel_table
from .common import (ACTIVATIONS, ARGMAX_CTYPES, ELEMENTWISE_THREADS, MAX_ELEMENTWISE_BLOCKS,
                     MAX_GRID_YZ, MULTI_TENSOR_WORDS, OPTIMIZER_CHUNK, TILES, argmax_dtype, ceil_div, check_grid,
                     choose_row_splits, choose_splits, choose_tile, conv2d_problem, ctype,
                     pool2d_problem, tile_grid, vector_width)
from .fused import FusedPlans
from .hopper import HopperPlans
from .mixed_precision import MixedPrecisionPlans
from .tensor_op import TensorOpPlans


def all_kernel_names() -> list[str]:
    """Every kernel instantiation the plans below can launch, sm_90a aside (hopper.py wgmma_kernel_names()):
    a view of fastconv/backends/kernel_table.py, from which the native registry's list
    (csrc/launch/kernel_list.inc, written by scripts/gen_kernel_list.py) is generated."""
    return kernel_table.kernel_names(("any", "sm80"))


# output dtype -> the kernel that widens uint8 images to it (csrc/ops/normalize.h); bf16 comes back as uint16 bits
NORMALIZE_KERNELS = {"float32": "fc::normalize_uint8_kernel<float>", "bf16": "fc::normalize_uint8_kernel<__nv_bfloat16>"}


class KernelOps(FusedPlans, TensorOpPlans, MixedPrecisionPlans, HopperPlans):
    """The reference API implemented by launching the csrc/ kernels.

    xp: the array module (cupy or numpy); launch(kernel, grid, block, args, shared_bytes=0);
    ptr(a): the address of an array's data (for alignment checks). Test knobs: force_tile,
    force_vec (1 disables 16-byte loads), force_index64, force_splits, max_grid_yz (below 65535: the
    GEMM-shaped kernels' tiles go on grid.x sooner, common.tile_grid). conv2d_* and dense_* take
    precision= ('tf32' / 'bf16' / 'fp16' route to the tensor-core plans: mixed_precision.py).
    tuning_device: the device name tuning-file entries are looked up under (None: the current
    device, fastconv/tuning.py device_id).
    """

    def __init__(self, xp, launch, ptr):
        traced = traced_launch(launch)

        def checked(kernel, grid, block, *args, **kwargs):
            check_grid(kernel, grid)
            return traced(kernel, grid, block, *args, **kwargs)
        self.xp, self._launch, self._ptr = xp, checked, ptr
        self.force_tile = self.force_vec = self.force_index64 = self.force_splits = None
        self.max_grid_yz = MAX_GRID_YZ
        self.tuning_device = None

    # ---- input images --------------------------------------------------------------------------
    def normalize_uint8(self, x, scale, bias, dtype="float32"):
        """uint8 NHWC -> x * scale[c] + bias[c] (float32 scale, bias per channel) as float32, or bf16
        bits (uint16); the oracle is fastconv/data/images/normalize.py."""
        if dtype not in NORMALIZE_KERNELS:
            raise ValueError(f"dtype must be one of {sorted(NORMALIZE_KERNELS)}, got {dtype!r}")
        x = self._c(x)
        scale, bias = self._c(self.xp.asarray(scale, np.float32)), self._c(self.xp.asarray(bias, np.float32))
        out = self.xp.empty(x.shape, np.float32 if dtype == "float32" else np.uint16)
        if x.size:
            self._run1d(NORMALIZE_KERNELS[dtype], x.size, (x, scale, bias, out, np.int64(x.size), np.int32(x.shape[-1])))
        return out

    # ---- helpers -------------------------------------------------------------------------------
    def _c(self, a):
        return self.xp.ascontiguousarray(a)

    def _scalar(self, dtype, v):
        return np.dtype(dtype).type(v)

    def _tile_grid(self, tiles_x, tiles_y, tiles_z=None):
        """The grid of a kernel that reads its tile through fc::block_tile (common.tile_grid)."""
        return tile_grid(tiles_x, tiles_y, tiles_z, self.max_grid_yz)

    def _elementwise_grid(self, n):
        return (max(1, min(ceil_div(n, ELEMENTWISE_THREADS), MAX_ELEMENTWISE_BLOCKS)),)

    def _run1d(self, kernel, n, args):
        self._launch(kernel, self._elementwise_grid(n), (ELEMENTWISE_THREADS,), args)

    def _tuned(self, op, dtype, problem):
        """This device's tuning-file entry for (op, dtype, problem) (fastconv/tuning.py), or None;
        problem: a zero-argument callable giving the key, formatted only when a tuning file exists."""
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
        if name == "float64":   # one double instantiation per kernel: nothing to tune
            return None
        return tuning.lookup(self.tuning_device or (lambda: tuning.device_id(self.xp)), op, name, problem)

    def _gemm_config(self, dtype, m, n, divisible, pointers, shapes, batches=1, tuned=None):
        """(tile, vec, index-ctype) of a GEMM-shaped kernel; see kernel_table.GEMM_CONFIGS for the full set.
        tuned: the tuning file's entry for this problem (self._tuned), preferred to the heuristic."""
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
            if tuned is not None and self.force_tile is None:
                tuned.tile(("TileMedium",))   # 64-bit offsets have one tile: a tuned other one is ignored
            return "TileMedium", vec, "int64_t"   # 64-bit offsets: one tile (huge problems fill any tile)
        tile = self.force_tile or (tuned and tuned.tile(TILES))
        if not tile:
            tile = choose_tile(m, n, batches)
            note(f"{tile} for a {m} x {n} GEMM ({batches} batch(es)); 32-bit index arithmetic is safe")
        return tile, vec, "int"

    # ---- conv2d ----------------------------------------------------------------------------------
    def conv2d_fprop(self, x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, bias=None,
                     activation=None, alpha=0.0, precision=None):
        x, w = self._c(x), self._c(w)
        if self._reduced(precision, x, w):
            return self._conv2d_fprop_reduced(x, w, stride, padding, dilation, groups, bias, activation, alpha,
                                              precision)
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
        tuned = self._tuned("conv2d_fprop", x.dtype,
                            lambda: tuning.conv_problem(x.shape, w.shape, stride, padding, dilation, groups))
        tile, vec, index = self._gemm_config(x.dtype, m, kg, (x.shape[3], cg, k, kg), (self._ptr(x), self._ptr(w)),
                                             (x.shape, w.shape, y_shape), groups, tuned)
        bm, bn, _, threads = TILES[tile]
        self._launch(f"fc::conv2d_fprop_implicit_gemm<fc::{tile}, {vec}, {index}, {t}>",
                     self._tile_grid(ceil_div(m, bm), ceil_div(kg, bn), groups), (threads,),
                     (pb, x, w, y, b, np.int32(bias is not None), np.int32(act), self._scalar(x.dtype, alpha)))
        return y

    def conv2d_dgrad(self, dy, w, x_shape, stride, padding, dilation, groups, precision=None):
        dy, w = self._c(dy), self._c(w)
        if self._reduced(precision, dy, w):
            return self._conv2d_dgrad_reduced(dy, w, x_shape, stride, padding, dilation, groups, precision)
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
        tuned = self._tuned("conv2d_dgrad", dy.dtype,
                            lambda: tuning.conv_problem(x_shape, w.shape, stride, padding, dilation, groups))
        tile, vec, index = self._gemm_config(dy.dtype, m, cg, (k, kg), (self._ptr(dy), self._ptr(w)),
                                             (x_shape, w.shape, y_shape), groups, tuned)
        bm, bn, _, threads = TILES[tile]
        sh, sw = (int(v) for v in stride)
        if sh * sw > 1:   # csrc/conv/conv2d_dgrad_phase.h: each stride phase a dense GEMM over its own taps
            note(f"conv2d_dgrad stride-phase decomposition: {sh}x{sw} = {sh * sw} phases in one launch, each over "
                 "only the taps that reach it (no taps masked by the stride)")
            rows = n * ceil_div(h, sh) * ceil_div(wd, sw)   # phase (0, 0), the largest
            self._launch(f"fc::conv2d_dgrad_strided_implicit_gemm<fc::{tile}, {vec}, {index}, {t}>",
                         self._tile_grid(ceil_div(rows, bm), ceil_div(cg, bn), groups * sh * sw), (threads,),
                         (pb, dy, w, dx))
            return dx
        self._launch(f"fc::conv2d_dgrad_implicit_gemm<fc::{tile}, {vec}, {index}, {t}>",
                     self._tile_grid(ceil_div(m, bm), ceil_div(cg, bn), groups), (threads,), (pb, dy, w, dx))
        return dx

    def conv2d_wgrad(self, x, dy, w_shape, stride, padding, dilation, groups, precision=None):
        x, dy = self._c(x), self._c(dy)
        if self._reduced(precision, x, dy):
            return self._conv2d_wgrad_reduced(x, dy, w_shape, stride, padding, dilation, groups, precision)
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
            self._launch(f"fc::conv2d_wgrad_depthwise<{t}>", self._tile_grid(ceil_div(k, 32), r * s, splits), (32, 8),
                         (pb, x, dy, out, np.int64(rows_per_split)))
        else:
            kg = k // groups
            rows = r * s * cg
            tuned = self._tuned("conv2d_wgrad", x.dtype,
                                lambda: tuning.conv_problem(x.shape, w_shape, stride, padding, dilation, groups))
            tile, vec, index = self._gemm_config(x.dtype, rows, kg, (x.shape[3], cg, k, kg),
                                                 (self._ptr(x), self._ptr(dy)), (x.shape, w_shape, y_shape), groups,
                                                 tuned)
            splits, k_per_split = choose_splits(rows, kg, kdim, tile, groups)
            bk = TILES[tile][2]
            # the tuned split-k only with the tuned tile it was timed with
            want = self.force_splits or (tuned and tuned.config.get("tile") == tile and self.force_tile is None
                                         and tuned.splits(ceil_div(kdim, bk)))
            if want:
                k_per_split = ceil_div(ceil_div(kdim, want), bk) * bk
                splits = ceil_div(kdim, k_per_split)
            out = dw if splits == 1 else self.xp.empty((splits, rows, k), x.dtype)
            bm, bn, _, threads = TILES[tile]
            self._launch(f"fc::conv2d_wgrad_implicit_gemm<fc::{tile}, {vec}, {index}, {t}>",
                         self._tile_grid(ceil_div(rows, bm), ceil_div(kg, bn), groups * splits), (threads,),
                         (pb, x, dy, out, np.int32(splits),
                          np.int64(k_per_split) if index == "int64_t" else np.int32(k_per_split)))
        if splits > 1:
            self._run1d(f"fc::split_k_reduce<{t}>", dw.size, (out, dw, np.int32(splits), np.int64(dw.size)))
        return dw

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
        tuned = self._tuned("gemm", a.dtype, lambda: tuning.gemm_problem(m, n, k, trans_a, trans_b))
        tile, vec, index = self._gemm_config(a.dtype, m, n, (m, n, k, lda, ldb), (self._ptr(a), self._ptr(b)),
                                             (a.shape, b.shape, c.shape), tuned=tuned)
        it = np.int64 if index == "int64_t" else np.int32
        bm, bn, _, threads = TILES[tile]
        ta, tb = ("true" if trans_a else "false"), ("true" if trans_b else "false")
        self._launch(f"fc::gemm_bias_act<fc::{tile}, {vec}, {index}, {t}, {ta}, {tb}>",
                     self._tile_grid(ceil_div(m, bm), ceil_div(n, bn)), (threads,),
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

    def dense_fprop(self, x, w, b=None, precision=None):
        if self._reduced(precision, x, w):
            return self._dense_fprop_reduced(x, w, b, precision)
        return self.gemm(x, w, bias=b)

    def dense_bprop(self, dy, x, w, need_dx=True, precision=None):
        if self._reduced(precision, dy, x, w):
            return self._dense_bprop_reduced(dy, x, w, need_dx, precision)
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

    @staticmethod
    def _row_threads(vectors):
        """Threads per row (a power of two) of the *_rows kernels (csrc/ops/softmax.h) for a row of
        `vectors` loads: one load each up to a warp, a warp up to 8 loads per lane, then enough
        warps for about 8 loads each, at most 1024 (a block per row)."""
        if vectors <= 32:
            return 1 << max(0, vectors - 1).bit_length()
        if vectors <= 256:
            return 32
        return min(1024, 1 << (ceil_div(vectors, 8) - 1).bit_length())

    def _launch_rows(self, kernel, targs, rows, d, arrays, args):
        """Launches fc::<kernel><targs, V> over `rows` rows of `d` elements: V = 4 (16-byte loads) for
        float32 when d % 4 == 0 and every array is 16-byte aligned, else 1. The threads per row depend
        on (d, V) only, so a shape always reduces in the same order."""
        vec = vector_width(arrays[0].dtype, (d,), [self._ptr(a) for a in arrays])
        if self.force_vec is not None:
            vec = min(vec, self.force_vec)
        tpr = self._row_threads(d // vec)
        rows_per_block = max(1, ELEMENTWISE_THREADS // tpr)
        if explain_active():
            note(f"{kernel}: {tpr} thread(s) per row of {d}, {rows_per_block} row(s) per block, "
                 + ("16-byte loads" if vec == 4 else "scalar loads (row length not a multiple of 4, a pointer not "
                    "16-byte aligned, float64, or force_vec)"))
        grid = (max(1, min(ceil_div(rows, rows_per_block), MAX_ELEMENTWISE_BLOCKS)),)
        self._launch(f"fc::{kernel}<{targs}, {vec}>", grid, (tpr, rows_per_block), args)

    def softmax_fprop(self, x, axis=-1):
        x = self._c(x)
        y = self.xp.empty_like(x)
        outer, d, inner = self._axis_split(x.shape, axis)
        if not x.size:
            return y
        if inner == 1:
            self._launch_rows("softmax_fprop_rows", ctype(x.dtype), outer, d, (x, y),
                              (x, y, np.int64(outer), np.int64(d)))
        else:   # one thread per line: neighbouring threads read neighbouring inner positions
            self._run1d(f"fc::softmax_fprop_strided<{ctype(x.dtype)}>", outer * inner,
                        (x, y, np.int64(outer), np.int64(d), np.int64(inner)))
        return y

    def softmax_bprop(self, dy, y, axis=-1):
        dy, y = self._c(dy), self._c(y)
        dx = self.xp.empty_like(dy)
        outer, d, inner = self._axis_split(dy.shape, axis)
        if not dy.size:
            return dx
        if inner == 1:
            self._launch_rows("softmax_bprop_rows", ctype(dy.dtype), outer, d, (dy, y, dx),
                              (dy, y, dx, np.int64(outer), np.int64(d)))
        else:
            self._run1d(f"fc::softmax_bprop_strided<{ctype(dy.dtype)}>", outer * inner,
                        (dy, y, dx, np.int64(outer), np.int64(d), np.int64(inner)))
        return dx

    # ---- dropout -------------------------------------------------------------------------------
    def dropout_mask(self, shape, rate, seed, offset=0, dtype=np.float32):
        """offset: an int, or a 0-d int64 array on this device that the kernel reads when it runs (the
        Dropout layer's counter: a CUDA graph replay then draws from the counter's current value)."""
        shape = tuple(int(s) for s in shape)
        mask = self.xp.empty(shape, dtype)
        threshold = min(round(rate * 2**32), 2**32 - 1)
        scale = np.dtype(dtype).type(1.0 / (1.0 - rate))
        if isinstance(offset, (int, np.integer)):
            offset = self.xp.asarray(np.array(int(offset) & (2**64 - 1), np.uint64).view(np.int64))
        if mask.size:
            self._run1d(f"fc::dropout_mask_kernel<{ctype(dtype)}>", mask.size,
                        (mask, np.int64(mask.size), np.uint64(int(seed) & (2**64 - 1)), offset,
                         np.uint32(threshold), scale))
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
        self._launch_rows("softmax_xent_fprop_rows", f"{ctype(logits.dtype)}, {lt}", n, c, (logits, lab, probs),
                          (logits, lab, np.int64(n), np.int64(c), probs, nll))
        return self._to_scalar(0, nll, nll, n, float(n)), probs

    def softmax_cross_entropy_bprop(self, probs, labels, dloss=1.0):
        probs = self._c(probs)
        n, c = probs.shape
        lab, lt = self._labels(labels, probs)
        out = self.xp.empty_like(probs)
        self._launch_rows("softmax_xent_bprop_rows", f"{ctype(probs.dtype)}, {lt}", n, c, (probs, lab, out),
                          (probs, lab, self._dloss(dloss, probs.dtype), np.int64(n), np.int64(c), out))
        return out

    def cross_entropy_fprop(self, probs, labels, eps=1e-7):
        probs = self._c(probs)
        n, c = probs.shape
        lab, lt = self._labels(labels, probs)
        nll = self.xp.empty((n,), probs.dtype)
        dt = probs.dtype.type
        self._launch_rows("cross_entropy_fprop_rows", f"{ctype(probs.dtype)}, {lt}", n, c, (probs, lab),
                          (probs, lab, np.int64(n), np.int64(c), dt(eps), dt(1 - eps), nll))
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
    # Both read this step's scalars from a StepScalars buffer (STEP_SCALARS float64 words, on this
    # device; step_scalars() makes one) and take a resident table (multi_tensor_table()), so the
    # launch holds no per-step value and can be captured in a CUDA graph.
    def step_scalars(self):
        """A zeroed StepScalars buffer on this device; write it with set_step_scalars before a step."""
        return self.xp.zeros(len(STEP_SCALARS), np.float64)

    def set_step_scalars(self, buffer, values: dict):
        """Write {name: value} (names from STEP_SCALARS; missing ones 0) into the buffer, in stream
        order, by a one-thread kernel (no host-to-device copy, so the host never waits)."""
        self._launch("fc::set_step_scalars<double>", (1,), (1,),
                     (buffer,) + tuple(np.float64(values.get(k, 0.0)) for k in STEP_SCALARS))

    def multi_tensor_table(self, groups, table=None, upload=True):
        """The MultiTensorEntry table (csrc/ops/optimizer.h) of groups (param, grad, slot0[, slot1]),
        resident on the device: `table` (a previous result) is returned as it is when no address or
        size changed, else a new one is uploaded. Empty tensors are left out. The table holds addresses
        only: the caller keeps the arrays alive while launches that use it may run. upload=False
        allocates the device words but leaves them unwritten until upload_table (inside a CUDA-graph
        capture, which can record a launch that reads them but not the copy that writes them)."""
        groups = [g for g in groups if g[0].size]
        for g in groups:
            for a in g:
                if a is not None and not a.flags.c_contiguous:
                    raise ValueError("multi-tensor updates need contiguous parameters, gradients and slots")
        words, chunks = [], 0
        for group in groups:
            size = int(group[0].size)
            ptrs = [self._ptr(a) if a is not None else 0 for a in group] + [0] * (4 - len(group))
            words += ptrs + [size, chunks]
            chunks += ceil_div(size, OPTIMIZER_CHUNK)
        words = np.array(words, np.int64)
        if table is not None and np.array_equal(table.words, words):
            return table
        dtype = groups[0][0].dtype.type if groups else np.float32
        table = MultiTensorTable(words, self.xp.empty(len(words), np.int64), len(groups), chunks, dtype)
        if upload:
            self.upload_table(table)
        return table

    def upload_table(self, table):
        table.device[...] = self.xp.asarray(table.words)   # CuPy: staged through pinned memory, in stream order

    def _multi_launch(self, kernel, table, scalars, args):
        if table.num_tensors:
            self._launch(kernel, (table.chunks,), (256,),
                         (table.device, np.int32(table.num_tensors), np.int64(OPTIMIZER_CHUNK), scalars) + args)

    def sgd_update(self, table, scalars, momentum=0.0, nesterov=False, weight_decay=0.0):
        """In place, for every (param, grad, velocity) of the table (velocity 0 when momentum == 0)."""
        dt = table.dtype
        self._multi_launch(f"fc::sgd_update_multi<{ctype(dt)}>", table, scalars,
                           (dt(momentum), np.int32(bool(nesterov)), dt(weight_decay)))

    def adam_update(self, table, scalars, beta_1, beta_2, epsilon):
        """In place, for every (param, grad, m, v) of the table; scalars holds lr, adam_step, adam_decay."""
        dt = table.dtype
        self._multi_launch(f"fc::adam_update_multi<{ctype(dt)}>", table, scalars,
                           (dt(1 - beta_1), dt(1 - beta_2), dt(epsilon)))


class MultiTensorTable:
    """A multi-tensor update's table, resident on the device (KernelOps.multi_tensor_table)."""

    def __init__(self, words, device, num_tensors, chunks, dtype):
        self.words, self.device, self.num_tensors, self.chunks, self.dtype = words, device, num_tensors, chunks, dtype


# csrc/ops/optimizer.h StepScalars, in order (float64 words)
STEP_SCALARS = ("lr", "adam_step", "adam_decay")


REFERENCE_API = ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "max_pool2d_fprop", "max_pool2d_bprop",
                 "avg_pool2d_fprop", "avg_pool2d_bprop", "global_avg_pool_fprop", "global_avg_pool_bprop",
                 "dense_fprop", "dense_bprop", "relu_fprop", "relu_bprop", "leaky_relu_fprop", "leaky_relu_bprop",
                 "sigmoid_fprop", "sigmoid_bprop", "tanh_fprop", "tanh_bprop", "softmax_fprop", "softmax_bprop",
                 "dropout_mask", "dropout_fprop", "dropout_bprop", "batchnorm_fprop_train",
                 "batchnorm_fprop_infer", "batchnorm_bprop", "softmax_cross_entropy_fprop",
                 "softmax_cross_entropy_bprop", "cross_entropy_fprop", "cross_entropy_bprop", "mse_fprop",
                 "mse_bprop")
EXTRA_API = ("gemm", "bias_grad", "sgd_update", "adam_update")
FUSED_API = ("conv2d_bias_relu_maxpool_fprop", "relu_maxpool_bprop", "batchnorm_relu_fprop_train",
             "batchnorm_relu_fprop_infer", "batchnorm_relu_bprop")   # reference/fused.py, csrc/norm/batchnorm_relu.h
REFERENCE_API += FUSED_API
