"""Pooling reference: hand-computed values, finite differences and PyTorch (float64)."""
import numpy as np
import pytest

from fastconv.backends.reference import (avg_pool2d_bprop, avg_pool2d_fprop, global_avg_pool_bprop,
                                         global_avg_pool_fprop, max_pool2d_bprop, max_pool2d_fprop)
from fastconv.backends.reference.pool import argmax_dtype
from fastconv.shapes import resolve_padding
from refcheck import check_vjp, nchw, nhwc

# (x shape, pool, stride, padding before resolution)
CASES = [
    ((2, 8, 8, 3), (2, 2), (2, 2), "valid"),
    ((2, 9, 7, 3), (2, 2), (2, 2), "same"),          # odd sizes: 'same' pads bottom/right only
    ((1, 11, 10, 2), (3, 3), (2, 2), "same"),        # overlapping windows
    ((2, 7, 9, 4), (3, 2), (1, 3), ((1, 1), (0, 1))),
    ((1, 10, 9, 2), (3, 3), (3, 2), ((1, 1), (1, 1))),  # symmetric: torch's own padding applies
    ((2, 6, 6, 3), (1, 1), (2, 2), "valid"),
    ((1, 12, 11, 2), (5, 4), (2, 3), ((2, 2), (1, 2))),
]


def _setup(case, rng):
    shape, pool, stride, pad = case
    pads = resolve_padding(pad, shape[1:3], pool, stride)
    x = rng.permutation(np.prod(shape)).reshape(shape) / 7.0 - 3.0   # distinct values: no ties
    return x, pool, stride, pads


def test_tiny_max_pool_by_hand():
    x = np.array([[1, 3, 2, 0],
                  [5, 4, 1, 7],
                  [0, 2, 9, 9],
                  [6, 1, 3, 8]], np.float64).reshape(1, 4, 4, 1)
    y, arg = max_pool2d_fprop(x, (2, 2), (2, 2), ((0, 0), (0, 0)))
    np.testing.assert_array_equal(y[0, :, :, 0], [[5, 7], [6, 9]])
    np.testing.assert_array_equal(arg[0, :, :, 0], [[2, 3], [2, 0]])    # the tie of 9s: first one
    assert arg.dtype == np.uint8
    dy = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    dx = max_pool2d_bprop(dy, arg, x.shape, (2, 2), (2, 2), ((0, 0), (0, 0)))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0, 0, 0, 0], [1, 0, 0, 2], [0, 0, 4, 0], [3, 0, 0, 0]])


def test_tiny_pools_with_padding_by_hand():
    x = np.array([[-1, -2, -3], [-4, -5, -6], [-7, -8, -9]], np.float64).reshape(1, 3, 3, 1)
    pads = ((0, 1), (0, 1))                                  # 'same', pool 2, stride 2 on 3x3
    y, arg = max_pool2d_fprop(x, (2, 2), (2, 2), pads)
    np.testing.assert_array_equal(y[0, :, :, 0], [[-1, -3], [-7, -9]])    # padding never wins
    np.testing.assert_array_equal(arg[0, :, :, 0], [[0, 0], [0, 0]])
    avg = avg_pool2d_fprop(x, (2, 2), (2, 2), pads)
    np.testing.assert_array_equal(avg[0, :, :, 0], [[-3, -4.5], [-7.5, -9]])
    avg_incl = avg_pool2d_fprop(x, (2, 2), (2, 2), pads, count_include_pad=True)
    np.testing.assert_array_equal(avg_incl[0, :, :, 0], [[-3, -2.25], [-3.75, -2.25]])


def test_max_pool_nan_rule():
    nan = np.nan
    x = np.array([1, nan, 2, nan, 3, 0]).reshape(1, 1, 6, 1)
    y, arg = max_pool2d_fprop(x, (1, 4), (1, 2), ((0, 0), (0, 0)))
    assert np.isnan(y).all()
    np.testing.assert_array_equal(arg.ravel(), [1, 1])       # the first NaN of each window
    dx = max_pool2d_bprop(np.ones_like(y), arg, x.shape, (1, 4), (1, 2), ((0, 0), (0, 0)))
    np.testing.assert_array_equal(dx.ravel(), [0, 1, 0, 1, 0, 0])


def test_max_pool_negative_inf_and_wide_argmax():
    x = np.full((1, 2, 2, 1), -np.inf)
    y, arg = max_pool2d_fprop(x, (2, 2), (1, 1), ((1, 0), (1, 0)))
    assert np.all(y == -np.inf) and arg[0, 0, 0, 0] == 3      # the only real element, not padding
    x = np.array([[1.0, 2.0]]).reshape(1, 1, 2, 1)
    y, arg = max_pool2d_fprop(x, (1, 1), (1, 1), ((1, 0), (0, 0)))      # row 0 of the output is all padding
    np.testing.assert_array_equal(y.ravel(), [-np.inf, -np.inf, 1, 2])
    np.testing.assert_array_equal(arg.ravel(), 0)
    np.testing.assert_array_equal(avg_pool2d_fprop(x, (1, 1), (1, 1), ((1, 0), (0, 0))).ravel(), [0, 0, 1, 2])
    assert argmax_dtype((15, 17)) == np.uint8 and argmax_dtype((16, 16)) == np.uint16


