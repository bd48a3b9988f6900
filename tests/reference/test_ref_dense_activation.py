"""Dense layer and activations: finite differences, PyTorch, NaN rules, stability."""
import numpy as np
import pytest

from fastconv.backends import reference as R
from refcheck import check_vjp


def _away_from_zero(rng, shape):
    x = rng.standard_normal(shape)
    return x + np.sign(x) * 0.05        # keeps kinks (relu at 0) out of the finite-difference stencil


def test_dense_matches_torch_and_gradients(rng):
    torch = pytest.importorskip("torch")
    x, w, b = rng.standard_normal((5, 7)), rng.standard_normal((7, 3)), rng.standard_normal(3)
    y = R.dense_fprop(x, w, b)
    dy = rng.standard_normal(y.shape)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ty = torch.nn.functional.linear(xt, wt.T, bt)
    ty.backward(torch.tensor(dy))
    dx, dw, db = R.dense_bprop(dy, x, w)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-13)
    for ours, theirs in ((dx, xt), (dw, wt), (db, bt)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-13)
    check_vjp(R.dense_fprop, [x, w, b], dy, [dx, dw, db], rng)
    assert R.dense_bprop(dy, x, w, need_dx=False)[0] is None
    np.testing.assert_array_equal(R.dense_fprop(x, w), x @ w)


ELEMENTWISE = {   # name -> (fprop, bprop given (dy, x, y), torch function)
    "relu": (R.relu_fprop, lambda dy, x, y: R.relu_bprop(dy, x), lambda t, T: T.relu(t)),
    "leaky_relu": (lambda x: R.leaky_relu_fprop(x, 0.2), lambda dy, x, y: R.leaky_relu_bprop(dy, x, 0.2),
                   lambda t, T: T.nn.functional.leaky_relu(t, 0.2)),
    "sigmoid": (R.sigmoid_fprop, lambda dy, x, y: R.sigmoid_bprop(dy, y), lambda t, T: T.sigmoid(t)),
    "tanh": (R.tanh_fprop, lambda dy, x, y: R.tanh_bprop(dy, y), lambda t, T: T.tanh(t)),
    "softmax0": (lambda x: R.softmax_fprop(x, 0), lambda dy, x, y: R.softmax_bprop(dy, y, 0),
                 lambda t, T: T.softmax(t, 0)),
    "softmax-1": (R.softmax_fprop, lambda dy, x, y: R.softmax_bprop(dy, y), lambda t, T: T.softmax(t, -1)),
}


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_activation_matches_torch_and_gradients(name, rng):
    torch = pytest.importorskip("torch")
    fprop, bprop, tfn = ELEMENTWISE[name]
    x = _away_from_zero(rng, (4, 3, 5)) * 3
    y = fprop(x)
    dy = rng.standard_normal(x.shape)
    dx = bprop(dy, x, y)
    xt = torch.tensor(x, requires_grad=True)
    ty = tfn(xt, torch)
    ty.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-14, atol=1e-300)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-13, atol=1e-15)
    check_vjp(fprop, [x], dy, [dx], rng)
    x32 = x.astype(np.float32)
    y32 = fprop(x32)
    assert y32.dtype == np.float32 and bprop(dy.astype(np.float32), x32, y32).dtype == np.float32


@pytest.mark.parametrize("name", ["relu", "leaky_relu"])
def test_relu_nan_and_zero_match_torch(name):
    torch = pytest.importorskip("torch")
    fprop, bprop, tfn = ELEMENTWISE[name]
    x = np.array([np.nan, -1.0, 0.0, 2.0, -0.0])
    dy = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    xt = torch.tensor(x, requires_grad=True)
    ty = tfn(xt, torch)
    ty.backward(torch.tensor(dy))
    y = fprop(x)
    np.testing.assert_array_equal(y, ty.detach().numpy())        # NaN forward stays NaN
    np.testing.assert_array_equal(bprop(dy, x, y), xt.grad.numpy())
    if name == "relu":   # the rule: dy passes where x > 0 or x is NaN; 0 where x <= 0
        np.testing.assert_array_equal(bprop(dy, x, y), [1, 0, 0, 4, 0])


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.5])
def test_leaky_relu_any_slope(alpha, rng):
    torch = pytest.importorskip("torch")
    x = np.append(_away_from_zero(rng, 20), [0.0, np.nan])
    dy = rng.standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.leaky_relu(xt, alpha)
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(R.leaky_relu_fprop(x, alpha), ty.detach().numpy())
    np.testing.assert_array_equal(R.leaky_relu_bprop(dy, x, alpha), xt.grad.numpy())


def test_sigmoid_softmax_stable_for_large_inputs():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # underflow to 0 is fine
        s = R.sigmoid_fprop(x)
        sm = R.softmax_fprop(np.array([[1e4, 0.0, -1e4], [800.0, 800.0, 0.0]]))
        s32 = R.sigmoid_fprop(x.astype(np.float32))
    assert s[0] == 0 and s[-1] == 1 and s[2] == 0.5 and 0 < s[1] < 1e-17
    np.testing.assert_allclose(s[1] + s[3], 1, rtol=1e-15)
    assert np.isfinite(s32).all() and s32.dtype == np.float32
    np.testing.assert_allclose(sm, [[1, 0, 0], [0.5, 0.5, 0]], atol=1e-300)
    assert np.isnan(R.sigmoid_fprop(np.array([np.nan]))).all()
