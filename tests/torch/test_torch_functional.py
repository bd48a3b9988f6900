"""fastconv.torch.functional and the torch.ops.fastconv custom ops against torch's own kernels."""
import pytest

torch = pytest.importorskip("torch")

from hypothesis import assume, given, settings, strategies as st  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

import fastconv.torch as fct  # noqa: E402
from fastconv.torch import functional as F  # noqa: E402
from fct_torch_helpers import close  # noqa: E402

ops = torch.ops.fastconv
DTYPES = [torch.float64, torch.float32]
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")


def grads(out, inputs, seed=0):
    g = torch.Generator().manual_seed(seed)
    dy = torch.randn(out.shape, generator=g, dtype=out.dtype)
    return torch.autograd.grad(out, [t for t in inputs if t is not None], dy)


def leaf(shape, dtype, gen, channels_last=False):
    t = torch.randn(shape, generator=gen, dtype=dtype)
    if channels_last:
        t = t.to(memory_format=torch.channels_last)
    return t.requires_grad_()


# ------------------------------------------------------------------------------------- conv2d

@st.composite
def conv_cases(draw):
    groups_kind = draw(st.sampled_from(["one", "two", "depthwise"]))
    cg = draw(st.integers(1, 3))
    groups = {"one": 1, "two": 2, "depthwise": draw(st.integers(2, 4))}[groups_kind]
    c = cg * groups if groups_kind != "depthwise" else groups
    cg = c // groups
    k = groups * draw(st.integers(1, 3))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    padding = draw(st.sampled_from(["int", "pair", "same", "valid"]))
    stride = (1, 1) if padding == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if padding == "int":
        padding = draw(st.integers(0, 2))
    elif padding == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 3)))
    h, w = draw(st.integers(1, 11)), draw(st.integers(1, 11))
    ph, pw = (0, 0) if isinstance(padding, str) else (padding, padding) if isinstance(padding, int) else padding
    if padding != "same":
        assume(h + 2 * ph >= (r - 1) * dilation[0] + 1 and w + 2 * pw >= (s - 1) * dilation[1] + 1)
    return dict(n=draw(st.integers(1, 3)), c=c, h=h, w=w, k=k, cg=cg, r=r, s=s, stride=stride,
                padding=padding, dilation=dilation, groups=groups, bias=draw(st.booleans()),
                channels_last=draw(st.booleans()))


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=conv_cases(), seed=st.integers(0, 2**16))
def test_conv2d_matches_torch(dtype, case, seed):
    gen = torch.Generator().manual_seed(seed)
    x = leaf((case["n"], case["c"], case["h"], case["w"]), dtype, gen, case["channels_last"])
    w = leaf((case["k"], case["cg"], case["r"], case["s"]), dtype, gen)
    b = leaf((case["k"],), dtype, gen) if case["bias"] else None
    args = (case["stride"], case["padding"], case["dilation"], case["groups"])
    y, y0 = F.conv2d(x, w, b, *args), TF.conv2d(x, w, b, *args)
    assert y.shape == y0.shape
    close(y, y0)
    # same memory format as torch's own conv hands back (channels_last in -> channels_last out),
    # except for inputs that are NCHW and NHWC at once (C == 1 or H == W == 1): those count as NCHW
    if x.is_contiguous() != x.is_contiguous(memory_format=torch.channels_last):
        for fmt in (torch.contiguous_format, torch.channels_last):
            assert y.is_contiguous(memory_format=fmt) == y0.is_contiguous(memory_format=fmt)
    for a, e in zip(grads(y, (x, w, b), seed), grads(y0, (x, w, b), seed)):
        close(a, e)


def test_conv2d_same_puts_the_odd_pixel_bottom_right_like_torch():
    x = torch.randn(1, 1, 6, 7, dtype=torch.float64)
    w = torch.randn(1, 1, 4, 2, dtype=torch.float64)
    close(F.conv2d(x, w, padding="same"), TF.conv2d(x, w, padding="same"))
    close(F.conv2d(x, w, padding="same", dilation=3), TF.conv2d(x, w, padding="same", dilation=3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv2d_unbatched_input(dtype):
    x = torch.randn(4, 7, 6, dtype=dtype, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, dtype=dtype, requires_grad=True)
    y, y0 = F.conv2d(x, w, None, 2, 1, 1, 2), TF.conv2d(x, w, None, 2, 1, 1, 2)
    assert y.shape == y0.shape == (6, 4, 3)
    close(y, y0)
    for a, e in zip(grads(y, (x, w)), grads(y0, (x, w))):
        close(a, e)


# --------------------------------------------------------------------------------- max_pool2d

@st.composite
def pool_cases(draw):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    h = draw(st.integers(max(1, kernel[0] - 2 * padding[0]), 12))
    w = draw(st.integers(max(1, kernel[1] - 2 * padding[1]), 12))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), kernel=kernel, stride=stride,
                padding=padding, ceil_mode=draw(st.booleans()), channels_last=draw(st.booleans()))


