"""Run fastconv's CUDA kernels on the CPU: the SIMT emulator (extension module fastconv._emu).

The device sources in csrc/ that nvcc and NVRTC compile are also compiled by g++ against the
emulator (csrc/emu/); every kernel registered in csrc/emu/kernel_table.inc can be launched here on
NumPy buffers and compared with the NumPy reference, with no GPU:

    import numpy as np
    from fastconv import emulator
    a, b = np.random.rand(37, 45).astype(np.float32), np.random.rand(45, 29).astype(np.float32)
    c = np.zeros((37, 29), np.float32)
    emulator.launch("selftest.sgemm_tiled", grid=(2, 3), block=(16, 16), args=(a, b, c, 37, 29, 45))
    np.testing.assert_allclose(c, a @ b, rtol=1e-5)

Arguments: NumPy arrays for pointer parameters (dtype must match the pointee: float32, float64,
int8/16/32/64, uint8/16/32/64, bool, float16 for __half, uint16 bit patterns for __nv_bfloat16;
C-contiguous; copied into guarded device buffers and copied back unless the pointer is to const),
Python ints/floats for arithmetic parameters (range-checked), and bytes or a NumPy structured scalar
of exactly sizeof(T) bytes for struct parameters. See csrc/emu/README.md for what is emulated.

Kernels written outside fastconv run without editing csrc/emu/kernel_table.inc:

    scale = emulator.compile_kernel('''
        __global__ void scale(const float* x, float* y, float s, int n) {
          int i = blockIdx.x * blockDim.x + threadIdx.x;
          if (i < n) y[i] = s * x[i];
        }''', "scale")
    emulator.launch(scale, grid=4, block=256, args=(x, y, 2.0, x.size), racecheck=True)

racecheck=True runs an instrumented build of the same kernels that reports data races (see launch).
profile() counts a launch's memory traffic as Nsight Compute would; counting() counts every launch
inside a `with`, kernel_counters() sums them per kernel, and profile_op() / profile_step() run an op
or a model's training step that way (what `fastconv profile --emulated` prints).
"""
from __future__ import annotations

import contextlib
import numbers
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Sequence, Union

ORDERS = ("forward", "reverse", "random")
MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK_DIM = (1024, 1024, 64)
MAX_GRID_DIM = (2**31 - 1, 65535, 65535)
MAX_SHARED_BYTES = 227 * 1024  # per block on H100/H200 (opt-in); sm_80 allows 163 KB

try:
    from . import _emu
except ImportError as exc:  # not built: python setup.py build_ext --inplace (or pip install .)
    _emu = None
    _IMPORT_ERROR = exc

    class EmulatorError(RuntimeError):
        """A kernel failed in the emulator (the message names the kernel, block and thread)."""
else:
    _IMPORT_ERROR = None
    EmulatorError = _emu.EmulatorError  # a RuntimeError subclass, raised by the C++ side

Dim = Union[int, Sequence[int]]


class _Unit:
    """One source compiled into a module (plain and racecheck builds), with the kernels it registers."""

    def __init__(self, source: str, names: list[str], filename: str):
        self.source, self.names, self.filename = source, names, filename
        self._modules: dict[bool, object] = {}

    def text(self) -> str:
        lines = ['#include "common/platform.h"', '#include "emu/registry.h"', f'#line 1 "{self.filename}"', self.source,
                 '#line 1 "<compile_kernel>"']
        lines += [f'FC_EMU_KERNEL("{n}", ({n}))' for n in self.names]
        return "\n".join(lines) + "\n"

    def module(self, racecheck: bool):
        if racecheck not in self._modules:
            from .backends import _emu_build
            self._modules[racecheck] = _emu_build.build_module(self.text(), racecheck)
        return self._modules[racecheck]


class Kernel:
    """A kernel compiled by compile_kernel() from source outside fastconv; pass it to launch()."""

    def __init__(self, unit: _Unit, name: str):
        self._unit, self.name = unit, name

    def module(self, racecheck: bool = False):
        return self._unit.module(racecheck)

    @property
    def signature(self) -> str:
        return self.module().kernels()[self.name]

    def __repr__(self) -> str:
        return f"<emulator.Kernel {self.name} from {self._unit.filename}>"


