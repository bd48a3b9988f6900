"""The one place a compute path is chosen.

Paths, in order of preference on a GPU: native (nvcc-built fastconv._C), jit (the same csrc/
sources compiled by NVRTC through CuPy), then the NumPy reference. The CPU device always runs the
reference. FASTCONV_BACKEND forces one path; `fastconv info` reports why the others are not used.
"""
from __future__ import annotations

import functools
import os

from . import reference

BACKEND_NAMES = ("native", "jit", "reference")


@functools.lru_cache(maxsize=None)
def _gpu_status() -> tuple[tuple[bool, str], tuple[bool, str]]:
    """(native, jit) availability, probed once per process (imports and a device query)."""
    from . import jit, native
    return native.status(), jit.status()


def backend_status() -> dict[str, tuple[bool, str]]:
    """name -> (available, reason) for every compute path."""
    native_status, jit_status = _gpu_status()
    return {"native": native_status, "jit": jit_status,
            "reference": (True, "NumPy reference backend (always available; the oracle; CPU arrays only)")}


def _module(name: str):
    import importlib
    return importlib.import_module(f"{__name__}.{name}")


def backend_for(device: str):
    """The op module that runs on `device`. Every module exposes the same op names.
    On 'cuda': native (fastconv._C), else jit (NVRTC through CuPy); FASTCONV_BACKEND forces one."""
    forced = os.environ.get("FASTCONV_BACKEND", "").strip().lower()
    if forced and forced not in BACKEND_NAMES:
        raise ValueError(f"FASTCONV_BACKEND must be one of {list(BACKEND_NAMES)}, got {forced!r}")
    if device == "cpu":
        if forced and forced != "reference":
            raise RuntimeError(f"FASTCONV_BACKEND={forced} needs a CUDA device, but the tensor is on the CPU")
        return reference
    if forced == "reference":
        raise RuntimeError("FASTCONV_BACKEND=reference computes on NumPy arrays only; tensors on 'cuda' need the "
                           "native or jit backend (or move them to the CPU)")
    status = backend_status()
    for name in ([forced] if forced else ("native", "jit")):
        ok, reason = status[name]
        if ok:
            return _module(name)
        if forced:
            raise RuntimeError(f"FASTCONV_BACKEND={forced} is not available: {reason}")
    raise RuntimeError("tensors on 'cuda' need the native or jit backend: native: " + status["native"][1]
                       + "; jit: " + status["jit"][1])


def backend_name(device: str) -> str:
    if device == "cpu":
        return "reference"
    try:
        return backend_for(device).__name__.rsplit(".", 1)[-1]
    except RuntimeError:
        return "unavailable"
