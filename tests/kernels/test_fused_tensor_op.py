"""The fused conv2d + bias + ReLU + 2x2/2 max-pool on tensor cores
(csrc/conv/conv2d_bias_relu_maxpool_tensor_op_sm80.h, plan conv2d_bias_relu_maxpool_tensor_op) in the emulator:
- small integers, f16 and bf16, float32 and operand-type output, both thread orders with cp.async destinations
  poisoned and the outputs allocated as NaN: exactly the unfused chain's values and argmax (conv + bias in fp32,
  ReLU, cast, first-max pool), on partial tiles in windows and K, odd conv outputs, padding, strides 1-2;
  bf16 sums above 256 round, so the cast makes ties the first tap must win;
- random floats against a float64 run with the bound of fp32 summation (and the output rounding);
- the fallbacks (C % 8, 3x3/2 pools) and their explain notes;
- the functional op and the seed model under bf16 / fp16 policies: fused on the kernels, gradients = unfused.
SASS of the kernel: test_tensor_core_build.py (every sm80 family of the kernel table)."""
from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv import precision as policy
from fastconv.backends import reference as ref
from fastconv.backends.plans.tensor_op import bf16_bits_to_float32
from fastconv.shapes import resolve_padding
from conftest import assert_same, emulated_ops
from test_tensor_core import OPERAND, operand, operand_value, tc_ops

VALID = ((0, 0), (0, 0))
# name: x (N, H, W, C), w (R, S, C, K), stride, padding. Windows per CTA: 16 (64 rows of 8 windows x 4 taps).
PROBLEMS = {
    "odd_pq_pad_k24": ((2, 9, 11, 8), (3, 3, 8, 24), (1, 1), ((1, 1), (0, 0))),   # conv 9 x 9: 32 windows, K < BN
    "s2_same_c16": ((1, 13, 10, 16), (3, 3, 16, 8), (2, 2), "same"),               # conv 7 x 5: 6 windows (< 8)
    "1x1_k72": ((3, 12, 13, 8), (1, 1, 8, 72), (1, 1), VALID),                     # 108 windows, R*S*C = 8 < BK
    "5x5_s1_c8": ((1, 9, 8, 8), (5, 5, 8, 16), (1, 1), VALID),                     # conv 5 x 4, R*S*C = 200
}
PRECS = ("f16", "bf16")


def problem(name):
    x_shape, w_shape, stride, pad = PROBLEMS[name]
    return x_shape, w_shape, stride, resolve_padding(pad, x_shape[1:3], w_shape[:2], stride, (1, 1))


def kernel(prec, out):
    elem = {"f16": "__half", "bf16": "__nv_bfloat16"}[prec]
    return (f"fc::conv2d_bias_relu_maxpool2x2_tensor_op<fc::TensorOp{prec.capitalize()}Tile64, 8, "
            f"{'float' if out == 'float32' else elem}>")


def unfused(x, w, b, prec, stride, pads, out):
    """The chain in the output type: conv of the operand values + bias in fp32, ReLU, cast, then the pool."""
    z = ref.relu_fprop(ref.conv2d_fprop(operand_value(x, prec).astype(np.float32),
                                        operand_value(w, prec).astype(np.float32), stride, pads) + b)
    if out == "operand":
        z = operand_value(operand(z, prec), prec).astype(np.float32)
    y, argmax = ref.max_pool2d_fprop(z, (2, 2), (2, 2), VALID)
    return (operand(y, prec) if out == "operand" else y), argmax


def poisoned_empty(shape, dtype=float):
    dtype = np.dtype(dtype)
    return np.full(shape, np.nan, dtype) if dtype.kind == "f" else np.full(shape, np.iinfo(dtype).max, dtype)


@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("out", ["float32", "operand"])
@pytest.mark.parametrize("name", list(PROBLEMS))
@pytest.mark.parametrize("prec", PRECS)
def test_exact_small_integers_equal_the_unfused_chain(prec, name, out, order, rng, monkeypatch):
    x_shape, w_shape, stride, pads = problem(name)
    x, w = operand(rng.integers(-3, 4, x_shape), prec), operand(rng.integers(-3, 4, w_shape), prec)
    b = rng.integers(-3, 4, w_shape[3]).astype(np.float32)
    want_y, want_arg = unfused(x, w, b, prec, stride, pads, out)
    ops = tc_ops(order, poison=True)
    monkeypatch.setattr(ops.xp, "empty", poisoned_empty)   # every output element must be written
    got_y, got_arg = ops.conv2d_bias_relu_maxpool_tensor_op(x, w, b, stride, pads,
                                                            out_dtype=OPERAND[prec] if out == "operand" else None)
    monkeypatch.undo()
    assert ops.launched == [kernel(prec, out)], ops.launched
    assert_same(got_y, want_y, exact=True, what=f"{prec} {name} -> {out} y")
    assert_same(got_arg, want_arg, exact=True, what=f"{prec} {name} -> {out} argmax")


