"""Compile csrc/ kernels with NVRTC, with no GPU and no driver: the jit path's compile check.

CuPy's RawModule.compile() needs a driver, so on a machine without a GPU the same check is done
here through NVRTC directly (`pip install nvidia-cuda-nvrtc cuda-bindings`), with the options CuPy
passes (-ftz=true, --std=c++17) and the include paths the jit path uses (csrc/ and the CUDA include
directory that holds cuda_fp16.h):

    from fastconv.backends import nvrtc_check
    result = nvrtc_check.compile_source('#include "gemm/gemm_simt.h"\\n', arch="sm_90a",
                                        name_expressions=["fc::gemm_bias_act<...>"])
    result.lowered_names    # name expression -> mangled symbol in result.binary

NVRTC has no host standard headers: device sources include csrc/common/platform.h first, which
gives them fixed-width integers without <cstdint>.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from ._sources import csrc_dir

CSRC = csrc_dir()
CUPY_OPTIONS = ("-ftz=true", "--std=c++17")  # what CuPy's RawModule adds to every compile


class NvrtcError(RuntimeError):
    """NVRTC rejected the source; the message carries NVRTC's log."""


@dataclass
class CompileResult:
    arch: str
    binary: bytes                  # CUBIN for sm_XY[a], PTX text (as bytes) for compute_XY
    log: str                       # warnings, if any
    lowered_names: dict[str, str] = field(default_factory=dict)


def available() -> bool:
    """Whether NVRTC can be used (cuda-bindings and the NVRTC library are installed)."""
    try:
        from cuda.bindings import nvrtc
        err, _major, _minor = nvrtc.nvrtcVersion()
        return err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    except Exception:  # ImportError, or the library missing behind the bindings
        return False


def version() -> tuple[int, int]:
    from cuda.bindings import nvrtc
    err, major, minor = nvrtc.nvrtcVersion()
    _check(nvrtc, err, "nvrtcVersion")
    return major, minor


def cuda_include_dirs() -> list[str]:
    """The CUDA include directory holding cuda_fp16.h (and its cccl/ subdirectory if present):
    $CUDA_HOME, $CUDA_PATH, /usr/local/cuda, or the headers of an installed nvidia-* wheel."""
    candidates = [os.path.join(os.environ[v], "include") for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    candidates.append("/usr/local/cuda/include")
    try:
        import nvidia  # namespace package of the nvidia-* wheels
        for base in nvidia.__path__:
            candidates += sorted(str(p.parent) for p in Path(base).glob("*/include/cuda_fp16.h"))
    except ImportError:
        pass
    for inc in candidates:
        if os.path.isfile(os.path.join(inc, "cuda_fp16.h")):
            dirs = [inc]
            if os.path.isdir(os.path.join(inc, "cccl")):
                dirs.append(os.path.join(inc, "cccl"))
            return dirs
    raise FileNotFoundError("no CUDA include directory with cuda_fp16.h found; set CUDA_HOME")


def _check(nvrtc, result, what: str, log: str = "") -> None:
    if result != nvrtc.nvrtcResult.NVRTC_SUCCESS:
        _, msg = nvrtc.nvrtcGetErrorString(result)
        raise NvrtcError(f"{what}: {msg.decode() if isinstance(msg, bytes) else msg}" + (f"\n{log}" if log else ""))


def compile_source(source: str, arch: str = "sm_80", name_expressions: Iterable[str] = (),
                   include_dirs: Sequence[str] | None = None, options: Sequence[str] = CUPY_OPTIONS,
                   filename: str = "fastconv_kernels.cu") -> CompileResult:
    """Compile `source` for `arch` (sm_80, sm_90a, compute_90, ...). name_expressions instantiate
    templates and are resolved to their mangled names. Include paths: csrc/ and the CUDA include
    directory, unless include_dirs is given. Raises NvrtcError with NVRTC's log on failure."""
    from cuda.bindings import nvrtc

    includes = [str(CSRC), *cuda_include_dirs()] if include_dirs is None else list(include_dirs)
    opts = [f"--gpu-architecture={arch}", *options, *(f"-I{d}" for d in includes)]
    err, prog = nvrtc.nvrtcCreateProgram(source.encode(), filename.encode(), 0, [], [])
    _check(nvrtc, err, "nvrtcCreateProgram")
    try:
        names = list(name_expressions)
        for name in names:
            (err,) = nvrtc.nvrtcAddNameExpression(prog, name.encode())
            _check(nvrtc, err, f"nvrtcAddNameExpression({name})")
        (result,) = nvrtc.nvrtcCompileProgram(prog, len(opts), [o.encode() for o in opts])
        err, size = nvrtc.nvrtcGetProgramLogSize(prog)
        _check(nvrtc, err, "nvrtcGetProgramLogSize")
        log = b" " * size
        (err,) = nvrtc.nvrtcGetProgramLog(prog, log)
        log_text = log.rstrip(b"\0 ").decode(errors="replace")
        _check(nvrtc, result, f"NVRTC compile for {arch} failed", log_text)
        if arch.startswith("sm_"):
            err, size = nvrtc.nvrtcGetCUBINSize(prog)
            _check(nvrtc, err, "nvrtcGetCUBINSize")
            binary = b" " * size
            (err,) = nvrtc.nvrtcGetCUBIN(prog, binary)
        else:
            err, size = nvrtc.nvrtcGetPTXSize(prog)
            _check(nvrtc, err, "nvrtcGetPTXSize")
            binary = b" " * size
            (err,) = nvrtc.nvrtcGetPTX(prog, binary)
        _check(nvrtc, err, "reading the compiled program")
        lowered = {}
        for name in names:
            err, low = nvrtc.nvrtcGetLoweredName(prog, name.encode())
            _check(nvrtc, err, f"nvrtcGetLoweredName({name})")
            lowered[name] = low.decode() if isinstance(low, bytes) else low
        return CompileResult(arch=arch, binary=bytes(binary), log=log_text, lowered_names=lowered)
    finally:
        nvrtc.nvrtcDestroyProgram(prog)


_TABLE_LINE = re.compile(r'^\s*FC_EMU_KERNEL\(\s*"[^"]+"\s*,\s*\((.*)\)\s*\)\s*$', re.M)


def table_name_expressions(table: str | os.PathLike) -> list[str]:
    """The kernel expressions of the FC_EMU_KERNEL("name", (expr)) lines of an emulator table."""
    return _TABLE_LINE.findall(Path(table).read_text())


def compile_table(table: str | os.PathLike, arch: str = "sm_80", **kwargs) -> CompileResult:
    """Compile every kernel of an emulator table (e.g. csrc/selftest/selftest_table.inc) with NVRTC:
    the table is included with FC_EMU_KERNEL defined empty, and its kernels instantiated as name
    expressions."""
    path = Path(table).resolve()
    source = ('#include "common/platform.h"\n#define FC_EMU_KERNEL(name, fn)\n'
              f'#include "{path}"\n')
    return compile_source(source, arch=arch, name_expressions=table_name_expressions(path),
                          filename=path.name + ".cu", **kwargs)
