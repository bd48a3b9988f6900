"""Tensor and reverse-mode autograd on a tape.

Each differentiable op builds its output with `Tensor.from_op(data, parents, backward)`, where
`backward(grad)` returns one gradient (or None) per parent. `Tensor.backward()` walks the graph in
reverse topological order (iteratively, so deep graphs do not hit the recursion limit) and
accumulates gradients with `+=`.
"""
from __future__ import annotations

import contextlib
import threading

import numpy as np

from ._toposort import postorder
from .backends.device import array_module, check_device, device_of, to_device

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "grad_enabled", True)


@contextlib.contextmanager
def no_grad():
    """Inside this block ops record nothing, so no graph is kept and backward is impossible."""
    previous = is_grad_enabled()
    _state.grad_enabled = False
    try:
        yield
    finally:
        _state.grad_enabled = previous


@contextlib.contextmanager
def leaf_grad_hook(fn):
    """Inside this block backward() calls fn(leaf) as soon as a leaf's gradient of that pass is
    complete (every use of the leaf has been differentiated), before the rest of the graph is done:
    data-parallel training starts reducing a bucket of gradients while backward goes on
    (fastconv/parallel/buckets.py)."""
    previous = getattr(_state, "leaf_grad_hook", None)
    _state.leaf_grad_hook = fn
    try:
        yield
    finally:
        _state.leaf_grad_hook = previous


FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "name", "__weakref__")
    __array_priority__ = 100  # make `ndarray * Tensor` call Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, device: str | None = None, dtype=None, name: str | None = None):
        if isinstance(data, Tensor):
            data = data.data
        if device is None:
            device = device_of(data) if hasattr(data, "shape") else "cpu"
        device = check_device(device)
        xp = array_module(device)
        data = to_device(data, device) if hasattr(data, "shape") else xp.asarray(data)
        if dtype is not None:
            data = data.astype(dtype, copy=False)
        elif data.dtype.kind in "iub" and requires_grad:
            raise TypeError(f"requires_grad=True needs a float tensor, got dtype {data.dtype}")
        self.data = xp.asarray(data)
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._backward = None
        self.name = name

    # ---- graph construction -----------------------------------------------------------------
    @classmethod
    def from_op(cls, data, parents, backward) -> "Tensor":
        out = cls.__new__(cls)
        out.data, out.grad, out.name = data, None, None
        out.requires_grad = is_grad_enabled() and any(p.requires_grad for p in parents)
        out._parents = tuple(parents) if out.requires_grad else ()
        out._backward = backward if out.requires_grad else None
        return out

    def backward(self, grad=None) -> None:
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require grad "
                               "(no input had requires_grad=True, or it was built under no_grad())")
        xp = array_module(self.device)
        if grad is None:
            if self.data.size != 1:
                raise ValueError(f"grad must be given for a non-scalar tensor of shape {self.shape}")
            grad = xp.ones_like(self.data)
        grad = grad.data if isinstance(grad, Tensor) else xp.asarray(grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"grad must have shape {self.shape}, got {grad.shape}")

        order = postorder(self, lambda node: [p for p in node._parents if p.requires_grad])
        grads = {id(self): grad}
        hook = getattr(_state, "leaf_grad_hook", None)
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:  # a leaf: accumulate like PyTorch / micrograd
                node.grad = g.copy() if node.grad is None else node.grad + g
                if hook is not None:   # reversed postorder: every consumer of this leaf came before it
                    hook(node)
                continue
            for parent, pg in zip(node._parents, node._backward(g)):
                if pg is None or not parent.requires_grad:
                    continue
                grads[id(parent)] = pg if id(parent) not in grads else grads[id(parent)] + pg

    # ---- array-like surface -----------------------------------------------------------------
    @property
    def shape(self):
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def size(self):
        return int(self.data.size)

    @property
    def device(self) -> str:
        return device_of(self.data)

    def __len__(self):
        return self.shape[0]

    def numpy(self) -> np.ndarray:
        return to_device(self.data, "cpu")

    def item(self) -> float:
        return self.numpy().item()

    def to(self, device: str) -> "Tensor":
        device = check_device(device)
        source = self.device
        return Tensor.from_op(to_device(self.data, device), (self,), lambda g: (to_device(g, source),))

    def detach(self) -> "Tensor":
        return Tensor(self.data, device=self.device)

    def zero_grad(self) -> None:
        self.grad = None

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}, device='{self.device}'{grad})"

    # ---- a few differentiable operators, enough to write losses and residual nets ------------
    def __add__(self, other):
        from .functional.elementwise import add
        return add(self, other)

    __radd__ = __add__

    def __sub__(self, other):
        from .functional.elementwise import add, mul
        return add(self, mul(other, -1.0))

    def __rsub__(self, other):
        from .functional.elementwise import add, mul
        return add(mul(self, -1.0), other)

    def __mul__(self, other):
        from .functional.elementwise import mul
        return mul(self, other)

    __rmul__ = __mul__

    def __neg__(self):
        from .functional.elementwise import mul
        return mul(self, -1.0)

    def __truediv__(self, other):
        from .functional.elementwise import mul
        if isinstance(other, Tensor):
            raise TypeError("division by a Tensor is not supported; divide by a number")
        return mul(self, 1.0 / other)

    def __matmul__(self, other):
        from .functional.dense import dense
        return dense(self, other)

    def sum(self):
        from .functional.elementwise import sum_all
        return sum_all(self)

    def mean(self):
        from .functional.elementwise import sum_all, mul
        return mul(sum_all(self), 1.0 / self.size)

    def reshape(self, *shape):
        from .functional.shape import reshape
        return reshape(self, shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)


def as_tensor(value, name: str = "input", device: str | None = None) -> Tensor:
    """Wrap arrays (NumPy, CuPy) and scalars; pass Tensors through."""
    if isinstance(value, Tensor):
        return value
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return Tensor(value, device=device or device_of(value))
    if isinstance(value, (int, float, list, tuple)):
        return Tensor(np.asarray(value), device=device or "cpu")
    raise TypeError(f"{name} must be a Tensor or an array, got {type(value).__name__}")


def tensor(data, requires_grad: bool = False, device: str | None = None, dtype=None) -> Tensor:
    return Tensor(data, requires_grad=requires_grad, device=device, dtype=dtype)
