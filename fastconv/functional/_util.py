"""Shared plumbing for the functional ops: argument coercion and the backend lookup."""
from __future__ import annotations

from .._checks import check_float_dtype
from ..backends import backend_for
from ..tensor import Tensor, as_tensor


def float_input(value, name: str) -> Tensor:
    t = as_tensor(value, name)
    check_float_dtype(t.data, name)
    return t


def same_device(*named) -> str:
    devices = {t.device for _, t in named if t is not None}
    if len(devices) > 1:
        desc = ", ".join(f"{n} on {t.device}" for n, t in named if t is not None)
        raise ValueError(f"all inputs must be on one device, got {desc}")
    return devices.pop()


def backend(t: Tensor):
    return backend_for(t.device)
