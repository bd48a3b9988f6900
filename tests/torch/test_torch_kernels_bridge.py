"""fastconv.torch's kernel bridge (fastconv/torch/_kernels.py): torch tensors -> zero-copy arrays ->
KernelOps launch plans -> torch tensors.

On the CPU the bridge runs the emulated KernelOps (set_kernel_backend('emulated')): the csrc/ kernels
and the very launch plans and bridge code CUDA uses, with NumPy arrays instead of CuPy ones. The
tests compare outputs and gradients with torch's own modules, check that the kernels (not the
reference) ran, and that channels_last tensors reach the kernels uncopied. The `gpu` tests at the
end repeat the comparisons on CUDA and check the stream, the allocator and torch.compile.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

import fastconv  # noqa: E402
import fastconv.torch as fct  # noqa: E402
from fastconv.torch import _kernels  # noqa: E402
from fct_torch_helpers import SmallNet, close, twin  # noqa: E402

CL = torch.channels_last


def _emulated_ops():
    from fastconv.backends import backend_status, emulated
    ok, reason = backend_status()["emulated"]
    if not ok:
        pytest.skip(reason)
    return emulated._default()


@pytest.fixture
def emulated():
    """CPU tensors through the emulated KernelOps for the test; the default afterwards."""
    ops = _emulated_ops()
    fct.set_kernel_backend("emulated")
    try:
        yield ops
    finally:
        fct.set_kernel_backend(None)


@pytest.fixture
def kernel_pointers(monkeypatch):
    """A function ops -> list that gets, for every kernel launch of that KernelOps instance, the
    data addresses of its array arguments (what the kernel really reads and writes)."""
    def attach(ops):
        seen, launch = [], ops.launch

        def recording(kernel, grid, block, args, *rest, **kw):
            seen.append((kernel, {ops.ptr(a) for a in args if hasattr(a, "shape") and hasattr(a, "strides")
                                  and not isinstance(a, np.generic)}))
            return launch(kernel, grid, block, args, *rest, **kw)
        monkeypatch.setattr(ops, "launch", recording)
        return seen
    return attach


def _pointers(seen):
    return set().union(*(p for _, p in seen)) if seen else set()


def _fmt(layout):
    return CL if layout == "channels_last" else torch.contiguous_format


def _grads(y, inputs, dy):
    return torch.autograd.grad(y, inputs, dy)


CONV_CASES = [
    dict(in_channels=4, out_channels=8, kernel_size=3, padding=1),
    dict(in_channels=4, out_channels=6, kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), groups=2, bias=False),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding="same", dilation=2),
    dict(in_channels=6, out_channels=6, kernel_size=3, stride=2, padding=1, groups=6),       # depthwise kernels
    dict(in_channels=3, out_channels=5, kernel_size=2, padding="valid", stride=3, bias=False),
]


# ----------------------------------------------------------------------- emulated KernelOps on the CPU

@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("kw", CONV_CASES)
def test_conv2d_through_emulated_kernels_matches_torch(emulated, kw, layout):
    dtype = torch.float64 if kw.get("groups", 1) == 2 else torch.float32
    torch.manual_seed(1)
    ref = nn.Conv2d(**kw, dtype=dtype)
    mod = fct.Conv2d(**kw, dtype=dtype)
    mod.load_state_dict(ref.state_dict())
    x = torch.randn(2, kw["in_channels"], 7, 6, dtype=dtype).to(memory_format=_fmt(layout)).requires_grad_()
    report = fastconv.explain(lambda: mod(x))
    y, y0 = report.result, ref(x)
    assert ("conv2d_fprop", "emulated") in report.ops and any("conv2d_fprop" in k for k in report.kernels)
    close(y, y0)
    assert y.is_contiguous(memory_format=_fmt(layout)) and y.shape == y0.shape
    dy = torch.randn_like(y0)
    assert dy.is_contiguous(memory_format=_fmt(layout))
    for a, e in zip(_grads(y, [x, *mod.parameters()], dy), _grads(y0, [x, *ref.parameters()], dy)):
        close(a, e)


def _ints(*shape, fmt=torch.contiguous_format):
    return torch.randint(-3, 4, shape, dtype=torch.float32).to(memory_format=fmt)


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("kw", [CONV_CASES[1], CONV_CASES[3]])
def test_conv2d_through_emulated_kernels_is_exact_on_small_integers(emulated, kw, layout):
    """Small-integer float32 inputs: every product and partial sum is exact, so the kernels'
    output and gradients must equal torch's bit for bit, whatever the summation order."""
    torch.manual_seed(8)
    kw = {k: v for k, v in kw.items() if k != "bias"}
    ref = nn.Conv2d(**kw, bias=False)
    mod = fct.Conv2d(**kw, bias=False)
    with torch.no_grad():
        ref.weight.copy_(_ints(*ref.weight.shape))
    mod.load_state_dict(ref.state_dict())
    x = _ints(2, kw["in_channels"], 7, 6, fmt=_fmt(layout)).requires_grad_()
    y, y0 = mod(x), ref(x)
    torch.testing.assert_close(y, y0, rtol=0, atol=0)
    dy = _ints(*y0.shape, fmt=_fmt(layout))
    for a, e in zip(_grads(y, [x, mod.weight], dy), _grads(y0, [x, ref.weight], dy)):
        torch.testing.assert_close(a, e, rtol=0, atol=0)


