"""Launch plans of softmax and the losses (csrc/ops/softmax.h): the *_rows kernels (a
row per group of threads, 16-byte loads where they apply), softmax over a strided axis, cross-entropy (with
or without the softmax, integer or one-hot labels) and mean squared error, reduced in a fixed order."""
from __future__ import annotations

import math

import numpy as np

from ..kernel_table import kernel_name
from ...explain import active as explain_active, note
from .common import ELEMENTWISE_THREADS, MAX_ELEMENTWISE_BLOCKS, ceil_div, ctype, vector_width
from .reduce import ScalarReduceMode, reduce_to_scalar


def _axis_split(shape, axis):
    axis = axis % len(shape) if shape else 0
    outer = math.prod(shape[:axis])
    return outer, shape[axis], math.prod(shape[axis + 1:])


def _row_threads(vectors):
    """Threads per row (a power of two) of the *_rows kernels (csrc/ops/softmax.h) for a row of
    `vectors` loads: one load each up to a warp, a warp up to 8 loads per lane, then enough
    warps for about 8 loads each, at most 1024 (a block per row)."""
    if vectors <= 32:
        return 1 << max(0, vectors - 1).bit_length()
    if vectors <= 256:
        return 32
    return min(1024, 1 << (ceil_div(vectors, 8) - 1).bit_length())


def launch_rows(lx, kernel, targs, rows, d, arrays, args):
    """Launches fc::<kernel><targs..., V> (targs: its other template parameters by name) over `rows` rows
    of `d` elements: V = 4 (16-byte loads) for float32 when d % 4 == 0 and every array is 16-byte aligned,
    else 1. The threads per row depend on (d, V) only, so a shape always reduces in the same order."""
    vec = vector_width(arrays[0].dtype, (d,), [lx.ptr(a) for a in arrays])
    if lx.force_vec is not None:
        vec = min(vec, lx.force_vec)
    tpr = _row_threads(d // vec)
    rows_per_block = max(1, ELEMENTWISE_THREADS // tpr)
    if explain_active():
        note(f"{kernel}: {tpr} thread(s) per row of {d}, {rows_per_block} row(s) per block, "
             + ("16-byte loads" if vec == 4 else "scalar loads (row length not a multiple of 4, a pointer not "
                "16-byte aligned, float64, or force_vec)"))
    grid = (max(1, min(ceil_div(rows, rows_per_block), MAX_ELEMENTWISE_BLOCKS)),)
    lx.launch(kernel_name(kernel, **targs, vec=vec), grid, (tpr, rows_per_block), args)


def softmax_fprop(lx, x, axis=-1):
    x = lx.c(x)
    y = lx.xp.empty_like(x)
    outer, d, inner = _axis_split(x.shape, axis)
    if not x.size:
        return y
    if inner == 1:
        launch_rows(lx, "softmax_fprop_rows", {"t": ctype(x.dtype)}, outer, d, (x, y),
                    (x, y, np.int64(outer), np.int64(d)))
    else:   # one thread per line: neighbouring threads read neighbouring inner positions
        lx.run1d(kernel_name("softmax_fprop_strided", t=ctype(x.dtype)), outer * inner,
                 (x, y, np.int64(outer), np.int64(d), np.int64(inner)))
    return y


def softmax_bprop(lx, dy, y, axis=-1):
    dy, y = lx.c(dy), lx.c(y)
    dx = lx.xp.empty_like(dy)
    outer, d, inner = _axis_split(dy.shape, axis)
    if not dy.size:
        return dx
    if inner == 1:
        launch_rows(lx, "softmax_bprop_rows", {"t": ctype(dy.dtype)}, outer, d, (dy, y, dx),
                    (dy, y, dx, np.int64(outer), np.int64(d)))
    else:
        lx.run1d(kernel_name("softmax_bprop_strided", t=ctype(dy.dtype)), outer * inner,
                 (dy, y, dx, np.int64(outer), np.int64(d), np.int64(inner)))
    return dx


def _labels(lx, labels, like):
    if labels.ndim == 1:
        return lx.c(labels.astype(np.int64, copy=False)), "int64_t"
    return lx.c(labels.astype(like.dtype, copy=False)), ctype(like.dtype)


def _dloss(lx, dloss, dtype):
    return lx.xp.asarray(dloss, dtype=dtype).reshape(1)


def softmax_cross_entropy_fprop(lx, logits, labels):
    logits = lx.c(logits)
    n, c = logits.shape
    lab, lt = _labels(lx, labels, logits)
    probs = lx.xp.empty_like(logits)
    nll = lx.xp.empty((n,), logits.dtype)
    launch_rows(lx, "softmax_xent_fprop_rows", {"t": ctype(logits.dtype), "label": lt}, n, c, (logits, lab, probs),
                (logits, lab, np.int64(n), np.int64(c), probs, nll))
    return reduce_to_scalar(lx, ScalarReduceMode.SUM, nll, nll, n, float(n)), probs


def softmax_cross_entropy_bprop(lx, probs, labels, dloss=1.0):
    probs = lx.c(probs)
    n, c = probs.shape
    lab, lt = _labels(lx, labels, probs)
    out = lx.xp.empty_like(probs)
    launch_rows(lx, "softmax_xent_bprop_rows", {"t": ctype(probs.dtype), "label": lt}, n, c, (probs, lab, out),
                (probs, lab, _dloss(lx, dloss, probs.dtype), np.int64(n), np.int64(c), out))
    return out


def cross_entropy_fprop(lx, probs, labels, eps=1e-7):
    probs = lx.c(probs)
    n, c = probs.shape
    lab, lt = _labels(lx, labels, probs)
    nll = lx.xp.empty((n,), probs.dtype)
    dt = probs.dtype.type
    launch_rows(lx, "cross_entropy_fprop_rows", {"t": ctype(probs.dtype), "label": lt}, n, c, (probs, lab),
                (probs, lab, np.int64(n), np.int64(c), dt(eps), dt(1 - eps), nll))
    return reduce_to_scalar(lx, ScalarReduceMode.SUM, nll, nll, n, float(n))


def cross_entropy_bprop(lx, probs, labels, dloss=1.0, eps=1e-7):
    probs = lx.c(probs)
    n, c = probs.shape
    lab, lt = _labels(lx, labels, probs)
    out = lx.xp.empty_like(probs)
    dt = probs.dtype.type
    lx.run1d(kernel_name("cross_entropy_bprop_kernel", t=ctype(probs.dtype), label=lt), probs.size,
             (probs, lab, _dloss(lx, dloss, probs.dtype), np.int64(n), np.int32(c), dt(eps), dt(1 - eps), out))
    return out


def mse_fprop(lx, pred, target):
    pred, target = lx.c(pred), lx.c(target.astype(pred.dtype, copy=False))
    return reduce_to_scalar(lx, ScalarReduceMode.SQ_DIFF, pred, target, pred.size, float(pred.size))


def mse_bprop(lx, pred, target, dloss=1.0):
    pred, target = lx.c(pred), lx.c(target.astype(pred.dtype, copy=False))
    out = lx.xp.empty_like(pred)
    lx.run1d(kernel_name("mse_bprop_kernel", t=ctype(pred.dtype)), pred.size,
             (pred, target, _dloss(lx, dloss, pred.dtype), np.int64(pred.size), out))
    return out
