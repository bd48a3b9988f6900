"""Counter-based dropout mask: the documented hash, determinism, statistics, scaling."""
import numpy as np
import pytest

from fastconv.backends.reference import dropout_bprop, dropout_fprop, dropout_mask, hash32
from refcheck import check_vjp

M64 = (1 << 64) - 1


def _splitmix64(z):
    """The docstring's formula in plain Python ints: what a CUDA port must reproduce."""
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def test_hash_follows_documented_formula():
    for seed in (0, 1, 12345, 2**40 + 7):
        counters = [0, 1, 2, 999, 2**32 - 1, 2**32, 2**63 + 5]
        expected = [_splitmix64(_splitmix64(seed) ^ c) >> 32 for c in counters]
        np.testing.assert_array_equal(hash32(seed, np.array(counters, np.uint64)), expected)
    # literal values so the CUDA port can be checked without running Python
    assert _splitmix64(0) == 0xE220A8397B1DCDAF
    np.testing.assert_array_equal(hash32(0, np.arange(3, dtype=np.uint64)),
                                  [_splitmix64(0xE220A8397B1DCDAF ^ c) >> 32 for c in range(3)])


def test_keep_rule_is_integer_threshold():
    shape, rate, seed, offset = (7, 11), 0.3, 42, 1000
    u = hash32(seed, np.arange(offset, offset + 77, dtype=np.uint64)).reshape(shape)
    mask = dropout_mask(shape, rate, seed, offset)
    np.testing.assert_array_equal(mask != 0, u >= round(rate * 2**32))


def test_deterministic_and_offset_consistent():
    a = dropout_mask((6, 50), 0.4, seed=7, offset=3)
    np.testing.assert_array_equal(a, dropout_mask((6, 50), 0.4, seed=7, offset=3))
    # element i of a mask at offset o is element o + i of the mask at offset 0: a kernel may tile freely
    whole = dropout_mask((400,), 0.4, seed=7, offset=0)
    np.testing.assert_array_equal(a.ravel(), whole[3:303])
    assert not np.array_equal(dropout_mask((300,), 0.4, 7, 2**32), dropout_mask((300,), 0.4, 7, 0))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_rate_and_scaling(rate):
    n = 200_000
    mask = dropout_mask((n,), rate, seed=123, offset=0, dtype=np.float32)
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(np.unique(mask), [0, np.float32(1 / (1 - rate))])
    dropped = np.mean(mask == 0)
    assert abs(dropped - rate) < 5 * np.sqrt(rate * (1 - rate) / n)   # 5 sigma
    assert abs(mask.astype(np.float64).mean() - 1) < 0.02               # inverted dropout keeps the mean


def test_distinct_seeds_differ():
    rate, n = 0.5, 20_000
    a, b = dropout_mask((n,), rate, 1), dropout_mask((n,), rate, 2)
    agree = np.mean((a == 0) == (b == 0))
    assert abs(agree - 0.5) < 0.03          # independent masks agree about half the time


def test_rate_zero_and_extreme():
    np.testing.assert_array_equal(dropout_mask((3, 4), 0.0, 5, dtype=np.float64), np.ones((3, 4)))
    assert dropout_mask((3, 4), 0.0, 5, dtype=np.float64).dtype == np.float64
    assert np.mean(dropout_mask((10_000,), 0.999, 5) == 0) > 0.99


def test_fprop_bprop(rng):
    x = rng.standard_normal((4, 5, 3))
    mask = dropout_mask(x.shape, 0.25, seed=9, dtype=np.float64)
    y = dropout_fprop(x, mask)
    np.testing.assert_array_equal(y, x * mask)
    dy = rng.standard_normal(x.shape)
    check_vjp(lambda a: dropout_fprop(a, mask), [x], dy, [dropout_bprop(dy, mask)], rng)
