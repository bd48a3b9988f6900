"""Inverted dropout with a counter-based mask that a CUDA kernel reproduces bit for bit.

Element i (C-order linear index) of a mask drawn with (seed, offset) uses counter c = offset + i
and a 32-bit draw u built from splitmix64 (all arithmetic modulo 2**64):

    GAMMA = 0x9E3779B97F4A7C15
    mix64(z) = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB; z ^ (z >> 31)
    splitmix64(z) = mix64(z + GAMMA)
    key = splitmix64(seed)                 # once per call
    u   = splitmix64(key ^ c) >> 32        # upper 32 bits

The element is kept when u >= threshold, threshold = min(round(rate * 2**32), 2**32 - 1) (an
integer compare, so no float rounding differs between devices); kept elements are scaled by
dtype(1 / (1 - rate)) with the division done in float64. rate == 0 keeps everything (scale 1).
The counter is 64-bit, so a layer may advance `offset` by x.size every step without wrapping.
"""
from __future__ import annotations

import numpy as np

GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1


def _splitmix64(z):
    """splitmix64 output for state z (a uint64 array), computed in place; wraps modulo 2**64."""
    z += GAMMA
    z ^= z >> np.uint64(30)
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def hash32(seed, counters):
    """u = upper 32 bits of splitmix64(splitmix64(seed) ^ counter), for uint64 counters."""
    key = _splitmix64(np.array([int(seed) & _MASK64], np.uint64))
    return (_splitmix64(counters ^ key) >> np.uint64(32)).astype(np.uint32)


def dropout_mask(shape, rate, seed, offset=0, dtype=np.float32):
    """Mask of 0 and 1/(1-rate), same shape as the activation it multiplies."""
    size = int(np.prod(shape, dtype=np.int64))
    counters = np.arange(size, dtype=np.uint64)
    counters += np.uint64(int(offset) & _MASK64)
    threshold = min(round(rate * 2**32), 2**32 - 1)
    keep = hash32(seed, counters) >= np.uint32(threshold)
    return (keep * np.dtype(dtype).type(1.0 / (1.0 - rate))).reshape(shape)


def dropout_fprop(x, mask):
    return x * mask


def dropout_bprop(dy, mask):
    return dy * mask
