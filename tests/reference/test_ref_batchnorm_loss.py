"""Batch normalization and losses: finite differences and PyTorch (float64)."""
import numpy as np
import pytest

from fastconv.backends import reference as R
from refcheck import check_vjp, nchw, nhwc

EPS = 1e-3


@pytest.mark.parametrize("shape", [(4, 5, 3, 6), (7, 5)])
def test_batchnorm_train_matches_torch_and_gradients(shape, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape) * 2 + 1.5
    gamma, beta = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    y, mean, invstd = R.batchnorm_fprop_train(x, gamma, beta, EPS)
    dy = rng.standard_normal(shape)
    dx, dgamma, dbeta = R.batchnorm_bprop(dy, x, gamma, mean, invstd)
    to_torch = nchw if x.ndim == 4 else (lambda a: a)
    xt = torch.tensor(to_torch(x), requires_grad=True)
    gt, bt = torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    ty = torch.nn.functional.batch_norm(xt, None, None, gt, bt, training=True, eps=EPS)
    ty.backward(torch.tensor(to_torch(dy)))
    back = nhwc if x.ndim == 4 else np.asarray
    np.testing.assert_allclose(y, back(ty.detach()), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, back(xt.grad), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dgamma, gt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(dbeta, bt.grad.numpy(), rtol=1e-12)
    flat = x.reshape(-1, shape[-1])
    np.testing.assert_allclose(mean, flat.mean(0), rtol=1e-13)
    np.testing.assert_allclose(invstd, 1 / np.sqrt(flat.var(0) + EPS), rtol=1e-13)   # biased variance
    check_vjp(lambda a, g, b: R.batchnorm_fprop_train(a, g, b, EPS)[0], [x, gamma, beta], dy,
              [dx, dgamma, dbeta], rng)


def test_batchnorm_infer_and_dtype(rng):
    x = rng.standard_normal((3, 4, 4, 5))
    gamma, beta, mean = (rng.standard_normal(5) for _ in range(3))
    var = rng.random(5) + 0.5
    y = R.batchnorm_fprop_infer(x, gamma, beta, mean, var, EPS)
    np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(var + EPS) + beta, rtol=1e-12, atol=1e-12)
    f32 = [a.astype(np.float32) for a in (x, gamma, beta)]
    y32, m32, s32 = R.batchnorm_fprop_train(*f32, EPS)
    out = R.batchnorm_bprop(y32, f32[0], f32[1], m32, s32)
    assert {a.dtype for a in (y32, m32, s32, *out)} == {np.dtype(np.float32)}
    assert R.batchnorm_fprop_infer(*f32, m32, s32, EPS).dtype == np.float32


@pytest.mark.parametrize("int_labels", [True, False])
def test_softmax_cross_entropy_matches_torch(int_labels, rng):
    torch = pytest.importorskip("torch")
    n, c = 6, 5
    logits = rng.standard_normal((n, c)) * 3
    ids = rng.integers(0, c, n)
    labels = ids if int_labels else np.eye(c)[ids]
    loss, probs = R.softmax_cross_entropy_fprop(logits, labels)
    assert loss.shape == () and loss.dtype == np.float64
    lt = torch.tensor(logits, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(lt, torch.tensor(labels))
    tl.backward(torch.tensor(0.7, dtype=torch.float64))
    np.testing.assert_allclose(loss, tl.item(), rtol=1e-13)
    np.testing.assert_allclose(probs, torch.softmax(lt, 1).detach().numpy(), rtol=1e-13)
    dlogits = R.softmax_cross_entropy_bprop(probs, labels, np.asarray(0.7))
    np.testing.assert_allclose(dlogits, lt.grad.numpy(), rtol=1e-12, atol=1e-15)
    check_vjp(lambda a: R.softmax_cross_entropy_fprop(a, labels)[0], [logits], 0.7, [dlogits], rng)


def test_softmax_cross_entropy_soft_labels_and_stability(rng):
    logits = rng.standard_normal((4, 3))
    soft = rng.random((4, 3))
    soft /= soft.sum(1, keepdims=True)
    loss, probs = R.softmax_cross_entropy_fprop(logits, soft)
    check_vjp(lambda a: R.softmax_cross_entropy_fprop(a, soft)[0], [logits], 1.0,
              [R.softmax_cross_entropy_bprop(probs, soft)], rng)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        big, _ = R.softmax_cross_entropy_fprop(np.array([[1e4, 0.0], [0.0, 1e4]], np.float32), np.array([1, 1]))
    assert big.dtype == np.float32 and np.isclose(big, 5e3)
    g = R.softmax_cross_entropy_bprop(np.full((2, 2), 0.5, np.float32), np.array([0, 1]), np.float64(1.0))
    assert g.dtype == np.float32


@pytest.mark.parametrize("int_labels", [True, False])
def test_cross_entropy_on_probabilities(int_labels, rng):
    torch = pytest.importorskip("torch")
    n, c, eps = 5, 4, 1e-7
    probs = rng.random((n, c)) * 0.9 + 0.05
    probs[0, 0], probs[1, 1], probs[2, 2] = 0.0, 1.0, 1e-9       # clipped: zero gradient there
    ids = np.array([0, 1, 2, 3, 0])
    labels = ids if int_labels else np.eye(c)[ids]
    loss = R.cross_entropy_fprop(probs, labels, eps)
    pt = torch.tensor(probs, requires_grad=True)
    onehot = torch.tensor(np.eye(c)[ids])
    tl = -(onehot * torch.log(torch.clamp(pt, eps, 1 - eps))).sum(1).mean()
    tl.backward(torch.tensor(1.3, dtype=torch.float64))
    np.testing.assert_allclose(loss, tl.item(), rtol=1e-13)
    dprobs = R.cross_entropy_bprop(probs, labels, 1.3, eps)
    np.testing.assert_allclose(dprobs, pt.grad.numpy(), rtol=1e-13)
    assert dprobs[0, 0] == 0 and dprobs[2, 2] == 0
    inner = np.clip(rng.random((n, c)), 0.05, 0.95)
    check_vjp(lambda p: R.cross_entropy_fprop(p, labels, eps), [inner], 1.3,
              [R.cross_entropy_bprop(inner, labels, 1.3, eps)], rng)


def test_mse_matches_torch(rng):
    torch = pytest.importorskip("torch")
    pred, target = rng.standard_normal((4, 3, 2)), rng.standard_normal((4, 3, 2))
    loss = R.mse_fprop(pred, target)
    pt = torch.tensor(pred, requires_grad=True)
    tl = torch.nn.functional.mse_loss(pt, torch.tensor(target))
    tl.backward(torch.tensor(2.0, dtype=torch.float64))
    assert loss.shape == ()
    np.testing.assert_allclose(loss, tl.item(), rtol=1e-13)
    dpred = R.mse_bprop(pred, target, 2.0)
    np.testing.assert_allclose(dpred, pt.grad.numpy(), rtol=1e-13)
    check_vjp(lambda p: R.mse_fprop(p, target), [pred], 2.0, [dpred], rng)
    p32 = pred.astype(np.float32)
    assert R.mse_fprop(p32, target.astype(np.float32)).dtype == np.float32
    assert R.mse_bprop(p32, target.astype(np.float32), np.float64(1.0)).dtype == np.float32
