"""Launch plans of pooling (csrc/pool/): max-pool with its window-local argmax (the narrowest unsigned
type that holds R * S), average pool and global average pool, forward and backward, elementwise."""
from __future__ import annotations

import numpy as np

from ..kernel_table import kernel_name
from .common import ARGMAX_CTYPES, argmax_dtype, ctype, pool2d_problem


def max_pool2d_fprop(lx, x, pool, stride, padding):
    x = lx.c(x)
    pb, y_shape = pool2d_problem(x.shape, pool, stride, padding)
    y = lx.xp.empty(y_shape, x.dtype)
    adt = argmax_dtype(pool)
    argmax = lx.xp.empty(y_shape, adt)
    if y.size:
        lx.run1d(kernel_name("max_pool2d_fprop", t=ctype(x.dtype), arg=ARGMAX_CTYPES[adt]), y.size, (pb, x, y, argmax))
    return y, argmax


def max_pool2d_bprop(lx, dy, argmax, x_shape, pool, stride, padding):
    dy, argmax = lx.c(dy), lx.c(argmax)
    pb, y_shape = pool2d_problem(x_shape, pool, stride, padding)
    adt = argmax_dtype(pool)
    if argmax.dtype != adt:
        raise TypeError(f"argmax must be {adt} for a {pool} window, got {argmax.dtype}")
    dx = lx.xp.empty(tuple(x_shape), dy.dtype)
    if dx.size:
        lx.run1d(kernel_name("max_pool2d_bprop", t=ctype(dy.dtype), arg=ARGMAX_CTYPES[adt]), dx.size,
                 (pb, dy, argmax, dx))
    return dx


def avg_pool2d_fprop(lx, x, pool, stride, padding, count_include_pad=False):
    x = lx.c(x)
    pb, y_shape = pool2d_problem(x.shape, pool, stride, padding)
    y = lx.xp.empty(y_shape, x.dtype)
    if y.size:
        lx.run1d(kernel_name("avg_pool2d_fprop", t=ctype(x.dtype)), y.size,
                 (pb, x, y, np.int32(bool(count_include_pad))))
    return y


def avg_pool2d_bprop(lx, dy, x_shape, pool, stride, padding, count_include_pad=False):
    dy = lx.c(dy)
    pb, _ = pool2d_problem(x_shape, pool, stride, padding)
    dx = lx.xp.empty(tuple(x_shape), dy.dtype)
    if dx.size:
        lx.run1d(kernel_name("avg_pool2d_bprop", t=ctype(dy.dtype)), dx.size,
                 (pb, dy, dx, np.int32(bool(count_include_pad))))
    return dx


def global_avg_pool_fprop(lx, x):
    x = lx.c(x)
    n, h, w, c = x.shape
    y = lx.xp.empty((n, c), x.dtype)
    if y.size:
        lx.run1d(kernel_name("global_avg_pool_fprop", t=ctype(x.dtype)), y.size,
                 (x, y, np.int64(n), np.int64(h * w), np.int32(c)))
    return y


def global_avg_pool_bprop(lx, dy, x_shape):
    dy = lx.c(dy)
    n, h, w, c = x_shape
    dx = lx.xp.empty(tuple(x_shape), dy.dtype)
    if dx.size:
        lx.run1d(kernel_name("global_avg_pool_bprop", t=ctype(dy.dtype)), dx.size,
                 (dy, dx, np.int64(n), np.int64(h * w), np.int32(c)))
    return dx
