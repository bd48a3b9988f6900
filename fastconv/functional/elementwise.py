"""Elementwise add / multiply with broadcasting, reductions and concatenation."""
from __future__ import annotations

import numpy as np

from ..backends.device import array_module
from ..tensor import Tensor, as_tensor
from ._util import same_device


def _unbroadcast(g, shape):
    """Sum a broadcast gradient back down to `shape`."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


def _operand(value, like: Tensor) -> Tensor:
    if isinstance(value, (int, float)):
        return Tensor(like.data.dtype.type(value), device=like.device)
    return as_tensor(value, "other")


def add(a, b) -> Tensor:
    a = as_tensor(a, "a")
    b = _operand(b, a)
    same_device(("a", a), ("b", b))
    try:
        y = a.data + b.data
    except ValueError:
        raise ValueError(f"cannot add shapes {a.shape} and {b.shape}: they do not broadcast") from None
    return Tensor.from_op(y, (a, b), lambda g: (_unbroadcast(g, a.shape), _unbroadcast(g, b.shape)))


def mul(a, b) -> Tensor:
    a = as_tensor(a, "a")
    b = _operand(b, a)
    same_device(("a", a), ("b", b))
    try:
        y = a.data * b.data
    except ValueError:
        raise ValueError(f"cannot multiply shapes {a.shape} and {b.shape}: they do not broadcast") from None
    return Tensor.from_op(y, (a, b), lambda g: (_unbroadcast(g * b.data, a.shape), _unbroadcast(g * a.data, b.shape)))


def sum_all(x) -> Tensor:
    x = as_tensor(x, "x")
    return Tensor.from_op(x.data.sum(), (x,), lambda g: (g + array_module(x.device).zeros_like(x.data),))


def concatenate(tensors, axis: int = -1) -> Tensor:
    tensors = [as_tensor(t, f"tensors[{i}]") for i, t in enumerate(tensors)]
    if not tensors:
        raise ValueError("tensors must hold at least one tensor")
    same_device(*((f"tensors[{i}]", t) for i, t in enumerate(tensors)))
    xp = array_module(tensors[0].device)
    try:
        y = xp.concatenate([t.data for t in tensors], axis=axis)
    except ValueError as exc:
        raise ValueError(f"cannot concatenate shapes {[t.shape for t in tensors]} along axis {axis}: {exc}") from None
    bounds = np.cumsum([t.shape[axis] for t in tensors])[:-1]

    def backward(g):
        return tuple(xp.split(g, bounds, axis=axis))

    return Tensor.from_op(y, tensors, backward)