POOL_CASES = [
    dict(kernel_size=2),
    dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, return_indices=True),
    dict(kernel_size=(3, 2), stride=(1, 2), return_indices=True, ceil_mode=True),
    dict(kernel_size=3, stride=2, padding=1, return_indices=True),
]


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("kw", POOL_CASES)
def test_max_pool2d_through_emulated_kernels_matches_torch(emulated, kw, layout):
    torch.manual_seed(2)
    x = torch.randn(2, 3, 9, 7).to(memory_format=_fmt(layout)).requires_grad_()
    mod, ref = fct.MaxPool2d(**kw), nn.MaxPool2d(**kw)
    report = fastconv.explain(lambda: mod(x))
    out, out0 = report.result, ref(x)
    assert ("max_pool2d_fprop", "emulated") in report.ops and any("max_pool2d_fprop" in k for k in report.kernels)
    y, y0 = (out[0], out0[0]) if kw.get("return_indices") else (out, out0)
    torch.testing.assert_close(y, y0, rtol=0, atol=0)      # a max is exact
    assert y.is_contiguous(memory_format=_fmt(layout))
    if kw.get("return_indices"):
        idx, idx0 = out[1], out0[1]
        assert idx.dtype == torch.int64
        torch.testing.assert_close(idx, idx0, rtol=0, atol=0)
        # torch's unpool reads our indices as its own
        unpool = nn.MaxUnpool2d(kw["kernel_size"], kw.get("stride"), kw.get("padding", 0))
        torch.testing.assert_close(unpool(y, idx, output_size=x.shape[2:]),
                                   unpool(y0, idx0, output_size=x.shape[2:]), rtol=0, atol=0)
    dy = torch.randn_like(y0)
    (dx,), (dx0,) = _grads(y, [x], dy), _grads(y0, [x], dy)
    close(dx, dx0)
    assert dx.is_contiguous(memory_format=_fmt(layout))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("lead", [(5,), (2, 3)])
def test_linear_through_emulated_kernels_matches_torch(emulated, kernel_pointers, bias, lead):
    torch.manual_seed(3)
    ref, mod = nn.Linear(6, 3, bias=bias), fct.Linear(6, 3, bias=bias)
    mod.load_state_dict(ref.state_dict())
    x = torch.randn(*lead, 6, requires_grad=True)
    seen = kernel_pointers(emulated)
    y, y0 = mod(x), ref(x)
    close(y, y0)
    # torch's (out, in) weight is read in place through the GEMM's transposed-operand flag
    assert any("gemm_bias_act" in k and k.endswith(", false, true>") for k, _ in seen)
    assert mod.weight.data_ptr() in _pointers(seen) and y.data_ptr() in _pointers(seen)
    dy = torch.randn_like(y0)
    for a, e in zip(_grads(y, [x, *mod.parameters()], dy), _grads(y0, [x, *ref.parameters()], dy)):
        close(a, e)


