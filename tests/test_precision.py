"""The precision policy (fastconv/precision.py): the API and its errors, per-layer overrides (config,
saving, summary), the reference's operand rounding (backends/reference/rounding.py) bit-exact on chosen
values (ties, NaN, Inf, overflow, subnormals) and against an independent float64 model, and the kernels
in the emulator (KernelOps routed to the tensor-core plans, plans/conv2d.py and plans/gemm.py) against the
reference under tf32 / bf16 / fp16: exact on small integers, toleranced on random floats, with the
fallbacks (C % 8 != 0, odd GEMM sizes) named by fastconv.explain."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import fastconv as fc
from fastconv import precision as policy
from fastconv.backends import backend_status
from fastconv.backends import reference as ref
from fastconv.backends.plans.cast import to_compute
from fastconv.backends.plans.tensor_op import float32_to_bf16_bits
from fastconv.backends.reference.rounding import round_bf16, round_fp16, round_operand, round_tf32
from fastconv.functional import conv2d, dense
from fastconv.layers import Conv2D, Dense, Flatten, MaxPooling2D
from fastconv.tensor import Tensor

REDUCED = ("tf32", "bf16", "fp16")
needs_emu = pytest.mark.skipif(not backend_status()["emulated"][0], reason="fastconv._emu is not built")


@pytest.fixture(autouse=True)
def clean_policy(monkeypatch):
    monkeypatch.delenv(policy.ENV, raising=False)
    monkeypatch.setattr(policy, "_policy", None)


@pytest.fixture
def rng(request):
    """Seeded from the test id: fresh random inputs per test, reproducible failures."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


def f32(bits):
    return np.array(bits, np.uint32).view(np.float32)


def bits(a):
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


# ---- the API -----------------------------------------------------------------------------------
def test_default_set_get_and_exports():
    assert fc.get_precision() == "fp32"
    fc.set_precision("BF16")
    assert fc.get_precision() == "bf16" and policy.get_precision() == "bf16"
    fc.set_precision("fp32")
    assert fc.get_precision() == "fp32"


def test_using_restores_the_previous_policy_even_on_error():
    fc.set_precision("tf32")
    with policy.using("fp16") as p:
        assert p == "fp16" and fc.get_precision() == "fp16"
        with policy.using("bf16"):
            assert fc.get_precision() == "bf16"
        assert fc.get_precision() == "fp16"
    assert fc.get_precision() == "tf32"
    with pytest.raises(KeyError):
        with policy.using("bf16"):
            raise KeyError("boom")
    assert fc.get_precision() == "tf32"


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("FASTCONV_PRECISION", "fp16")
    assert fc.get_precision() == "fp16"
    fc.set_precision("bf16")   # an explicit choice wins over the environment
    assert fc.get_precision() == "bf16"
    monkeypatch.setattr(policy, "_policy", None)
    monkeypatch.setenv("FASTCONV_PRECISION", "half")
    with pytest.raises(ValueError, match=r"FASTCONV_PRECISION must be one of \['fp32', 'tf32', 'bf16', 'fp16'\], "
                                         r"got 'half'"):
        fc.get_precision()


@pytest.mark.parametrize("bad", ["fp8", "float16", "", None, 16, "bf 16"])
def test_bad_names_are_value_errors(bad):
    with pytest.raises(ValueError, match="precision must be one of"):
        fc.set_precision(bad)
    with pytest.raises(ValueError, match="precision must be one of"):
        with policy.using(bad):
            pass
    assert fc.get_precision() == "fp32"


