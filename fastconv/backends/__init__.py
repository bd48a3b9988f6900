"""The one place a compute path is chosen.

On a GPU ('cuda' tensors): native (nvcc-built fastconv._C), then jit (the same csrc/ sources
compiled by NVRTC through CuPy). On the CPU: the NumPy reference, or, when asked for with
FASTCONV_BACKEND=emulated, the csrc/ kernels themselves run by the CPU SIMT emulator (slow; for
checking the whole layer API through our kernels without a GPU). FASTCONV_BACKEND forces one
path; `fastconv info` and `fastconv.explain` report which one ran and why the others did not.
"""
from __future__ import annotations

import functools
import os

from .. import explain as _explain
from . import reference

BACKEND_NAMES = ("native", "jit", "emulated", "reference")
GPU_BACKENDS = ("native", "jit")


@functools.lru_cache(maxsize=None)
def _gpu_status() -> tuple[tuple[bool, str], tuple[bool, str]]:
    """(native, jit) availability, probed once per process (imports and a device query)."""
    from . import jit, native
    return native.status(), jit.status()


def backend_status() -> dict[str, tuple[bool, str]]:
    """name -> (available, reason) for every compute path."""
    from . import emulated
    native_status, jit_status = _gpu_status()
    return {"native": native_status, "jit": jit_status, "emulated": emulated.status(),
            "reference": (True, "NumPy reference backend (always available; the oracle; CPU arrays only)")}


def _module(name: str):
    import importlib
    return importlib.import_module(f"{__name__}.{name}")


def _forced() -> str:
    forced = os.environ.get("FASTCONV_BACKEND", "").strip().lower()
    if forced and forced not in BACKEND_NAMES:
        raise ValueError(f"FASTCONV_BACKEND must be one of {list(BACKEND_NAMES)}, got {forced!r}")
    return forced


def _choose(device: str):
    """(module, name, why) for `device`."""
    forced = _forced()
    if device == "cpu":
        if forced in GPU_BACKENDS:
            raise RuntimeError(f"FASTCONV_BACKEND={forced} needs a CUDA device, but the tensor is on the CPU")
        if forced == "emulated":
            ok, reason = backend_status()["emulated"]
            if not ok:
                raise RuntimeError(f"FASTCONV_BACKEND=emulated is not available: {reason}")
            return _module("emulated"), "emulated", "FASTCONV_BACKEND=emulated: csrc/ kernels in the CPU emulator"
        return reference, "reference", "the tensors are on the CPU"
    if forced in ("reference", "emulated"):
        raise RuntimeError(f"FASTCONV_BACKEND={forced} computes on NumPy arrays only; tensors on 'cuda' need the "
                           "native or jit backend (or move them to the CPU)")
    status = backend_status()
    for name in ([forced] if forced else GPU_BACKENDS):
        ok, reason = status[name]
        if ok:
            why = f"FASTCONV_BACKEND={name}" if forced else (
                "fastconv._C is built" if name == "native" else f"fastconv._C is unavailable: {status['native'][1]}")
            return _module(name), name, why
        if forced:
            raise RuntimeError(f"FASTCONV_BACKEND={forced} is not available: {reason}")
    raise RuntimeError("tensors on 'cuda' need the native or jit backend: native: " + status["native"][1]
                       + "; jit: " + status["jit"][1])


def backend_for(device: str):
    """The op module that runs on `device`. Every module exposes the same op names."""
    module, name, why = _choose(device)
    return _explain.TracedBackend(module, name, why) if _explain.active() else module


def backend_name(device: str) -> str:
    try:
        return _choose(device)[1]
    except RuntimeError:
        return "unavailable"
