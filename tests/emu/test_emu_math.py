"""Math and bit intrinsics, vector types and __ldg against NumPy."""
import numpy as np

from fastconv import emulator


def test_math_intrinsics():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-20, 20, 500), [0.125, 0.375, -0.375, 0.625, 2.5, -2.5, 0.0, -0.0]]).astype(np.float32)
    n = x.size
    out, iout = np.zeros((n, 12), np.float32), np.zeros((n, 6), np.int32)
    emulator.launch("selftest.math_intrinsics", (n + 127) // 128, 128, (x, out, iout, n))
    v = x.astype(np.float64)
    a = (np.abs(x) + np.float32(1)).astype(np.float64)   # the kernel forms fabsf(v) + 1 in float
    want = np.stack([np.exp(v), np.exp(v), np.log(a), np.log(a), np.maximum(v, 0.5), np.minimum(v, 0.5), np.sqrt(a),
                     1 / np.sqrt(a), v / 3, v * v + 1, np.tanh(v), -v], axis=1)
    np.testing.assert_allclose(out, want.astype(np.float32), rtol=2e-7, atol=1e-30)
    np.testing.assert_array_equal(out[:, 11].view(np.uint32), (-x).view(np.uint32))
    t = np.trunc(x).astype(np.int32)
    np.testing.assert_array_equal(iout[:, 0], np.rint(x * 4).astype(np.int32))   # np.rint: ties to even
    np.testing.assert_array_equal(iout[:, 1], np.maximum(t, -1))
    np.testing.assert_array_equal(iout[:, 2], np.minimum(t, 1))
    np.testing.assert_array_equal(iout[:, 3], [bin(int(u)).count("1") for u in x.view(np.uint32)])
    np.testing.assert_array_equal(iout[:, 4], np.trunc(2 * x).astype(np.int32) + np.trunc(4 * x).astype(np.int32))
    np.testing.assert_array_equal(iout[:, 5], np.trunc(x * 4).astype(np.int32))