def compile_kernel(source: str, name: str | Sequence[str], filename: str = "kernel.cu") -> Kernel | list[Kernel]:
    """Compile CUDA C++ `source` with g++ against the emulator and return its kernel `name` (a
    function name or template-id, e.g. "scale" or "scale<float, 4>"), ready for launch(); a list of
    names gives a list of Kernels built into one module.

    The source is plain CUDA C++ as for csrc/ (common/platform.h is included first, so __global__,
    threadIdx, __shared__, the warp intrinsics and FC_DYNAMIC_SHARED are there; `#include
    "common/..."` finds fastconv's headers). Needs g++ and pybind11's headers; the module is cached
    under $FASTCONV_EMU_CACHE (default ~/.cache/fastconv/emu) by a hash of the source and of
    fastconv's csrc/, so a second call compiles nothing. `filename` names the source in reports.
    Raises _emu_build.BuildError with g++'s diagnostics when it does not compile.
    """
    if not isinstance(source, str) or not source.strip():
        raise TypeError(f"source must be a non-empty str of CUDA C++, got {type(source).__name__}")
    names = [name] if isinstance(name, str) else list(name) if isinstance(name, Sequence) else None
    if not names or not all(isinstance(n, str) and n.strip() and not any(c in n for c in ';{}"\n') for n in names):
        raise ValueError(f"name must be the kernel's C++ name or template-id (e.g. 'scale<float>'), or a list of them; "
                         f"got {name!r}")
    if not isinstance(filename, str) or not filename or any(c in filename for c in '"\n\\'):
        raise ValueError(f"filename must be a plain file name without quotes, backslashes or newlines, got {filename!r}")
    unit = _Unit(source, [n.strip() for n in names], filename)
    unit.module(False)
    kernels = [Kernel(unit, n) for n in unit.names]
    return kernels[0] if isinstance(name, str) else kernels


_SITE = re.compile(r"\{site (\S+)\+0x([0-9a-f]+) ([^{}]*)\}")


_LINES: dict[tuple[str, int], str | None] = {}   # (module path, code address) -> file:line


def _frame(frames: list[str]) -> str | None:
    """The innermost inlined frame in the kernel's own code, not in an emulator intrinsic (__ldg,
    atomicAdd); frames are addr2line's "file:line", innermost first ("??:0" / ":?" when unknown)."""
    known = []
    for token in frames:
        file, _, line = token.rpartition(":")
        if file and not file.startswith("??") and line.isdigit() and line != "0":
            known.append((os.path.normpath(file), line))
    own = [f for f in known if "/csrc/emu/" not in f[0] and "/_csrc/emu/" not in f[0]] or known
    return f"{own[0][0]}:{own[0][1]}" if own else None


def _source_lines(path: str, addresses) -> None:
    """Looks up the file:line of every address not yet in _LINES with one addr2line run (a run
    costs ~0.2 s on a large module: a model step has hundreds of sites)."""
    todo = sorted({a for a in addresses if (path, a) not in _LINES})
    if not todo:
        return
    _LINES.update({(path, a): None for a in todo})
    tool = shutil.which("addr2line")
    if tool is None:
        return
    try:
        out = subprocess.run([tool, "-a", "-i", "-e", path, *(hex(a) for a in todo)], capture_output=True, text=True,
                             timeout=120).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return
    address, frames = None, []
    for token in out + ["0x"]:   # -a prints each address before its frames; the sentinel ends the last
        if token.startswith("0x"):
            if address is not None:
                _LINES[(path, address)] = _frame(frames)
            address, frames = (int(token, 16) if len(token) > 2 else None), []
        else:
            frames.append(token)


def _symbolize(message: str) -> str:
    """Replace the C++ side's {site module+0xADDR function+0xOFF} tokens with file:line (function)."""
    return _symbolize_all([message])[0]


