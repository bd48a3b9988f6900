"""Conv fprop and dgrad routing on sm_90 (fastconv/backends/plans/conv2d.py conv2d_fprop_tensor_core,
conv2d_dgrad_tensor_core):

- a 1x1 stride-1 unpadded conv in bf16 / fp16 runs the sm_90a wgmma GEMM (NHWC x is its A matrix), checked for
  real in the CPU emulator against the NumPy reference: exact on small integers (partial tiles in M, N and K,
  TMA destinations poisoned until their mbarrier completes, random thread order), and through a bf16 / fp16
  precision policy;
- every fallback to the mma.sync conv and its explain note (C not a multiple of 8, groups, alignment, no
  sm_90a code, not an sm_90 device, too few tiles);
- the other convs (and 1x1 ones with a residual) ask the sm_90a conv kernel's can_implement
  (plans/conv2d_sm90.py), in the decision tests a stand-in patched in by the test; the tests at the end run
  the real kernel in the emulator, fprop and dgrad (stride 1 and by stride phases), exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import sm90_emulated_ops
from fastconv.backends import reference as ref
from fastconv.backends.plans import conv2d as plans_conv2d
from fastconv.backends.plans import conv2d_sm90, tensor_map
from fastconv.backends.plans.tensor_op import bf16_bits_to_float32, float32_to_bf16_bits
from fastconv.explain import explain

VALID = ((0, 0), (0, 0))
SAME = ((1, 1), (1, 1))


def emu_ops(order="random", poison=False, min_tiles=0):
    """KernelOps on the emulator, with TMA destinations poisoned until their mbarrier completes (poison); min_tiles 0:
    the sm_90a kernels take these small test problems (by default the emulator routes as an H100 would)."""
    ops = sm90_emulated_ops(conv2d_sm90.conv2d_fprop_sm90_kernel_names(), order, poison, seed=3)
    if min_tiles is not None:
        ops.sm90_conv_min_tiles = min_tiles
    return ops


def to16(kind, a):
    """float32 small integers -> the operand format, and the float64 values it holds."""
    if kind == "f16":
        return a.astype(np.float16), a.astype(np.float16).astype(np.float64)
    bits = float32_to_bf16_bits(np, a)
    return bits, bf16_bits_to_float32(np, bits).astype(np.float64)


def ints(rng, shape):
    return rng.integers(-3, 4, shape).astype(np.float32)


def notes(report):
    return " | ".join(e.text for e in report.events if e.kind == "note")


# (x shape, K): M = N*H*W of 70 (one partial tile), 189 (two, the second partial) and C = 16, 24, 72
# (k-tiles of 64: partial, and two with a partial second); K = 24, 40, 136 (partial N tiles, two for 136)
ONE_BY_ONE = [((2, 5, 7, 16), 24), ((3, 7, 9, 24), 40), ((1, 10, 13, 72), 136)]


@pytest.mark.parametrize("kind", ["f16", "bf16"])
@pytest.mark.parametrize("x_shape,k", ONE_BY_ONE)
def test_1x1_conv_runs_the_wgmma_gemm_exactly(kind, x_shape, k, rng):
    xi, wi = ints(rng, x_shape), ints(rng, (1, 1, x_shape[3], k))
    (x, x64), (w, w64) = to16(kind, xi), to16(kind, wi)
    ops = emu_ops(poison=True)
    report = explain(ops.conv2d_fprop_tensor_core, x, w)
    assert [k_.split("<")[0] for k_ in report.kernels] == ["fc::gemm_wgmma"], report.kernels
    assert "1x1 stride-1 unpadded conv as the sm_90a wgmma GEMM" in notes(report)
    assert "in the emulator" in notes(report)
    want = ref.conv2d_fprop(x64, w64).astype(np.float32)
    assert report.result.shape == want.shape and report.result.dtype == np.float32
    np.testing.assert_array_equal(report.result, want)


def test_1x1_conv_epilogue_bias_relu_and_16bit_output(rng):
    """Bias + ReLU and a bf16 output through the GEMM's epilogue: exact on small integers (|y| < 256)."""
    xi, wi = ints(rng, (2, 6, 6, 32)), ints(rng, (1, 1, 32, 48))
    bias = rng.integers(-3, 4, 48).astype(np.float32)
    (x, x64), (w, w64) = to16("bf16", xi), to16("bf16", wi)
    ops = emu_ops()
    want = np.maximum(ref.conv2d_fprop(x64, w64) + bias, 0)
    y = ops.conv2d_fprop_tensor_core(x, w, bias=bias, activation="relu")
    np.testing.assert_array_equal(y, want.astype(np.float32))
    y16 = ops.conv2d_fprop_tensor_core(x, w, bias=bias, activation="relu", out_dtype=np.uint16)
    assert y16.dtype == np.uint16 and y16.shape == want.shape
    np.testing.assert_array_equal(bf16_bits_to_float32(np, y16), want.astype(np.float32))


