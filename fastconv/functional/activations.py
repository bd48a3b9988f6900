"""Elementwise activations and softmax; each forward beside its backward."""
from __future__ import annotations

from .._checks import check_float
from ..tensor import Tensor
from ._util import backend, float_input


def relu(x) -> Tensor:
    x = float_input(x, "x")
    B = backend(x)
    return Tensor.from_op(B.relu_fprop(x.data), (x,), lambda g: (B.relu_bprop(g, x.data),))


def leaky_relu(x, alpha: float = 0.2) -> Tensor:  # Keras' default negative slope
    x = float_input(x, "x")
    alpha = check_float(alpha, "alpha", 0.0)
    B = backend(x)
    return Tensor.from_op(B.leaky_relu_fprop(x.data, alpha), (x,),
                          lambda g: (B.leaky_relu_bprop(g, x.data, alpha),))


def sigmoid(x) -> Tensor:
    x = float_input(x, "x")
    B = backend(x)
    y = B.sigmoid_fprop(x.data)
    return Tensor.from_op(y, (x,), lambda g: (B.sigmoid_bprop(g, y),))


def tanh(x) -> Tensor:
    x = float_input(x, "x")
    B = backend(x)
    y = B.tanh_fprop(x.data)
    return Tensor.from_op(y, (x,), lambda g: (B.tanh_bprop(g, y),))


def softmax(x, axis: int = -1) -> Tensor:
    x = float_input(x, "x")
    B = backend(x)
    y = B.softmax_fprop(x.data, axis)
    return Tensor.from_op(y, (x,), lambda g: (B.softmax_bprop(g, y, axis),))


def linear(x) -> Tensor:
    return float_input(x, "x")


ACTIVATIONS = {"relu": relu, "leaky_relu": leaky_relu, "sigmoid": sigmoid, "tanh": tanh,
               "softmax": softmax, "linear": linear}


def get_activation(identifier):
    """None, 'relu', 'softmax', ... or a callable -> callable."""
    if identifier is None:
        return linear
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in ACTIVATIONS:
        return ACTIVATIONS[identifier.lower()]
    raise ValueError(f"activation must be None, a callable or one of {sorted(ACTIVATIONS)}, got {identifier!r}")
