import os
import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test id (stable across runs) so failures reproduce."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def emulated_ops(order="random", **knobs):
    """The emulated KernelOps. Tests that do not choose a thread order get a seeded random one (blocks
    and threads permuted), so every kernel runs in at least one order other than forward."""
    emulator = pytest.importorskip("fastconv.emulator")
    if not emulator.available():
        pytest.skip("fastconv._emu is not built (python setup.py build_ext --inplace)")
    from fastconv.backends import emulated
    ops = emulated.ops(order=order)
    for k, v in knobs.items():
        setattr(ops, k, v)
    return ops


def sm90_emulated_ops(kernel_names, order="forward", poison=False, seed=1, xp=np):
    """KernelOps on the emulator for the sm_90a kernels, with TMA destinations poisoned until their mbarrier
    completes (poison); ops.launched records (kernel, grid, block, shared bytes). Skips where fastconv._emu is
    missing or predates kernel_names."""
    emulator = pytest.importorskip("fastconv.emulator")
    if not emulator.available():
        pytest.skip("fastconv._emu is not built (python setup.py build_ext --inplace)")
    if kernel_names[0] not in emulator.kernels():
        pytest.skip("fastconv._emu predates the sm_90a kernels: rebuild it")
    from fastconv.backends.emulated import _python_value
    from fastconv.backends.plans.kernel_ops import KernelOps
    launched = []

    def launch(kernel, grid, block, args, shared_bytes=0, keep_alive=None):
        launched.append((kernel, tuple(grid), tuple(block), shared_bytes))
        emulator.launch(kernel, tuple(grid), tuple(block), [_python_value(a) for a in args], shared_bytes=shared_bytes,
                        order=order, seed=seed, poison_async=poison)

    ops = KernelOps(xp, launch, lambda a: int(a.ctypes.data))
    ops.launched = launched
    return ops


class NanFilledNumpy:
    """numpy whose `empty` returns NaN (bf16 NaN bits for uint16): outputs a kernel does not write stay NaN."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype):
        dt = np.dtype(dtype)
        return np.full(shape, 0x7FC0 if dt == np.uint16 else np.nan, dt)   # 0x7FC0: a bf16 quiet NaN


def nan_filled_sm90_ops(kernel_names, order="random", poison=True, seed=1):
    """sm90_emulated_ops whose fresh arrays are NaN, as the sm_90a target (the plans take the emulator for one)."""
    ops = sm90_emulated_ops(kernel_names, order, poison, seed, xp=NanFilledNumpy())
    ops.sm90_target = lambda: "emulator"
    return ops


def assert_same(got, want, exact, rtol=1e-4, atol=1e-4, what=""):
    """Equality (exact) or closeness, printing the first mismatches and the max difference."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype} != {want.dtype}"
    if exact:
        bad = ~((got == want) | (np.isnan(got) & np.isnan(want)) if got.dtype.kind == "f" else (got == want))
    else:
        bad = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if bad.any():
        idx = np.argwhere(bad)[:8]
        diff = np.nanmax(np.abs(got.astype(np.float64) - want.astype(np.float64)))
        lines = [f"  at {tuple(i)}: got {got[tuple(i)]!r}, want {want[tuple(i)]!r}" for i in idx]
        raise AssertionError(f"{what}: {int(bad.sum())} of {bad.size} elements differ (max |diff| {diff:.3g})\n"
                             + "\n".join(lines))


def every_suite_conv(argnames):
    """The opt-in sweep over every conv of the ResNet-50 and VGG-16 suites (fprop, dgrad and wgrad tests)."""
    from fastconv.bench.suites import load_suite
    convs = [(suite, p) for suite in ("resnet50", "vgg16") for p in load_suite(suite).problems if p.kind == "conv2d"]

    def wrap(test):
        test = pytest.mark.parametrize(argnames, convs, ids=lambda v: v if isinstance(v, str) else v.name)(test)
        test = pytest.mark.skipif(not os.environ.get("FASTCONV_EMU_SUITES"),
                                  reason="the suite sweep takes minutes in the emulator: set FASTCONV_EMU_SUITES=1")(test)
        return pytest.mark.slow(test)
    return wrap


def hopper_jit():
    """(cupy, the jit backend) on an sm_90 GPU; skips elsewhere, saying why (the GPU checks of the sm_90a kernels)."""
    from fastconv.backends.device import cuda_status
    ok, why = cuda_status()
    if not ok:
        pytest.skip(why)
    cupy = pytest.importorskip("cupy")
    if str(cupy.cuda.Device().compute_capability) != "90":
        pytest.skip("needs an sm_90 (Hopper) GPU")
    from fastconv.backends import jit
    if not jit.status()[0]:
        pytest.skip(jit.status()[1])
    return cupy, jit