def test_the_cast_comes_before_the_max():
    """bf16 257 and 256 are both 256: the unfused chain (cast, then pool) ties them and takes tap 0; a max in
    fp32 would pick tap 1 (257). One 1x1 conv, C = 8: each output is 32 * x[..., 0] + x[..., 1]."""
    x = np.zeros((1, 2, 2, 8), np.float32)
    x[0, 0, 0, :2] = (8, 0)     # tap 0: 256
    x[0, 0, 1, :2] = (8, 1)     # tap 1: 257 -> bf16 256
    x[0, 1, 0, :2] = (7, 31)    # tap 2: 255
    w = np.zeros((1, 1, 8, 8), np.float32)
    w[0, 0, 0, :], w[0, 0, 1, :] = 32, 1
    xb, wb = operand(x, "bf16"), operand(w, "bf16")
    ops = tc_ops("reverse", poison=True)
    y, arg = ops.conv2d_bias_relu_maxpool_tensor_op(xb, wb, None, out_dtype=np.uint16)
    assert (bf16_bits_to_float32(np, y) == 256).all() and (arg == 0).all()
    y32, arg32 = ops.conv2d_bias_relu_maxpool_tensor_op(xb, wb, None)   # float32 output: no cast, 257 wins
    assert (y32 == 257).all() and (arg32 == 1).all()