@pytest.mark.parametrize("prec", ["bf16", "fp16"])
def test_1x1_conv_under_a_16bit_policy_matches_the_reference(prec, rng):
    """conv2d_fprop(precision=...) reaches the GEMM through the mixed-precision plan: exact against the reference's
    rounding oracle on small integers, and within fp32 summation-order error on random floats."""
    ops = emu_ops()
    xi, wi = ints(rng, (2, 5, 6, 40)), ints(rng, (1, 1, 40, 24))
    args = ((1, 1), VALID, (1, 1), 1)
    report = explain(lambda: ops.conv2d_fprop(xi, wi, *args, precision=prec))
    assert report.kernels[-1].startswith("fc::gemm_wgmma<"), report.kernels
    np.testing.assert_array_equal(report.result, ref.conv2d_fprop(xi, wi, *args, precision=prec))
    x = rng.standard_normal((2, 5, 6, 40)).astype(np.float32)
    w = rng.standard_normal((1, 1, 40, 24)).astype(np.float32)
    got = ops.conv2d_fprop(x, w, *args, precision=prec)
    want = ref.conv2d_fprop(x, w, *args, precision=prec)
    # fp32 sums of 40 products in another order: error under 40 ulps of the sum of |products|
    scale = ref.conv2d_fprop(np.abs(x), np.abs(w), *args)
    assert np.abs(got - want).max() <= 40 * np.finfo(np.float32).eps * scale.max()