@pytest.mark.parametrize("case", CASES)
def test_max_pool_matches_torch(case, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, pool, stride, pads = _setup(case, rng)
    x[0, 1, 1, 0] = np.nan                        # a lone NaN: its windows must report it
    y, arg = max_pool2d_fprop(x, pool, stride, pads)
    dy = rng.standard_normal(y.shape)
    (t, b), (l, r) = pads
    xt = torch.tensor(nchw(x), requires_grad=True)
    xpad = F.pad(xt, (l, r, t, b), value=-np.inf)
    ty, idx = F.max_pool2d(xpad, pool, stride, return_indices=True)
    ty.backward(torch.tensor(nchw(dy)))
    np.testing.assert_array_equal(y, nhwc(ty.detach()))
    # torch's flat index into the padded plane -> our window offset r*S + s
    idx, wp = nhwc(idx), xpad.shape[3]
    p = np.arange(y.shape[1])[None, :, None, None]
    q = np.arange(y.shape[2])[None, None, :, None]
    offset = (idx // wp - p * stride[0]) * pool[1] + (idx % wp - q * stride[1])
    np.testing.assert_array_equal(arg, offset)
    np.testing.assert_allclose(max_pool2d_bprop(dy, arg, x.shape, pool, stride, pads), nhwc(xt.grad),
                               rtol=1e-15, atol=0)


@pytest.mark.parametrize("include", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_avg_pool_matches_torch(case, include, rng):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, pool, stride, pads = _setup(case, rng)
    y = avg_pool2d_fprop(x, pool, stride, pads, include)
    dy = rng.standard_normal(y.shape)
    xt = torch.tensor(nchw(x), requires_grad=True)
    (t, b), (l, r) = pads
    if t == b and l == r and 2 * t <= pool[0] and 2 * l <= pool[1]:       # torch pads natively
        ty = F.avg_pool2d(xt, pool, stride, (t, l), count_include_pad=include)
    else:                                       # asymmetric: window sums / window counts
        def sums(a):
            return F.avg_pool2d(F.pad(a, (l, r, t, b)), pool, stride, divisor_override=1)
        ty = sums(xt) / (pool[0] * pool[1] if include else sums(torch.ones_like(xt)))
    ty.backward(torch.tensor(nchw(dy)))
    np.testing.assert_allclose(y, nhwc(ty.detach()), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(avg_pool2d_bprop(dy, x.shape, pool, stride, pads, include), nhwc(xt.grad),
                               rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("case", CASES)
def test_pool_gradients_finite_differences(case, rng):
    x, pool, stride, pads = _setup(case, rng)
    y, arg = max_pool2d_fprop(x, pool, stride, pads)
    dy = rng.standard_normal(y.shape)
    check_vjp(lambda a: max_pool2d_fprop(a, pool, stride, pads)[0], [x], dy,
              [max_pool2d_bprop(dy, arg, x.shape, pool, stride, pads)], rng, eps=1e-7)
    for include in (False, True):
        check_vjp(lambda a: avg_pool2d_fprop(a, pool, stride, pads, include), [x], dy,
                  [avg_pool2d_bprop(dy, x.shape, pool, stride, pads, include)], rng)


def test_global_avg_pool(rng):
    x = rng.standard_normal((3, 5, 7, 4))
    y = global_avg_pool_fprop(x)
    np.testing.assert_allclose(y, x.reshape(3, -1, 4).mean(1), rtol=1e-14)
    dy = rng.standard_normal(y.shape)
    dx = global_avg_pool_bprop(dy, x.shape)
    assert dx.flags.writeable and dx.shape == x.shape
    check_vjp(global_avg_pool_fprop, [x], dy, [dx], rng)


def test_pool_dtypes(rng):
    x = rng.standard_normal((2, 6, 5, 3)).astype(np.float32)
    pads = ((0, 1), (1, 1))
    y, arg = max_pool2d_fprop(x, (2, 3), (2, 2), pads)
    a = avg_pool2d_fprop(x, (2, 3), (2, 2), pads)
    g = global_avg_pool_fprop(x)
    dy = np.ones_like(y)
    outs = [y, a, g, max_pool2d_bprop(dy, arg, x.shape, (2, 3), (2, 2), pads),
            avg_pool2d_bprop(dy, x.shape, (2, 3), (2, 2), pads), global_avg_pool_bprop(np.ones_like(g), x.shape)]
    assert all(o.dtype == np.float32 for o in outs)
