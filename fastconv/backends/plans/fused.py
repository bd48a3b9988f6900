"""Launch plans of the fused kernels (csrc/conv/conv2d_bias_relu_maxpool*.h, csrc/norm/batchnorm_relu.h):
conv2d + bias + ReLU + max-pool forward (2x2/2 'valid', 3x3/2 any padding), and the pool + ReLU-mask +
bias-gradient backward. A mixin of KernelOps (plans/kernel_ops.py)."""
from __future__ import annotations

import numpy as np

from ...explain import note
from .. import kernel_table
from .common import TILES, ceil_div, choose_row_splits, conv2d_problem, ctype, pool2d_problem

VALID = ((0, 0), (0, 0))
# The files of the fused kernels (fastconv/backends/kernel_table.py names each family's header).
FUSED_HEADERS = ("conv/conv2d_bias_relu_maxpool.h", "conv/conv2d_bias_relu_maxpool3x3.h", "norm/batchnorm_relu.h")
# Mirrors csrc/conv/conv2d_bias_relu_maxpool3x3.h MaxPool3x3s2Patch: pooled windows (TP, TQ) per block.
PATCH_3X3S2 = {"TileSmall": (1, 4), "TileMedium": (2, 5)}


def fusable_pool_kind(pool, pool_stride, pool_padding=VALID):
    """'2x2' (2x2/2 'valid'), '3x3s2' (3x3/2, padding up to 2 per side) or None:
    what the fused conv kernels (csrc/conv/conv2d_bias_relu_maxpool*.h) cover."""
    pool, pool_stride = tuple(pool), tuple(pool_stride)
    pads = tuple(tuple(int(v) for v in side) for side in pool_padding)
    if pool == (2, 2) and pool_stride == (2, 2) and pads == VALID:
        return "2x2"
    if pool == (3, 3) and pool_stride == (2, 2) and all(0 <= v < 3 for side in pads for v in side):
        return "3x3s2"
    return None


def check_fusable_pool(pool, pool_stride, pool_padding=VALID):
    kind = fusable_pool_kind(pool, pool_stride, pool_padding)
    if kind is None:
        raise NotImplementedError(f"the fused conv2d + max-pool kernels take pool (2, 2) stride (2, 2) 'valid' or "
                                  f"pool (3, 3) stride (2, 2) with padding < 3, got pool {tuple(pool)} stride "
                                  f"{tuple(pool_stride)} padding {tuple(map(tuple, pool_padding))}")
    return kind


def fused_kernel_names() -> list[str]:
    """The fused instantiations the plans below can launch (part of all_kernel_names()): a view of
    fastconv/backends/kernel_table.py."""
    return kernel_table.kernel_names(headers=FUSED_HEADERS)


