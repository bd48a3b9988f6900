"""Devices: 'cpu' holds NumPy arrays, 'cuda' holds CuPy arrays.

The default is 'cuda' when CuPy sees a GPU and 'cpu' otherwise; FASTCONV_DEVICE overrides it.
"""
from __future__ import annotations

import contextlib
import functools
import os

import numpy as np

DEVICES = ("cpu", "cuda")


@functools.lru_cache(maxsize=None)
def cuda_status() -> tuple[bool, str]:
    """(available, reason): whether CuPy imports and sees at least one GPU."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a CuPy built for another CUDA
        return False, f"CuPy is not importable ({type(exc).__name__}: {exc}); pip install fastconv[cuda]"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return False, f"CuPy found no usable GPU ({type(exc).__name__}: {exc})"
    if count == 0:
        return False, "CuPy sees no GPU"
    return True, f"{count} GPU(s) visible to CuPy"


def cuda_available() -> bool:
    return cuda_status()[0]


def check_device(device, name: str = "device") -> str:
    if device is None:
        return default_device()
    if not isinstance(device, str):
        raise TypeError(f"{name} must be 'cpu' or 'cuda', got {type(device).__name__} {device!r}")
    dev = device.lower().split(":")[0]
    if dev not in DEVICES:
        raise ValueError(f"{name} must be 'cpu' or 'cuda', got {device!r}")
    if dev == "cuda" and not cuda_available():
        raise RuntimeError(f"{name}='cuda' was requested but {cuda_status()[1]}")
    return dev


_scoped: list[str] = []


@contextlib.contextmanager
def using_device(device: str):
    """Within this block, new weights and tensors default to `device`."""
    _scoped.append(check_device(device))
    try:
        yield _scoped[-1]
    finally:
        _scoped.pop()


def default_device() -> str:
    if _scoped:
        return _scoped[-1]
    env = os.environ.get("FASTCONV_DEVICE")
    if env:
        return check_device(env, "FASTCONV_DEVICE")
    return "cuda" if cuda_available() else "cpu"


def array_module(device: str):
    if device == "cuda":
        import cupy
        return cupy
    return np


def device_of(array) -> str:
    return "cpu" if isinstance(array, np.ndarray) or np.isscalar(array) else "cuda"


def to_device(array, device: str):
    if device_of(array) == device:
        return array
    if device == "cpu":
        return array.get()
    import cupy
    return cupy.asarray(array)
