"""Property tests: random conv / pool / dense problems, biased toward tile boundaries, every
available compute path against the reference, and the reference against PyTorch in float64.

Profiles: FASTCONV_HYPOTHESIS_PROFILE=ci (default: derandomized, 40 examples), dev, long."""
import numpy as np
import pytest
from hypothesis import given, strategies as st

import fastconv.backends.reference as R
from fastconv.shapes import conv_output_hw, resolve_padding

torch = pytest.importorskip("torch")
TF = torch.nn.functional

# Sizes next to common tile edges (multiples of 4, 8, 16, 32) are where partial-tile bugs live.
edge_sizes = st.sampled_from([1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17])


@st.composite
def conv_problems(draw):
    groups = draw(st.sampled_from([1, 1, 1, 2, 3]))
    c = groups * draw(st.integers(1, 4))
    k = groups * draw(st.integers(1, 4))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    h, w = draw(edge_sizes) + (r - 1) * dilation[0], draw(edge_sizes) + (s - 1) * dilation[1]
    if draw(st.booleans()):
        padding = draw(st.sampled_from(["valid", "same"]))
    else:
        padding = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    pads = resolve_padding(padding, (h, w), (r, s), stride, dilation)
    return dict(n=draw(st.integers(1, 3)), h=h, w=w, c=c, k=k, r=r, s=s, stride=stride, dilation=dilation,
                pads=pads, groups=groups)


@given(conv_problems(), st.integers(0, 2**32 - 1))
def test_conv2d_reference_matches_torch(p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p["n"], p["h"], p["w"], p["c"]))
    w = rng.standard_normal((p["r"], p["s"], p["c"] // p["groups"], p["k"]))
    args = (p["stride"], p["pads"], p["dilation"], p["groups"])
    y = R.conv2d_fprop(x, w, *args)
    # torch leaves in its own layouts (NCHW, KCRS): its float64 CPU conv wants contiguous grads
    xt = torch.tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), requires_grad=True)
    wt = torch.tensor(np.ascontiguousarray(w.transpose(3, 2, 0, 1)), requires_grad=True)
    (t, b), (l, r) = p["pads"]
    yt = TF.conv2d(TF.pad(xt, (l, r, t, b)), wt, stride=p["stride"], dilation=p["dilation"], groups=p["groups"])
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(np.ascontiguousarray(dy.transpose(0, 3, 1, 2))))
    np.testing.assert_allclose(R.conv2d_dgrad(dy, w, x.shape, *args), xt.grad.numpy().transpose(0, 2, 3, 1),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(R.conv2d_wgrad(x, dy, w.shape, *args), wt.grad.numpy().transpose(2, 3, 1, 0),
                               rtol=1e-10, atol=1e-10)


@given(st.integers(1, 3), edge_sizes, edge_sizes, st.integers(1, 5), st.integers(1, 3), st.integers(1, 3),
       st.sampled_from(["valid", "same"]), st.integers(0, 2**32 - 1))
def test_max_pool_reference_matches_torch(n, h, w, c, pool, stride, padding, seed):
    h, w = h + pool - 1, w + pool - 1
    pads = resolve_padding(padding, (h, w), (pool, pool), (stride, stride))
    rng = np.random.default_rng(seed)
    x = rng.permutation(n * h * w * c).reshape(n, h, w, c).astype(np.float64)  # distinct: no ties
    y, argmax = R.max_pool2d_fprop(x, (pool, pool), (stride, stride), pads)
    (t, b), (l, r) = pads
    xt = torch.tensor(x, requires_grad=True)
    padded = TF.pad(xt.permute(0, 3, 1, 2), (l, r, t, b), value=-np.inf)
    yt = TF.max_pool2d(padded, pool, stride).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    dy = rng.standard_normal(y.shape)
    yt.backward(torch.tensor(dy))
    dx = R.max_pool2d_bprop(dy, argmax, x.shape, (pool, pool), (stride, stride), pads)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-12, atol=1e-12)


