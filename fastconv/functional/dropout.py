"""Inverted dropout with a counter-based mask: the same (seed, offset) always drops the same units."""
from __future__ import annotations

import numpy as np

from .._checks import check_float, check_int
from ..backends.device import device_of
from ..tensor import Tensor
from ._util import backend, float_input


def dropout(x, rate: float, seed: int, offset=0, training: bool = True) -> Tensor:
    """offset: an int, or a 0-d int64 array on x's device holding it (the Dropout layer's counter),
    read when the mask is drawn: on the GPU a kernel reads it, so a CUDA graph replays fresh masks."""
    x = float_input(x, "x")
    rate = check_float(rate, "rate", 0.0, 1.0, high_open=True)
    seed = check_int(seed, "seed", 0)
    offset = _check_offset(offset, x)
    if not training or rate == 0.0:
        return x
    B = backend(x)
    mask = B.dropout_mask(x.shape, rate, seed, offset, dtype=x.dtype)
    return Tensor.from_op(B.dropout_fprop(x.data, mask), (x,), lambda g: (B.dropout_bprop(g, mask),))


def _check_offset(offset, x):
    if not hasattr(offset, "dtype") or np.ndim(offset) == 0 and isinstance(offset, np.generic):
        return check_int(offset, "offset", 0)
    if offset.shape != () or offset.dtype != np.int64:
        raise ValueError(f"offset must be an int or a 0-d int64 array, got an array of shape {offset.shape} "
                         f"and dtype {offset.dtype}")
    if device_of(offset) != x.device:
        raise ValueError(f"offset array is on the {device_of(offset)} but x is on the {x.device}")
    return offset
