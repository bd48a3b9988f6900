"""emulated backend: the csrc/ kernels run by the CPU SIMT emulator (fastconv._emu), NumPy in and out.

Same API as the NumPy reference, and the very launch plans the GPU backends use
(fastconv/backends/plans/kernel_ops.py KernelOps), so a test that compares this module with the reference checks
the kernels *and* the plans that launch them, with no GPU. Slow (a fiber per CUDA thread): for
tests on small shapes. `ops(order=..., seed=...)` gives an instance with another thread order;
knobs for tests: plans/launcher.py Launcher's force_* fields.
"""
from __future__ import annotations

import functools

import numpy as np

from .plans import EXTRA_API, OPS, REFERENCE_API, KernelOps  # noqa: F401  (re-exported names)


def status() -> tuple[bool, str]:
    try:
        from .. import emulator  # noqa: F401
        from .. import _emu  # noqa: F401
    except ImportError as exc:
        return False, f"the emulator is not built ({exc}); python setup.py build_ext --inplace"
    return True, "fastconv._emu runs the kernels on the CPU"


def _python_value(a):
    if isinstance(a, np.void):
        return a.tobytes()
    if isinstance(a, np.generic):
        return a.item()
    return a


class _EmulatorExecutor:
    def __init__(self, order="forward", seed=0):
        from .. import emulator
        self.emulator, self.order, self.seed = emulator, order, seed
        self.launched = []   # kernel names, in order (tests check them against the native registry)

    def launch(self, kernel, grid, block, args, shared_bytes=0, keep_alive=None):
        self.launched.append(kernel)
        self.emulator.launch(kernel, tuple(grid), tuple(block), [_python_value(a) for a in args],
                             shared_bytes=shared_bytes, order=self.order, seed=self.seed)


def ops(order="forward", seed=0) -> KernelOps:
    ex = _EmulatorExecutor(order, seed)
    return KernelOps(np, ex.launch, lambda a: int(a.ctypes.data), executor=ex)


@functools.lru_cache(maxsize=None)
def _default() -> KernelOps:
    # order=None: each launch reads $FASTCONV_EMU_ORDER (default 'forward'), so whole-model runs
    # through this module can be repeated under other thread orders
    return ops(order=None)


def __getattr__(name):   # module-level op functions: emulated.conv2d_fprop(...) etc.
    if name not in OPS:
        raise AttributeError(name)
    return getattr(_default(), name)
