"""conv2d reference: hand-computed values, finite differences and PyTorch (float64)."""
import time

import numpy as np
import pytest

from fastconv.backends.reference import conv2d_dgrad, conv2d_fprop, conv2d_wgrad, im2col
from fastconv.shapes import conv_output_hw, resolve_padding
from refcheck import check_vjp, nchw, nhwc

# (x shape, w shape, stride, padding (resolved here), dilation, groups)
CASES = [
    ((2, 5, 5, 3), (1, 1, 3, 4), (1, 1), "valid", (1, 1), 1),             # 1x1
    ((2, 15, 13, 3), (7, 7, 3, 5), (2, 2), "same", (1, 1), 1),             # 7x7 stride 2, 'same'
    ((3, 10, 11, 4), (3, 3, 4, 6), (2, 2), "same", (1, 1), 1),             # 'same' stride 2 -> (0, 1) pads
    ((2, 9, 8, 4), (3, 2, 4, 6), (3, 2), ((2, 1), (0, 3)), (1, 1), 1),     # asymmetric, partial windows
    ((2, 7, 7, 5), (3, 3, 5, 3), (3, 3), "valid", (1, 1), 1),              # stride leaves row/col 6 unread
    ((1, 5, 6, 2), (2, 2, 2, 3), (1, 1), ((3, 2), (4, 3)), (1, 1), 1),     # padding > kernel
    ((2, 8, 9, 6), (3, 3, 2, 6), (1, 2), ((1, 1), (1, 1)), (2, 1), 3),     # groups + dilation
    ((2, 9, 9, 4), (3, 3, 1, 8), (2, 2), "same", (1, 1), 4),               # depthwise, multiplier 2
    ((2, 6, 7, 3), (3, 3, 1, 3), (1, 1), ((1, 1), (1, 1)), (1, 1), 3),     # depthwise, multiplier 1
    ((1, 13, 12, 2), (2, 3, 2, 4), (1, 2), ((0, 2), (1, 0)), (3, 2), 1),   # dilation 3x2
    ((2, 11, 10, 3), (5, 5, 3, 2), (3, 1), "same", (2, 2), 1),             # 'same' with dilation, stride 3
]


def _random_case(seed):
    """A random geometry: odd sizes, strides 1-3, dilation 1-2, groups, explicit or 'same' padding."""
    r = np.random.default_rng(seed)
    g = int(r.choice([1, 1, 2, 3]))
    cg, kg = int(r.integers(1, 4)), int(r.integers(1, 4))
    kh, kw = (int(v) for v in r.integers(1, 5, 2))
    sh, sw = (int(v) for v in r.integers(1, 4, 2))
    dh, dw = (int(v) for v in r.integers(1, 3, 2))
    h, w = (int(v) for v in r.integers(7, 14, 2))
    pad = "same" if r.random() < 0.4 else tuple((int(a), int(b)) for a, b in r.integers(0, 4, (2, 2)))
    return (int(r.integers(1, 4)), h, w, g * cg), (kh, kw, cg, g * kg), (sh, sw), pad, (dh, dw), g


ALL_CASES = CASES + [_random_case(s) for s in range(12)]


def _resolve(x_shape, w_shape, stride, pad, dil):
    return resolve_padding(pad, x_shape[1:3], w_shape[:2], stride, dil)


def _torch_conv(x, w, dy, stride, pads, dil, groups):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xt = torch.tensor(nchw(x), requires_grad=True)
    wt = torch.tensor(np.ascontiguousarray(w.transpose(3, 2, 0, 1)), requires_grad=True)
    (t, b), (l, r) = pads
    y = F.conv2d(F.pad(xt, (l, r, t, b)), wt, stride=stride, dilation=dil, groups=groups)
    y.backward(torch.tensor(nchw(dy)))
    return nhwc(y.detach()), nhwc(xt.grad), wt.grad.numpy().transpose(2, 3, 1, 0)