def test_converted_network_through_emulated_kernels_matches_torch(emulated):
    """SmallNet (same-padded conv with bias, BN, ceil-mode pool, grouped strided conv, linear)
    converted: logits and every parameter gradient match the torch original."""
    ref, model = twin(SmallNet, seed=4)
    x = torch.randn(2, 3, 10, 9).to(memory_format=CL)
    report = fastconv.explain(lambda: model(x))
    logits, logits0 = report.result, ref(x)
    assert {b for _, b in report.ops} == {"emulated"} and len(report.ops) == 4   # 2 convs, pool, linear
    close(logits, logits0)
    logits.square().sum().backward()
    logits0.square().sum().backward()
    for (name, p), p0 in zip(model.named_parameters(), ref.parameters()):
        close(p.grad, p0.grad, scale=10, msg=name)


# ----------------------------------------------------------------------- zero copy

def test_channels_last_conv_reaches_the_kernels_uncopied(emulated, kernel_pointers):
    torch.manual_seed(5)
    x = torch.randn(2, 4, 6, 6).to(memory_format=CL).requires_grad_()
    w = torch.randn(8, 4, 3, 3, requires_grad=True)
    seen = kernel_pointers(emulated)
    with _kernels.record_handed() as handed:
        y = fct.functional.conv2d(x, w, padding=1)
    assert handed[0][0] == "conv2d_fprop" and handed[0][1][0] == x.data_ptr()
    # the kernel read x's own memory and wrote the memory y views
    assert {x.data_ptr(), y.data_ptr()} <= _pointers(seen)
    dy = torch.randn_like(y)
    seen.clear()
    dx, = torch.autograd.grad(y, [x], dy)
    assert dx.is_contiguous(memory_format=CL)
    assert {dy.data_ptr(), dx.data_ptr(), x.data_ptr()} <= _pointers(seen)   # dgrad and wgrad


def test_contiguous_conv_pays_a_transpose_copy_and_explain_says_so(emulated, kernel_pointers):
    torch.manual_seed(6)
    x, w = torch.randn(2, 4, 6, 6), torch.randn(8, 4, 3, 3)
    seen = kernel_pointers(emulated)
    report = fastconv.explain(lambda: fct.functional.conv2d(x, w))
    assert x.data_ptr() not in _pointers(seen)
    assert "x is contiguous NCHW: one transpose copy into NHWC" in str(report)


def test_channels_last_max_pool_reaches_the_kernels_uncopied(emulated, kernel_pointers):
    x = torch.randn(2, 4, 6, 6).to(memory_format=CL)
    seen = kernel_pointers(emulated)
    y, _ = fct.functional.max_pool2d(x, 2, return_indices=True)
    assert {x.data_ptr(), y.data_ptr()} <= _pointers(seen)