def _symbolize_all(messages: list[str]) -> list[str]:
    """_symbolize for many messages, with one addr2line run per module."""
    wanted: dict[str, set] = {}
    for message in messages:
        for m in _SITE.finditer(message):
            wanted.setdefault(m.group(1), set()).add(int(m.group(2), 16))
    for path, addresses in wanted.items():
        _source_lines(path, addresses)

    def one(m):
        line = _LINES.get((m.group(1), int(m.group(2), 16)))
        function = m.group(3).rsplit("+0x", 1)[0]
        return f"{line} (in {function})" if line else m.group(3)
    return [_SITE.sub(one, message) for message in messages]


def symbolize(sites: list[dict]) -> list[dict]:
    """profile(..., source_lines=False)'s sites with file:line filled in (in place, and returned): one
    addr2line run for the sites of many launches, where one per launch would dominate the time."""
    for s, text in zip(sites, _symbolize_all([s["site"] for s in sites])):
        s["site"] = text
    return sites


def _race_module():
    """The racecheck build of every registered kernel (built on first use: minutes; then cached)."""
    from .backends import _emu_build
    return _emu_build.build_module('#include "emu/kernels.cpp"\n', racecheck=True)


def available() -> bool:
    """Whether the emulator extension is built and importable."""
    return _emu is not None


def _module():
    if _emu is None:
        raise ImportError("fastconv._emu is not built; run `python setup.py build_ext --inplace` "
                          f"or `pip install .` ({_IMPORT_ERROR})")
    return _emu


def kernels() -> dict[str, str]:
    """Registered kernel names -> their C++ signatures, in table order."""
    return dict(_module().kernels())


def _dim3(value: Dim, what: str, limits: tuple[int, int, int]) -> tuple[int, int, int]:
    dims = (value,) if isinstance(value, numbers.Integral) else tuple(value)
    if not 1 <= len(dims) <= 3 or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
        raise TypeError(f"{what} must be an int or a tuple of 1 to 3 ints, got {value!r}")
    dims = tuple(int(d) for d in dims) + (1,) * (3 - len(dims))
    for axis, (d, limit) in enumerate(zip(dims, limits)):
        if not 1 <= d <= limit:
            raise ValueError(f"{what}[{axis}] = {d} is outside [1, {limit}]")
    return dims


def launch(kernel: str | Kernel, grid: Dim, block: Dim, args: Sequence, shared_bytes: int = 0, order: str | None = None,
           seed: int = 0, poison_async: bool = False, racecheck: bool | None = None) -> None:
    """Run a registered kernel on the emulator; output arrays are updated in place.

    kernel: a name from kernels(), or a Kernel from compile_kernel(). grid, block: an int or a tuple of up to 3 ints (blocks of up to
    1,024 threads). args: one value per kernel parameter (see the module docstring).
    shared_bytes: dynamic shared memory per block (FC_DYNAMIC_SHARED).
    order: the order threads run between barriers, and blocks run in: 'forward', 'reverse' or
    'random' (seeded by `seed`); default $FASTCONV_EMU_ORDER or 'forward'. A kernel that gives
    different answers under different orders has a race.
    poison_async: fill each cp.async destination with NaN until a wait_group releases it.
    racecheck: run the instrumented build (default $FASTCONV_EMU_RACECHECK == "1"): every shared-memory
    access of a block is recorded per barrier interval, and two accesses to the same bytes by
    different threads, at least one a non-atomic write, are reported with both source lines; global
    memory likewise between different blocks of the launch (a read of another block's write is
    allowed when that block ran __threadfence() after it). Slower; the registered kernels' build
    takes minutes the first time.
    Raises EmulatorError (a RuntimeError naming the kernel) when the kernel fails: a barrier or warp
    collective not reached by every thread it names, an out-of-bounds write, a device assert, a
    fault; TypeError/ValueError/OverflowError for arguments that do not fit the kernel's parameters.
    """
    if racecheck is None:
        racecheck = os.environ.get("FASTCONV_EMU_RACECHECK", "").strip() == "1"
    if isinstance(kernel, Kernel):
        module, name = kernel.module(bool(racecheck)), kernel.name
    elif isinstance(kernel, str):
        _module()
        module, name = (_race_module() if racecheck else _emu), kernel
    else:
        raise TypeError(f"kernel must be a registered kernel's name (str) or a Kernel from compile_kernel(), "
                        f"got {type(kernel).__name__}")
    grid3 = _dim3(grid, "grid", MAX_GRID_DIM)
    block3 = _dim3(block, "block", MAX_BLOCK_DIM)
    threads = block3[0] * block3[1] * block3[2]
    if threads > MAX_THREADS_PER_BLOCK:
        raise ValueError(f"block {block3} has {threads} threads; at most {MAX_THREADS_PER_BLOCK}")
    if not isinstance(shared_bytes, numbers.Integral) or not 0 <= shared_bytes <= MAX_SHARED_BYTES:
        raise ValueError(f"shared_bytes must be an int in [0, {MAX_SHARED_BYTES}], got {shared_bytes!r}")
    if order is None:
        order = os.environ.get("FASTCONV_EMU_ORDER", "").strip().lower() or "forward"
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    if not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2**64), got {seed!r}")
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        raise TypeError(f"args must be a sequence with one value per kernel parameter, got {type(args).__name__}")
    if _counted is not None and not racecheck and not poison_async:
        sites = _counted_sites(kernel, grid3, block3, args, shared_bytes, order, seed)
        _counted.append(Launch(name, grid3, block3, int(shared_bytes), sites))
        return
    try:
        module.launch(name, list(grid3), list(block3), list(args), int(shared_bytes), order, int(seed), bool(poison_async))
    except RuntimeError as exc:   # each built module has its own EmulatorError class: raise the one users catch
        if type(exc) is not getattr(module, "EmulatorError", None):
            raise
        raise EmulatorError(_symbolize_all([str(exc)])[0]) from None


