"""Shared helpers for the reference-backend tests: a finite-difference VJP check and NHWC<->NCHW."""
import numpy as np


def check_vjp(f, inputs, dy, grads, rng, eps=1e-6, rtol=1e-7, directions=2):
    """Checks analytic input gradients of L = <f(*inputs), dy> against central differences.

    For each input i with a gradient and a few random directions v, compares
    (L(x_i + eps v) - L(x_i - eps v)) / 2 eps with <grads[i], v>. The tolerance is relative to
    sum |grads[i] * v|, so one wrong element among hundreds still fails it by orders of magnitude."""
    def loss(i, t, v):
        args = list(inputs)
        args[i] = inputs[i] + t * v
        return float(np.sum(f(*args) * dy))

    for i, g in enumerate(grads):
        if g is None:
            continue
        assert g.shape == inputs[i].shape and g.dtype == inputs[i].dtype, f"input {i}: {g.shape} {g.dtype}"
        for _ in range(directions):
            v = rng.standard_normal(inputs[i].shape)
            numeric = (loss(i, eps, v) - loss(i, -eps, v)) / (2 * eps)
            analytic = float(np.sum(g * v))
            scale = float(np.sum(np.abs(g * v))) + abs(numeric) + 1e-12
            assert abs(numeric - analytic) <= rtol * scale, \
                f"input {i}: analytic {analytic!r} vs numeric {numeric!r} (scale {scale:.3g})"


def nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def nhwc(a):
    return np.ascontiguousarray(np.asarray(a).transpose(0, 2, 3, 1))
