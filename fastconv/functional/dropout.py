"""Inverted dropout with a counter-based mask: the same (seed, offset) always drops the same units."""
from __future__ import annotations

from .._checks import check_float, check_int
from ..tensor import Tensor
from ._util import backend, float_input


def dropout(x, rate: float, seed: int, offset: int = 0, training: bool = True) -> Tensor:
    x = float_input(x, "x")
    rate = check_float(rate, "rate", 0.0, 1.0, high_open=True)
    seed, offset = check_int(seed, "seed", 0), check_int(offset, "offset", 0)
    if not training or rate == 0.0:
        return x
    B = backend(x)
    mask = B.dropout_mask(x.shape, rate, seed, offset, dtype=x.dtype)
    return Tensor.from_op(B.dropout_fprop(x.data, mask), (x,), lambda g: (B.dropout_bprop(g, mask),))