def test_layer_precision_errors_name_the_layer():
    with pytest.raises(ValueError, match="Conv2D 'c1' precision must be one of"):
        Conv2D(4, 3, precision="int8", name="c1")
    with pytest.raises(ValueError, match="Dense 'd1' precision must be one of"):
        Dense(4, precision="fp64", name="d1")
    with pytest.raises(ValueError, match="compile\\(precision=...\\) must be one of"):
        fc.Sequential([Dense(2, input_shape=(3,))]).compile(loss="mse", precision="f16")
    x = np.ones((1, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match="precision must be one of"):
        conv2d(x, np.ones((1, 1, 1, 1), np.float32), precision="fp12")


def test_layer_override_config_summary_and_saving(tmp_path):
    model = fc.Sequential([Conv2D(4, 3, activation="relu", input_shape=(6, 6, 2), precision="bf16", name="c"),
                           MaxPooling2D(2), Flatten(), Dense(3, precision="fp16", name="d"), Dense(2, name="plain")])
    model.compile(optimizer="adam", loss="mse", precision="tf32")
    layers = {layer.name: layer for layer in model.layers}
    conv, plain = layers["c"], layers["plain"]
    assert conv.get_config()["precision"] == "bf16" and "precision" not in plain.get_config()
    text = model.summary(print_fn=None)
    assert "c (Conv2D) [bf16]" in text and "d (Dense) [fp16]" in text and "plain (Dense) " in text
    assert "plain (Dense) [" not in text
    path = tmp_path / "m.fastconv"
    model.save(path)
    loaded = fc.load_model(path)
    layers = {layer.name: layer for layer in loaded.layers}
    assert layers["c"].precision == "bf16" and layers["d"].precision == "fp16" and layers["plain"].precision is None
    assert loaded.precision == "tf32"
    x = np.random.default_rng(0).random((2, 6, 6, 2), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


# ---- the reference rounding, bit-exact -----------------------------------------------------------
ONE = 0x3F800000


def test_round_tf32_chosen_values():
    cases = {   # input bits -> output bits (cvt.rna.tf32.f32: nearest, ties away from zero)
        ONE: ONE,
        ONE + 0x1000: ONE + 0x2000,                     # 1 + 2^-11: a tie, away from zero (RNE would give 1)
        0x80000000 | (ONE + 0x1000): 0x80000000 | (ONE + 0x2000),
        ONE + 0x0FFF: ONE,                              # just below the tie
        ONE + 0x3000: ONE + 0x4000,                     # tie above an odd mantissa
        0x7F7FE000: 0x7F7FE000,                         # the largest tf32
        0x7F7FFFFF: 0x7F800000,                         # float32 max rounds up past it: inf
        0x7F7FEFFF: 0x7F7FE000,
        0x7F800000: 0x7F800000, 0xFF800000: 0xFF800000,  # +-inf
        0x7FC00001: 0x7FFFFFFF, 0xFFC00000: 0x7FFFFFFF, 0x7F800001: 0x7FFFFFFF,   # NaN -> canonical
        0x00000000: 0x00000000, 0x80000000: 0x80000000,
        0x00001000: 0x00002000, 0x00000FFF: 0x00000000,  # subnormals: same rule on the raw bits
    }
    got = bits(round_tf32(f32(list(cases))))
    np.testing.assert_array_equal(got, np.array(list(cases.values()), np.uint32))


def test_round_bf16_chosen_values():
    cases = {   # nearest, ties to even
        ONE: ONE,
        ONE + 0x8000: ONE,                              # 1 + 2^-8: a tie, down to the even 1.0
        ONE + 0x18000: ONE + 0x20000,                   # a tie above an odd mantissa: up
        ONE + 0x8001: ONE + 0x10000,
        ONE + 0x7FFF: ONE,
        0xBF808000: 0xBF800000,                         # -(1 + 2^-8): symmetric
        0x7F7F7FFF: 0x7F7F0000, 0x7F7F8000: 0x7F800000,  # the tie at the top goes to inf (odd below)
        0x7F7EFFFF: 0x7F7F0000,
        0x7F800000: 0x7F800000, 0xFF800000: 0xFF800000,
        0x00008000: 0x00000000, 0x00018000: 0x00020000,  # subnormal ties
    }
    got = bits(round_bf16(f32(list(cases))))
    np.testing.assert_array_equal(got, np.array(list(cases.values()), np.uint32))
    nan = round_bf16(f32([0x7FC00001, 0xFFFFFFFF, 0x7F800001]))
    assert np.isnan(nan).all() and not (bits(nan) & 0xFFFF).any()


def test_round_fp16_chosen_values():
    x = np.array([1.0, 1 + 2**-11, 1 + 3 * 2**-11, 65504.0, 65519.99, 65520.0, 1e5, -1e5, 2.0**-25,
                  3 * 2.0**-25, 2.0**-26, np.inf, -np.inf, -0.0], np.float32)
    want = np.array([1.0, 1.0, 1 + 2**-9, 65504.0, 65504.0, np.inf, np.inf, -np.inf, 0.0, 2.0**-23, 0.0,
                     np.inf, -np.inf, -0.0], np.float32)
    np.testing.assert_array_equal(bits(round_fp16(x)), bits(want))
    assert np.isnan(round_fp16(np.array([np.nan], np.float32))).all()


def _round_model(x, mantissa_bits, ties_even):
    """Rounding of normal float32 values to `mantissa_bits` in float64 arithmetic (frexp/ldexp)."""
    m, e = np.frexp(x.astype(np.float64))          # x = m 2^e, 0.5 <= |m| < 1
    scaled = np.abs(m) * 2.0 ** (mantissa_bits + 1)
    r = np.round(scaled) if ties_even else np.floor(scaled + 0.5)   # np.round: ties to even
    return (np.sign(m) * np.ldexp(r, e - mantissa_bits - 1)).astype(np.float32)


def test_rounding_matches_a_float64_model_on_random_normals(rng):
    x = (rng.standard_normal(20000) * np.exp2(rng.integers(-60, 60, 20000))).astype(np.float32)
    # force exact ties into the sample: low bits exactly half an ulp of tf32 and of bf16
    u = bits(x).copy()
    u[:2000] = (u[:2000] & 0xFFFFE000) | 0x1000
    u[2000:4000] = (u[2000:4000] & 0xFFFF0000) | 0x8000
    x = u.view(np.float32)
    np.testing.assert_array_equal(bits(round_tf32(x)), bits(_round_model(x, 10, ties_even=False)))
    np.testing.assert_array_equal(bits(round_bf16(x)), bits(_round_model(x, 7, ties_even=True)))
    # the kernels' own bf16 helper (plans/tensor_op.py) agrees with the oracle on every non-NaN input
    np.testing.assert_array_equal(float32_to_bf16_bits(np, x), (bits(round_bf16(x)) >> 16).astype(np.uint16))


def test_round_operand_leaves_fp32_and_float64_alone(rng):
    x = rng.standard_normal(50).astype(np.float32)
    assert round_operand(x, None) is x and round_operand(x, "fp32") is x
    d = x.astype(np.float64)
    assert round_operand(d, "bf16") is d
    for p in REDUCED:
        assert round_operand(x, p).dtype == np.float32
        assert not np.array_equal(round_operand(x, p), x)   # random floats do move


# ---- the reference under the policy ----------------------------------------------------------------
def test_reference_ops_round_their_operands(rng):
    x = rng.standard_normal((2, 7, 6, 5)).astype(np.float32)
    w = rng.standard_normal((3, 3, 5, 4)).astype(np.float32)
    pads = ((1, 1), (0, 1))
    for p in REDUCED:
        r = lambda a: round_operand(a, p)
        y = ref.conv2d_fprop(x, w, (1, 2), pads, (1, 1), 1, precision=p)
        assert y.dtype == np.float32
        np.testing.assert_array_equal(y, ref.conv2d_fprop(r(x), r(w), (1, 2), pads, (1, 1), 1))
        assert not np.allclose(y, ref.conv2d_fprop(x, w, (1, 2), pads, (1, 1), 1), rtol=1e-5, atol=1e-5)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        np.testing.assert_array_equal(ref.conv2d_dgrad(dy, w, x.shape, (1, 2), pads, (1, 1), 1, precision=p),
                                      ref.conv2d_dgrad(r(dy), r(w), x.shape, (1, 2), pads, (1, 1), 1))
        np.testing.assert_array_equal(ref.conv2d_wgrad(x, dy, w.shape, (1, 2), pads, (1, 1), 1, precision=p),
                                      ref.conv2d_wgrad(r(x), r(dy), w.shape, (1, 2), pads, (1, 1), 1))
        a, b, bias = x.reshape(12, -1)[:, :10], rng.standard_normal((10, 3)).astype(np.float32), w[0, 0, 0, :3]
        np.testing.assert_array_equal(ref.dense_fprop(a, b, bias, precision=p), r(a) @ r(b) + bias)
        g = rng.standard_normal((12, 3)).astype(np.float32)
        dx, dw, db = ref.dense_bprop(g, a, b, precision=p)
        np.testing.assert_array_equal(dx, r(g) @ r(b).T)
        np.testing.assert_array_equal(dw, r(a).T @ r(g))
        np.testing.assert_array_equal(db, g.sum(axis=0))


def test_fp16_overflows_on_the_cpu_too():
    x = np.full((1, 3, 3, 2), 7e4, np.float32)     # above fp16's 65504
    w = np.full((1, 1, 2, 1), 0.5, np.float32)
    assert np.isinf(ref.conv2d_fprop(x, w, precision="fp16")).all()
    assert np.isfinite(ref.conv2d_fprop(x, w, precision="bf16")).all()
    with policy.using("fp16"):
        assert np.isinf(conv2d(x, w).numpy()).all()


def test_functional_ops_follow_the_policy_forward_and_backward(rng):
    xv = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    wv = rng.standard_normal((3, 3, 3, 4)).astype(np.float32)
    for p in REDUCED:
        x, w = Tensor(xv, requires_grad=True), Tensor(wv, requires_grad=True)
        with policy.using(p):
            y = conv2d(x, w, padding="same")
        g = rng.standard_normal(y.shape).astype(np.float32)
        y.backward(g)   # outside the block: the op keeps the precision of its forward
        pads = ((1, 1), (1, 1))
        np.testing.assert_array_equal(y.numpy(), ref.conv2d_fprop(xv, wv, (1, 1), pads, precision=p))
        np.testing.assert_array_equal(x.grad, ref.conv2d_dgrad(g, wv, xv.shape, (1, 1), pads, (1, 1), 1, precision=p))
        np.testing.assert_array_equal(w.grad, ref.conv2d_wgrad(xv, g, wv.shape, (1, 1), pads, (1, 1), 1, precision=p))
        # a per-call precision wins over the policy
        with policy.using("fp32"):
            np.testing.assert_array_equal(conv2d(xv, wv, precision=p).numpy(), ref.conv2d_fprop(xv, wv, precision=p))
        a = xv.reshape(2, -1)[:, :7]
        np.testing.assert_array_equal(dense(a, wv.reshape(-1, 4)[:7], precision=p).numpy(),
                                      ref.dense_fprop(a, wv.reshape(-1, 4)[:7], precision=p))


# ---- the kernels (emulator) against the reference under each policy --------------------------------
def emu_ops():
    from fastconv.backends import emulated
    return emulated.ops()


def notes(report):
    return " | ".join(e.text for e in report.events if e.kind == "note")


# Relative to sum |products|: both sides multiply the same rounded operands exactly and differ only in
# the fp32 summation order (K <= 72 terms here), far below 1e-5; a missing rounding step is ~1e-3 (tf32),
# ~1e-2 (bf16) off.
SUM_TOL = 1e-5


def assert_close_sums(got, want, scale, what):
    err = np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)) / np.maximum(scale, 1e-30))
    assert got.dtype == want.dtype == np.float32, what
    assert err < SUM_TOL, f"{what}: max error {err:.3g} of sum |products|"


