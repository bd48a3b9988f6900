"""Max, average and global-average pooling on NHWC activations, forward beside backward.

Windows follow the conv geometry of fastconv.shapes (dilation 1): output (p, q) reads input rows
p*sh + r - top and columns q*sw + s - left for r < R, s < S. Positions in the padding are never
part of a window's value: max ignores them, average excludes them from the divisor unless
count_include_pad. Every op loops over the R*S window taps, each tap a strided view of the input.
"""
from __future__ import annotations

import numpy as np

from ...shapes import conv_output_hw


def _taps(shape, pool, stride, padding):
    """(P, Q) and, per tap (r, s), the slices of the padded input it reads plus a (1, P, Q, 1)
    bool mask saying which outputs read a real (non-padding) position with it."""
    h, w = shape[1:3]
    (sh, sw), ((pt, _), (pl, _)) = stride, padding
    p, q = conv_output_hw((h, w), pool, stride, padding, what="pool_size")
    rows = np.arange(p) * sh - pt      # input row read by tap r = 0
    cols = np.arange(q) * sw - pl
    taps = []
    for r in range(pool[0]):
        for s in range(pool[1]):
            valid = ((rows + r >= 0) & (rows + r < h))[:, None] & ((cols + s >= 0) & (cols + s < w))[None, :]
            taps.append((r * pool[1] + s, (slice(None), slice(r, r + (p - 1) * sh + 1, sh),
                                           slice(s, s + (q - 1) * sw + 1, sw)), valid[None, :, :, None]))
    return (p, q), taps


def _pad(x, padding, value=0):
    return np.pad(x, ((0, 0), padding[0], padding[1], (0, 0)), constant_values=value) if np.any(padding) else x


def _padded_zeros(shape, padding, dtype):
    (pt, pb), (pl, pr) = padding
    n, h, w, c = shape
    return np.zeros((n, h + pt + pb, w + pl + pr, c), dtype)


def _crop(xp, shape, padding):
    (pt, _), (pl, _) = padding
    return np.ascontiguousarray(xp[:, pt:pt + shape[1], pl:pl + shape[2]])


def argmax_dtype(pool):
    """uint8 holds window offsets r*S + s while R*S <= 255; larger windows need wider ints."""
    area = pool[0] * pool[1]
    return np.uint8 if area <= 255 else np.uint16 if area <= 65535 else np.uint32


def max_pool2d_fprop(x, pool, stride, padding):
    """-> (y, argmax): argmax holds the window offset r*S + s of the chosen element.
    Ties pick the first maximum in row-major window order; a NaN in the window wins (y = NaN,
    argmax = the first NaN; PyTorch's CPU kernel reports the last NaN instead). A window lying
    wholly in the padding gives -inf and argmax 0."""
    _, taps = _taps(x.shape, pool, stride, padding)
    xp = _pad(x, padding, -np.inf)
    # Pass 1, the value: np.maximum propagates NaN, and -inf padding never beats a real element.
    best = xp[taps[0][1]].copy()
    for _, sl, _ in taps[1:]:
        np.maximum(best, xp[sl], out=best)
    # Pass 2, the offset: the first real tap equal to the max (or NaN when the max is NaN).
    # Plain arithmetic on masks, since NumPy's masked copies are ~20x slower than a multiply.
    arg = np.zeros(best.shape, argmax_dtype(pool))
    found = np.zeros(best.shape, bool)
    hit, nan, step = np.empty(best.shape, bool), np.empty(best.shape, bool), np.empty(best.shape, arg.dtype)
    for k, sl, valid in taps:               # scratch buffers reused: allocation dominated this loop
        v = xp[sl]
        np.equal(v, best, out=hit)
        hit |= np.not_equal(v, v, out=nan)
        if not valid.all():
            hit &= valid                      # a -inf max must not be found in the padding
        hit &= ~found
        np.multiply(hit, arg.dtype.type(k), out=step)
        arg += step
        found |= hit
    return best, arg


def max_pool2d_bprop(dy, argmax, x_shape, pool, stride, padding):
    """Routes dy to the argmax element; tap by tap in a fixed order, so overlapping windows
    accumulate deterministically. Written as dy * (argmax == k): exact for finite dy, while a
    NaN/inf dy reaches every element of its window (0 * inf = NaN) rather than just the argmax."""
    _, taps = _taps(x_shape, pool, stride, padding)
    dxp = _padded_zeros(x_shape, padding, dy.dtype)
    # Two scratch buffers reused across taps: fresh arrays of this size cost more in page faults
    # than in arithmetic (seed model step on this 2-core machine, see benchmarks/NOTES.md).
    hit, part = np.empty(dy.shape, bool), np.empty_like(dy)
    for k, sl, _ in taps:
        np.equal(argmax, argmax.dtype.type(k), out=hit)
        np.multiply(dy, hit, out=part)
        dxp[sl] += part
    return _crop(dxp, x_shape, padding)


def _divisor(shape, pool, stride, padding, count_include_pad, dtype):
    """(1, P, Q, 1) window sizes: R*S, or the count of real (non-padding) positions (at least 1,
    so a window lying wholly in the padding averages to 0 instead of 0/0)."""
    (p, q), taps = _taps(shape, pool, stride, padding)
    if count_include_pad:
        return np.full((1, p, q, 1), pool[0] * pool[1], dtype)
    return np.maximum(sum(valid.astype(dtype) for _, _, valid in taps), 1)


def avg_pool2d_fprop(x, pool, stride, padding, count_include_pad=False):
    (p, q), taps = _taps(x.shape, pool, stride, padding)
    xp = _pad(x, padding)                          # zeros: padding adds nothing to the sum
    total = np.zeros((x.shape[0], p, q, x.shape[3]), x.dtype)
    for _, sl, _ in taps:
        total += xp[sl]
    return total / _divisor(x.shape, pool, stride, padding, count_include_pad, x.dtype)


def avg_pool2d_bprop(dy, x_shape, pool, stride, padding, count_include_pad=False):
    _, taps = _taps(x_shape, pool, stride, padding)
    g = dy / _divisor(x_shape, pool, stride, padding, count_include_pad, dy.dtype)
    dxp = _padded_zeros(x_shape, padding, dy.dtype)
    for _, sl, _ in taps:
        dxp[sl] += g                               # gradient landing in the padding is cropped away
    return _crop(dxp, x_shape, padding)


def global_avg_pool_fprop(x):
    return x.mean(axis=(1, 2))


def global_avg_pool_bprop(dy, x_shape):
    n, h, w, c = x_shape
    dx = np.empty(x_shape, dy.dtype)
    dx[...] = (dy / dy.dtype.type(h * w))[:, None, None, :]
    return dx
