"""dense: x @ w + b with Keras-layout weights (in, out); precision as in conv2d.py."""
from __future__ import annotations

from .._checks import check_rank, check_same_dtype
from ..tensor import Tensor
from ._util import backend, float_input, same_device
from .conv2d import precision_kwargs


def dense(x, w, bias=None, precision=None) -> Tensor:
    x, w = float_input(x, "x"), float_input(w, "w")
    check_rank(x.data, 2, "x", "batch, features")
    check_rank(w.data, 2, "w", "in_features, out_features")
    check_same_dtype(x.data, w.data, "x", "w")
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"x has {x.shape[1]} features but w expects {w.shape[0]} (w shape {w.shape})")
    b = None
    if bias is not None:
        b = float_input(bias, "bias")
        if b.shape != (w.shape[1],):
            raise ValueError(f"bias must have shape ({w.shape[1]},), got {b.shape}")
    same_device(("x", x), ("w", w), ("bias", b))
    B = backend(x)
    prec = precision_kwargs(precision)
    y = B.dense_fprop(x.data, w.data, None if b is None else b.data, **prec)

    def backward(g):
        dx, dw, db = B.dense_bprop(g, x.data, w.data, need_dx=x.requires_grad, **prec)
        return (dx, dw) if b is None else (dx, dw, db)

    return Tensor.from_op(y, (x, w) if b is None else (x, w, b), backward)
