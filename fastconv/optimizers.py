"""SGD (momentum, Nesterov, weight decay) and Adam (decoupled weight decay, as AdamW).

A step is two halves: `begin_step` advances the step count and computes the scalars that change
from step to step (the learning rate of a schedule, Adam's bias-corrected step size) on the host,
in float64, and `apply_update` updates every parameter with them. On the GPU the scalars go into a
small device buffer (csrc/ops/optimizer.h StepScalars) and the update is one multi-tensor kernel
launch over a table that stays on the device, so the launch holds no per-step value: a CUDA graph
captures apply_update once and each replay, preceded by begin_step, uses that step's values
(fastconv/models/step_capture.py). On the CPU the same split runs the NumPy reference update.
"""
from __future__ import annotations

import contextlib

import numpy as np

from ._checks import check_bool, check_float
from .backends.device import array_module, device_of, to_device
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
        self._scalars = {}            # this step's scalars on the host (step_scalars)
        self._device_scalars = None   # the GPU's StepScalars buffer, made once, written every step
        self._table = None            # the GPU's resident multi-tensor table (rebuilt when an address changes)
        self._defer_upload = None     # while capturing: a table waiting for its upload (capturing())

    def current_learning_rate(self) -> float:
        lr = self.learning_rate
        return float(lr(self.iterations)) if callable(lr) else lr

    def step(self, params) -> None:
        """Apply one update to every parameter that has a gradient."""
        self.begin_step(params)
        self.apply_update(params)

    def begin_step(self, params) -> None:
        """Advance one step: compute its scalars and write them where apply_update reads them (on
        the GPU a device buffer, written in stream order, so no wait)."""
        if not self.slots:
            self.slots = [self._new_slots(p.data) for p in params]
        if len(self.slots) != len(params):
            raise ValueError(f"optimizer state holds {len(self.slots)} parameters but step() got {len(params)}")
        self._scalars = self.step_scalars(self.current_learning_rate(), self.iterations + 1)
        self.iterations += 1
        if params and params[0].device == "cuda":
            B = _cuda_backend()
            if self._device_scalars is None:
                self._device_scalars = B.step_scalars()
            B.set_step_scalars(self._device_scalars, self._scalars)

    def apply_update(self, params) -> None:
        """Update every parameter that has a gradient with the scalars of the last begin_step: on
        the GPU one kernel launch that reads them from the device (so it may be graph-captured)."""
        live = [(p, slots) for p, slots in zip(params, self.slots) if p.grad is not None]
        if live and live[0][0].device == "cuda":  # every parameter in one multi-tensor kernel launch
            B = _cuda_backend()
            groups = [(p.data, p.grad) + self._slot_arrays(slots) for p, slots in live]
            table = B.multi_tensor_table(groups, self._table, upload=self._defer_upload is None)
            if self._defer_upload is not None and table is not self._table:
                self._defer_upload.append(table)
            self._table = table
            self._update_all(B, table, self._device_scalars)
            return
        for p, slots in live:
            self._update(p.data, p.grad, slots, self._scalars)

    @contextlib.contextmanager
    def capturing(self):
        """Around a CUDA-graph capture of apply_update: a table built inside is allocated there but
        uploaded when the block ends, after the capture (a capture cannot record a copy from pageable
        host memory)."""
        self._defer_upload = []
        try:
            yield
        finally:
            pending, self._defer_upload = self._defer_upload, None
            for table in pending:
                _cuda_backend().upload_table(table)

    def step_scalars(self, lr, t) -> dict:
        """The scalars of step t (1-based) with learning rate lr, as the update uses them."""
        return {"lr": lr}

    def _new_slots(self, value) -> dict:
        return {}

    def _slot_arrays(self, slots) -> tuple:
        """The slot arrays in the kernel's table order (slot0, slot1)."""
        return tuple(slots.values())

    def _update(self, value, grad, slots, scalars) -> None:
        """The reference update of one parameter, in place (NumPy)."""
        raise NotImplementedError

    def _update_all(self, backend, table, scalars) -> None:
        """The same update for every parameter of the table at once, through the GPU backend's kernel."""
        raise NotImplementedError

    # ---- saving ------------------------------------------------------------------------------
    def get_config(self) -> dict:
        cfg = {k: v for k, v in vars(self).items()
               if k not in ("slots", "iterations", "learning_rate") and not k.startswith("_")}
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
        self.nesterov = check_bool(nesterov, "nesterov")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=True needs momentum > 0")

    def _new_slots(self, value):
        return {"velocity": _zeros_like(value)} if self.momentum else {}

    def _slot_arrays(self, slots):
        return (slots.get("velocity"),)

    def _update_all(self, backend, table, scalars):
        backend.sgd_update(table, scalars, self.momentum, self.nesterov, self.weight_decay)

    def _update(self, value, grad, slots, scalars):
        lr = scalars["lr"]
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

    def step_scalars(self, lr, t):
        # adam_step is a float64 NumPy scalar (np.sqrt), so NumPy evaluates step * m / (...) in float64;
        # the kernel reads it as a double for the same reason
        return {"lr": lr, "adam_step": lr * np.sqrt(1 - self.beta_2 ** t) / (1 - self.beta_1 ** t),
                "adam_decay": lr * self.weight_decay}

    def _update_all(self, backend, table, scalars):
        backend.adam_update(table, scalars, self.beta_1, self.beta_2, self.epsilon)

    def _update(self, value, grad, slots, scalars):
        m, v = slots["m"], slots["v"]
        m += (1 - self.beta_1) * (grad - m)
        v += (1 - self.beta_2) * (grad * grad - v)
        if self.weight_decay:
            value -= scalars["adam_decay"] * value  # decoupled (AdamW): lr * wd, not scaled by the moments
        value -= scalars["adam_step"] * m / (np.sqrt(v) + self.epsilon)


def _cuda_backend():
    from .backends import backend_for
    return backend_for("cuda")


def _zeros_like(value):
    return array_module(device_of(value)).zeros_like(value)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get_optimizer(identifier) -> Optimizer:
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in OPTIMIZERS:
        return OPTIMIZERS[identifier.lower()]()
    raise ValueError(f"optimizer must be an Optimizer or one of {sorted(OPTIMIZERS)}, got {identifier!r}")
