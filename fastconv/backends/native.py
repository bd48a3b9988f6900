"""native backend: the nvcc-built kernels of fastconv._C, on CuPy arrays.

Same API and semantics as the NumPy reference. The launch plans (which instantiation, grid, block,
arguments) are fastconv/backends/plans/kernel_ops.py's KernelOps — the same plans the emulator checks in CI —
executed through fastconv._C.launch, which checks every argument against the kernel's C++
parameter types and every CUDA call (csrc/bind/fastconv_c.cpp, csrc/launch/registry.cu).
Kernels run on CuPy's current stream. The sm_90a wgmma GEMM is chosen only where _C says the current
device runs its sm_90a machine code (_C.sm90a_code(), asked per device; see csrc/launch/registry.h).
"""
from __future__ import annotations

import functools

import numpy as np

from .plans import EXTRA_API, OPS, REFERENCE_API, KernelOps  # noqa: F401  (re-exported names)


def status() -> tuple[bool, str]:
    from .device import cuda_status
    try:
        from .. import _C
    except ImportError as exc:
        return False, (f"fastconv._C is not built ({exc}); pip builds it where nvcc is on PATH and a CUDA driver "
                       "is present, or when asked: FASTCONV_BUILD_CUDA=1 pip install -e . (else the jit backend runs)")
    ok, reason = cuda_status()
    if not ok:
        return False, reason
    if _C.device_count() == 0:
        return False, "fastconv._C sees no CUDA device"
    sm90a = ""
    if hasattr(_C, "sm90a_code"):
        try:
            sm90a = "; sm_90a wgmma code for this device: " + ("yes" if _C.sm90a_code() else "no")
        except RuntimeError as exc:   # pragma: no cover - a device that fails the query
            sm90a = f"; sm_90a code unknown ({exc})"
    return True, f"fastconv._C (CUDA runtime {_C.cuda_runtime_version()}, {len(_C.kernel_names())} kernels{sm90a})"


class _NativeExecutor:
    def __init__(self):
        import cupy

        from .. import _C
        self.cupy, self._C = cupy, _C

    def launch(self, kernel, grid, block, args, shared_bytes=0, keep_alive=None):
        cooked = tuple(a.tobytes() if isinstance(a, np.void) else a for a in args)
        stream = self.cupy.cuda.get_current_stream().ptr
        self._C.launch(kernel, tuple(grid), tuple(block), cooked, shared_bytes, stream)


@functools.lru_cache(maxsize=None)
def _ops() -> KernelOps:
    ex = _NativeExecutor()   # plans/gemm.py selects the wgmma GEMM only where _C runs it (and on sm_90)
    return KernelOps(ex.cupy, ex.launch, lambda a: int(a.data.ptr), builds_sm90a=_sm90a_code_fn(ex._C), executor=ex)


def _sm90a_code_fn(c_module):
    """_C.sm90a_code: whether the current device runs the sm_90a binary of _C's wgmma kernels. A _C built
    before the sm_90a registry has no such function (and no such kernels): never."""
    probe = getattr(c_module, "sm90a_code", None)
    return probe if probe is not None else (lambda: False)


def __getattr__(name):   # module-level op functions: native.conv2d_fprop(...) etc.
    if name not in OPS:
        raise AttributeError(name)
    return getattr(_ops(), name)
