"""The jit backend's kernel arguments pass CuPy's own argument packing, for every supported CuPy.

The structs a kernel takes by value (Conv2dProblem 64 B, Pool2dProblem 48 B, the 128-byte TensorMap) reach
CuPy as np.void from the plans: CuPy 13 raises TypeError on np.void, CuPy 14.0 asserts on 64 bytes or more.
CuPy packs every argument (cupy/cuda/function.pyx _launch) before its first driver call, so on a machine
without a driver a launch that gets past the packing stops at the driver with a CUDA error, and one whose
arguments CuPy cannot pack stops with TypeError or AssertionError. That is checked here with the CuPy that is
installed, and in a subprocess with each older CuPy installed under $FASTCONV_CUPY_VERSIONS/<version>
(pip install --no-deps --target $FASTCONV_CUPY_VERSIONS/13.6.0 cupy-cuda12x==13.6.0 fastrlock;
 the same for 14.0.1; default directory: .cupy-versions/ in the repository root).
"""
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from fastconv.backends.plans import KernelOps

VALID = ((0, 0), (0, 0))
REPO = Path(__file__).resolve().parents[2]
OLDER_CUPYS = ("13.6.0", "14.0.1")   # the oldest 13.x and 14.0.x the packing changed in; the venv has 14.2
STRUCT_BYTES = {48, 64, 128}         # Pool2dProblem, Conv2dProblem, TensorMap


def _plan_launches():
    """(kernel, grid, block, args) of launches whose arguments include every struct the kernels take, as the
    shared plans build them (NumPy operands stand in for device arrays)."""
    launches = []
    ops = KernelOps(np, lambda kernel, grid, block, args, shared_bytes=0, keep_alive=None:
                    launches.append((kernel, grid, block, args)), lambda a: int(a.ctypes.data))
    x = np.ones((2, 9, 9, 4), np.float32)
    w = np.ones((3, 3, 4, 8), np.float32)
    ops.conv2d_fprop(x, w)                                                   # Conv2dProblem
    ops.max_pool2d_fprop(x, (2, 2), (2, 2), VALID)                            # Pool2dProblem
    ops.conv2d_bias_relu_maxpool_fprop(x, w, None, pool=(3, 3), pool_stride=(2, 2))   # both
    a, b = np.ones((64, 64), np.uint16), np.ones((64, 64), np.uint16)
    ops.gemm_wgmma(a, b)                       # two TensorMaps (the emulator's encoding: same 128 bytes)
    assert launches[-1][0].startswith("fc::gemm_wgmma<"), launches[-1][0]
    return launches


def _device_array(cupy, host):
    """A CuPy array over `host`'s memory, made without a device: what a real launch passes for an operand
    (never dereferenced here: the launch stops at the driver)."""
    mem = cupy.cuda.UnownedMemory(host.ctypes.data, host.nbytes, host, device_id=0)
    return cupy.ndarray(host.shape, host.dtype, memptr=cupy.cuda.MemoryPointer(mem, 0))


def _cupy_launch_error(cupy, args):
    """What CuPy's Function.__call__ raises for `args` on a Function with a null handle."""
    fn = cupy.cuda.function.Function.__new__(cupy.cuda.function.Function)
    with pytest.raises(BaseException) as info:
        fn((1,), (1,), args, shared_mem=0, stream=types.SimpleNamespace(ptr=0))
    return info.value


def _reached_driver(exc) -> bool:
    return type(exc).__module__.startswith("cupy_backends.cuda.api.")


def test_struct_arguments_pass_cupys_packing():
    cupy = pytest.importorskip("cupy")
    from fastconv.backends import jit
    from fastconv.backends.device import cuda_status
    expected = os.environ.get("FASTCONV_EXPECT_CUPY")
    if expected:   # the subprocess runs of test_older_cupy_packs_the_struct_arguments
        assert cupy.__version__ == expected, (cupy.__file__, cupy.__version__)
    if cuda_status()[0]:
        pytest.skip("a driver is present: the GPU tests launch these kernels for real")
    # the harness tells the two outcomes apart: an argument CuPy cannot pack fails before the driver
    assert isinstance(_cupy_launch_error(cupy, (object(),)), TypeError)
    assert _reached_driver(_cupy_launch_error(cupy, (np.int32(1),)))

    seen = set()
    for kernel, _grid, _block, args in _plan_launches():
        cooked = jit.kernel_args(args)
        launch_args = tuple(_device_array(cupy, a) if isinstance(a, np.ndarray) and a.size != 1 else a for a in cooked)
        exc = _cupy_launch_error(cupy, launch_args)
        assert _reached_driver(exc), f"CuPy {cupy.__version__} could not pack the arguments of {kernel}: {exc!r}"
        assert len(cooked) == len(args)
        for raw, arg in zip(args, cooked):
            if isinstance(raw, np.void):
                seen.add(raw.nbytes)
                # CuPy passes a one-element array by a pointer to its data: the struct's own bytes
                assert isinstance(arg, np.ndarray) and arg.size == 1, (kernel, type(arg))
                assert arg.tobytes() == raw.tobytes(), kernel
            else:
                assert arg is raw, kernel
    assert seen == STRUCT_BYTES, seen


def _cupy_versions_dir() -> Path:
    return Path(os.environ.get("FASTCONV_CUPY_VERSIONS") or REPO / ".cupy-versions")


@pytest.mark.parametrize("version", OLDER_CUPYS)
def test_older_cupy_packs_the_struct_arguments(version):
    from fastconv.backends.device import cuda_status
    target = _cupy_versions_dir() / version
    if not (target / "cupy").is_dir():
        pytest.skip(f"CuPy {version} is not installed in {target} (see this file's docstring)")
    if cuda_status()[0]:
        pytest.skip("a driver is present: the GPU tests launch these kernels for real")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), str(REPO)]), "FASTCONV_EXPECT_CUPY": version}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                          f"{Path(__file__).resolve()}::test_struct_arguments_pass_cupys_packing"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-4000:] + run.stderr[-2000:]