def test_tiny_conv_by_hand():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)               # [[1,2,3],[4,5,6],[7,8,9]]
    w = np.zeros((2, 2, 1, 2))
    w[:, :, 0, 0] = [[1, 2], [3, 4]]
    w[:, :, 0, 1] = [[0, 1], [0, 0]]                            # picks x[p, q + 1]
    y = conv2d_fprop(x, w)
    np.testing.assert_array_equal(y[0, :, :, 0], [[37, 47], [67, 77]])
    np.testing.assert_array_equal(y[0, :, :, 1], [[2, 3], [5, 6]])
    dy = np.zeros((1, 2, 2, 2))
    dy[..., 0] = 1
    dx = conv2d_dgrad(dy, w, x.shape, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 3, 2], [4, 10, 6], [3, 7, 4]])
    dw = conv2d_wgrad(x, dy, w.shape, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    np.testing.assert_array_equal(dw[:, :, 0, 0], [[12, 16], [24, 28]])
    np.testing.assert_array_equal(dw[:, :, 0, 1], 0)


def test_tiny_conv_stride_padding_by_hand():
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    w = np.ones((2, 2, 1, 1))
    y = conv2d_fprop(x, w, stride=(2, 2), padding=((1, 0), (1, 0)))   # windows over the padded 4x4
    np.testing.assert_array_equal(y[0, :, :, 0], [[1, 2 + 3], [4 + 7, 5 + 6 + 8 + 9]])


def test_im2col_view():
    x = np.arange(2 * 4 * 5 * 3, dtype=np.float64).reshape(2, 4, 5, 3)
    cols = im2col(x, (2, 3), (2, 1), ((1, 0), (0, 2)), (1, 2))
    assert cols.shape == (2, 2, 3, 2, 3, 3)
    xp = np.pad(x, ((0, 0), (1, 0), (0, 2), (0, 0)))
    np.testing.assert_array_equal(cols[1, 1, 2, 1, 2], xp[1, 1 * 2 + 1, 2 + 2 * 2])


@pytest.mark.parametrize("case", ALL_CASES)
def test_conv_matches_torch(case, rng):
    x_shape, w_shape, stride, pad, dil, groups = case
    pads = _resolve(x_shape, w_shape, stride, pad, dil)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y = conv2d_fprop(x, w, stride, pads, dil, groups)
    dy = rng.standard_normal(y.shape)
    ty, tdx, tdw = _torch_conv(x, w, dy, stride, pads, dil, groups)
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv2d_dgrad(dy, w, x_shape, stride, pads, dil, groups), tdx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(conv2d_wgrad(x, dy, w_shape, stride, pads, dil, groups), tdw, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", ALL_CASES)
def test_conv_gradients_finite_differences(case, rng):
    x_shape, w_shape, stride, pad, dil, groups = case
    pads = _resolve(x_shape, w_shape, stride, pad, dil)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    dy = rng.standard_normal(conv2d_fprop(x, w, stride, pads, dil, groups).shape)
    grads = [conv2d_dgrad(dy, w, x_shape, stride, pads, dil, groups),
             conv2d_wgrad(x, dy, w_shape, stride, pads, dil, groups)]
    check_vjp(lambda a, b: conv2d_fprop(a, b, stride, pads, dil, groups), [x, w], dy, grads, rng)


def test_dgrad_zero_where_no_window_reads(rng):
    x_shape, w_shape = (2, 8, 7, 3), (3, 2, 3, 4)
    # rows 0..5 and cols 0..4 are read (P = 2, Q = 3 with stride 3x2), row 6-7 and col 6 never are
    dy = rng.standard_normal((2, 2, 3, 4))
    dx = conv2d_dgrad(dy, rng.standard_normal(w_shape), x_shape, (3, 2), ((0, 0), (0, 0)), (1, 1), 1)
    assert conv_output_hw((8, 7), (3, 2), (3, 2), ((0, 0), (0, 0))) == (2, 3)
    np.testing.assert_array_equal(dx[:, 6:], 0)
    np.testing.assert_array_equal(dx[:, :, 6:], 0)
    assert np.all(dx[:, :6, :6] != 0)


@pytest.mark.parametrize("groups", [1, 2])
def test_float32_in_float32_out(groups, rng):
    x = rng.standard_normal((2, 9, 8, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4 // groups, 6)).astype(np.float32)
    pads = ((1, 1), (0, 1))
    y = conv2d_fprop(x, w, (2, 1), pads, (1, 1), groups)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = conv2d_dgrad(dy, w, x.shape, (2, 1), pads, (1, 1), groups)
    dw = conv2d_wgrad(x, dy, w.shape, (2, 1), pads, (1, 1), groups)
    assert (y.dtype, dx.dtype, dw.dtype) == (np.float32,) * 3
    assert y.flags.writeable and y.flags.c_contiguous          # callers add the bias in place
    y64 = conv2d_fprop(x.astype(np.float64), w.astype(np.float64), (2, 1), pads, (1, 1), groups)
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-5)


def test_seed_conv_timing(rng, capsys):
    """Prints (never asserts) the time of the seed model's first conv: fprop + wgrad in float32."""
    x = rng.standard_normal((128, 28, 28, 1)).astype(np.float32)
    w = rng.standard_normal((3, 3, 1, 64)).astype(np.float32)
    pads, one = ((0, 0), (0, 0)), (1, 1)
    dy = rng.standard_normal((128, 26, 26, 64)).astype(np.float32)
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        y = conv2d_fprop(x, w, one, pads, one, 1)
        dw = conv2d_wgrad(x, dy, w.shape, one, pads, one, 1)
        best = min(best, time.perf_counter() - t0)
    assert y.shape == dy.shape and dw.shape == w.shape
    np.testing.assert_allclose(dw, conv2d_wgrad(x.astype(np.float64), dy.astype(np.float64), w.shape,
                                                 one, pads, one, 1), rtol=1e-3, atol=1e-2)
    with capsys.disabled():
        print(f"\n[seed conv (128,28,28,1)x(3,3,1,64) fprop+wgrad float32: {best * 1e3:.1f} ms]")