CONV_CASES = {   # name: x shape, w shape, stride, padding, tensor cores expected for fprop
    "c8_tensor_core": ((2, 6, 5, 8), (3, 3, 8, 16), (1, 1), ((1, 1), (1, 1)), True),
    "c16_s2_partial": ((1, 9, 7, 16), (3, 3, 16, 24), (2, 2), ((0, 1), (1, 0)), True),
    "c3_fallback": ((2, 6, 6, 3), (3, 3, 3, 16), (1, 1), ((0, 0), (0, 0)), False),
}


@needs_emu
@pytest.mark.parametrize("prec", REDUCED)
@pytest.mark.parametrize("case", list(CONV_CASES))
def test_emulated_conv_matches_the_reference(case, prec, rng):
    x_shape, w_shape, stride, pads, tensor_core = CONV_CASES[case]
    ops = emu_ops()
    args = (stride, pads, (1, 1), 1)
    # small integers: exact in every format, every sum exact in fp32 -> equality
    xi = rng.integers(-3, 4, x_shape).astype(np.float32)
    wi = rng.integers(-3, 4, w_shape).astype(np.float32)
    report = fc.explain(lambda: ops.conv2d_fprop(xi, wi, *args, precision=prec))
    np.testing.assert_array_equal(report.result, ref.conv2d_fprop(xi, wi, *args, precision=prec))
    kernel = report.kernels[-1]
    if tensor_core:
        assert kernel.startswith("fc::conv2d_fprop_tensor_op<"), kernel
    else:
        assert kernel.startswith("fc::conv2d_fprop_implicit_gemm<"), kernel
        assert f"C={x_shape[3]} is not a multiple of 8" in notes(report)
    assert f"precision {prec}: conv2d_fprop operands cast to {prec}" in notes(report)
    # random floats, fprop / dgrad / wgrad
    x = rng.standard_normal(x_shape).astype(np.float32)
    w = rng.standard_normal(w_shape).astype(np.float32)
    y = ops.conv2d_fprop(x, w, *args, precision=prec)
    want = ref.conv2d_fprop(x, w, *args, precision=prec)
    assert_close_sums(y, want, ref.conv2d_fprop(np.abs(x), np.abs(w), *args), f"{case} {prec} fprop")
    dy = rng.standard_normal(y.shape).astype(np.float32)
    rep = fc.explain(lambda: ops.conv2d_dgrad(dy, w, x_shape, *args, precision=prec))
    assert_close_sums(rep.result, ref.conv2d_dgrad(dy, w, x_shape, *args, precision=prec),
                      ref.conv2d_dgrad(np.abs(dy), np.abs(w), x_shape, *args), f"{case} {prec} dgrad")
    rep = fc.explain(lambda: ops.conv2d_wgrad(x, dy, w_shape, *args, precision=prec))
    assert_close_sums(rep.result, ref.conv2d_wgrad(x, dy, w_shape, *args, precision=prec),
                      ref.conv2d_wgrad(np.abs(x), np.abs(dy), w_shape, *args), f"{case} {prec} wgrad")


