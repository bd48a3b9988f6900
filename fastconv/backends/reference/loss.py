"""Losses, each the mean over the batch returned as a 0-d array, with their input gradients.

labels are integer class ids (N,) or one-hot / probability rows (N, C) of the input's dtype.
dloss is the upstream gradient of the scalar loss (a number or 0-d array).
"""
from __future__ import annotations

import numpy as np


def _onehot(labels, like):
    if labels.ndim == 1:
        y = np.zeros_like(like)
        y[np.arange(len(labels)), labels] = 1
        return y
    return labels.astype(like.dtype, copy=False)


def _scale(dloss, n, dtype):
    """dloss / n as a scalar of dtype, so float32 gradients stay float32."""
    return dtype.type(np.asarray(dloss, np.float64) / n)


def softmax_cross_entropy_fprop(logits, labels):
    """-> (loss, probs). Log-softmax via log-sum-exp, so huge logits neither overflow nor log(0)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    logp = shifted - lse
    n = logits.shape[0]
    if labels.ndim == 1:
        nll = -logp[np.arange(n), labels]
    else:
        nll = -(labels * logp).sum(axis=1)
    return np.asarray(nll.mean(), logits.dtype), np.exp(logp)


def softmax_cross_entropy_bprop(probs, labels, dloss=1.0):
    # d/dlogits of mean(-sum(y log softmax)) = (softmax * sum(y) - y) / N: (softmax - y) / N for
    # one-hot or normalized rows (multiplying by a row sum of exactly 1 changes no bit).
    y = _onehot(labels, probs)
    return (probs * y.sum(axis=1, keepdims=True) - y) * _scale(dloss, probs.shape[0], probs.dtype)


def cross_entropy_fprop(probs, labels, eps=1e-7):
    """Keras categorical cross-entropy on probabilities clipped to [eps, 1 - eps]."""
    p = np.clip(probs, eps, 1 - eps)
    return np.asarray(-(_onehot(labels, probs) * np.log(p)).sum(axis=1).mean(), probs.dtype)


def cross_entropy_bprop(probs, labels, dloss=1.0, eps=1e-7):
    inside = (probs >= eps) & (probs <= 1 - eps)          # the clip has zero gradient outside
    p = np.clip(probs, eps, 1 - eps)
    g = -_onehot(labels, probs) / p * _scale(dloss, probs.shape[0], probs.dtype)
    return np.where(inside, g, 0).astype(probs.dtype, copy=False)


def mse_fprop(pred, target):
    d = pred - target
    return np.asarray((d * d).mean(), pred.dtype)


def mse_bprop(pred, target, dloss=1.0):
    return (pred - target) * _scale(2 * np.asarray(dloss, np.float64), pred.size, pred.dtype)
