"""Batch normalization with channels on the last axis; statistics over all other axes.

Training uses the batch mean and the biased variance (as Keras): y = gamma * (x - mean) * invstd + beta
with invstd = 1 / sqrt(var + eps). Inference uses given running statistics.
"""
from __future__ import annotations

import numpy as np


def _axes(x):
    return tuple(range(x.ndim - 1))


def batchnorm_fprop_train(x, gamma, beta, eps):
    """-> (y, mean, invstd); mean/invstd have shape (C,) and are kept for the backward pass."""
    axes = _axes(x)
    mean = x.mean(axis=axes)
    xc = x - mean
    invstd = 1 / np.sqrt((xc * xc).mean(axis=axes) + x.dtype.type(eps))   # two-pass variance: no cancellation
    return xc * (gamma * invstd) + beta, mean, invstd


def batchnorm_fprop_infer(x, gamma, beta, mean, var, eps):
    scale = gamma / np.sqrt(var + x.dtype.type(eps))
    return x * scale + (beta - mean * scale)


def batchnorm_bprop(dy, x, gamma, mean, invstd):
    """-> (dx, dgamma, dbeta). The batch statistics depend on x, so
    dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat))."""
    axes = _axes(x)
    xhat = (x - mean) * invstd
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    m = x.size // x.shape[-1]
    dx = (gamma * invstd) * (dy - (dbeta + xhat * dgamma) / dy.dtype.type(m))
    return dx, dgamma, dbeta
