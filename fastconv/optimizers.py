"""SGD (momentum, Nesterov, weight decay) and Adam (decoupled weight decay, as AdamW).

The update arithmetic is elementwise on whole arrays; the GPU path replaces `_update` with one
multi-tensor kernel launch.
"""
from __future__ import annotations

import numpy as np

from ._checks import check_float
from .device import array_module, device_of, to_device
from .schedules import SCHEDULES, LearningRateSchedule


class Optimizer:
    def __init__(self, learning_rate, weight_decay=0.0):
        if isinstance(learning_rate, LearningRateSchedule):
            self.learning_rate = learning_rate
        else:
            self.learning_rate = check_float(learning_rate, "learning_rate", 0.0, low_open=True)
        self.weight_decay = check_float(weight_decay, "weight_decay", 0.0)
        self.iterations = 0
        self.slots: list[dict[str, np.ndarray]] = []

    def current_learning_rate(self) -> float:
        lr = self.learning_rate
        return float(lr(self.iterations)) if callable(lr) else lr

    def step(self, params) -> None:
        """Apply one update to every parameter that has a gradient."""
        if not self.slots:
            self.slots = [self._new_slots(p.data) for p in params]
        if len(self.slots) != len(params):
            raise ValueError(f"optimizer state holds {len(self.slots)} parameters but step() got {len(params)}")
        lr = self.current_learning_rate()
        self.iterations += 1
        live = [(p, slots) for p, slots in zip(params, self.slots) if p.grad is not None]
        if live and live[0][0].device == "cuda":  # every parameter in one multi-tensor kernel launch
            from .backends import backend_for
            self._update_all(backend_for("cuda"), [p.data for p, _ in live], [p.grad for p, _ in live],
                             [slots for _, slots in live], lr)
            return
        for p, slots in live:
            self._update(p.data, p.grad, slots, lr)

    def _new_slots(self, value) -> dict:
        return {}

    def _update(self, value, grad, slots, lr) -> None:
        """The reference update of one parameter, in place (NumPy)."""
        raise NotImplementedError

    def _update_all(self, backend, values, grads, slots, lr) -> None:
        """The same update for every parameter at once, through the GPU backend's kernel."""
        raise NotImplementedError

    # ---- saving ------------------------------------------------------------------------------
    def get_config(self) -> dict:
        cfg = {k: v for k, v in vars(self).items() if k not in ("slots", "iterations", "learning_rate")}
        lr = self.learning_rate
        cfg["learning_rate"] = ({"schedule": type(lr).__name__, "config": lr.get_config()}
                                if isinstance(lr, LearningRateSchedule) else lr)
        return cfg

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        lr = config.pop("learning_rate")
        if isinstance(lr, dict):
            lr = SCHEDULES[lr["schedule"]](**lr["config"])
        return cls(learning_rate=lr, **config)

    def state_arrays(self) -> dict[str, np.ndarray]:
        out = {"iterations": np.asarray(self.iterations, np.int64)}
        for i, slots in enumerate(self.slots):
            for name, arr in slots.items():
                out[f"{i}/{name}"] = to_device(arr, "cpu")
        return out

    def load_state_arrays(self, arrays: dict, params) -> None:
        self.iterations = int(arrays["iterations"])
        self.slots = [self._new_slots(p.data) for p in params]
        for i, slots in enumerate(self.slots):
            for name in slots:
                slots[name][...] = to_device(arrays[f"{i}/{name}"], device_of(slots[name]))


class SGD(Optimizer):
    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(learning_rate, weight_decay)
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0, high_open=True)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")

    def _new_slots(self, value):
        return {"velocity": _zeros_like(value)} if self.momentum else {}

    def _update_all(self, backend, values, grads, slots, lr):
        backend.sgd_update(values, grads, [s.get("velocity") for s in slots], lr, self.momentum, self.nesterov,
                           self.weight_decay)

    def _update(self, value, grad, slots, lr):
        if self.weight_decay:
            grad = grad + self.weight_decay * value  # L2 penalty folded into the gradient, as torch.optim.SGD
        if not self.momentum:
            value -= lr * grad
            return
        v = slots["velocity"]
        v *= self.momentum
        v -= lr * grad                      # Keras' form: v = m*v - lr*g
        value += self.momentum * v - lr * grad if self.nesterov else v


class Adam(Optimizer):
    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.0):
        super().__init__(learning_rate, weight_decay)
        self.beta_1 = check_float(beta_1, "beta_1", 0.0, 1.0, high_open=True)
        self.beta_2 = check_float(beta_2, "beta_2", 0.0, 1.0, high_open=True)
        self.epsilon = check_float(epsilon, "epsilon", 0.0, low_open=True)

    def _new_slots(self, value):
        return {"m": _zeros_like(value), "v": _zeros_like(value)}

    def _update_all(self, backend, values, grads, slots, lr):
        backend.adam_update(values, grads, [s["m"] for s in slots], [s["v"] for s in slots], lr, self.beta_1,
                            self.beta_2, self.epsilon, self.weight_decay, self.iterations)

    def _update(self, value, grad, slots, lr):
        t = self.iterations
        m, v = slots["m"], slots["v"]
        m += (1 - self.beta_1) * (grad - m)
        v += (1 - self.beta_2) * (grad * grad - v)
        step = lr * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t)
        if self.weight_decay:
            value -= lr * self.weight_decay * value  # decoupled (AdamW): not scaled by the moments
        value -= step * m / (np.sqrt(v) + self.epsilon)


def _zeros_like(value):
    return array_module(device_of(value)).zeros_like(value)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get_optimizer(identifier) -> Optimizer:
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    raise ValueError(f"optimizer must be an Optimizer or one of {sorted(OPTIMIZERS)}, got {identifier!r}")
