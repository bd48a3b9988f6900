"""Fully connected layer y = x @ w + b with Keras-layout weights w (in, out)."""
from __future__ import annotations


def dense_fprop(x, w, b=None):
    y = x @ w
    if b is not None:
        y += b
    return y


def dense_bprop(dy, x, w, need_dx=True):
    """-> (dx or None, dw, db). dx is skipped for the first layer, whose input needs no gradient."""
    dx = dy @ w.T if need_dx else None
    return dx, x.T @ dy, dy.sum(axis=0)
