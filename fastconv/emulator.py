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
"""
from __future__ import annotations

import numbers
import os
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


def launch(kernel: str, grid: Dim, block: Dim, args: Sequence, shared_bytes: int = 0, order: str | None = None,
           seed: int = 0, poison_async: bool = False) -> None:
    """Run a registered kernel on the emulator; output arrays are updated in place.

    kernel: a name from kernels(). grid, block: an int or a tuple of up to 3 ints (blocks of up to
    1,024 threads). args: one value per kernel parameter (see the module docstring).
    shared_bytes: dynamic shared memory per block (FC_DYNAMIC_SHARED).
    order: the order threads run between barriers, and blocks run in: 'forward', 'reverse' or
    'random' (seeded by `seed`); default $FASTCONV_EMU_ORDER or 'forward'. A kernel that gives
    different answers under different orders has a race.
    poison_async: fill each cp.async destination with NaN until a wait_group releases it.
    Raises EmulatorError (a RuntimeError naming the kernel) when the kernel fails: a barrier or warp
    collective not reached by every thread it names, an out-of-bounds write, a device assert, a
    fault; TypeError/ValueError/OverflowError for arguments that do not fit the kernel's parameters.
    """
    module = _module()
    if not isinstance(kernel, str):
        raise TypeError(f"kernel must be a registered kernel's name (str), got {type(kernel).__name__}")
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
    module.launch(kernel, list(grid3), list(block3), list(args), int(shared_bytes), order, int(seed), bool(poison_async))