DENSE_CASES = {"even": (5, 24, 10), "odd_n": (4, 12, 7), "odd_k": (3, 9, 6)}   # M, K, N


@needs_emu
@pytest.mark.parametrize("prec", REDUCED)
@pytest.mark.parametrize("case", list(DENSE_CASES))
def test_emulated_dense_matches_the_reference(case, prec, rng):
    m, k, n = DENSE_CASES[case]
    ops = emu_ops()
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    report = fc.explain(lambda: ops.dense_fprop(x, w, b, precision=prec))
    scale = np.abs(x) @ np.abs(w) + np.abs(b)
    assert_close_sums(report.result, ref.dense_fprop(x, w, b, precision=prec), scale, f"{case} {prec} fprop")
    odd16 = prec != "tf32" and (k % 2 or n % 2)
    if odd16:
        assert "CUDA-core GEMM (fp32)" in notes(report) and report.kernels[-1].startswith("fc::gemm_bias_act<")
    else:   # 16-bit with K % 8 == 0: the sm_90a wgmma GEMM, which the emulator runs for any size
        wgmma = prec != "tf32" and k % 8 == 0
        kernel = "fc::gemm_wgmma<" if wgmma else "fc::gemm_tensor_op<"
        assert "tensor-core GEMM" in notes(report) and report.kernels[-1].startswith(kernel)
    xi, wi = rng.integers(-3, 4, (m, k)).astype(np.float32), rng.integers(-3, 4, (k, n)).astype(np.float32)
    np.testing.assert_array_equal(ops.dense_fprop(xi, wi, precision=prec), ref.dense_fprop(xi, wi, precision=prec))
    dy = rng.standard_normal((m, n)).astype(np.float32)
    got = ops.dense_bprop(dy, x, w, precision=prec)
    want = ref.dense_bprop(dy, x, w, precision=prec)
    assert_close_sums(got[0], want[0], np.abs(dy) @ np.abs(w).T, f"{case} {prec} dx")
    assert_close_sums(got[1], want[1], np.abs(x).T @ np.abs(dy), f"{case} {prec} dw")
    np.testing.assert_allclose(got[2], want[2], rtol=1e-5, atol=1e-5)
    assert ops.dense_bprop(dy, x, w, need_dx=False, precision=prec)[0] is None


