"""Batch normalization over every axis but the last (channels), as Keras does."""
from __future__ import annotations

from .._checks import check_float
from ..tensor import Tensor
from ._util import backend, float_input


def batch_norm(x, gamma, beta, running_mean, running_var, training: bool,
               momentum: float = 0.99, epsilon: float = 1e-3) -> Tensor:
    """In training, normalizes with batch statistics and updates running_mean/var in place
    (Keras rule: running = momentum * running + (1 - momentum) * batch); otherwise uses them."""
    x, gamma, beta, epsilon = check_batch_norm_args(x, gamma, beta, running_mean, running_var, epsilon)
    B = backend(x)
    if not training:
        y = B.batchnorm_fprop_infer(x.data, gamma.data, beta.data, running_mean.data, running_var.data, epsilon)
        return Tensor.from_op(y, (x, gamma, beta), _infer_backward(x, gamma, running_mean, running_var, epsilon))
    y, mean, invstd = B.batchnorm_fprop_train(x.data, gamma.data, beta.data, epsilon)
    update_running_stats(running_mean, running_var, mean, invstd, epsilon, momentum)

    def backward(g):
        return B.batchnorm_bprop(g, x.data, gamma.data, mean, invstd)

    return Tensor.from_op(y, (x, gamma, beta), backward)


def _infer_backward(x, gamma, running_mean, running_var, epsilon):
    # With fixed statistics the op is affine in x: y = gamma * (x - mean) * invstd + beta.
    def backward(g):
        invstd = 1.0 / (running_var.data + epsilon) ** 0.5
        axes = tuple(range(g.ndim - 1))
        dgamma = (g * (x.data - running_mean.data) * invstd).sum(axes)
        return g * (gamma.data * invstd), dgamma, g.sum(axes)
    return backward


def check_batch_norm_args(x, gamma, beta, running_mean, running_var, epsilon):
    """(x, gamma, beta, epsilon) checked: float tensors, per-channel parameters of x's last axis."""
    x, gamma, beta = float_input(x, "x"), float_input(gamma, "gamma"), float_input(beta, "beta")
    channels = x.shape[-1]
    for name, t in (("gamma", gamma), ("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
        if tuple(t.shape) != (channels,):
            raise ValueError(f"{name} must have shape ({channels},) to match x's last axis, got {tuple(t.shape)}")
    return x, gamma, beta, check_float(epsilon, "epsilon", 0.0, low_open=True)


def update_running_stats(running_mean, running_var, mean, invstd, epsilon, momentum):
    """Keras' rule, in place: running = momentum * running + (1 - momentum) * batch statistic."""
    var = 1.0 / (invstd * invstd) - epsilon
    running_mean.data[...] = momentum * running_mean.data + (1 - momentum) * mean
    running_var.data[...] = momentum * running_var.data + (1 - momentum) * var
