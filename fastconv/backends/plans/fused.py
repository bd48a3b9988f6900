"""Launch plans of the fused kernels (csrc/fused/): conv2d + bias + ReLU + max-pool forward, and the
pool + ReLU-mask + bias-gradient backward. A mixin of KernelOps (plans/kernel_ops.py)."""
from __future__ import annotations

import numpy as np

from ...shapes import conv_output_hw
from .common import CTYPES, TILES, ceil_div, choose_row_splits, conv2d_problem, ctype, gemm_configs


def check_fusable_pool(pool, pool_stride):
    """The fused conv + max-pool kernels cover the 2x2 stride-2 'valid' pool only (3x3/2: next)."""
    if tuple(pool) != (2, 2) or tuple(pool_stride) != (2, 2):
        raise NotImplementedError(f"the fused conv2d + max-pool kernels take pool (2, 2) stride (2, 2), got pool "
                                  f"{tuple(pool)} stride {tuple(pool_stride)}")


def fused_kernel_names() -> list[str]:
    """The fused instantiations the plans below can launch (part of all_kernel_names())."""
    names = [f"fc::conv2d_bias_relu_maxpool2x2_fprop<fc::{tile}, {vec}, {index}, {t}>"
             for tile, vec, index, t in gemm_configs()]
    return names + [f"fc::relu_maxpool2x2_bprop<{t}>" for t in CTYPES.values()]


class FusedPlans:
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
