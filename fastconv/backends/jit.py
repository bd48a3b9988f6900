"""jit backend: the csrc/ kernels compiled at run time by NVRTC through CuPy's RawModule.

Same API and semantics as the NumPy reference (fastconv/backends/reference), on CuPy arrays. The
launch plans live in fastconv/backends/plans (KernelOps), shared with the native and emulated
backends; this module is the CuPy + NVRTC executor, and re-exports the plans' names.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from .._sources import csrc_dir
from .plans import *  # noqa: F401,F403  (historical import site: jit.KernelOps, jit.TILES, ...)
from .plans import KernelOps
from .plans.common import *  # noqa: F401,F403
from .plans.tensor_op import _tensor_op_types  # noqa: F401

CSRC = csrc_dir()
KERNEL_HEADER = "launch/all_kernels.h"


# ---- the CuPy + NVRTC executor ------------------------------------------------------------------
# CuPy compiles with NVRTC and passes -ftz=true (denormals flushed); the native build uses
# --ftz=true too (setup.py), so both GPU paths round alike; the emulator does not flush, which the
# tests' tolerances cover (exact comparisons use small integers, far from the denormal range).
NVRTC_OPTIONS = ("-std=c++17", f"-I{CSRC}")


def kernel_sources() -> list[Path]:
    """Every file the kernels are built from (the hash of their contents keys the jit cache)."""
    # every device header; not the emulator, the self-tests or the pybind11 binding (host code)
    skip = ("emu", "selftest", "bind")
    return sorted(p for p in CSRC.rglob("*") if p.suffix in (".h", ".cuh") and p.relative_to(CSRC).parts[0] not in skip)


@functools.lru_cache(maxsize=None)
def source_hash() -> str:
    h = hashlib.sha256()
    for p in kernel_sources():
        h.update(p.relative_to(CSRC).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def kernel_code() -> str:
    """The code string handed to NVRTC: the umbrella header, and a hash of every header it pulls in,
    because CuPy's compile cache keys on the code string and options only, not on included files."""
    return f"// fastconv kernel sources {source_hash()}\n#include \"{KERNEL_HEADER}\"\n"


def status() -> tuple[bool, str]:
    from ..device import cuda_status
    ok, reason = cuda_status()
    if not ok:
        return False, reason
    if not (CSRC / KERNEL_HEADER).exists():
        return False, f"the kernel sources are not installed ({CSRC / KERNEL_HEADER} is missing)"
    return True, "CuPy + NVRTC compile csrc/ at first use (cached by CuPy)"


# The sm_90a kernels (csrc/hopper/: wgmma, setmaxnreg) exist only for the arch-specific target sm_90a,
# while CuPy compiles for the device's plain sm_90. They are compiled by NVRTC directly (through
# cuda-bindings, fastconv/nvrtc_check.py) into an sm_90a cubin that CuPy then loads.
SM90A_KERNEL_PREFIXES = ("fc::gemm_wgmma<",)
SM90A_HEADER = "hopper/gemm_wgmma.h"
DEFAULT_SHARED_BYTES = 48 * 1024   # above this a kernel must opt in (cudaFuncAttributeMaxDynamicSharedMemorySize)


def compile_sm90a(name: str):
    """(cubin bytes, mangled name) of one csrc/hopper kernel instantiation, compiled for sm_90a."""
    from .. import nvrtc_check
    code = f"// fastconv kernel sources {source_hash()}\n#include \"{SM90A_HEADER}\"\n"
    result = nvrtc_check.compile_source(code, arch="sm_90a", name_expressions=(name,))
    return result.binary, result.lowered_names[name]


def builds_sm90a() -> bool:
    """Whether this installation can compile the sm_90a kernels (NVRTC through cuda-bindings)."""
    from .. import nvrtc_check
    return nvrtc_check.available()


class _CupyExecutor:
    def __init__(self):
        import cupy
        self.cupy = cupy
        self.modules = {}
        self.shared_optin = {}    # kernel -> dynamic shared memory it has been allowed
        self.loaded = []

    def function(self, name):
        fn = self.modules.get(name)
        if fn is None:
            if name.startswith(SM90A_KERNEL_PREFIXES):
                cubin, mangled = compile_sm90a(name)
                module = self.cupy.cuda.function.Module()
                module.load(cubin)
                fn = module.get_function(mangled)
                self.loaded.append(module)     # a module must outlive its functions
            else:
                module = self.cupy.RawModule(code=kernel_code(), options=NVRTC_OPTIONS, name_expressions=(name,))
                fn = module.get_function(name)
            self.modules[name] = fn
        return fn

    def launch(self, kernel, grid, block, args, shared_bytes=0, keep_alive=None):
        fn = self.function(kernel)
        if shared_bytes > max(DEFAULT_SHARED_BYTES, self.shared_optin.get(kernel, 0)):
            fn.max_dynamic_shared_size_bytes = shared_bytes
            self.shared_optin[kernel] = shared_bytes
        fn(tuple(grid), tuple(block), tuple(args), shared_mem=shared_bytes)


def _cupy_ptr(a):
    return int(a.data.ptr)


@functools.lru_cache(maxsize=None)
def _ops() -> KernelOps:
    ex = _CupyExecutor()
    ops = KernelOps(ex.cupy, ex.launch, _cupy_ptr)
    ops.builds_sm90a = builds_sm90a()   # HopperPlans selects the wgmma GEMM only then (and on sm_90)
    return ops


def __getattr__(name):   # module-level op functions: jit.conv2d_fprop(...) etc.
    if name.startswith("_") or not hasattr(KernelOps, name):
        raise AttributeError(name)
    return getattr(_ops(), name)