def test_cuda_dlpack_conversions_on_a_numpy_twin(emulated, kernel_pointers, monkeypatch):
    """The CUDA target's tensor <-> array code (DLPack both ways, _kernels.dlpack_target) run on the
    CPU with NumPy in CuPy's place: outputs, indices and gradients still match torch, and the
    kernels read and write the tensors' own memory."""
    import contextlib
    twin_target = _kernels.dlpack_target(emulated, np, contextlib.nullcontext, lambda a: int(a.ctypes.data))
    monkeypatch.setattr(_kernels, "cpu_target", lambda: twin_target)
    seen = kernel_pointers(emulated)
    torch.manual_seed(9)
    x = torch.randn(2, 4, 8, 7).to(memory_format=CL).requires_grad_()
    w, b = torch.randn(6, 4, 3, 3, requires_grad=True), torch.randn(6, requires_grad=True)
    fc = torch.randn(5, 6 * 5 * 4, requires_grad=True)    # the pool gives 5 x 4

    def net(conv, pool, linear, x, w, b, fc):
        y, idx = pool(conv(x, w, b, padding=1), 3, 2, 1, ceil_mode=True, return_indices=True)
        return linear(y.flatten(1), fc), y, idx
    out, y, idx = net(fct.functional.conv2d, fct.functional.max_pool2d, fct.functional.linear, x, w, b, fc)
    out0, y0, idx0 = net(TF.conv2d, TF.max_pool2d, TF.linear, x, w, b, fc)
    close(out, out0)
    torch.testing.assert_close(idx, idx0, rtol=0, atol=0)
    assert {x.data_ptr(), y.data_ptr(), fc.data_ptr(), out.data_ptr()} <= _pointers(seen)
    dout = torch.randn_like(out0)
    for a, e in zip(_grads(out, [x, w, b, fc], dout), _grads(out0, [x, w, b, fc], dout)):
        close(a, e)


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_opcheck_through_emulated_kernels(emulated, layout):
    """torch.library.opcheck (schema, autograd registration, fake vs real outputs incl. strides)
    of every op with the kernel bridge's outputs: what inductor assumes about the outputs'
    layouts must hold for the arrays KernelOps hands back, as it will on CUDA."""
    ops, quick = torch.ops.fastconv, ("test_schema", "test_autograd_registration", "test_faketensor")
    torch.manual_seed(10)
    x = torch.randn(2, 4, 7, 6, dtype=torch.float64).to(memory_format=_fmt(layout)).requires_grad_()
    w = torch.randn(6, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    geom, pool = ([1, 2], [1, 0, 2, 1], [2, 1], 2), ([3, 2], [2, 2], [1, 2, 1, 1])
    torch.library.opcheck(ops.conv2d_fprop, (x, w, *geom), test_utils=quick)
    dy = torch.randn_like(ops.conv2d_fprop(x, w, *geom)).requires_grad_()
    torch.library.opcheck(ops.conv2d_dgrad, (dy, w, list(x.shape), *geom), test_utils=quick)
    torch.library.opcheck(ops.conv2d_wgrad, (x, dy, list(w.shape), *geom), test_utils=quick)
    torch.library.opcheck(ops.max_pool2d_fprop, (x, *pool), test_utils=quick)
    y, idx = ops.max_pool2d_fprop(x, *pool)
    torch.library.opcheck(ops.max_pool2d_bprop, (torch.randn_like(y).requires_grad_(), idx, list(x.shape), *pool),
                          test_utils=quick)
    a, wd, b = (torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in ((5, 7), (3, 7), (3,)))
    torch.library.opcheck(ops.dense_fprop, (a, wd, b), test_utils=quick)
    torch.library.opcheck(ops.dense_bprop, (torch.randn(5, 3, dtype=torch.float64), a, wd, True), test_utils=quick)


# ----------------------------------------------------------------------- the switch

def test_kernel_backend_switch_and_env(monkeypatch):
    _emulated_ops()
    monkeypatch.delenv("FASTCONV_TORCH_BACKEND", raising=False)
    monkeypatch.delenv("FASTCONV_BACKEND", raising=False)
    assert fct.kernel_backend() == "reference"
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    ran_on = lambda: fastconv.explain(lambda: fct.functional.conv2d(x, w)).ops[0][1]  # noqa: E731
    try:
        fct.set_kernel_backend("emulated")
        assert fct.kernel_backend() == "emulated" and ran_on() == "emulated"
        fct.set_kernel_backend("reference")
        monkeypatch.setenv("FASTCONV_TORCH_BACKEND", "emulated")
        assert ran_on() == "reference"                  # the explicit choice wins over the env
    finally:
        fct.set_kernel_backend(None)
    assert fct.kernel_backend() == "emulated" and ran_on() == "emulated"
    monkeypatch.setenv("FASTCONV_TORCH_BACKEND", "native")
    with pytest.raises(ValueError,
                       match=r"FASTCONV_TORCH_BACKEND must be one of \['reference', 'emulated'\].*'native'"):
        fct.functional.conv2d(x, w)
    with pytest.raises(ValueError, match=r"set_kernel_backend: name must be one of .*got 'cuda'"):
        fct.set_kernel_backend("cuda")


def test_index_conversion_round_trip():
    """window offset -> torch flat index -> window offset is the identity for offsets that land
    inside the input, on a ceil-mode, padded, non-square window."""
    from fastconv.backends.plans.common import argmax_dtype
    kernel, stride, pads, (h, w) = (3, 2), (2, 1), [1, 2, 0, 1], (7, 5)
    rng = np.random.default_rng(7)
    p, q = (h + pads[0] + pads[1] - kernel[0]) // stride[0] + 1, (w + pads[2] + pads[3] - kernel[1]) // stride[1] + 1
    rows, cols = _kernels.window_origins(np, (p, q), stride, pads)
    rows, cols = rows[None, :, :, None], cols[None, :, :, None]
    # a random tap of every window among those inside the input (every window has some)
    r = rng.integers(np.maximum(0, -rows), np.minimum(kernel[0], h - rows), (2, p, q, 3))
    s = rng.integers(np.maximum(0, -cols), np.minimum(kernel[1], w - cols), (2, p, q, 3))
    arg = (r * kernel[1] + s).astype(argmax_dtype(kernel))
    flat = _kernels.flat_indices(np, arg, kernel, stride, pads, w)
    assert flat.dtype == np.int64 and flat.min() >= 0 and flat.max() < h * w
    np.testing.assert_array_equal(flat, (rows + r) * w + cols + s)
    back = _kernels.window_offsets(np, flat, kernel, stride, pads, w, argmax_dtype(kernel))
    np.testing.assert_array_equal(back, arg)


# ----------------------------------------------------------------------- on a GPU

def _cuda_ops():
    if not torch.cuda.is_available():
        pytest.skip("torch sees no CUDA device")
    ok, reason = fct.cuda_kernels_status()
    if not ok:
        pytest.skip(reason)
    pytest.importorskip("cupy")
    from fastconv.backends import backend_name, jit, native
    return (native if backend_name("cuda") == "native" else jit)._ops()   # the instance backend_for runs


@pytest.fixture
def cuda_ops():
    ops = _cuda_ops()
    keep = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False   # fp32 references
    try:
        yield ops
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = keep


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("kw", CONV_CASES)
def test_conv2d_on_cuda_matches_torch(cuda_ops, kw, layout):
    torch.manual_seed(11)
    ref = nn.Conv2d(**kw).cuda()
    mod = fct.Conv2d(**kw).cuda()
    mod.load_state_dict(ref.state_dict())
    x = torch.randn(3, kw["in_channels"], 13, 11, device="cuda").to(memory_format=_fmt(layout)).requires_grad_()
    y, y0 = mod(x), ref(x)
    close(y, y0)
    assert y.is_cuda and y.is_contiguous(memory_format=_fmt(layout))
    dy = torch.randn_like(y0)
    for a, e in zip(_grads(y, [x, *mod.parameters()], dy), _grads(y0, [x, *ref.parameters()], dy)):
        close(a, e, scale=4)


@pytest.mark.gpu
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("kw", POOL_CASES)
def test_max_pool2d_on_cuda_matches_torch(cuda_ops, kw, layout):
    torch.manual_seed(12)
    x = torch.randn(2, 5, 11, 9, device="cuda").to(memory_format=_fmt(layout)).requires_grad_()
    out, out0 = fct.MaxPool2d(**kw)(x), nn.MaxPool2d(**kw)(x)
    y, y0 = (out[0], out0[0]) if kw.get("return_indices") else (out, out0)
    torch.testing.assert_close(y, y0, rtol=0, atol=0)
    if kw.get("return_indices"):
        torch.testing.assert_close(out[1], out0[1], rtol=0, atol=0)
    dy = torch.randn_like(y0)
    (dx,), (dx0,) = _grads(y, [x], dy), _grads(y0, [x], dy)
    close(dx, dx0)


@pytest.mark.gpu
@pytest.mark.parametrize("bias", [True, False])
def test_linear_on_cuda_matches_torch_without_copying_the_weight(cuda_ops, kernel_pointers, bias):
    torch.manual_seed(13)
    ref, mod = nn.Linear(36, 20, bias=bias).cuda(), fct.Linear(36, 20, bias=bias).cuda()
    mod.load_state_dict(ref.state_dict())
    x = torch.randn(17, 36, device="cuda", requires_grad=True)
    seen = kernel_pointers(cuda_ops)
    y, y0 = mod(x), ref(x)
    close(y, y0)
    assert {mod.weight.data_ptr(), x.data_ptr(), y.data_ptr()} <= _pointers(seen)
    dy = torch.randn_like(y0)
    for a, e in zip(_grads(y, [x, *mod.parameters()], dy), _grads(y0, [x, *ref.parameters()], dy)):
        close(a, e, scale=4)


@pytest.mark.gpu
def test_cuda_channels_last_is_zero_copy(cuda_ops, kernel_pointers):
    x = torch.randn(2, 8, 10, 10, device="cuda").to(memory_format=CL)
    w = torch.randn(16, 8, 3, 3, device="cuda")
    seen = kernel_pointers(cuda_ops)
    with _kernels.record_handed() as handed:
        y = fct.functional.conv2d(x, w, padding=1)
    assert handed[0][1][0] == x.data_ptr()
    assert {x.data_ptr(), y.data_ptr()} <= _pointers(seen)
    assert y.is_contiguous(memory_format=CL)


@pytest.mark.gpu
def test_cuda_work_on_a_side_stream_is_ordered(cuda_ops):
    """On a non-default stream the op must wait for the torch work queued before it there, and the
    torch work after it must see its result: compute the input after a long sleep on that stream."""
    torch.manual_seed(14)
    x = torch.randn(4, 16, 32, 32, device="cuda").to(memory_format=CL)
    w = torch.randn(32, 16, 3, 3, device="cuda")
    expected = TF.conv2d(x * 2, w, padding=1)
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    import cupy
    cupy_stream_before = cupy.cuda.get_current_stream().ptr
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)                   # ~0.1 s of GPU time before x2 exists
        x2 = x * 2
        y = fct.functional.conv2d(x2, w, padding=1)
        z = y + 0
        assert torch.cuda.current_stream() == side
    assert cupy.cuda.get_current_stream().ptr == cupy_stream_before
    side.synchronize()
    close(z, expected)


@pytest.mark.gpu
def test_cuda_memory_comes_from_torchs_allocator(cuda_ops):
    import cupy
    x = torch.randn(8, 32, 32, 32, device="cuda").to(memory_format=CL)
    w = torch.randn(64, 32, 3, 3, device="cuda")
    torch.cuda.synchronize()
    pool_before = cupy.get_default_memory_pool().used_bytes()
    before = torch.cuda.memory_allocated()
    y = fct.functional.conv2d(x, w, padding=1)
    grown = torch.cuda.memory_allocated() - before
    assert grown >= y.numel() * y.element_size()        # the kernel's output is a torch block
    assert cupy.get_default_memory_pool().used_bytes() == pool_before
    del y
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() == before      # and goes back to torch's pool


@pytest.mark.gpu
@pytest.mark.slow
def test_torch_compile_fullgraph_on_cuda_matches_eager(cuda_ops):
    ref, model = twin(SmallNet, seed=15)
    model = model.cuda().to(memory_format=CL)
    x = torch.randn(4, 3, 16, 16, device="cuda").to(memory_format=CL)
    eager = model(x)
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x)
    close(out, eager)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).square().sum().backward()
    for g, p in zip(grads, model.parameters()):
        close(g, p.grad, scale=10)
