"""Shape ops: reshape and flatten (views; the backward reshapes the gradient back)."""
from __future__ import annotations

from ..tensor import Tensor, as_tensor


def reshape(x, shape) -> Tensor:
    x = as_tensor(x, "x")
    shape = tuple(int(d) for d in shape)
    try:
        y = x.data.reshape(shape)
    except ValueError:
        raise ValueError(f"cannot reshape x of shape {x.shape} ({x.size} elements) to {shape}") from None
    return Tensor.from_op(y, (x,), lambda g: (g.reshape(x.shape),))


def flatten(x) -> Tensor:
    """(N, ...) -> (N, prod(...)), keeping the batch axis."""
    x = as_tensor(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x must have a batch axis and at least one more, got shape {x.shape}")
    return reshape(x, (x.shape[0], -1))