@pytest.mark.parametrize("out", ["float32", "operand"])
@pytest.mark.parametrize("prec", PRECS)
def test_random_floats_within_the_fp32_summation_bound(prec, out, rng):
    """|y - y64| <= (R*S*C + 1) 2^-24 sum|x||w| (+ |b|) per conv output, maxed over the window (the pool is
    1-Lipschitz), plus the output's rounding u |y| for operand-type output; the chosen tap's float64 value is
    within twice that of the window's max."""
    x_shape, w_shape, stride, pads = problem("odd_pq_pad_k24")
    x, w = operand(rng.standard_normal(x_shape), prec), operand(rng.standard_normal(w_shape), prec)
    b = rng.standard_normal(w_shape[3]).astype(np.float32)
    xv, wv = operand_value(x, prec), operand_value(w, prec)
    z64 = np.maximum(ref.conv2d_fprop(xv, wv, stride, pads) + b, 0)
    mag = ref.conv2d_fprop(np.abs(xv), np.abs(wv), stride, pads) + np.abs(b)
    bound = (np.prod(w_shape[:3]) + 1) * 2.0 ** -24 * mag
    y64, _ = ref.max_pool2d_fprop(z64, (2, 2), (2, 2), VALID)
    pooled_bound, _ = ref.max_pool2d_fprop(bound, (2, 2), (2, 2), VALID)
    got_y, got_arg = tc_ops("forward").conv2d_bias_relu_maxpool_tensor_op(
        x, w, b, stride, pads, out_dtype=OPERAND[prec] if out == "operand" else None)
    got = operand_value(got_y, prec) if out == "operand" else got_y.astype(np.float64)
    if out == "operand":
        pooled_bound = pooled_bound + {"f16": 2.0 ** -11, "bf16": 2.0 ** -8}[prec] * (np.abs(y64) + pooled_bound)
    assert (np.abs(got - y64) <= pooled_bound).all(), np.abs(got - y64).max()
    n, p, q, k = z64.shape
    taps = z64[:, :p // 2 * 2, :q // 2 * 2].reshape(n, p // 2, 2, q // 2, 2, k).transpose(0, 1, 3, 5, 2, 4)
    chosen = np.take_along_axis(taps.reshape(*y64.shape, 4), got_arg[..., None].astype(np.intp), -1)[..., 0]
    assert (got_arg < 4).all() and (chosen >= y64 - 2 * pooled_bound).all()


@pytest.mark.parametrize("prec", PRECS)
def test_fallbacks_say_why_and_keep_the_values(prec, rng):
    """C = 3: float32 y from the CUDA-core fused kernel on the widened operands, operand-type y unfused
    (tensor-op conv, then max_pool2d); a 3x3/2 pool: the CUDA-core 3x3/2 fused kernel."""
    x, w = operand(rng.integers(-3, 4, (1, 7, 8, 3)), prec), operand(rng.integers(-3, 4, (3, 3, 3, 8)), prec)
    b = rng.integers(-3, 4, 8).astype(np.float32)
    for out in ("float32", "operand"):
        ops = tc_ops("reverse")
        report = fc.explain(lambda: ops.conv2d_bias_relu_maxpool_tensor_op(
            x, w, b, out_dtype=OPERAND[prec] if out == "operand" else None))
        assert "C=3 is not a multiple of 8" in str(report)
        assert not any("maxpool2x2_tensor_op" in k for k in ops.launched), ops.launched
        fused_simt = any("conv2d_bias_relu_maxpool2x2_fprop" in k for k in ops.launched)
        assert fused_simt == (out == "float32"), ops.launched
        want_y, want_arg = unfused(x, w, b, prec, (1, 1), VALID, out)
        assert_same(report.result[0], want_y, exact=True, what=f"fallback {prec} -> {out} y")
        assert_same(report.result[1], want_arg, exact=True, what=f"fallback {prec} -> {out} argmax")
    x8, w8 = operand(rng.integers(-3, 4, (1, 9, 9, 8)), prec), operand(rng.integers(-3, 4, (3, 3, 8, 8)), prec)
    ops = tc_ops("reverse")
    report = fc.explain(lambda: ops.conv2d_bias_relu_maxpool_tensor_op(x8, w8, b, pool=(3, 3), pool_stride=(2, 2)))
    assert "3x3/2 pool" in str(report) and any("maxpool3x3s2_fprop" in k for k in ops.launched), ops.launched
    z = ref.relu_fprop(ref.conv2d_fprop(operand_value(x8, prec).astype(np.float32),
                                        operand_value(w8, prec).astype(np.float32)) + b)
    for got, want in zip(report.result, ref.max_pool2d_fprop(z, (3, 3), (2, 2), VALID)):
        assert_same(got, want, exact=True, what=f"3x3/2 fallback {prec}")


def test_bad_operands_are_refused_with_the_reason(rng):
    ops = tc_ops()
    x, w = np.ones((1, 4, 4, 8), np.float16), np.ones((1, 1, 8, 8), np.uint16)
    with pytest.raises(TypeError, match="x is float16 but w is uint16"):
        ops.conv2d_bias_relu_maxpool_tensor_op(x, w, None)
    w = np.ones((1, 1, 8, 8), np.float16)
    with pytest.raises(TypeError, match="output must be float32 or the operand type"):
        ops.conv2d_bias_relu_maxpool_tensor_op(x, w, None, out_dtype=np.uint16)
    with pytest.raises(NotImplementedError, match="pool \\(2, 2\\) stride \\(2, 2\\) 'valid'"):
        ops.conv2d_bias_relu_maxpool_tensor_op(x, w, None, pool=(2, 2), pool_stride=(1, 1))


# ---- the functional op and the seed model under a reduced-precision policy ------------------------------------
def run_block(fused, xs, ws, bs, g, prec):
    from fastconv.functional import conv2d, max_pool2d, relu
    from fastconv.functional.fused import conv2d_bias_relu_maxpool
    from fastconv.tensor import Tensor
    x, w, b = (Tensor(a.copy(), requires_grad=True) for a in (xs, ws, bs))
    with policy.using(prec):
        y = (conv2d_bias_relu_maxpool(x, w, b, padding="same") if fused
             else max_pool2d(relu(conv2d(x, w, b, padding="same")), 2))
    (y * Tensor(g)).sum().backward()
    return y.numpy(), x.grad, w.grad, b.grad


@pytest.mark.parametrize("prec", ["bf16", "fp16"])
def test_functional_op_under_a_policy_is_fused_and_equals_unfused(prec, monkeypatch):
    """Small integers (every sum exact, dy exact in bf16/fp16): y, dx, dw bitwise equal to the unfused chain
    (the backward is relu_maxpool_bprop, then the policy's dgrad/wgrad on the same dz); db up to summation
    order. The reference backend's fused op gives the same."""
    emulated_ops()   # skips where the emulator is not built
    rng = np.random.default_rng(5)
    xs, ws = rng.integers(-2, 3, (2, 7, 9, 8)).astype(np.float32), rng.integers(-2, 3, (3, 3, 8, 16)).astype(np.float32)
    bs, g = rng.integers(-2, 3, 16).astype(np.float32), rng.integers(-2, 3, (2, 3, 4, 16)).astype(np.float32)
    on_reference = run_block(True, xs, ws, bs, g, prec)
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    report = fc.explain(lambda: run_block(True, xs, ws, bs, g, prec))
    fused_kernel = "fc::conv2d_bias_relu_maxpool2x2_tensor_op<fc::TensorOp" + ("Bf16" if prec == "bf16" else "F16")
    assert any(k.startswith(fused_kernel) for k in report.kernels), report.kernels
    assert "tensor-core fused conv2d + bias + ReLU + 2x2 max-pool" in str(report)
    want = run_block(False, xs, ws, bs, g, prec)
    for what, got, exp, ref_got in zip(("y", "dx", "dw", "db"), report.result, want, on_reference):
        assert_same(got, exp, exact=True, what=f"{prec} {what}")
        assert_same(ref_got, exp, exact=True, what=f"{prec} reference {what}")


@pytest.mark.parametrize("channels", [1, 8])
def test_seed_model_under_bf16_runs_fused_and_its_gradients_match_unfused(channels, monkeypatch):
    """fastconv.models.zoo.seed_model, small input, bf16 policy, in the emulator: the fused kernel runs (tensor
    cores for C = 8; for the seed's C = 1 the CUDA-core fused kernel on the bf16 operands, and explain says why),
    and the weight gradients equal the unfused model's bitwise: small-integer inputs, weights in sixteenths and
    a loss linear in the logits keep every value dyadic and exact in bf16 and fp32, in any summation order."""
    emulated_ops()
    from fastconv.models import fusion
    from fastconv.models.zoo import seed_model
    from fastconv.tensor import Tensor
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    xs = np.random.default_rng(7).integers(-2, 3, (2, 8, 8, channels)).astype(np.float32)
    c = Tensor((np.arange(8.0).reshape(2, 4) % 3).astype(np.float32))

    def grads(fused):
        fc.set_seed(3)
        model = seed_model(input_shape=(8, 8, channels), num_classes=4)
        model.build((8, 8, channels))
        model.set_weights([np.clip(np.round(v * 16), -16, 16) / 16 for v in model.get_weights()])
        model.fusion = fused
        assert len(fusion.plan(model)) == int(fused)
        with policy.using("bf16"):
            report = fc.explain(lambda: (model(Tensor(xs), return_logits=True) * c).sum())
            report.result.backward()
        return report, [v.grad for v in model.trainable_weights]

    report, got = grads(True)
    tensor_core = "fc::conv2d_bias_relu_maxpool2x2_tensor_op<fc::TensorOpBf16Tile64, 8, float>"
    simt = any(k.startswith("fc::conv2d_bias_relu_maxpool2x2_fprop<") for k in report.kernels)
    assert (tensor_core in report.kernels, simt) == (channels == 8, channels == 1), report.kernels
    if channels == 1:
        assert "C=1 is not a multiple of 8" in str(report)
    _, want = grads(False)
    assert any(np.abs(g).sum() > 0 for g in want[:2])
    for i, (a, e) in enumerate(zip(got, want)):
        assert_same(a, e, exact=True, what=f"seed model grad {i}")


# ---- on a GPU (skipped here; `python -m pytest tests/kernels/test_fused_tensor_op.py -m gpu`) -----------------
@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["native", "jit"])
@pytest.mark.parametrize("prec", PRECS)
def test_gpu_exact_small_integers_equal_the_unfused_chain(prec, backend):
    from test_tensor_core_gpu import _device
    dev = _device(backend)
    rng = np.random.default_rng(0)
    for name in PROBLEMS:
        x_shape, w_shape, stride, pads = problem(name)
        x, w = operand(rng.integers(-3, 4, x_shape), prec), operand(rng.integers(-3, 4, w_shape), prec)
        b = rng.integers(-3, 4, w_shape[3]).astype(np.float32)
        for out in ("float32", "operand"):
            got = dev.conv2d_bias_relu_maxpool_tensor_op(x, w, b, stride, pads,
                                                         out_dtype=OPERAND[prec] if out == "operand" else None)
            for g, want, what in zip(got, unfused(x, w, b, prec, stride, pads, out), ("y", "argmax")):
                assert_same(g, want, exact=True, what=f"{backend} {prec} {name} -> {out} {what}")
