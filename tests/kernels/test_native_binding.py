"""fastconv._C's argument checks, with no GPU: every mismatch raises a clear Python exception before
anything is launched; a well-formed call without a device raises RuntimeError from the CUDA check."""
from __future__ import annotations

import numpy as np
import pytest

_C = pytest.importorskip("fastconv._C")


class FakeDeviceArray:
    """Anything with __cuda_array_interface__ is accepted; this one only describes memory."""

    def __init__(self, shape, typestr="<f4", ptr=1 << 20, readonly=False, strides=None):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "data": (ptr, readonly),
                                         "strides": strides, "version": 3}


MUL = "fc::multiply_kernel<float>"   # (const float* a, const float* b, float* out, int64_t n)
CONV = "fc::conv2d_fprop_implicit_gemm<fc::TileSmall, 4, int, float>"


def launch(name, args, grid=(1,), block=(32,)):
    _C.launch(name, grid, block, args, 0, 0)


def test_kernel_table_matches_the_plans():
    from fastconv.backends.jit import all_kernel_names
    from fastconv.backends.plans.gemm import sm90a_kernel_names
    # a _C built with the sm_90a shard (csrc/launch/kernels_sm90a.cu) also holds the wgmma GEMMs and convs
    sm90a = sm90a_kernel_names() if hasattr(_C, "kernel_requires") else []
    assert sorted(_C.kernel_names()) == sorted(all_kernel_names() + sm90a)


def test_argument_errors_name_kernel_argument_and_expectation():
    a = FakeDeviceArray((8,))
    with pytest.raises(ValueError, match="no kernel named 'fc::nope'"):
        launch("fc::nope", [])
    with pytest.raises(ValueError, match="takes 4 arguments, got 3"):
        launch(MUL, [a, a, a])
    with pytest.raises(ValueError, match=r"argument 0 \(const float\*\) must be a GPU array"):
        launch(MUL, [np.zeros(8, np.float32), a, a, 8])
    with pytest.raises(ValueError, match="typestr <f8"):
        launch(MUL, [FakeDeviceArray((8,), "<f8"), a, a, 8])
    with pytest.raises(ValueError, match="written by the kernel but the array is read-only"):
        launch(MUL, [a, a, FakeDeviceArray((8,), readonly=True), 8])
    with pytest.raises(ValueError, match="C-contiguous"):
        launch(MUL, [FakeDeviceArray((4, 2), strides=(4, 16)), a, a, 8])
    with pytest.raises(ValueError, match="not aligned to its element size"):
        launch(MUL, [FakeDeviceArray((8,), ptr=(1 << 20) + 2), a, a, 8])
    with pytest.raises(ValueError, match="does not fit"):
        launch("fc::column_finalize<float>", [a, 2**40, 1, 0, 1, 0.0, a])
    with pytest.raises(ValueError, match="exactly 64 bytes"):
        launch(CONV, [b"\0" * 60, a, a, a, a, 0, 0, 0.0])
    with pytest.raises(ValueError, match="16-byte aligned"):
        launch(CONV, [b"\0" * 64, FakeDeviceArray((8,), ptr=(1 << 20) + 4), a, a, a, 0, 0, 0.0])
    with pytest.raises(ValueError, match="grid"):
        launch(MUL, [a, a, a, 8], grid=(0,))


def test_well_formed_launch_without_a_device_raises_runtime_error():
    if _C.device_count() > 0:
        pytest.skip("a GPU is present")
    a = FakeDeviceArray((8,))
    with pytest.raises(RuntimeError, match="CUDA device|cuda"):
        launch(MUL, [a, a, a, 8])
