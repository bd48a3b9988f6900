"""Launch plans of batch normalization (csrc/norm/batchnorm.h) and of batch normalization + ReLU fused
(csrc/norm/batchnorm_relu.h): statistics and parameter gradients by the deterministic column reductions
(reduce.py), the normalize and input-gradient passes elementwise."""
from __future__ import annotations

import numpy as np

from ..kernel_table import kernel_name
from .common import ceil_div, choose_row_splits, ctype, scalar
from .reduce import ColumnFinal, ColumnReduceMode, column_finalize, column_reduce


def _batch_statistics(lx, x, rows, c, eps):
    """(mean, invstd) per channel of x seen as (rows, c): two passes, each in a fixed order."""
    mean = column_reduce(lx, ColumnReduceMode.SUM, x, x, x, x, rows, c, ColumnFinal.MEAN)
    return mean, column_reduce(lx, ColumnReduceMode.SQ_DEV, x, x, mean, mean, rows, c, ColumnFinal.INV_STD, eps)


def batchnorm_fprop_train(lx, x, gamma, beta, eps):
    x, gamma, beta = lx.c(x), lx.c(gamma), lx.c(beta)
    c = x.shape[-1]
    rows = x.size // c
    mean, invstd = _batch_statistics(lx, x, rows, c, eps)
    y = lx.xp.empty_like(x)
    lx.run1d(kernel_name("batchnorm_apply_kernel", t=ctype(x.dtype)), x.size,
             (x, mean, invstd, gamma, beta, y, np.int64(x.size), np.int32(c)))
    return y, mean, invstd


def batchnorm_fprop_infer(lx, x, gamma, beta, mean, var, eps):
    x = lx.c(x)
    y = lx.xp.empty_like(x)
    lx.run1d(kernel_name("batchnorm_infer_kernel", t=ctype(x.dtype)), x.size,
             (x, lx.c(gamma), lx.c(beta), lx.c(mean), lx.c(var), scalar(x.dtype, eps), y,
              np.int64(x.size), np.int32(x.shape[-1])))
    return y


def batchnorm_bprop(lx, dy, x, gamma, mean, invstd):
    dy, x, gamma, mean, invstd = (lx.c(a) for a in (dy, x, gamma, mean, invstd))
    c = x.shape[-1]
    rows = x.size // c
    dbeta = column_reduce(lx, ColumnReduceMode.SUM, dy, dy, dy, dy, rows, c, ColumnFinal.SUM)
    dgamma = column_reduce(lx, ColumnReduceMode.DOT_XHAT, dy, x, mean, invstd, rows, c, ColumnFinal.SUM)
    dx = lx.xp.empty_like(dy)
    lx.run1d(kernel_name("batchnorm_dx_kernel", t=ctype(x.dtype)), x.size,
             (dy, x, gamma, mean, invstd, dgamma, dbeta, dx, np.int64(x.size), np.int32(c)))
    return dx, dgamma, dbeta


def batchnorm_relu_fprop_train(lx, x, gamma, beta, eps):
    """-> (y, mean, invstd) of relu(batchnorm(x)) with batch statistics; the normalize pass applies ReLU."""
    x, gamma, beta = lx.c(x), lx.c(gamma), lx.c(beta)
    c = x.shape[-1]
    rows = x.size // c
    mean, invstd = _batch_statistics(lx, x, rows, c, eps)
    y = lx.xp.empty_like(x)
    if x.size:
        lx.run1d(kernel_name("batchnorm_relu_apply_kernel", t=ctype(x.dtype)), x.size,
                 (x, mean, invstd, gamma, beta, y, np.int64(x.size), np.int32(c)))
    return y, mean, invstd


def batchnorm_relu_fprop_infer(lx, x, gamma, beta, mean, var, eps):
    x = lx.c(x)
    y = lx.xp.empty_like(x)
    if x.size:
        lx.run1d(kernel_name("batchnorm_relu_infer_kernel", t=ctype(x.dtype)), x.size,
                 (x, lx.c(gamma), lx.c(beta), lx.c(mean), lx.c(var), scalar(x.dtype, eps),
                  y, np.int64(x.size), np.int32(x.shape[-1])))
    return y


def batchnorm_relu_bprop(lx, dy, y, x, gamma, mean, invstd):
    """-> (dx, dgamma, dbeta); the ReLU mask (from the fused output y) is applied inside each pass."""
    dy, y, x, gamma, mean, invstd = (lx.c(a) for a in (dy, y, x, gamma, mean, invstd))
    if dy.shape != x.shape or y.shape != x.shape:
        raise ValueError(f"dy {tuple(dy.shape)} and y {tuple(y.shape)} must have x's shape {tuple(x.shape)}")
    t = ctype(x.dtype)
    c = x.shape[-1]
    rows = x.size // c if c else 0
    dbeta, dgamma = lx.xp.empty((c,), x.dtype), lx.xp.empty((c,), x.dtype)
    dx = lx.xp.empty_like(dy)
    if c == 0:
        return dx, dgamma, dbeta
    splits = lx.force_splits or choose_row_splits(rows)
    per_split = max(1, ceil_div(rows, splits))
    splits = max(1, ceil_div(rows, per_split))
    pb, pg = lx.xp.empty((splits, c), x.dtype), lx.xp.empty((splits, c), x.dtype)
    lx.launch(kernel_name("batchnorm_relu_dparams_partial", t=t), (ceil_div(c, 32), splits), (32, 8),
              (dy, y, x, mean, invstd, np.int64(rows), np.int32(c), np.int64(per_split), pb, pg))
    for partial, out in ((pb, dbeta), (pg, dgamma)):
        column_finalize(lx, partial, splits, c, ColumnFinal.SUM, rows, 0.0, out)
    if x.size:
        lx.run1d(kernel_name("batchnorm_relu_dx_kernel", t=t), x.size,
                 (dy, y, x, gamma, mean, invstd, dgamma, dbeta, dx, np.int64(x.size), np.int32(c)))
    return dx, dgamma, dbeta
