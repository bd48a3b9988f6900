"""The one place a compute path is chosen.

Paths, in order of preference on a GPU: native (nvcc-built fastconv._C), jit (the same csrc/
sources compiled by NVRTC through CuPy), then the NumPy reference. The CPU device always runs the
reference. FASTCONV_BACKEND forces one path; `fastconv info` reports why the others are not used.
"""
from __future__ import annotations

import os

from . import reference

BACKEND_NAMES = ("native", "jit", "reference")


def backend_status() -> dict[str, tuple[bool, str]]:
    """name -> (available, reason) for every compute path."""
    from ..device import cuda_status
    status = {"reference": (True, "NumPy reference backend (always available; the oracle)")}
    gpu_ok, gpu_reason = cuda_status()
    kernels_reason = "the CUDA kernels are not part of this build yet (see issue: CUDA C++ kernels v1)"
    status["native"] = (False, gpu_reason if not gpu_ok else kernels_reason)
    status["jit"] = (False, gpu_reason if not gpu_ok else kernels_reason)
    return status


def backend_for(device: str):
    """The op module that runs on `device`. Every module exposes the same op names."""
    forced = os.environ.get("FASTCONV_BACKEND", "").strip().lower()
    if forced and forced not in BACKEND_NAMES:
        raise ValueError(f"FASTCONV_BACKEND must be one of {list(BACKEND_NAMES)}, got {forced!r}")
    if device == "cpu":
        if forced and forced != "reference":
            raise RuntimeError(f"FASTCONV_BACKEND={forced} needs a CUDA device, but the tensor is on the CPU")
        return reference
    status = backend_status()
    for name in ([forced] if forced else BACKEND_NAMES):
        ok, reason = status[name]
        if ok and name != "reference":
            raise NotImplementedError(name)
        if not ok and forced:
            raise RuntimeError(f"FASTCONV_BACKEND={forced} is not available: {reason}")
    raise RuntimeError("tensors on 'cuda' need the native or jit backend: " + status["native"][1])


def backend_name(device: str) -> str:
    return "reference" if device == "cpu" else "unavailable"
