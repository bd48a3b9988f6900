"""Learning-rate schedules: callables from the optimizer step (0-based) to a learning rate."""
from __future__ import annotations

import math

from ._checks import check_float, check_int


class LearningRateSchedule:
    def __call__(self, step: int) -> float:
        raise NotImplementedError

    def get_config(self) -> dict:
        return dict(vars(self))


class StepDecay(LearningRateSchedule):
    """initial * gamma ** (step // step_size)."""

    def __init__(self, initial_learning_rate, step_size, gamma=0.1):
        self.initial_learning_rate = check_float(initial_learning_rate, "initial_learning_rate", 0.0, low_open=True)
        self.step_size = check_int(step_size, "step_size", 1)
        self.gamma = check_float(gamma, "gamma", 0.0)

    def __call__(self, step):
        return self.initial_learning_rate * self.gamma ** (step // self.step_size)


class CosineDecay(LearningRateSchedule):
    """Half a cosine from initial down to initial * alpha over decay_steps, then flat (Keras' CosineDecay)."""

    def __init__(self, initial_learning_rate, decay_steps, alpha=0.0):
        self.initial_learning_rate = check_float(initial_learning_rate, "initial_learning_rate", 0.0, low_open=True)
        self.decay_steps = check_int(decay_steps, "decay_steps", 1)
        self.alpha = check_float(alpha, "alpha", 0.0, 1.0)

    def __call__(self, step):
        progress = min(step, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine + self.alpha)


SCHEDULES = {"StepDecay": StepDecay, "CosineDecay": CosineDecay}