@needs_emu
@pytest.mark.parametrize("prec", REDUCED)
def test_cast_kernels_match_the_rounding_oracle_bitwise(prec, rng):
    """csrc/ops/cast.h (through plans/cast.py to_compute) against backends/reference/rounding.py, on random
    values of every magnitude, exact ties of each format, overflow, subnormals, +-0, +-inf and NaN."""
    x = (rng.standard_normal(3000) * np.exp2(rng.integers(-140, 128, 3000))).astype(np.float32)
    u = bits(x).copy()
    u[:300] = (u[:300] & 0xFFFFE000) | 0x1000          # tf32 ties
    u[300:600] = (u[300:600] & 0xFFFF0000) | 0x8000    # bf16 ties
    u[600:900] = (u[600:900] & 0xFFFFE000) | 0x1000    # fp16 ties (in its normal range below)
    x = u.view(np.float32)
    x[600:900] = np.ldexp(np.float32(1) + np.float32(2.0 ** -11) * (2 * rng.integers(0, 1024, 300) + 1),
                          rng.integers(-14, 15, 300)).astype(np.float32)
    x[-12:] = [65504, 65519.99, 65520, -7e4, 2.0 ** -25, 3 * 2.0 ** -25, 1e-40, 0.0, -0.0, np.inf, -np.inf, np.nan]
    ops = emu_ops()
    report = fc.explain(lambda: to_compute(ops, x, prec))
    got = report.result
    assert report.kernels == [{"tf32": "fc::round_tf32_kernel<float>", "fp16": "fc::cast_fp32_kernel<__half>",
                               "bf16": "fc::cast_fp32_kernel<__nv_bfloat16>"}[prec]]
    want = round_operand(x, prec)
    nan = np.isnan(want)
    if prec == "fp16":
        assert got.dtype == np.float16
        np.testing.assert_array_equal(got.view(np.uint16)[~nan], want[~nan].astype(np.float16).view(np.uint16))
        assert np.isnan(got[nan]).all()
    elif prec == "bf16":
        assert got.dtype == np.uint16
        np.testing.assert_array_equal(got[~nan], (bits(want[~nan]) >> 16).astype(np.uint16))
        assert ((got[nan] & 0x7F80) == 0x7F80).all() and (got[nan] & 0x7F).all()   # a NaN
    else:
        assert got.dtype == np.float32
        np.testing.assert_array_equal(bits(got), bits(want))   # NaN -> 0x7fffffff on both sides


