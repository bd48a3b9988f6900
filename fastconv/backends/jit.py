"""jit backend: the csrc/ kernels compiled at run time by NVRTC through CuPy's RawModule.

Same API and semantics as the NumPy reference (fastconv/backends/reference), on CuPy arrays. The
launch plans live in fastconv/backends/plans (KernelOps), shared with the native and emulated
backends; this module is the CuPy + NVRTC executor.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np

from ._sources import csrc_dir
from .plans import OPS, KernelOps
from .plans import EXTRA_API, REFERENCE_API, all_kernel_names, tensor_op_kernel_names  # noqa: F401  (scripts/ read them here)

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
    from .device import cuda_status
    ok, reason = cuda_status()
    if not ok:
        return False, reason
    if not (CSRC / KERNEL_HEADER).exists():
        return False, f"the kernel sources are not installed ({CSRC / KERNEL_HEADER} is missing)"
    return True, "CuPy + NVRTC compile csrc/ at first use (cached on disk by CuPy)" + _sm90a_status()


def _sm90a_status() -> str:
    """On an sm_90 device: whether the sm_90a kernels can be compiled here (loading them is tried per device
    at the first GEMM that would use them: _CupyExecutor.sm90a_support)."""
    import cupy
    try:
        if str(cupy.cuda.Device().compute_capability) != "90":
            return ""
    except Exception:   # pragma: no cover - a device that fails the query
        return ""
    ok, why = sm90a_compiler_status()
    if not ok:
        return f"; sm_90a wgmma kernels: no ({why}), large bf16/fp16 GEMMs run gemm_tensor_op"
    return (f"; sm_90a wgmma kernels: compiled at first use ({why}, not cached) and loaded per device, "
            "else gemm_tensor_op (fastconv.explain says why)")


# The sm_90a kernels (csrc/hopper/: wgmma, setmaxnreg) exist only for the arch-specific target sm_90a,
# while CuPy compiles for the device's plain sm_90. They are compiled by NVRTC directly (through
# cuda-bindings, fastconv/backends/nvrtc_check.py) into an sm_90a cubin that CuPy then loads.
SM90A_KERNEL_PREFIXES = ("fc::gemm_wgmma<", "fc::conv2d_fprop_wgmma_sm90<")
SM90A_HEADER = "conv/conv2d_fprop_wgmma_sm90.h"   # includes hopper/gemm_wgmma.h: every sm_90a kernel
DEFAULT_SHARED_BYTES = 48 * 1024   # above this a kernel must opt in (cudaFuncAttributeMaxDynamicSharedMemorySize)


def compile_sm90a(name: str):
    """(cubin bytes, mangled name) of one csrc/hopper kernel instantiation, compiled for sm_90a."""
    from . import nvrtc_check
    code = f"// fastconv kernel sources {source_hash()}\n#include \"{SM90A_HEADER}\"\n"
    result = nvrtc_check.compile_source(code, arch="sm_90a", name_expressions=(name,))
    return result.binary, result.lowered_names[name]


def sm90a_compiler_status() -> tuple[bool, str]:
    """(True, what) when this installation can compile the sm_90a kernels (NVRTC through cuda-bindings and
    the CUDA headers), else (False, why not). Whether a device's driver loads the result is the executor's
    per-device probe (_CupyExecutor.sm90a_support)."""
    from . import nvrtc_check
    if not nvrtc_check.available():
        return False, "NVRTC through cuda-bindings is not installed (pip install cuda-bindings nvidia-cuda-nvrtc)"
    try:
        includes = nvrtc_check.cuda_include_dirs()
    except FileNotFoundError as exc:
        return False, f"NVRTC has no CUDA headers ({exc})"
    major, minor = nvrtc_check.version()
    return True, f"NVRTC {major}.{minor}, CUDA headers in {includes[0]}"


def builds_sm90a() -> bool:
    """Whether this installation can compile the sm_90a kernels (NVRTC through cuda-bindings, CUDA headers)."""
    return sm90a_compiler_status()[0]


# The kernel the per-device probe compiles and loads: the most used instantiation (bf16 in, float32 out).
SM90A_PROBE_KERNEL = "fc::gemm_wgmma<fc::WgmmaTile<128, 4>, __nv_bfloat16, float>"


def _sm90a_failure(stage: str, exc: BaseException) -> str:
    """Why the sm_90a kernels cannot run here, for the explain note of the fallback."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    what = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    if stage == "load":
        from . import nvrtc_check
        try:
            nvrtc = "NVRTC {}.{}".format(*nvrtc_check.version())
        except Exception:   # the version is only for the message
            nvrtc = "NVRTC"
        return (f"jit: the driver could not load the sm_90a cubin built by {nvrtc} ({what}); "
                "it needs a driver at least as new as NVRTC")
    if isinstance(exc, ImportError):
        return f"jit: NVRTC through cuda-bindings is not installed ({what})"
    if isinstance(exc, FileNotFoundError):
        return f"jit: NVRTC has no CUDA headers to compile the sm_90a kernels ({what})"
    return f"jit: NVRTC could not compile the sm_90a kernels ({what})"


