"""Dynamic loss scaling for fp16 training (the scheme of Micikevicius et al., "Mixed Precision Training").

fp16 operands flush gradients below 2^-24 to zero; multiplying the loss by a large scale S lifts the
whole backward pass into fp16's range, and the gradients are divided by S before the optimizer sees
them (fp32 master weights). Too large an S overflows to inf: that step is skipped (weights, optimizer
slots and step count untouched) and S halves. After `growth_interval` good steps in a row S doubles,
probing for the largest scale that does not overflow.

    scaler = DynamicLossScaler()
    loss.backward(scaler.scale)             # seed the backward with S instead of 1
    if scaler.unscale_and_check(params):    # grads /= S, True when all finite
        optimizer.step(params)
    scaler.update(...)                      # done by unscale_and_check
bf16 has fp32's exponent range and needs none of this.
"""
from __future__ import annotations

import numpy as np

from ._checks import check_float, check_int
from .backends.device import array_module


class DynamicLossScaler:
    def __init__(self, initial_scale=2.0 ** 15, growth_factor=2.0, backoff_factor=0.5, growth_interval=2000,
                 max_scale=None):
        self.scale = check_float(initial_scale, "initial_scale", 0.0, low_open=True)
        self.growth_factor = check_float(growth_factor, "growth_factor", 1.0, low_open=True)
        self.backoff_factor = check_float(backoff_factor, "backoff_factor", 0.0, 1.0, low_open=True, high_open=True)
        self.growth_interval = check_int(growth_interval, "growth_interval", 1)
        # growth stops at max_scale (default: 2^24, or the initial scale when that is larger)
        self.max_scale = max(2.0 ** 24, self.scale) if max_scale is None else check_float(max_scale, "max_scale",
                                                                                             self.scale)
        self.good_steps = 0       # finite steps since the last change of scale
        self.skipped_steps = 0    # over the scaler's life

    def update(self, finite: bool) -> None:
        """Record one step: halve on overflow, double after growth_interval finite steps in a row."""
        if not finite:
            self.scale = max(self.scale * self.backoff_factor, np.finfo(np.float32).tiny)
            self.good_steps = 0
            self.skipped_steps += 1
            return
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.scale = min(self.scale * self.growth_factor, self.max_scale)
            self.good_steps = 0

    def unscale_and_check(self, params) -> bool:
        """Divide every gradient by the scale, in place, if all are finite, and update the scale.
        -> True when the optimizer may step; False (gradients left as they are) to skip it."""
        live = [p for p in params if p.grad is not None]
        finite = all(bool(array_module(p.device).isfinite(p.grad).all()) for p in live)
        if finite:
            inv = 1.0 / self.scale
            for p in live:
                p.grad *= p.grad.dtype.type(inv)   # exact while the scale is a power of two (the defaults)
        self.update(finite)
        return finite

    def state(self) -> dict:
        return {"scale": self.scale, "good_steps": self.good_steps, "skipped_steps": self.skipped_steps}

    def load_state(self, state: dict) -> None:
        self.scale, self.good_steps = float(state["scale"]), int(state["good_steps"])
        self.skipped_steps = int(state["skipped_steps"])