def _unaligned(shape, dtype, rng):
    buf = np.zeros(int(np.prod(shape)) + 8, dtype)
    start = (-buf.ctypes.data // buf.itemsize) % 8 + 2          # 4 bytes past a 16-byte boundary
    a = buf[start:start + int(np.prod(shape))].reshape(shape)
    a[...] = rng.integers(-3, 4, shape)
    return a


@pytest.mark.parametrize("case,why", [
    ("c12", "C=12 is not a multiple of 8"),
    ("groups", "groups=2 (the sm_90a conv and GEMM take groups == 1)"),
    ("unaligned", "x is not 16-byte aligned"),
])
def test_1x1_conv_falls_back_to_mma_sync_and_says_why(case, why, rng):
    c = 12 if case == "c12" else 16
    x = ints(rng, (2, 4, 5, c)).astype(np.float16)
    w = ints(rng, (1, 1, c // (2 if case == "groups" else 1), 16)).astype(np.float16)
    kwargs = {}
    if case == "groups":
        kwargs["groups"] = 2
    if case == "unaligned":
        x = _unaligned(x.shape, np.float16, rng)
    ops = emu_ops(order="forward")
    report = explain(lambda: ops.conv2d_fprop_tensor_core(x, w, **kwargs))
    assert "mma.sync tensor-op conv instead of the sm_90a kernels: " + why in notes(report), notes(report)
    assert not any("wgmma" in k for k in report.kernels), report.kernels
    want = ref.conv2d_fprop(x.astype(np.float32), w.astype(np.float32), groups=kwargs.get("groups", 1))
    np.testing.assert_array_equal(report.result, want)


@pytest.mark.parametrize("kind", ["f16", "bf16"])
def test_1x1_conv_with_a_residual_runs_the_sm90_conv_kernel_exactly(kind, rng):
    """The wgmma GEMM's epilogue has no residual add; the sm_90a conv kernel's has: act(conv + bias + residual)."""
    (x, x64), (w, w64) = to16(kind, ints(rng, (2, 4, 5, 16))), to16(kind, ints(rng, (1, 1, 16, 24)))
    residual, bias = ints(rng, (2, 4, 5, 24)), rng.integers(-3, 4, 24).astype(np.float32)
    report = explain(lambda: emu_ops().conv2d_fprop_tensor_core(x, w, bias=bias, activation="relu", residual=residual))
    assert [k.split("<")[0] for k in report.kernels] == ["fc::conv2d_fprop_wgmma_sm90"], report.kernels
    assert "(a 1x1 conv with a residual add) in the emulator" in notes(report), notes(report)
    want = np.maximum(ref.conv2d_fprop(x64, w64) + bias + residual, 0).astype(np.float32)
    np.testing.assert_array_equal(report.result, want)


# ---- the other convs: the sm_90a conv kernel's can_implement decides (a stand-in patched in here) --------------
class StubConv:
    """Stands in for plans/conv2d_sm90.py's two functions: can_implement answers what the test sets; the kernel
    records its call and returns a marker array."""
    def __init__(self):
        self.answer, self.calls = (True, ""), []

    def can_implement(self, ops, x, w, stride, padding, dilation, groups=1, out_dtype=None):
        return self.answer

    def conv(self, ops, x, w, stride, padding, dilation, bias, activation, out_dtype, alpha=0.0, residual=None):
        self.calls.append((x.shape, w.shape, stride, padding, dilation, activation, out_dtype, alpha))
        return np.full((1,), 7.0, np.float32)


@pytest.fixture
def stub_sm90_conv(monkeypatch):
    stub = StubConv()
    monkeypatch.setattr(conv2d_sm90, "conv2d_fprop_sm90_can_implement", stub.can_implement)
    monkeypatch.setattr(conv2d_sm90, "conv2d_fprop_sm90", stub.conv)
    return stub


def fake_ops(target="emulator", builds=True, min_tiles=0):
    """KernelOps that launch nothing (they record the kernel names): the decision and the note are what is checked.
    min_tiles None: the routing's own tile count (an H100's)."""
    from fastconv.backends.plans.kernel_ops import KernelOps
    launched = []
    ops = KernelOps(np, lambda kernel, grid, block, args, shared_bytes=0: launched.append(kernel),
                    lambda a: int(a.ctypes.data))
    ops.sm90_target = lambda: target
    ops.builds_sm90a, ops.launched = builds, launched
    if min_tiles is not None:
        ops.sm90_conv_min_tiles = min_tiles
    return ops


def conv3x3(rng, n=2, hw=6, c=16, k=32, dtype=np.uint16):
    return ints(rng, (n, hw, hw, c)).astype(dtype), ints(rng, (3, 3, c, k)).astype(dtype)


def test_3x3_conv_calls_the_sm90_kernel_when_it_can_implement(stub_sm90_conv, rng):
    x, w = conv3x3(rng)
    report = explain(lambda: fake_ops().conv2d_fprop_tensor_core(x, w, (1, 1), SAME, (1, 1), 1, None, "relu"))
    assert stub_sm90_conv.calls == [((2, 6, 6, 16), (3, 3, 16, 32), (1, 1), SAME, (1, 1), "relu", None, 0.0)]
    fake_ops().conv2d_fprop_tensor_core(x, w, (1, 1), SAME, activation="leaky_relu", alpha=0.25, out_dtype=np.uint16)
    assert stub_sm90_conv.calls[-1][-3:] == ("leaky_relu", np.uint16, 0.25)
    assert report.result.tolist() == [7.0] and report.kernels == []
    assert "sm_90a wgmma + TMA implicit-GEMM conv fprop in the emulator" in notes(report)


def test_3x3_conv_falls_back_when_can_implement_says_no(stub_sm90_conv, rng):
    stub_sm90_conv.answer = (False, "dilation 2 is not supported")
    x, w = conv3x3(rng)
    ops = fake_ops()
    report = explain(lambda: ops.conv2d_fprop_tensor_core(x, w, (1, 1), ((2, 2), (2, 2)), (2, 2)))
    assert stub_sm90_conv.calls == []
    assert ("mma.sync tensor-op conv instead of the sm_90a kernels: conv2d_fprop_sm90 cannot run it: dilation 2 is "
            "not supported") in notes(report)
    assert ops.launched[-1].startswith("fc::conv2d_fprop_tensor_op<"), ops.launched


@pytest.mark.parametrize("why,setup", [
    ("C=20 is not a multiple of 8", {"c": 20}),
    ("x or w is not 16-byte aligned", {"unaligned": True}),
])
def test_3x3_conv_fallbacks_before_can_implement(stub_sm90_conv, why, setup, rng):
    x, w = conv3x3(rng, c=setup.get("c", 16))
    if setup.get("unaligned"):
        w = _unaligned(w.shape, np.uint16, rng)
    ops = fake_ops()
    report = explain(lambda: ops.conv2d_fprop_tensor_core(x, w, (1, 1), SAME))
    assert "mma.sync tensor-op conv instead of the sm_90a kernels: " + why in notes(report), notes(report)
    assert stub_sm90_conv.calls == []


@pytest.mark.parametrize("target,builds,why", [
    (None, True, "the device is not sm_90"),
    ("sm90", False, "no sm_90a code for the device"),
    ("sm90", lambda: False, "built without the sm_90a gencode"),
])
def test_gpus_without_sm90a_code_run_mma_sync(stub_sm90_conv, monkeypatch, target, builds, why, rng):
    monkeypatch.setattr(tensor_map, "tensor_map_encoder", lambda: (object(), "fake"))
    for x, w, pad in (conv3x3(rng, n=64, hw=32, k=256) + (SAME,),
                      (ints(rng, (64, 32, 32, 64)).astype(np.uint16), ints(rng, (1, 1, 64, 256)).astype(np.uint16),
                       VALID)):
        ops = fake_ops(target, builds)
        report = explain(lambda: ops.conv2d_fprop_tensor_core(x, w, (1, 1), pad))
        assert "mma.sync tensor-op conv instead of the sm_90a kernels: " in notes(report) and why in notes(report)
        assert ops.launched[-1].startswith("fc::conv2d_fprop_tensor_op<")
    assert stub_sm90_conv.calls == []


def test_on_an_sm90_gpu_large_convs_take_the_sm90_kernels_and_small_ones_do_not(stub_sm90_conv, monkeypatch, rng):
    """On an H100/H200 the tiles are counted: 64 x 32 x 32 pixels x 256 filters = 2048 tiles of 64 x 128 take the
    sm_90a kernels; 2 x 6 x 6 x 32 = 2 tiles do not (too few to fill 132 SMs)."""
    monkeypatch.setattr(tensor_map, "tensor_map_encoder", lambda: (lambda *args, **kwargs: bytes(128), "fake"))
    x, w = conv3x3(rng, n=64, hw=32, k=256)
    report = explain(lambda: fake_ops("sm90", min_tiles=None).conv2d_fprop_tensor_core(x, w, (1, 1), SAME))
    assert len(stub_sm90_conv.calls) == 1 and "sm_90a wgmma + TMA implicit-GEMM conv fprop" in notes(report)
    assert "in the emulator" not in notes(report)
    x1, w1 = ints(rng, (64, 32, 32, 64)).astype(np.uint16), ints(rng, (1, 1, 64, 256)).astype(np.uint16)
    ops = fake_ops("sm90", min_tiles=None)
    report = explain(lambda: ops.conv2d_fprop_tensor_core(x1, w1))
    assert "1x1 stride-1 unpadded conv as the sm_90a wgmma GEMM" in notes(report)
    assert ops.launched == ["fc::gemm_wgmma<fc::WgmmaTile<256, 4>, __nv_bfloat16, float>"]
    x, w = conv3x3(rng)
    ops = fake_ops("sm90", min_tiles=None)
    report = explain(lambda: ops.conv2d_fprop_tensor_core(x, w, (1, 1), SAME))
    assert "2 output tiles of 64x128 are too few to fill the GPU (under 132)" in notes(report)
    assert ops.launched[-1].startswith("fc::conv2d_fprop_tensor_op<") and len(stub_sm90_conv.calls) == 1


def test_on_an_sm90_gpu_a_1x1_conv_with_too_few_gemm_tiles_takes_the_sm90_conv(stub_sm90_conv, monkeypatch, rng):
    """64 x 12 x 12 pixels by 64 filters: 144 tiles of 64x128 (>= 132) go to the sm_90a kernels, but 72 tiles of
    128x128 are too few for the wgmma GEMM (under 264): the 1x1 conv runs the sm_90a conv (smaller tiles), not
    mma.sync, in fprop and in dgrad (the fprop of dy)."""
    monkeypatch.setattr(tensor_map, "tensor_map_encoder", lambda: (lambda *args, **kwargs: bytes(128), "fake"))
    x, w = ints(rng, (64, 12, 12, 64)).astype(np.uint16), ints(rng, (1, 1, 64, 64)).astype(np.uint16)
    report = explain(lambda: fake_ops("sm90", min_tiles=None).conv2d_fprop_tensor_core(x, w))
    assert len(stub_sm90_conv.calls) == 1, notes(report)
    assert "1x1 conv with 72 tiles of 128x128, too few for the wgmma GEMM (under 264)" in notes(report)
    assert plans_conv2d.sm90_dgrad_route(x.shape, w.shape, (1, 1), VALID, 1, np.uint16)[0] == "conv"
    assert plans_conv2d.sm90_dgrad_route((64, 32, 32, 64), w.shape, (1, 1), VALID, 1, np.uint16)[0] == "gemm"


@pytest.mark.parametrize("shape,stride,pad,dtype,want", [
    (((32, 56, 56, 64), (1, 1, 64, 256)), (1, 1), VALID, np.uint16, "gemm"),       # res2 1x1 expand
    (((32, 56, 56, 256), (1, 1, 256, 512)), (2, 2), VALID, np.uint16, "conv"),     # res3a 1x1/2 downsample
    (((32, 56, 56, 64), (1, 1, 64, 256)), (1, 1), VALID, np.float32, "conv"),      # tf32: no 16-bit GEMM
    (((32, 56, 56, 64), (3, 3, 64, 64)), (1, 1), SAME, np.uint16, "conv"),         # res2 3x3: 1568 tiles of 64x128
    (((32, 28, 28, 256), (3, 3, 256, 256)), (2, 2), SAME, np.uint16, "conv"),      # res4a 3x3/2: 196 tiles of 64x128
    (((32, 7, 7, 512), (3, 3, 512, 512)), (1, 1), SAME, np.uint16, "tensor_op"),   # res5 3x3 at N=32: 100 tiles
    (((32, 14, 14, 1024), (1, 1, 1024, 256)), (1, 1), VALID, np.uint16, "conv"),   # res4 1x1 reduce: 98 GEMM tiles
    (((32, 224, 224, 3), (7, 7, 3, 64)), (2, 2), ((3, 3), (3, 3)), np.uint16, "tensor_op"),   # stem: C = 3
])
def test_shape_rules_on_resnet50_layers(shape, stride, pad, dtype, want):
    route, why = plans_conv2d.sm90_fprop_route(*shape, stride, pad, 1, dtype)
    assert route == want, why
    if want == "tensor_op":
        assert ("too few to fill the GPU" in why) or ("C=3 is not a multiple of 8" in why), why


@pytest.mark.parametrize("shape,stride,pad,dtype,want,why", [
    (((32, 56, 56, 128), (3, 3, 128, 128)), (2, 2), SAME, np.uint16, "conv", "stride-2x2 conv's dgrad as 4 stride "
     "phases on the sm_90a wgmma + TMA conv"),                                                  # res3a 3x3/2
    (((32, 56, 56, 256), (1, 1, 256, 512)), (2, 2), VALID, np.uint16, "conv", "as 4 stride phases"),   # res3a 1x1/2
    (((32, 224, 224, 3), (7, 7, 3, 64)), (2, 2), ((3, 3), (3, 3)), np.uint16, "tensor_op", "C=3 is not a multiple "
     "of 8 (dx's channels: 3 of each 128-wide tile's columns)"),                                # the stem
    (((32, 56, 56, 64), (3, 3, 64, 64)), (1, 1), SAME, np.uint16, "conv", "stride-1 conv's dgrad"),   # res2 3x3
    (((32, 14, 14, 512), (3, 3, 512, 512)), (2, 2), SAME, np.uint16, "conv", "as 4 stride phases"),  # res5a 3x3/2
    (((4, 14, 14, 512), (3, 3, 512, 512)), (2, 2), SAME, np.uint16, "tensor_op", "64 output tiles"),   # at batch 4
    (((32, 56, 56, 64), (3, 3, 64, 12)), (2, 2), SAME, np.uint16, "tensor_op", "K=12 is not a multiple of 8"),
    # res5a 1x1/2 at batch 4: 14 x 14 x 4 / 64 x 8 = 104 tiles of 64 x 128 in dx, but only phase (0, 0) is computed:
    # 4 x 8 = 32 tiles (the rest zeroed)
    (((4, 14, 14, 1024), (1, 1, 1024, 2048)), (2, 2), VALID, np.uint16, "tensor_op", "32 output tiles"),
    (((32, 56, 56, 128), (3, 3, 128, 128)), (2, 2), SAME, np.float32, "tensor_op", "operands are float32"),
])
def test_dgrad_shape_rules_on_resnet50_layers(shape, stride, pad, dtype, want, why):
    route, reason = plans_conv2d.sm90_dgrad_route(*shape, stride, pad, 1, dtype)
    assert route == want and why in reason, reason


# ---- dgrad: a 1x1 stride-1 conv's dgrad is one wgmma GEMM (the (C, K) filter is its K-major B) --------------------
@pytest.mark.parametrize("kind", ["f16", "bf16"])
@pytest.mark.parametrize("x_shape,k", ONE_BY_ONE)
def test_1x1_dgrad_runs_the_wgmma_gemm_exactly(kind, x_shape, k, rng):
    c = x_shape[3]
    (dy, dy64), (w, w64) = to16(kind, ints(rng, x_shape[:3] + (k,))), to16(kind, ints(rng, (1, 1, c, k)))
    ops = emu_ops(poison=True)
    report = explain(ops.conv2d_dgrad_tensor_core, dy, w, x_shape, (1, 1), VALID, (1, 1), 1)
    assert [k_.split("<")[0] for k_ in report.kernels] == ["fc::gemm_wgmma"], report.kernels
    assert "1x1 stride-1 unpadded conv's dgrad as the sm_90a wgmma GEMM" in notes(report)
    want = ref.conv2d_dgrad(dy64, w64, x_shape, (1, 1), VALID, (1, 1), 1).astype(np.float32)
    np.testing.assert_array_equal(report.result, want)
    dx16 = ops.conv2d_dgrad_tensor_core(dy, w, x_shape, (1, 1), VALID, (1, 1), 1, out_dtype=dy.dtype)
    assert dx16.dtype == dy.dtype
    np.testing.assert_array_equal(dx16.astype(np.float32) if kind == "f16" else bf16_bits_to_float32(np, dx16), want)


@pytest.mark.parametrize("prec", ["bf16", "fp16"])
def test_dgrad_under_a_16bit_policy_routes_by_shape(prec, rng):
    """1x1 stride 1 to the wgmma GEMM, 3x3 stride 1 to the sm_90a conv (the fprop of dy), 3x3 stride 2 and 1x1 stride
    2 to the sm_90a conv by stride phases; each exact against the reference's rounding oracle on small integers."""
    ops = emu_ops()
    for r, stride, pad, want_kernel, why in (
            (1, (1, 1), VALID, "fc::gemm_wgmma<", "dgrad as the sm_90a wgmma GEMM"),
            (3, (1, 1), SAME, "fc::conv2d_fprop_wgmma_sm90<", "stride-1 conv's dgrad as the sm_90a wgmma + TMA conv "
             "fprop of dy with the turned filter in the emulator"),
            (3, (2, 2), SAME, "fc::conv2d_fprop_wgmma_sm90<", "stride-2x2 conv's dgrad as 4 stride phases on the sm_90a "
             "wgmma + TMA conv (each the fprop of dy over only its own turned taps, one launch each) in the emulator"),
            (1, (2, 2), VALID, "fc::conv2d_fprop_wgmma_sm90<", "phases (0, 1), (1, 0), (1, 1) reached by no tap, "
             "zeroed")):
        x_shape, wi = (2, 5, 6, 24), ints(rng, (r, r, 24, 16))
        args = (x_shape, stride, pad, (1, 1), 1)
        dyi = ints(rng, ref.conv2d_fprop(np.zeros(x_shape, np.float32), wi, stride, pad).shape)
        report = explain(lambda: ops.conv2d_dgrad(dyi, wi, *args, precision=prec))
        assert report.kernels[-1].startswith(want_kernel), report.kernels
        assert why in notes(report), notes(report)
        np.testing.assert_array_equal(report.result, ref.conv2d_dgrad(dyi, wi, *args, precision=prec))


def test_dgrad_falls_back_when_the_sm90_conv_cannot_implement(rng):
    """An unaligned dy (a TMA global address must be 16-byte aligned): conv2d_dgrad_sm90 says no, and the mma.sync
    dgrad, which needs alignment too, runs its CUDA-core fallback. Padding beyond dilation * (R - 1) (the phase's
    fprop padding negative) stays on the sm_90a conv."""
    ops = emu_ops()
    x_shape, w = (2, 6, 6, 16), ints(rng, (3, 3, 16, 16)).astype(np.float16)
    pad = ((3, 3), (0, 1))
    dy = ints(rng, ref.conv2d_fprop(np.zeros(x_shape, np.float32), w.astype(np.float32), (2, 2), pad).shape)
    want = ref.conv2d_dgrad(dy, w.astype(np.float32), x_shape, (2, 2), pad, (1, 1), 1)
    report = explain(lambda: ops.conv2d_dgrad_tensor_core(dy.astype(np.float16), w, x_shape, (2, 2), pad, (1, 1), 1))
    assert [k.split("<")[0] for k in report.kernels] == ["fc::conv2d_fprop_wgmma_sm90"] * 4, report.kernels
    np.testing.assert_array_equal(report.result, want)
    buf = np.zeros(dy.size + 8, np.float16)
    start = (-buf.ctypes.data // 2) % 8 + 2                    # 4 bytes past a 16-byte boundary
    unaligned = buf[start:start + dy.size].reshape(dy.shape)
    unaligned[...] = dy
    report = explain(lambda: ops.conv2d_dgrad_tensor_core(unaligned, w, x_shape, (2, 2), pad, (1, 1), 1))
    assert ("mma.sync tensor-op dgrad instead of the sm_90a kernels: conv2d_dgrad_sm90 cannot run it: as the fprop of "
            "dy (its C is dy's K): x or w is not 16-byte aligned" in notes(report)), notes(report)
    assert not any("wgmma" in k for k in report.kernels), report.kernels
    np.testing.assert_array_equal(report.result, want)


def test_dgrad_on_an_sm90_gpu_counts_tiles(monkeypatch, rng):
    monkeypatch.setattr(tensor_map, "tensor_map_encoder", lambda: (lambda *args, **kwargs: bytes(128), "fake"))
    dy, w = ints(rng, (64, 32, 32, 256)).astype(np.uint16), ints(rng, (1, 1, 64, 256)).astype(np.uint16)
    ops = fake_ops("sm90", min_tiles=None)
    ops.conv2d_dgrad_tensor_core(dy, w, (64, 32, 32, 64), (1, 1), VALID, (1, 1), 1)
    assert ops.launched == ["fc::gemm_wgmma<fc::WgmmaTile<128, 4>, __nv_bfloat16, float>"]   # 512 tiles, N = C = 64
    ops = fake_ops("sm90", min_tiles=None)
    report = explain(lambda: ops.conv2d_dgrad_tensor_core(dy[:2], w, (2, 32, 32, 64), (1, 1), VALID, (1, 1), 1))
    assert "32 output tiles of 64x128 are too few to fill the GPU" in notes(report)
    assert ops.launched[-1].startswith("fc::conv2d_dgrad_tensor_op<")
    ops = fake_ops(None)
    report = explain(lambda: ops.conv2d_dgrad_tensor_core(dy, w, (64, 32, 32, 64), (1, 1), VALID, (1, 1), 1))
    assert "the device is not sm_90" in notes(report) and ops.launched[-1].startswith("fc::conv2d_dgrad_tensor_op<")


def test_the_emulator_routes_small_convs_as_an_h100_would(stub_sm90_conv, rng):
    """By default the emulator counts tiles like a GPU: a small conv stays on mma.sync (as the existing emulated
    model tests expect), a 1x1 one too; only the knob sm90_conv_min_tiles = 0 sends them to the sm_90a kernels."""
    x, w = conv3x3(rng)
    x1, w1 = ints(rng, (2, 5, 7, 16)).astype(np.uint16), ints(rng, (1, 1, 16, 24)).astype(np.uint16)
    for args in ((x, w, (1, 1), SAME), (x1, w1)):
        ops = emu_ops(min_tiles=None)
        report = explain(lambda: ops.conv2d_fprop_tensor_core(*args))
        assert "too few to fill the GPU (under 132)" in notes(report), notes(report)
        assert report.kernels[-1].startswith("fc::conv2d_fprop_tensor_op<"), report.kernels
    assert stub_sm90_conv.calls == []


@pytest.mark.parametrize("x_shape,w_shape,stride,pad", [((2, 9, 7, 16), (3, 3, 16, 24), (1, 1), SAME),
                                                        ((1, 11, 10, 32), (3, 3, 32, 40), (2, 2), ((0, 1), (1, 0)))])
def test_3x3_conv_through_the_real_sm90_kernel(x_shape, w_shape, stride, pad, rng):
    """The routed conv runs plans/conv2d_sm90.py's kernel in the emulator and matches the reference exactly,
    leaky_relu's slope included."""
    ops = emu_ops()
    xi, wi = ints(rng, x_shape), ints(rng, w_shape)
    (x, _), (w, _) = to16("bf16", xi), to16("bf16", wi)
    report = explain(lambda: ops.conv2d_fprop_tensor_core(x, w, stride, pad, (1, 1), 1, None, "leaky_relu", 0.25))
    assert [k.split("<")[0] for k in report.kernels] == ["fc::conv2d_fprop_wgmma_sm90"], report.kernels
    want = ref.conv2d_fprop(xi, wi, stride, pad)
    np.testing.assert_array_equal(report.result, np.where(want > 0, want, 0.25 * want).astype(np.float32))