def kernel_args(args) -> tuple:
    """The launch arguments as CuPy takes them. A struct passed by value (np.void: Conv2dProblem, Pool2dProblem,
    a 128-byte TensorMap) becomes a one-element array, which CuPy (13 and 14, function.pyx _pointer) passes as a
    pointer to its bytes; CuPy 13 rejects np.void itself and CuPy 14.0 asserts on one of 64 bytes or more."""
    return tuple(np.array(a) if isinstance(a, np.void) else a for a in args)


class _CupyExecutor:
    """Compiles (NVRTC), loads and launches the kernels. Everything loaded is per device: a CuPy Function
    belongs to the context it was loaded in, and so does its shared-memory limit."""

    def __init__(self):
        import cupy
        self.cupy = cupy
        self.functions = {}       # (device, kernel) -> cupy.cuda.function.Function
        self.shared_optin = {}    # (device, kernel) -> dynamic shared memory it has been allowed
        self.sm90a = {}           # device -> (the sm_90a kernels run there, why not)
        self._raw_modules = {}    # kernel -> RawModule (CuPy compiles once, loads once per device)
        self._cubins = {}         # sm_90a kernel -> (cubin, mangled name): device independent

    def device(self) -> int:
        return int(self.cupy.cuda.runtime.getDevice())

    def function(self, name, device=None):
        """The kernel `name` loaded on `device` (default: the current device)."""
        key = (self.device() if device is None else device, name)
        fn = self.functions.get(key)
        if fn is None:
            if name.startswith(SM90A_KERNEL_PREFIXES):
                if name not in self._cubins:
                    self._cubins[name] = compile_sm90a(name)
                cubin, mangled = self._cubins[name]
                module = self.cupy.cuda.function.Module()
                module.load(cubin)                 # into the current device's context
                fn = module.get_function(mangled)  # a Function holds its Module
            else:
                module = self._raw_modules.get(name)
                if module is None:
                    module = self._raw_modules[name] = self.cupy.RawModule(
                        code=kernel_code(), options=NVRTC_OPTIONS, name_expressions=(name,))
                fn = module.get_function(name).kernel   # the RawKernel's Function on the current device
            self.functions[key] = fn
        return fn

    def sm90a_support(self) -> tuple[bool, str]:
        """(True, '') when the current device can run the sm_90a kernels, else (False, why not). Asked once per
        device by compiling (once per process) and loading one wgmma kernel, so that missing headers, an NVRTC
        too new for the driver or a failed load all become a fallback to the mma.sync GEMM, not a launch error."""
        device = self.device()
        if device not in self.sm90a:
            stage = "compile"
            try:
                if SM90A_PROBE_KERNEL not in self._cubins:
                    self._cubins[SM90A_PROBE_KERNEL] = compile_sm90a(SM90A_PROBE_KERNEL)
                stage = "load"
                self.function(SM90A_PROBE_KERNEL, device)
                self.sm90a[device] = (True, "")
            except Exception as exc:   # any failure means: not here; the fallback is always correct
                self.sm90a[device] = (False, _sm90a_failure(stage, exc))
        return self.sm90a[device]

    def launch(self, kernel, grid, block, args, shared_bytes=0, keep_alive=None):
        device = self.device()
        fn = self.function(kernel, device)
        if shared_bytes > max(DEFAULT_SHARED_BYTES, self.shared_optin.get((device, kernel), 0)):
            # through the driver on the Function's handle: a Function (unlike a RawKernel) has no
            # max_dynamic_shared_size_bytes property
            driver = self.cupy.cuda.driver
            driver.funcSetAttribute(fn.ptr, driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, int(shared_bytes))
            self.shared_optin[(device, kernel)] = shared_bytes
        fn(tuple(grid), tuple(block), kernel_args(args), shared_mem=shared_bytes)

    def loaded(self) -> dict:
        """{kernel name: Function} loaded on the current device."""
        if not self.functions:
            return {}
        device = self.device()
        return {name: fn for (d, name), fn in self.functions.items() if d == device}


def _cupy_ptr(a):
    return int(a.data.ptr)


@functools.lru_cache(maxsize=None)
def _ops() -> KernelOps:
    ex = _CupyExecutor()
    return KernelOps(ex.cupy, ex.launch, _cupy_ptr, **executor_fields(ex))


def executor_fields(ex: _CupyExecutor) -> dict:
    """The Launcher fields of `ex`: plans/gemm.py selects the wgmma GEMM only where `ex`'s probe loaded it
    (and on sm_90), else says why not."""
    return {"executor": ex, "builds_sm90a": lambda: ex.sm90a_support()[0],
            "sm90a_reason": lambda: ex.sm90a_support()[1]}


def loaded_kernels() -> dict:
    """{kernel name: CuPy Function} of the kernels the jit backend has loaded on the current device (none, and
    no CuPy or device query, when it has launched nothing in this process)."""
    if _ops.cache_info().currsize == 0:
        return {}
    return _ops().executor.loaded()


def __getattr__(name):   # module-level op functions: jit.conv2d_fprop(...) etc.
    if name not in OPS:
        raise AttributeError(name)
    return getattr(_ops(), name)
