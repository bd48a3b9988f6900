"""NaN and Inf travel through max-pool, ReLU and the reductions the same way on every path as in
the reference (NumPy's rules: NaN wins a max, NaN poisons a sum)."""
import numpy as np
import pytest

import fastconv.backends.reference as R
from fastconv.backends import backend_status

PATHS = [("reference", R)]
if backend_status()["emulated"][0]:
    import fastconv.backends.emulated as E
    PATHS.append(("emulated", E))


def _x(rng, shape):
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, 6, replace=False)] = [np.nan, np.nan, np.inf, -np.inf, np.inf, np.nan]
    return x


@pytest.mark.parametrize("name,B", PATHS, ids=[p[0] for p in PATHS])
def test_special_values_propagate_like_the_reference(name, B):
    rng = np.random.default_rng(11)
    x = _x(rng, (2, 6, 6, 3))
    pads = ((0, 0), (0, 0))
    y, _ = B.max_pool2d_fprop(x, (2, 2), (2, 2), pads)
    ref, _ = R.max_pool2d_fprop(x, (2, 2), (2, 2), pads)
    np.testing.assert_array_equal(y, ref)                     # equal, NaN where NaN
    assert np.isnan(ref).any() and np.isinf(ref).any()
    np.testing.assert_array_equal(B.relu_fprop(x), R.relu_fprop(x))
    np.testing.assert_array_equal(B.global_avg_pool_fprop(x), R.global_avg_pool_fprop(x))
    logits = _x(rng, (4, 5))
    labels = np.array([0, 1, 2, 3])
    loss, _ = B.softmax_cross_entropy_fprop(logits, labels)
    assert np.isnan(loss)
    dy = _x(rng, (8, 7))
    _, _, db = B.dense_bprop(dy, rng.standard_normal((8, 3)).astype(np.float32),
                             rng.standard_normal((3, 7)).astype(np.float32))
    np.testing.assert_array_equal(np.isnan(db), np.isnan(dy.sum(0)))


def test_all_negative_infinity_window_stays_negative_infinity():
    x = np.full((1, 2, 2, 1), -np.inf, np.float32)
    y, arg = R.max_pool2d_fprop(x, (2, 2), (2, 2), ((0, 0), (0, 0)))
    assert y[0, 0, 0, 0] == -np.inf and arg[0, 0, 0, 0] == 0