class FusedPlans:
    def conv2d_bias_relu_maxpool_fprop(self, x, w, b, stride=(1, 1), padding=VALID, dilation=(1, 1), groups=1,
                                       pool=(2, 2), pool_stride=(2, 2), pool_padding=VALID):
        """-> (y, argmax) of max_pool2d(relu(conv2d(x, w) + b), pool, pool_stride, pool_padding); b may be
        None. The full-resolution conv output is never written."""
        kind = check_fusable_pool(pool, pool_stride, pool_padding)
        x, w = self._c(x), self._c(w)
        pb, (n, p, q, k) = conv2d_problem(x.shape, w.shape, stride, padding, dilation, groups)
        ppb, y_shape = pool2d_problem((n, p, q, k), pool, pool_stride, pool_padding)   # the pool's own checks
        y = self.xp.empty(y_shape, x.dtype)
        argmax = self.xp.empty(y_shape, np.uint8)
        if y.size == 0:
            return y, argmax
        t = ctype(x.dtype)
        bias = self._c(b) if b is not None else w    # w: a placeholder the kernel never reads
        cg, kg = w.shape[2], k // groups
        pp, qq = y_shape[1:3]
        if kind == "2x2":
            m = n * pp * qq * 4                      # GEMM rows: the 4 taps of every pool window
        else:
            m = n * 4 * pp * qq                      # conv outputs the windows need (about): picks the tile
        tile, vec, index = self._gemm_config(x.dtype, m, kg, (x.shape[3], cg, k, kg), (self._ptr(x), self._ptr(w)),
                                             (x.shape, w.shape, (n, p, q, k)), groups)
        bm, bn, _, threads = TILES[tile]
        if kind == "2x2":
            self._launch(f"fc::conv2d_bias_relu_maxpool2x2_fprop<fc::{tile}, {vec}, {index}, {t}>",
                         self._tile_grid(ceil_div(m, bm), ceil_div(kg, bn), groups), (threads,),
                         (pb, x, w, bias, np.int32(b is not None), y, argmax))
            return y, argmax
        if tile == "TileLarge":
            tile = "TileMedium"
            bm, bn, _, threads = TILES[tile]
            note("3x3/2 pool: TileMedium instead of TileLarge (a 128 x 128 conv patch exceeds static shared memory)")
        tp, tq = PATCH_3X3S2[tile]
        blocks = n * ceil_div(pp, tp) * ceil_div(qq, tq)
        if index == "int" and blocks * bm > 2**31 - 1:   # GEMM rows count the patches' halo and padding too
            tile, index = "TileMedium", "int64_t"
            bm, bn, _, threads = TILES[tile]
            tp, tq = PATCH_3X3S2[tile]
            blocks = n * ceil_div(pp, tp) * ceil_div(qq, tq)
            note("64-bit index arithmetic: the 3x3/2 patches' GEMM rows exceed 2^31 - 1")
        note(f"3x3/2 pool fused: each block pools {tp} x {tq} windows from a {2 * tp + 1} x {2 * tq + 1} conv "
             f"patch in shared memory ({bm / (4 * tp * tq):.2f}x the conv FLOPs)")
        self._launch(f"fc::conv2d_bias_relu_maxpool3x3s2_fprop<fc::{tile}, {vec}, {index}, {t}>",
                     self._tile_grid(blocks, ceil_div(kg, bn), groups), (threads,),
                     (pb, ppb, x, w, bias, np.int32(b is not None), y, argmax))
        return y, argmax

    def relu_maxpool_bprop(self, dy, argmax, y, conv_shape, pool=(2, 2), pool_stride=(2, 2), pool_padding=VALID):
        """-> (dz, db): the conv output gradient from the pooled gradient (max-pool backward and the
        ReLU mask, recovered from the pooled y, in one pass) and the bias gradient (its column sums,
        reduced in the same pass in a fixed order)."""
        kind = check_fusable_pool(pool, pool_stride, pool_padding)
        dy, argmax, y = self._c(dy), self._c(argmax), self._c(y)
        n, p, q, k = (int(v) for v in conv_shape)
        ppb, y_shape = pool2d_problem((n, p, q, k), pool, pool_stride, pool_padding)
        if tuple(dy.shape) != y_shape or tuple(argmax.shape) != y_shape or argmax.dtype != np.uint8:
            raise ValueError(f"dy {tuple(dy.shape)} / argmax {tuple(argmax.shape)} {argmax.dtype} do not fit conv "
                             f"output {tuple(conv_shape)} pooled to {y_shape} (argmax uint8)")
        t = ctype(dy.dtype)
        dz = self.xp.empty((n, p, q, k), dy.dtype)
        db = self.xp.empty((k,), dy.dtype)
        rows = n * y_shape[1] * y_shape[2] if kind == "2x2" else n * p * q   # windows / conv positions
        if rows == 0 or k == 0:
            dz[...] = 0
            db[...] = 0
            return dz, db
        splits = self.force_splits or choose_row_splits(rows)
        per_split = ceil_div(rows, splits)
        splits = ceil_div(rows, per_split)
        partial = db if splits == 1 else self.xp.empty((splits, k), dy.dtype)
        if kind == "2x2":
            self._launch(f"fc::relu_maxpool2x2_bprop<{t}>", (ceil_div(k, 32), splits), (32, 8),
                         (np.int32(n), np.int32(p), np.int32(q), np.int32(k), dy, argmax, y, dz, partial,
                          np.int64(per_split)))
        else:
            self._launch(f"fc::relu_maxpool_bprop<{t}, uint8_t>", (ceil_div(k, 32), splits), (32, 8),
                         (ppb, dy, argmax, y, dz, partial, np.int64(per_split)))
        if splits > 1:
            self._launch(f"fc::column_finalize<{t}>", (ceil_div(k, 256),), (256,),
                         (partial, np.int32(splits), np.int32(k), np.int32(0), np.int64(rows),
                          self._scalar(dy.dtype, 0.0), db))
        return dz, db

    # ---- batch normalization + ReLU (csrc/norm/batchnorm_relu.h) ----------------------------------
    def batchnorm_relu_fprop_train(self, x, gamma, beta, eps):
        """-> (y, mean, invstd) of relu(batchnorm(x)) with batch statistics; the normalize pass applies ReLU."""
        x, gamma, beta = self._c(x), self._c(gamma), self._c(beta)
        c = x.shape[-1]
        rows = x.size // c
        mean = self._column_reduce(0, x, x, x, x, rows, c, 1)            # reduce.h: the batchnorm statistics
        invstd = self._column_reduce(1, x, x, mean, mean, rows, c, 2, eps)
        y = self.xp.empty_like(x)
        if x.size:
            self._run1d(f"fc::batchnorm_relu_apply_kernel<{ctype(x.dtype)}>", x.size,
                        (x, mean, invstd, gamma, beta, y, np.int64(x.size), np.int32(c)))
        return y, mean, invstd

    def batchnorm_relu_fprop_infer(self, x, gamma, beta, mean, var, eps):
        x = self._c(x)
        y = self.xp.empty_like(x)
        if x.size:
            self._run1d(f"fc::batchnorm_relu_infer_kernel<{ctype(x.dtype)}>", x.size,
                        (x, self._c(gamma), self._c(beta), self._c(mean), self._c(var), self._scalar(x.dtype, eps),
                         y, np.int64(x.size), np.int32(x.shape[-1])))
        return y

    def batchnorm_relu_bprop(self, dy, y, x, gamma, mean, invstd):
        """-> (dx, dgamma, dbeta); the ReLU mask (from the fused output y) is applied inside each pass."""
        dy, y, x, gamma, mean, invstd = (self._c(a) for a in (dy, y, x, gamma, mean, invstd))
        if dy.shape != x.shape or y.shape != x.shape:
            raise ValueError(f"dy {tuple(dy.shape)} and y {tuple(y.shape)} must have x's shape {tuple(x.shape)}")
        t = ctype(x.dtype)
        c = x.shape[-1]
        rows = x.size // c if c else 0
        dbeta, dgamma = self.xp.empty((c,), x.dtype), self.xp.empty((c,), x.dtype)
        dx = self.xp.empty_like(dy)
        if c == 0:
            return dx, dgamma, dbeta
        splits = self.force_splits or choose_row_splits(rows)
        per_split = max(1, ceil_div(rows, splits))
        splits = max(1, ceil_div(rows, per_split))
        pb, pg = self.xp.empty((splits, c), x.dtype), self.xp.empty((splits, c), x.dtype)
        self._launch(f"fc::batchnorm_relu_dparams_partial<{t}>", (ceil_div(c, 32), splits), (32, 8),
                     (dy, y, x, mean, invstd, np.int64(rows), np.int32(c), np.int64(per_split), pb, pg))
        for partial, out in ((pb, dbeta), (pg, dgamma)):
            self._launch(f"fc::column_finalize<{t}>", (ceil_div(c, 256),), (256,),
                         (partial, np.int32(splits), np.int32(c), np.int32(0), np.int64(rows),
                          self._scalar(x.dtype, 0.0), out))
        if x.size:
            self._run1d(f"fc::batchnorm_relu_dx_kernel<{t}>", x.size,
                        (dy, y, x, gamma, mean, invstd, dgamma, dbeta, dx, np.int64(x.size), np.int32(c)))
        return dx, dgamma, dbeta
