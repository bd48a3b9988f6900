"""The fused conv2d + bias + ReLU + 2x2/2 max-pool kernels (csrc/fused/), run by the CPU SIMT emulator
through their launch plans, against the reference (fastconv/backends/reference/fused.py, itself
composed of the unfused reference ops). Small-integer data compares exactly (ties after ReLU are
everywhere, so the first-max rule is exercised); random floats with tolerances; forward and reverse
thread orders; odd P/Q (the dropped row/column), partial tiles in M and K, every tile / load width /
index path, float64, no bias, a pool larger than the conv output refused. Also: nvcc and NVRTC builds for sm_80 and sm_90a
with no spills."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from fastconv.backends import reference as ref
from fastconv.shapes import conv2d_output_shape, resolve_padding
from conftest import assert_same, emulated_ops
from problems import conv_args

# name: (x shape NHWC, w shape (R, S, C/groups, K), stride, padding, dilation, groups) — conv output
# P x Q noted; the pool keeps P//2 x Q//2.
FUSED = {
    "odd_pq_vec4": ((2, 9, 13, 8), (3, 3, 8, 12), (1, 1), "valid", (1, 1), 1),   # 7 x 11; M = 120, K = 12
    "same_s2_c3": ((1, 11, 9, 3), (3, 3, 3, 5), (2, 2), "same", (1, 1), 1),      # 6 x 5
}
FROM_CONV = ("asym_pad_s3x2", "groups2_dil2_vec4", "k40_s2", "depthwise_x2")   # 4x5, 6x5, 5x5, 5x5


def args(name):
    if name not in FUSED:
        return conv_args(name)
    x_shape, w_shape, stride, pad, dil, groups = FUSED[name]
    return x_shape, w_shape, stride, resolve_padding(pad, x_shape[1:3], w_shape[:2], stride, dil), dil, groups


CASES = [(p, {}) for p in (*FUSED, *FROM_CONV)]
CASES += [("odd_pq_vec4", {"force_tile": "TileLarge"}), ("k40_s2", {"force_tile": "TileLarge"}),
          ("odd_pq_vec4", {"force_vec": 1}), ("odd_pq_vec4", {"force_index64": True}),
          ("asym_pad_s3x2", {"force_index64": True})]
ORDERS = ("forward", "reverse")


def data(rng, shape, ints, dtype):
    return (rng.integers(-3, 4, shape) if ints else rng.standard_normal(shape)).astype(dtype)


def case_id(c):
    return c[0] + "".join(f"-{k}={v}" for k, v in c[1].items())


def inputs(rng, name, ints, dtype, bias=True):
    x_shape, w_shape, stride, pads, dil, groups = args(name)
    a = {"x": data(rng, x_shape, ints, dtype), "w": data(rng, w_shape, ints, dtype),
         "b": data(rng, (w_shape[3],), ints, dtype) if bias else None}
    conv = (x_shape, w_shape, stride, pads, dil, groups)
    return a, conv


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("ints", [True, False], ids=["ints", "floats"])
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fused_fprop_matches_reference(case, ints, order, rng):
    name, knobs = case
    a, (_, _, stride, pads, dil, groups) = inputs(rng, name, ints, np.float32)
    ops = emulated_ops(order, **knobs)
    got = ops.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups)
    want = ref.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups)
    assert_same(got[0], want[0], ints, what=f"{name} y")
    assert_same(got[1], want[1], True, what=f"{name} argmax")
    assert ops.executor.launched == ([] if want[0].size == 0 else ops.executor.launched[:1])
    assert all("conv2d_bias_relu_maxpool2x2_fprop" in k for k in ops.executor.launched)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("ints", [True, False], ids=["ints", "floats"])
@pytest.mark.parametrize("case", [(p, {}) for p in (*FUSED, *FROM_CONV)] + [("odd_pq_vec4", {"force_splits": 3})],
                         ids=case_id)
def test_fused_bprop_matches_reference(case, ints, order, rng):
    name, knobs = case
    a, (x_shape, w_shape, stride, pads, dil, groups) = inputs(rng, name, ints, np.float32)
    y, argmax = ref.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups)
    conv_shape = conv2d_output_shape(x_shape, w_shape, stride, pads, dil)
    dy = data(rng, y.shape, ints, np.float32)
    ops = emulated_ops(order, **knobs)
    dz, db = ops.relu_maxpool_bprop(dy, argmax, y, conv_shape)
    dz_ref, db_ref = ref.relu_maxpool_bprop(dy, argmax, y, conv_shape)
    assert_same(dz, dz_ref, True, what=f"{name} dz")          # routing only: exact for any data
    assert_same(db, db_ref, ints, rtol=1e-5, atol=1e-5, what=f"{name} db")


def test_fused_reference_is_the_unfused_chain(rng):
    """The oracle itself: the fused reference equals the unfused reference ops, step by step."""
    a, (x_shape, w_shape, stride, pads, dil, groups) = inputs(rng, "odd_pq_vec4", False, np.float64)
    z = ref.conv2d_fprop(a["x"], a["w"], stride, pads, dil, groups) + a["b"]
    r = ref.relu_fprop(z)
    y, argmax = ref.max_pool2d_fprop(r, (2, 2), (2, 2), ((0, 0), (0, 0)))
    got_y, got_arg = ref.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups)
    assert np.array_equal(got_y, y) and np.array_equal(got_arg, argmax)
    assert y.shape == (2, 3, 5, 12) and z.shape == (2, 7, 11, 12)   # odd P, Q: the last row/column dropped
    dy = rng.standard_normal(y.shape)
    dz = ref.relu_bprop(ref.max_pool2d_bprop(dy, argmax, z.shape, (2, 2), (2, 2), ((0, 0), (0, 0))), z)
    got_dz, got_db = ref.relu_maxpool_bprop(dy, argmax, y, z.shape)
    assert np.array_equal(got_dz, dz) and np.array_equal(got_db, dz.sum(axis=(0, 1, 2)))
    assert not got_dz[:, 6].any() and not got_dz[:, :, 10].any()


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_fused_float64_and_no_bias(bias, rng):
    for ints in (True, False):
        a, (x_shape, w_shape, stride, pads, dil, groups) = inputs(rng, "asym_pad_s3x2", ints, np.float64, bias)
        ops = emulated_ops()
        got = ops.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups)
        want = ref.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups)
        assert_same(got[0], want[0], ints, rtol=1e-12, atol=1e-12, what="y")
        assert_same(got[1], want[1], True, what="argmax")
        dy = data(rng, want[0].shape, ints, np.float64)
        conv_shape = conv2d_output_shape(x_shape, w_shape, stride, pads, dil)
        for g, w in zip(ops.relu_maxpool_bprop(dy, want[1], want[0], conv_shape),
                        ref.relu_maxpool_bprop(dy, want[1], want[0], conv_shape)):
            assert_same(g, w, ints, rtol=1e-12, atol=1e-12, what="dz/db")


def test_fused_nan_and_tie_rules(rng):
    """A NaN conv output wins its window (first NaN); ties keep the first tap; ReLU zeros tie."""
    x = np.zeros((1, 2, 4, 1), np.float32)
    x[0, 1, 2, 0] = np.nan      # window (0, 1): tap 2 is NaN
    x[0, 0, 0, 0] = x[0, 1, 1, 0] = 5.0   # window (0, 0): taps 0 and 3 tie at 5
    w = np.ones((1, 1, 1, 1), np.float32)
    ops = emulated_ops()
    got = ops.conv2d_bias_relu_maxpool_fprop(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    want = ref.conv2d_bias_relu_maxpool_fprop(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    assert_same(got[0], want[0], True, what="y")
    assert_same(got[1], want[1], True, what="argmax")
    assert want[1].ravel().tolist() == [0, 2] and np.isnan(want[0].ravel()[1])


def test_fused_pool_other_than_2x2_or_larger_than_the_conv_output_is_refused():
    ops = emulated_ops()
    x, w = np.zeros((1, 6, 6, 1), np.float32), np.zeros((1, 1, 1, 1), np.float32)
    x1, w3 = np.zeros((1, 3, 6, 4), np.float32), np.zeros((3, 3, 4, 4), np.float32)   # conv output 1 x 4
    for B in (ops, ref):   # as the unfused chain: the pool refuses a window larger than its input
        with pytest.raises(ValueError, match="pool_size height 2"):
            B.conv2d_bias_relu_maxpool_fprop(x1, w3, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    with pytest.raises(NotImplementedError, match="pool \\(2, 2\\) stride \\(2, 2\\)"):
        ops.conv2d_bias_relu_maxpool_fprop(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, (3, 3), (2, 2))


# ---- builds: nvcc and NVRTC for sm_80 and sm_90a, no spills --------------------------------------------
FUSED_KERNELS = [f"fc::conv2d_bias_relu_maxpool2x2_fprop<fc::{cfg}>"
                 for cfg in ("TileLarge, 1, int, float", "TileSmall, 4, int, float", "TileMedium, 4, int64_t, float",
                             "TileSmall, 1, int64_t, double")]
FUSED_KERNELS += ["fc::relu_maxpool2x2_bprop<float>", "fc::relu_maxpool2x2_bprop<double>"]


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_fused_kernels_build_with_nvcc_without_spills(arch):
    import test_compile as tc
    rr = tc.resource_report
    if rr.find_nvcc() is None:
        pytest.skip("nvcc not found")
    try:
        rows = rr.compile_report(arch, FUSED_KERNELS)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"nvcc failed for {arch}:\n{exc.stdout}\n{exc.stderr}")
    assert len(rows) == len(FUSED_KERNELS)
    spilled = [r for r in rows if r.get("spill_stores") or r.get("spill_loads") or r.get("stack")]
    assert not spilled, "kernels with spills or stack frames:\n" + rr.format_table(spilled)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_fused_kernels_build_with_nvrtc(arch):
    pytest.importorskip("cuda.bindings")
    import test_compile as tc
    ok, log = tc._nvrtc_compile(arch, FUSED_KERNELS)
    assert ok, f"NVRTC failed for {arch}:\n{log}"