@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(case=pool_cases(), seed=st.integers(0, 2**16))
def test_max_pool2d_matches_torch(dtype, case, seed):
    gen = torch.Generator().manual_seed(seed)
    x = leaf(case["shape"], dtype, gen, case["channels_last"])
    kw = dict(kernel_size=case["kernel"], stride=case["stride"], padding=case["padding"],
              ceil_mode=case["ceil_mode"], return_indices=True)
    (y, i), (y0, i0) = F.max_pool2d(x, **kw), TF.max_pool2d(x, **kw)
    assert y.shape == y0.shape
    assert i.dtype == torch.int64
    torch.testing.assert_close(y, y0, rtol=0, atol=0)           # max is exact
    torch.testing.assert_close(i, i0, rtol=0, atol=0)
    close(grads(y, (x,), seed)[0], grads(y0, (x,), seed)[0])
    y_only = F.max_pool2d(x, case["kernel"], case["stride"], case["padding"], ceil_mode=case["ceil_mode"])
    torch.testing.assert_close(y_only, y0, rtol=0, atol=0)


@pytest.mark.parametrize("shape,kernel,stride,padding", [
    ((1, 1, 5, 5), 2, 2, 0),      # ceil adds a last partial window
    ((1, 2, 6, 6), 3, 2, 1),      # resnet stem pool
    ((1, 1, 4, 4), 3, 3, 1),      # the window that would start in the right padding is dropped
    ((2, 3, 7, 9), (3, 2), (2, 3), (1, 1)),
    ((1, 1, 1, 1), 2, 2, 1),
])
def test_max_pool2d_ceil_mode_shapes(shape, kernel, stride, padding):
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    for ceil in (False, True):
        (y, i), (y0, i0) = (f(x, kernel, stride, padding, ceil_mode=ceil, return_indices=True)
                            for f in (F.max_pool2d, TF.max_pool2d))
        assert y.shape == y0.shape, (ceil, y.shape, y0.shape)
        torch.testing.assert_close(y, y0, rtol=0, atol=0)
        torch.testing.assert_close(i, i0, rtol=0, atol=0)
        close(grads(y, (x,))[0], grads(y0, (x,))[0])


def test_max_pool2d_ties_nan_and_unpool():
    x = torch.tensor([[[[1., 3., 3., 0.], [3., 2., 1., 1.], [0., 0., 5., 5.], [float("nan"), 4., 5., 5.]]]],
                     dtype=torch.float64, requires_grad=True)
    (y, i), (y0, i0) = F.max_pool2d(x, 2, return_indices=True), TF.max_pool2d(x, 2, return_indices=True)
    torch.testing.assert_close(y, y0, equal_nan=True)          # NaN propagates
    torch.testing.assert_close(i, i0)                          # ties pick the first maximum
    close(grads(y, (x,))[0], grads(y0, (x,))[0])
    # torch's flat indices feed nn.MaxUnpool2d unchanged
    torch.testing.assert_close(TF.max_unpool2d(y, i, 2), TF.max_unpool2d(y0, i0, 2), equal_nan=True)


def test_max_pool2d_unbatched_and_stride_defaults():
    x = torch.randn(3, 8, 7, dtype=torch.float32, requires_grad=True)
    for stride in (None, [], 1):
        y, y0 = F.max_pool2d(x, 3, stride), TF.max_pool2d(x, 3, stride)
        assert y.shape == y0.shape
        torch.testing.assert_close(y, y0, rtol=0, atol=0)
    (y, i), (y0, i0) = F.max_pool2d(x, 2, return_indices=True), TF.max_pool2d(x, 2, return_indices=True)
    assert i.shape == i0.shape == (3, 4, 3)
    torch.testing.assert_close(i, i0)
    close(grads(y, (x,))[0], grads(y0, (x,))[0])


# ------------------------------------------------------------------------------------- linear

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead", [(), (5,), (2, 3), (1,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(dtype, lead, bias):
    gen = torch.Generator().manual_seed(len(lead))
    x = leaf(lead + (7,), dtype, gen)
    w = leaf((4, 7), dtype, gen)
    b = leaf((4,), dtype, gen) if bias else None
    y, y0 = F.linear(x, w, b), TF.linear(x, w, b)
    assert y.shape == y0.shape
    close(y, y0)
    for a, e in zip(grads(y, (x, w, b)), grads(y0, (x, w, b))):
        close(a, e)


def test_linear_weight_only_grad_skips_dx():
    x = torch.randn(3, 5, dtype=torch.float64)            # e.g. the first layer: no dx needed
    w = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    (gw,), (gw0,) = grads(F.linear(x, w), (w,)), grads(TF.linear(x, w), (w,))
    close(gw, gw0)


# ------------------------------------------------------------------- custom ops: gradcheck etc

def _f64(*shape, seed=0):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64,
                       requires_grad=True)


CONV_GEOMETRIES = [  # (x shape, w shape, stride, padding [t, b, l, r], dilation, groups)
    ((1, 4, 5, 4), (4, 2, 3, 2), [1, 2], [1, 0, 2, 1], [2, 1], 2),
    ((1, 3, 5, 5), (3, 1, 3, 3), [2, 2], [1, 1, 1, 1], [1, 1], 3),
    ((2, 2, 4, 4), (3, 2, 1, 1), [1, 1], [0, 0, 0, 0], [1, 1], 1),
]