@dataclass
class Launch:
    """One launch run under counting(): the kernel's name, its configuration, profile()'s sites, and
    the backend op that made it (set by whoever tags launches, e.g. `fastconv profile --emulated`)."""
    kernel: str
    grid: tuple
    block: tuple
    shared_bytes: int
    sites: list = field(repr=False)
    op: str | None = None


_counted: list | None = None   # the list counting() yields, while one is open


@contextlib.contextmanager
def counting():
    """Count every launch() made inside the `with` (by the emulated backend too): each runs once in
    the instrumented build, as profile() does, and its Launch is appended to the yielded list.

        with emulator.counting() as launches:
            emulated.conv2d_fprop(x, w, ...)
        print(emulator.format_kernel_table(emulator.kernel_counters(launches)))

    Launches with racecheck=True or poison_async=True run as asked, uncounted. Not reentrant."""
    global _counted
    if _counted is not None:
        raise RuntimeError("emulator.counting() is already open; it does not nest")
    _counted = launches = []
    try:
        yield launches
    finally:
        _counted = None
        names = _symbolize_all([s["site"] for launch in launches for s in launch.sites])   # one addr2line run
        for s, name in zip((s for launch in launches for s in launch.sites), names):
            s["site"] = name


def profile(kernel: str | Kernel, grid: Dim, block: Dim, args: Sequence, shared_bytes: int = 0, order: str | None = None,
            seed: int = 0, source_lines: bool = True) -> list[dict]:
    """Run a kernel once in the instrumented build and return its memory counters per load/store
    site (computed from the addresses each lane touched, as Nsight Compute counts them):

    site (file:line where known), space ('global' / 'shared'), op ('load' / 'store'), requests
    (warp-level: ncu l1tex__t_requests / l1tex__data_pipe_lsu_wavefronts_mem_shared_op_*
    denominators), lanes, bytes requested; global: sectors (distinct 32-byte sectors per request,
    summed: ncu l1tex__t_sectors_pipe_lsu_mem_global_op_{ld,st}); shared: wavefronts (banks of 4
    bytes, 128-byte phases, broadcasts: ncu l1tex__data_pipe_lsu_wavefronts_mem_shared_op_{ld,st})
    and ideal_wavefronts (one per phase: the excess is bank conflicts). Accesses made by the runtime
    (cp.async, TMA, wgmma operands, ldmatrix's rows) are not counted. Then one entry per kind of
    executed warp-level instruction the emulator sees: space 'instruction', op its name (a warp
    collective: '__shfl_xor_sync', an mma or ldmatrix, 'wgmma.wait_group...'; '__syncthreads', one
    per warp), requests how many; site ''. Arguments as for launch().
    source_lines=False leaves each site as the build's code address token: symbolize() turns the sites
    of many launches into file:line at once.
    """
    sites = _counted_sites(kernel, grid, block, args, shared_bytes, order, seed)
    return symbolize(sites) if source_lines else sites