@given(st.integers(1, 33), st.integers(1, 33), st.integers(1, 33), st.booleans(), st.integers(0, 2**32 - 1))
def test_dense_reference_matches_torch(m, k, n, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    b = rng.standard_normal(n) if bias else None
    y = R.dense_fprop(x, w, b)
    expected = torch.tensor(x) @ torch.tensor(w) + (torch.tensor(b) if bias else 0)
    np.testing.assert_allclose(y, expected.numpy(), rtol=1e-10, atol=1e-10)
    dy = rng.standard_normal((m, n))
    dx, dw, db = R.dense_bprop(dy, x, w)
    np.testing.assert_allclose(dx, dy @ w.T, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dw, x.T @ dy, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db, dy.sum(0), rtol=1e-10, atol=1e-10)


def test_output_size_rule_is_shared():
    # One function computes output sizes for every backend; spot-check it against torch.
    for size, k, s, d in [(7, 3, 2, 1), (8, 3, 3, 2), (5, 5, 1, 1), (9, 2, 2, 3)]:
        p, _ = conv_output_hw((size, size), (k, k), (s, s), ((1, 1), (1, 1)), (d, d))
        out = TF.conv2d(torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k), stride=s, padding=1, dilation=d)
        assert p == out.shape[2]


# ---- every kernel path against the reference ----------------------------------------------------
from fastconv.backends import backend_status  # noqa: E402
from hypothesis import settings  # noqa: E402

KERNEL_PATHS = []
if backend_status()["emulated"][0]:
    import fastconv.backends.emulated as E
    KERNEL_PATHS.append(("emulated", E))


def _rel(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30)


@pytest.mark.parametrize("name,B", KERNEL_PATHS, ids=[p[0] for p in KERNEL_PATHS])
@settings(max_examples=12)
@given(p=conv_problems(), seed=st.integers(0, 2**32 - 1))
def test_conv2d_kernels_match_reference(name, B, p, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((p["n"], p["h"], p["w"], p["c"])).astype(np.float32)
    w = rng.standard_normal((p["r"], p["s"], p["c"] // p["groups"], p["k"])).astype(np.float32)
    args = (p["stride"], p["pads"], p["dilation"], p["groups"])
    y = R.conv2d_fprop(x, w, *args)
    assert _rel(B.conv2d_fprop(x, w, *args), y) < 1e-5
    dy = rng.standard_normal(y.shape).astype(np.float32)
    assert _rel(B.conv2d_dgrad(dy, w, x.shape, *args), R.conv2d_dgrad(dy, w, x.shape, *args)) < 1e-5
    assert _rel(B.conv2d_wgrad(x, dy, w.shape, *args), R.conv2d_wgrad(x, dy, w.shape, *args)) < 1e-5


@pytest.mark.parametrize("name,B", KERNEL_PATHS, ids=[p[0] for p in KERNEL_PATHS])
@settings(max_examples=12)
@given(n=st.integers(1, 2), h=edge_sizes, w=edge_sizes, c=st.integers(1, 5), pool=st.integers(1, 3),
       stride=st.integers(1, 3), padding=st.sampled_from(["valid", "same"]), seed=st.integers(0, 2**32 - 1))
def test_max_pool_kernels_match_reference(name, B, n, h, w, c, pool, stride, padding, seed):
    h, w = h + pool - 1, w + pool - 1
    pads = resolve_padding(padding, (h, w), (pool, pool), (stride, stride))
    x = np.random.default_rng(seed).standard_normal((n, h, w, c)).astype(np.float32)
    y, arg = B.max_pool2d_fprop(x, (pool, pool), (stride, stride), pads)
    ref_y, ref_arg = R.max_pool2d_fprop(x, (pool, pool), (stride, stride), pads)
    np.testing.assert_array_equal(y, ref_y)
    np.testing.assert_array_equal(arg, ref_arg)
    dy = np.random.default_rng(seed + 1).standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(B.max_pool2d_bprop(dy, arg, x.shape, (pool, pool), (stride, stride), pads),
                               R.max_pool2d_bprop(dy, ref_arg, x.shape, (pool, pool), (stride, stride), pads),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name,B", KERNEL_PATHS, ids=[p[0] for p in KERNEL_PATHS])
@settings(max_examples=12)
@given(m=st.integers(1, 70), k=st.integers(1, 70), n=st.integers(1, 70), bias=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_dense_kernels_match_reference(name, B, m, k, n, bias, seed):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32) if bias else None
    assert _rel(B.dense_fprop(x, w, b), R.dense_fprop(x, w, b)) < 1e-5
    dy = rng.standard_normal((m, n)).astype(np.float32)
    for got, want in zip(B.dense_bprop(dy, x, w), R.dense_bprop(dy, x, w)):
        assert _rel(got, want) < 1e-5