@needs_emu
@pytest.mark.parametrize("prec, tag", [("tf32", "Tf32"), ("bf16", "Bf16"), ("fp16", "F16")])
def test_dgrad_and_wgrad_launch_the_tensor_core_kernels_and_match_the_reference(prec, tag, rng):
    """Under a reduced policy, a conv's backward runs the tensor-core dgrad / wgrad kernels
    (csrc/conv/*_tensor_op_sm80.h) on operands cast to the compute format, and matches the rounding oracle."""
    ops = emu_ops()
    x = rng.standard_normal((1, 5, 5, 8)).astype(np.float32)
    w = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    dy = rng.standard_normal((1, 3, 3, 8)).astype(np.float32)
    args = ((1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    rep = fc.explain(lambda: ops.conv2d_dgrad(dy, w, x.shape, *args, precision=prec))
    assert "conv2d_dgrad on the tensor-core plan" in notes(rep)
    assert any(k.startswith(f"fc::conv2d_dgrad_tensor_op<fc::TensorOp{tag}") for k in ops.executor.launched)
    assert rep.result.dtype == np.float32
    assert_close_sums(rep.result, ref.conv2d_dgrad(dy, w, x.shape, *args, precision=prec),
                      ref.conv2d_dgrad(np.abs(dy), np.abs(w), x.shape, *args), "dgrad")
    dw = ops.conv2d_wgrad(x, dy, w.shape, *args, precision=prec)
    assert any(k.startswith(f"fc::conv2d_wgrad_tensor_op<fc::TensorOp{tag}") for k in ops.executor.launched)
    assert dw.dtype == np.float32
    assert_close_sums(dw, ref.conv2d_wgrad(x, dy, w.shape, *args, precision=prec),
                      ref.conv2d_wgrad(np.abs(x), np.abs(dy), w.shape, *args), "wgrad")


def test_a_layer_fp32_override_beats_a_reduced_policy(rng):
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    fc.set_seed(0)
    layer_fp32, layer_default = Conv2D(4, 3, precision="fp32"), Conv2D(4, 3)
    fc.set_precision("bf16")
    y32, ybf = layer_fp32(Tensor(x)).numpy(), layer_default(Tensor(x)).numpy()
    w32, wbf = layer_fp32.params["kernel"].data, layer_default.params["kernel"].data
    np.testing.assert_array_equal(y32, ref.conv2d_fprop(x, w32))
    np.testing.assert_array_equal(ybf, ref.conv2d_fprop(x, wbf, precision="bf16"))


@needs_emu
def test_emulated_fp16_overflows_like_the_reference():
    ops = emu_ops()
    x = np.full((1, 3, 3, 8), 7e4, np.float32)
    w = np.full((1, 1, 8, 8), 0.5, np.float32)
    assert np.isinf(ops.conv2d_fprop(x, w, precision="fp16")).all()
    assert np.isinf(ref.conv2d_fprop(x, w, precision="fp16")).all()
    assert np.isinf(ops.dense_fprop(x.reshape(9, 8), w.reshape(8, 8), precision="fp16")).all()


@needs_emu
def test_emulated_float64_ignores_the_policy(rng):
    ops = emu_ops()
    x = rng.standard_normal((1, 4, 4, 8))
    w = rng.standard_normal((1, 1, 8, 8))
    report = fc.explain(lambda: ops.conv2d_fprop(x, w, precision="bf16"))
    assert report.result.dtype == np.float64
    np.testing.assert_allclose(report.result, ref.conv2d_fprop(x, w), rtol=1e-12)
    assert "precision bf16 ignored" in notes(report)


@needs_emu
@pytest.mark.parametrize("prec", REDUCED)
def test_functional_conv_on_the_emulated_backend_routes_the_policy(prec, monkeypatch, rng):
    """The whole path: policy -> functional conv2d -> backend choice -> KernelOps routing, forward and
    backward, and the fused conv + ReLU + pool, which stays fused under a reduced precision (on tensor cores in
    bf16 / fp16; tf32 has no tensor-core instantiation of it: the CUDA-core fused kernel on tf32-rounded operands)."""
    from fastconv.functional.fused import conv2d_bias_relu_maxpool
    xv = rng.standard_normal((2, 6, 6, 8)).astype(np.float32)
    wv = rng.standard_normal((3, 3, 8, 8)).astype(np.float32)
    g = rng.standard_normal((2, 6, 6, 8)).astype(np.float32)

    def run():
        x, w = Tensor(xv, requires_grad=True), Tensor(wv, requires_grad=True)
        with policy.using(prec):
            y = conv2d(x, w, padding="same")
        y.backward(g)
        return y.numpy(), x.grad, w.grad

    want = run()
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    report = fc.explain(run)
    assert any(k.startswith("fc::conv2d_fprop_tensor_op<") for k in report.kernels), report.kernels
    for got, exp, scale_of in zip(report.result, want, ("y", "dx", "dw")):
        np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-4 * np.abs(exp).max(), err_msg=scale_of)
    with policy.using(prec):
        report = fc.explain(lambda: conv2d_bias_relu_maxpool(xv, wv, padding="same").numpy())
        monkeypatch.delenv("FASTCONV_BACKEND")
        fused_ref = conv2d_bias_relu_maxpool(xv, wv, padding="same").numpy()
    fused = "conv2d_bias_relu_maxpool2x2_fprop<" if prec == "tf32" else "conv2d_bias_relu_maxpool2x2_tensor_op<"
    assert any(fused in k for k in report.kernels), report.kernels
    assert not any("max_pool2d_fprop" in k for k in report.kernels), report.kernels
    np.testing.assert_allclose(report.result, fused_ref, rtol=1e-4, atol=1e-4 * np.abs(fused_ref).max())


# ---- on a GPU (skipped here; run with `python -m pytest tests/test_precision.py -m gpu`) -------------
@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["native", "jit"])
@pytest.mark.parametrize("prec", REDUCED)
def test_gpu_tensor_core_routing_matches_the_reference(backend, prec, rng):
    from fastconv.backends.device import cuda_status
    ok, why = cuda_status()
    if not ok:
        pytest.skip(why)
    from fastconv.backends import jit, native
    module = native if backend == "native" else jit
    ready, reason = module.status()
    if not ready:
        pytest.skip(reason)
    import cupy
    ops = module._ops()
    x = rng.standard_normal((4, 10, 9, 16)).astype(np.float32)
    w = rng.standard_normal((3, 3, 16, 32)).astype(np.float32)
    args = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    report = fc.explain(lambda: ops.conv2d_fprop(cupy.asarray(x), cupy.asarray(w), *args, precision=prec))
    assert any(k.startswith("fc::conv2d_fprop_tensor_op<") for k in report.kernels), report.kernels
    assert_close_sums(report.result.get(), ref.conv2d_fprop(x, w, *args, precision=prec),
                      ref.conv2d_fprop(np.abs(x), np.abs(w), *args), f"{backend} {prec} conv fprop")
    a = rng.standard_normal((33, 40)).astype(np.float32)
    b = rng.standard_normal((40, 24)).astype(np.float32)
    got = ops.dense_fprop(cupy.asarray(a), cupy.asarray(b), precision=prec).get()
    assert_close_sums(got, ref.dense_fprop(a, b, precision=prec), np.abs(a) @ np.abs(b), f"{backend} {prec} dense")
    dy = rng.standard_normal((33, 24)).astype(np.float32)
    dx, dw, db = (v.get() for v in ops.dense_bprop(cupy.asarray(dy), cupy.asarray(a), cupy.asarray(b),
                                                    precision=prec))
    want = ref.dense_bprop(dy, a, b, precision=prec)
    assert_close_sums(dx, want[0], np.abs(dy) @ np.abs(b).T, f"{backend} {prec} dx")
    assert_close_sums(dw, want[1], np.abs(a).T @ np.abs(dy), f"{backend} {prec} dw")
