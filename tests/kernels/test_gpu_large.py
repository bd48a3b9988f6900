"""Index arithmetic past 2^31 elements on a real GPU (marked gpu; run by benchmarks/gpu_check.sh).

Each image's result depends on that image alone, so the reference is computed for the first and
the last image only: the last one sits beyond element 2^31 of the batch, where a 32-bit offset
would wrap."""
import numpy as np
import pytest

import fastconv.backends.reference as R
from fastconv.backends.device import cuda_available
from fastconv.shapes import needs_64bit_index

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU")]


def _backend():
    from fastconv.backends import backend_for
    return backend_for("cuda")


def _free():
    import cupy
    cupy.get_default_memory_pool().free_all_blocks()


def test_max_pool_beyond_2_31_elements():
    import cupy
    shape = (130, 256, 256, 256)         # 2.18e9 elements (8.7 GB of float32)
    assert needs_64bit_index(shape)
    x = cupy.random.default_rng(0).standard_normal(shape, dtype=cupy.float32)
    B = _backend()
    pool, stride, pads = (2, 2), (2, 2), ((0, 0), (0, 0))
    y, argmax = B.max_pool2d_fprop(x, pool, stride, pads)
    for n in (0, shape[0] - 1):
        ref_y, ref_arg = R.max_pool2d_fprop(x[n:n + 1].get(), pool, stride, pads)
        np.testing.assert_array_equal(y[n:n + 1].get(), ref_y)
        np.testing.assert_array_equal(argmax[n:n + 1].get(), ref_arg)
    dy = cupy.ones_like(y)
    dx = B.max_pool2d_bprop(dy, argmax, shape, pool, stride, pads)
    n = shape[0] - 1
    ref_dx = R.max_pool2d_bprop(dy[n:n + 1].get(), argmax[n:n + 1].get(), (1, *shape[1:]), pool, stride, pads)
    np.testing.assert_array_equal(dx[n:n + 1].get(), ref_dx)
    del x, y, argmax, dy, dx
    _free()


def test_conv_beyond_2_31_elements():
    import cupy
    shape = (130, 256, 256, 256)         # 2.18e9 input elements
    assert needs_64bit_index(shape)
    rng = cupy.random.default_rng(1)
    x = rng.standard_normal(shape, dtype=cupy.float32)
    w = rng.standard_normal((1, 1, 256, 16), dtype=cupy.float32)
    B = _backend()
    args = ((1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    y = B.conv2d_fprop(x, w, *args)
    for n in (0, shape[0] - 1):
        ref = R.conv2d_fprop(x[n:n + 1].get(), w.get(), *args)
        out = y[n:n + 1].get()
        assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 1e-5
    del x, y
    _free()
