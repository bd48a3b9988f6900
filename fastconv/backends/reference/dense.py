"""Fully connected layer y = x @ w + b with Keras-layout weights w (in, out). Under a tf32/bf16/fp16
precision policy the GEMM operands are rounded to that format first (rounding.py); sums stay fp32."""
from __future__ import annotations

from .rounding import round_operand


def dense_fprop(x, w, b=None, precision=None):
    y = round_operand(x, precision) @ round_operand(w, precision)
    if b is not None:
        y += b
    return y


def dense_bprop(dy, x, w, need_dx=True, precision=None):
    """-> (dx or None, dw, db). dx is skipped for the first layer, whose input needs no gradient.
    db sums the unrounded dy: the bias add is no GEMM."""
    rdy = round_operand(dy, precision)
    dx = rdy @ round_operand(w, precision).T if need_dx else None
    return dx, round_operand(x, precision).T @ rdy, dy.sum(axis=0)