@pytest.mark.parametrize("xs,ws,stride,padding,dilation,groups", CONV_GEOMETRIES)
def test_conv_ops_gradcheck_and_gradgradcheck(xs, ws, stride, padding, dilation, groups):
    x, w = _f64(*xs), _f64(*ws, seed=1)
    geom = (stride, padding, dilation, groups)
    f = lambda x, w: ops.conv2d_fprop(x, w, *geom)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, w))
    if groups == 2:  # double backward (conv's adjoints are conv ops again); one geometry keeps it quick
        assert torch.autograd.gradgradcheck(f, (x, w))
    dy = _f64(*f(x, w).shape, seed=2)
    assert torch.autograd.gradcheck(lambda dy, w: ops.conv2d_dgrad(dy, w, list(xs), *geom), (dy, w))
    assert torch.autograd.gradcheck(lambda x, dy: ops.conv2d_wgrad(x, dy, list(ws), *geom), (x, dy))


def test_pool_and_dense_ops_gradcheck():
    x = _f64(2, 3, 5, 6)
    pool = lambda x: ops.max_pool2d_fprop(x, [3, 2], [2, 2], [1, 2, 1, 1])[0]  # noqa: E731
    assert torch.autograd.gradcheck(pool, (x,))
    assert torch.autograd.gradgradcheck(pool, (x,))
    a, w, b = _f64(5, 7), _f64(3, 7, seed=1), _f64(3, seed=2)
    assert torch.autograd.gradcheck(ops.dense_fprop, (a, w, b))
    assert torch.autograd.gradgradcheck(ops.dense_fprop, (a, w, b))
    assert torch.autograd.gradcheck(lambda a, w: ops.dense_fprop(a, w, None), (a, w))


def test_opcheck_every_op():
    """torch.library.opcheck: schema, autograd registration, fake (meta) vs real outputs incl. strides,
    and AOT dispatch with dynamic shapes — for NCHW and channels_last inputs."""
    opcheck = torch.library.opcheck
    w = _f64(6, 2, 3, 2, seed=1)
    geom = ([1, 2], [1, 0, 2, 1], [2, 1], 2)
    pool = ([3, 2], [2, 2], [1, 2, 1, 1])
    quick = ("test_schema", "test_autograd_registration", "test_faketensor")
    for x, utils in ((_f64(2, 4, 7, 6), None),
                     (_f64(2, 4, 7, 6).detach().to(memory_format=torch.channels_last).requires_grad_(), quick)):
        kw = {} if utils is None else {"test_utils": utils}
        opcheck(ops.conv2d_fprop, (x, w, *geom), **kw)
        dy = torch.randn_like(ops.conv2d_fprop(x, w, *geom)).requires_grad_()
        opcheck(ops.conv2d_dgrad, (dy, w, list(x.shape), *geom), **kw)
        opcheck(ops.conv2d_wgrad, (x, dy, list(w.shape), *geom), **kw)
        opcheck(ops.max_pool2d_fprop, (x, *pool), **kw)
        y, idx = ops.max_pool2d_fprop(x, *pool)
        opcheck(ops.max_pool2d_bprop, (torch.randn_like(y).requires_grad_(), idx, list(x.shape), *pool), **kw)
    a, wd, b = _f64(5, 7), _f64(3, 7, seed=1), _f64(3, seed=2)
    opcheck(ops.dense_fprop, (a, wd, b))
    opcheck(ops.dense_fprop, (a, wd, None))
    for need_dx in (True, False):
        opcheck(ops.dense_bprop, (_f64(5, 3, seed=3), a, wd, need_dx))


def test_backward_runs_fastconv_ops_not_torchs():
    """The autograd graph of a converted conv / pool / linear holds only fastconv ops."""
    from torch.profiler import profile, ProfilerActivity
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    lw = torch.randn(2, 64, requires_grad=True)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        y = F.max_pool2d(F.conv2d(x, w, padding=1), 2)
        F.linear(y.flatten(1), lw).sum().backward()
    names = {e.name for e in prof.events()}
    for op in ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "max_pool2d_fprop", "max_pool2d_bprop",
               "dense_fprop", "dense_bprop"):
        assert f"fastconv::{op}" in names, op
    torch_kernels = {"aten::convolution", "aten::convolution_backward", "aten::max_pool2d_with_indices",
                     "aten::max_pool2d_with_indices_backward", "aten::mkldnn_convolution", "aten::addmm",
                     "aten::linear"}
    assert not names & torch_kernels


def test_ops_are_listed_in_the_public_api():
    assert {op._qualname for op in fct.OPS} == {
        "fastconv::conv2d_fprop", "fastconv::conv2d_dgrad", "fastconv::conv2d_wgrad",
        "fastconv::max_pool2d_fprop", "fastconv::max_pool2d_bprop", "fastconv::dense_fprop",
        "fastconv::dense_bprop"}