def _counted_sites(kernel, grid, block, args, shared_bytes, order, seed) -> list[dict]:
    """profile() without resolving the sites' code addresses to source lines."""
    module, name = (kernel.module(True), kernel.name) if isinstance(kernel, Kernel) else (None, kernel)
    if module is None:
        if not isinstance(kernel, str):
            raise TypeError(f"kernel must be a registered kernel's name (str) or a Kernel, got {type(kernel).__name__}")
        _module()
        module = _race_module()
    grid3 = _dim3(grid, "grid", MAX_GRID_DIM)
    block3 = _dim3(block, "block", MAX_BLOCK_DIM)
    if block3[0] * block3[1] * block3[2] > MAX_THREADS_PER_BLOCK:
        raise ValueError(f"block {block3} has more than {MAX_THREADS_PER_BLOCK} threads")
    if not isinstance(shared_bytes, numbers.Integral) or not 0 <= shared_bytes <= MAX_SHARED_BYTES:
        raise ValueError(f"shared_bytes must be an int in [0, {MAX_SHARED_BYTES}], got {shared_bytes!r}")
    order = order or os.environ.get("FASTCONV_EMU_ORDER", "").strip().lower() or "forward"
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
    try:
        sites = module.launch(name, list(grid3), list(block3), list(args), int(shared_bytes), order, int(seed), False, True)
    except RuntimeError as exc:
        if type(exc) is not getattr(module, "EmulatorError", None):
            raise
        raise EmulatorError(_symbolize(str(exc))) from None
    return sites


def format_counters(sites: list[dict]) -> str:
    """profile()'s counters as a table, one row per site: global memory with sectors per request and
    the efficiency bytes requested / bytes moved (sectors x 32), shared memory with wavefronts per
    request and the excess over the conflict-free ideal (bank conflicts)."""
    rows = [("site", "space", "op", "requests", "sectors/req", "efficiency", "wavefronts/req", "conflict wavefronts")]
    for s in sites:
        req = max(s["requests"], 1)
        if s["space"] == "instruction":
            continue
        if s["space"] == "global":
            moved = 32 * s["sectors"]
            rows.append((s["site"], "global", s["op"], str(s["requests"]), f"{s['sectors'] / req:.2f}",
                         f"{100 * s['bytes'] / moved:.0f}%" if moved else "-", "", ""))
        else:
            rows.append((s["site"], "shared", s["op"], str(s["requests"]), "", "", f"{s['wavefronts'] / req:.2f}",
                         str(s["wavefronts"] - s["ideal_wavefronts"])))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines[:1] + ["-" * len(lines[0])] + lines[1:])



def profile_op(op: str, **kwargs):
    """One op of a benchmark suite through the emulated backend, every launch counted: see
    fastconv.bench.profile_emulated.profile_op (what `fastconv profile --emulated --op` runs)."""
    from .bench.profile_emulated import profile_op as run
    return run(op, **kwargs)


def profile_step(model: str = "seed", **kwargs):
    """One training step of a model, every launch counted: fastconv.bench.profile_emulated.profile_step;
    profile_step(model, convs=True, ...) runs the model's distinct convs forward and backward instead."""
    from .bench import profile_emulated
    return (profile_emulated.profile_convs if kwargs.pop("convs", False) else profile_emulated.profile_step)(model,
                                                                                                          **kwargs)


from .emulator_counters import (format_kernel_table, format_line_table, kernel_counters,  # noqa: E402,F401
                                line_counters)
