"""Launch plans of the pointwise activations (csrc/ops/elementwise.h, with csrc/epilogue/activation.h's
functions): one elementwise kernel per direction, the activation chosen by its ACTIVATIONS number."""
from __future__ import annotations

import numpy as np

from ..kernel_table import kernel_name
from .common import ACTIVATIONS, ctype, scalar


def act_fprop(lx, name, x, alpha=0.0):
    x = lx.c(x)
    y = lx.xp.empty_like(x)
    if x.size:
        lx.run1d(kernel_name("activation_fprop_kernel", t=ctype(x.dtype)), x.size,
                 (np.int32(ACTIVATIONS[name]), x, y, np.int64(x.size), scalar(x.dtype, alpha)))
    return y


def act_bprop(lx, name, dy, saved, alpha=0.0):
    dy, saved = lx.c(dy), lx.c(saved)
    dx = lx.xp.empty_like(dy)
    if dy.size:
        lx.run1d(kernel_name("activation_bprop_kernel", t=ctype(dy.dtype)), dy.size,
                 (np.int32(ACTIVATIONS[name]), dy, saved, dx, np.int64(dy.size), scalar(dy.dtype, alpha)))
    return dx


def relu_fprop(lx, x):
    return act_fprop(lx, "relu", x)


def relu_bprop(lx, dy, x):
    return act_bprop(lx, "relu", dy, x)


def leaky_relu_fprop(lx, x, alpha):
    return act_fprop(lx, "leaky_relu", x, alpha)


def leaky_relu_bprop(lx, dy, x, alpha):
    return act_bprop(lx, "leaky_relu", dy, x, alpha)


def sigmoid_fprop(lx, x):
    return act_fprop(lx, "sigmoid", x)


def sigmoid_bprop(lx, dy, y):
    return act_bprop(lx, "sigmoid", dy, y)


def tanh_fprop(lx, x):
    return act_fprop(lx, "tanh", x)


def tanh_bprop(lx, dy, y):
    return act_bprop(lx, "tanh", dy, y)
