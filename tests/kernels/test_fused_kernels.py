"""The fused kernels (csrc/conv/conv2d_bias_relu_maxpool*.h, csrc/norm/batchnorm_relu.h:
conv2d + bias + ReLU + 2x2/2 or 3x3/2 max-pool, batch norm + ReLU), run
by the CPU SIMT emulator through their launch plans, against the reference (fastconv/backends/reference/fused.py, itself
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
FUSED3 = {"patches_13x23": ((1, 15, 25, 4), (3, 3, 4, 6), (1, 1), "valid", (1, 1), 1)}   # 13 x 23 (3x3/2 tests)
FROM_CONV = ("asym_pad_s3x2", "groups2_dil2_vec4", "k40_s2", "depthwise_x2")   # 4x5, 6x5, 5x5, 5x5


def args(name):
    if name not in FUSED and name not in FUSED3:
        return conv_args(name)
    x_shape, w_shape, stride, pad, dil, groups = {**FUSED, **FUSED3}[name]
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


def test_fused_pool_not_covered_or_larger_than_the_conv_output_is_refused():
    ops = emulated_ops()
    x, w = np.zeros((1, 6, 6, 1), np.float32), np.zeros((1, 1, 1, 1), np.float32)
    x1, w3 = np.zeros((1, 3, 6, 4), np.float32), np.zeros((3, 3, 4, 4), np.float32)   # conv output 1 x 4
    for B in (ops, ref):   # as the unfused chain: the pool refuses a window larger than its input
        with pytest.raises(ValueError, match="pool_size height 2"):
            B.conv2d_bias_relu_maxpool_fprop(x1, w3, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    with pytest.raises(NotImplementedError, match="pool \\(2, 2\\) stride \\(2, 2\\)"):
        ops.conv2d_bias_relu_maxpool_fprop(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, (3, 3), (1, 1))


# ---- builds: nvcc and NVRTC for sm_80 and sm_90a, no spills --------------------------------------------
FUSED_KERNELS = [f"fc::conv2d_bias_relu_maxpool2x2_fprop<fc::{cfg}>"
                 for cfg in ("TileLarge, 1, int, float", "TileSmall, 4, int, float", "TileMedium, 4, int64_t, float",
                             "TileSmall, 1, int64_t, double")]
FUSED_KERNELS += ["fc::relu_maxpool2x2_bprop<float>", "fc::relu_maxpool2x2_bprop<double>"]
FUSED_KERNELS += [f"fc::conv2d_bias_relu_maxpool3x3s2_fprop<fc::{cfg}>"
                  for cfg in ("TileMedium, 4, int, float", "TileSmall, 1, int, float", "TileMedium, 1, int64_t, float",
                              "TileSmall, 1, int64_t, double")]
FUSED_KERNELS += [f"fc::relu_maxpool_bprop<{t}, uint8_t>" for t in ("float", "double")]
FUSED_KERNELS += [f"fc::{k}<{t}>" for t in ("float", "double")
                  for k in ("batchnorm_relu_apply_kernel", "batchnorm_relu_infer_kernel",
                            "batchnorm_relu_dparams_partial", "batchnorm_relu_dx_kernel")]


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


# ---- conv2d + bias + ReLU + 3x3/2 max-pool (csrc/conv/conv2d_bias_relu_maxpool3x3.h) -----------------
# name: (conv problem, pool padding spec over the conv output). Conv outputs: odd_pq_vec4 7 x 11,
# same_s2_c3 6 x 5 ('same' pads (0, 1) rows, (1, 1) columns), k40_s2 5 x 5 with K = 40 (two column
# tiles of TileSmall), groups2_dil2_vec4 6 x 5, depthwise_x2 5 x 5, asym_pad_s3x2 4 x 5, and
# patches_13x23 with several patch tiles both ways and a partial last tile.
POOL3 = {"odd_pq_vec4": "valid", "same_s2_c3": "same", "k40_s2": 1, "groups2_dil2_vec4": 1, "depthwise_x2": "same",
         "asym_pad_s3x2": "valid", "patches_13x23": 1}
CASES3 = [(p, {}) for p in POOL3]
CASES3 += [("patches_13x23", {"force_tile": "TileMedium"}), ("patches_13x23", {"force_tile": "TileLarge"}),
           ("odd_pq_vec4", {"force_vec": 1}), ("patches_13x23", {"force_index64": True}),
           ("k40_s2", {"force_tile": "TileMedium"})]


def pool3_args(name, conv_shape):
    return (3, 3), (2, 2), resolve_padding(POOL3[name], conv_shape[1:3], (3, 3), (2, 2))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("ints", [True, False], ids=["ints", "floats"])
@pytest.mark.parametrize("case", CASES3, ids=case_id)
def test_fused3x3_fprop_matches_reference(case, ints, order, rng):
    name, knobs = case
    a, (x_shape, w_shape, stride, pads, dil, groups) = inputs(rng, name, ints, np.float32)
    pool = pool3_args(name, conv2d_output_shape(x_shape, w_shape, stride, pads, dil))
    ops = emulated_ops(order, **knobs)
    got = ops.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups, *pool)
    want = ref.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups, *pool)
    assert_same(got[0], want[0], ints, what=f"{name} y")
    assert_same(got[1], want[1], True, what=f"{name} argmax")
    assert len(ops.executor.launched) == 1 and "conv2d_bias_relu_maxpool3x3s2_fprop" in ops.executor.launched[0]
    assert "TileLarge" not in ops.executor.launched[0]   # its conv patch would not fit static shared memory
    # Deterministic: each block's sums run in one fixed order, whatever order the emulator runs threads in.
    other = emulated_ops("reverse" if order == "forward" else "forward", **knobs)
    again = other.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups, *pool)
    assert_same(again[0], got[0], True, what="y across thread orders")


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("ints", [True, False], ids=["ints", "floats"])
@pytest.mark.parametrize("case", [(p, {}) for p in POOL3] + [("patches_13x23", {"force_splits": 3})], ids=case_id)
def test_fused3x3_bprop_matches_reference(case, ints, order, rng):
    name, knobs = case
    a, (x_shape, w_shape, stride, pads, dil, groups) = inputs(rng, name, ints, np.float32)
    conv_shape = conv2d_output_shape(x_shape, w_shape, stride, pads, dil)
    pool = pool3_args(name, conv_shape)
    y, argmax = ref.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups, *pool)
    dy = data(rng, y.shape, ints, np.float32)
    ops = emulated_ops(order, **knobs)
    dz, db = ops.relu_maxpool_bprop(dy, argmax, y, conv_shape, *pool)
    dz_ref, db_ref = ref.relu_maxpool_bprop(dy, argmax, y, conv_shape, *pool)
    assert_same(dz, dz_ref, True, what=f"{name} dz")   # same windows, same (tap) order: bitwise for any data
    assert_same(db, db_ref, ints, rtol=1e-5, atol=1e-5, what=f"{name} db")
    assert [k.split("<")[0] for k in ops.executor.launched][0] == "fc::relu_maxpool_bprop"
    other = emulated_ops("reverse" if order == "forward" else "forward", **knobs)
    assert_same(other.relu_maxpool_bprop(dy, argmax, y, conv_shape, *pool)[1], db, True, what="db across orders")


def test_fused3x3_reference_is_the_unfused_chain(rng):
    """The oracle: relu -> 3x3/2 'same' max-pool, and its backward, from the unfused reference ops; the
    overlapping windows really route several gradients to one conv output."""
    a, (x_shape, w_shape, stride, pads, dil, groups) = inputs(rng, "patches_13x23", True, np.float64)
    z = ref.conv2d_fprop(a["x"], a["w"], stride, pads, dil, groups) + a["b"]
    pool = ((3, 3), (2, 2), ((1, 1), (1, 1)))
    y, argmax = ref.max_pool2d_fprop(ref.relu_fprop(z), *pool)
    got_y, got_arg = ref.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups, *pool)
    assert np.array_equal(got_y, y) and np.array_equal(got_arg, argmax) and y.shape == (1, 7, 12, 6)
    dy = rng.integers(1, 4, y.shape).astype(np.float64)
    dz = ref.relu_bprop(ref.max_pool2d_bprop(dy, argmax, z.shape, *pool), z)
    got_dz, got_db = ref.relu_maxpool_bprop(dy, argmax, y, z.shape, *pool)
    assert np.array_equal(got_dz, dz) and np.array_equal(got_db, dz.sum(axis=(0, 1, 2)))
    assert (got_dz > dy.max()).any()   # some conv output won two windows


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
def test_fused3x3_float64_and_no_bias(bias, rng):
    for ints in (True, False):
        a, (x_shape, w_shape, stride, pads, dil, groups) = inputs(rng, "same_s2_c3", ints, np.float64, bias)
        conv_shape = conv2d_output_shape(x_shape, w_shape, stride, pads, dil)
        pool = pool3_args("same_s2_c3", conv_shape)
        ops = emulated_ops()
        got = ops.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups, *pool)
        want = ref.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups, *pool)
        assert_same(got[0], want[0], ints, rtol=1e-12, atol=1e-12, what="y")
        assert_same(got[1], want[1], True, what="argmax")
        dy = data(rng, want[0].shape, ints, np.float64)
        for g, w in zip(ops.relu_maxpool_bprop(dy, want[1], want[0], conv_shape, *pool),
                        ref.relu_maxpool_bprop(dy, want[1], want[0], conv_shape, *pool)):
            assert_same(g, w, ints, rtol=1e-12, atol=1e-12, what="dz/db")


def test_fused3x3_nan_tie_and_padding_rules():
    """A NaN wins its windows (first NaN); ties keep the first tap; the 'same' padding row is never chosen
    even when every real tap is negative before ReLU (all zeros after it: tap order decides)."""
    x = -np.ones((1, 4, 5, 1), np.float32)
    x[0, 1, 3, 0] = np.nan                 # conv output (1, 3): windows (0, 1) and (0, 2) with padding 1
    x[0, 2, 0, 0] = x[0, 2, 1, 0] = 5.0    # a tie inside window (1, 0)
    w = np.ones((1, 1, 1, 1), np.float32)
    pool = ((3, 3), (2, 2), ((1, 1), (1, 1)))
    ops = emulated_ops()
    got = ops.conv2d_bias_relu_maxpool_fprop(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, *pool)
    want = ref.conv2d_bias_relu_maxpool_fprop(x, w, None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1, *pool)
    assert_same(got[0], want[0], True, what="y")
    assert_same(got[1], want[1], True, what="argmax")
    assert want[1][0, :, :, 0].tolist() == [[4, 8, 6], [4, 2, 0]]
    assert np.isnan(want[0][0, :, 1:, 0]).all() and want[0][0, :, 0, 0].tolist() == [0, 5]


def test_fused_pool_refusals_name_the_pool():
    ops = emulated_ops()
    x, w = np.zeros((1, 6, 6, 1), np.float32), np.zeros((1, 1, 1, 1), np.float32)
    conv = (None, (1, 1), ((0, 0), (0, 0)), (1, 1), 1)
    for pool, stride, pads in (((3, 3), (1, 1), ((1, 1), (1, 1))), ((2, 2), (2, 2), ((0, 1), (0, 1))),
                               ((3, 3), (2, 2), ((3, 3), (3, 3)))):
        with pytest.raises(NotImplementedError, match="pool \\(3, 3\\) stride \\(2, 2\\) with padding < 3, got pool"):
            ops.conv2d_bias_relu_maxpool_fprop(x, w, *conv, pool, stride, pads)
    y = np.zeros((1, 3, 3, 1), np.float32)
    with pytest.raises(ValueError, match="do not fit conv output \\(1, 6, 6, 1\\) pooled to \\(1, 2, 2, 1\\)"):
        ops.relu_maxpool_bprop(y, y.astype(np.uint8), y, (1, 6, 6, 1), (3, 3), (2, 2), ((0, 0), (0, 0)))


def test_fused3x3_explain_says_which_kernel_and_why(rng):
    import fastconv
    a, (_, _, stride, pads, dil, groups) = inputs(rng, "k40_s2", False, np.float32)
    ops = emulated_ops(force_tile="TileLarge")
    pool = ((3, 3), (2, 2), ((1, 1), (1, 1)))
    rep = fastconv.explain(lambda: ops.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil,
                                                                      groups, *pool))
    text = str(rep)
    assert "TileMedium instead of TileLarge" in text and "3x3/2 pool fused" in text and "1.60x the conv FLOPs" in text
    assert rep.kernels and all("maxpool3x3s2_fprop<fc::TileMedium" in k for k in rep.kernels)


# ---- batch norm + ReLU (csrc/norm/batchnorm_relu.h) ----------------------------------------------------
BN_SHAPES = {"c37_partial_rows": (3, 5, 7, 37), "c4_vec": (2, 3, 3, 4), "dense_c10": (9, 10)}


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("splits", [None, 3])
@pytest.mark.parametrize("shape", BN_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_batchnorm_relu_matches_reference(shape, dtype, splits, order, rng):
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    s = BN_SHAPES[shape]
    c = s[-1]
    x = (rng.standard_normal(s) * 3 + 1).astype(dtype)
    gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    ops = emulated_ops(order, force_splits=splits)
    got = ops.batchnorm_relu_fprop_train(x, gamma, beta, 1e-3)
    want = ref.batchnorm_relu_fprop_train(x, gamma, beta, 1e-3)
    for g, w, what in zip(got, want, ("y", "mean", "invstd")):
        assert_same(g, w, False, what=what, **tol)
    assert 0.05 < (want[0] == 0).mean() < 0.95   # the ReLU cuts some and passes some
    var = (rng.random(c) + 0.5).astype(dtype)
    assert_same(ops.batchnorm_relu_fprop_infer(x, gamma, beta, want[1], var, 1e-3),
                ref.batchnorm_relu_fprop_infer(x, gamma, beta, want[1], var, 1e-3), False, what="infer y", **tol)
    dy = rng.standard_normal(s).astype(dtype)
    ops.executor.launched.clear()
    got = ops.batchnorm_relu_bprop(dy, want[0], x, gamma, want[1], want[2])
    ref_grads = ref.batchnorm_relu_bprop(dy, want[0], x, gamma, want[1], want[2])
    for g, w, what in zip(got, ref_grads, ("dx", "dgamma", "dbeta")):
        assert_same(g, w, False, what=what, **tol)
    names = [k.split("<")[0] for k in ops.executor.launched]
    assert names == ["fc::batchnorm_relu_dparams_partial", "fc::column_finalize", "fc::column_finalize",
                     "fc::batchnorm_relu_dx_kernel"]   # one pass for both parameter gradients, mask folded in
    other = emulated_ops("reverse" if order == "forward" else "forward", force_splits=splits)
    for g, again in zip(got, other.batchnorm_relu_bprop(dy, want[0], x, gamma, want[1], want[2])):
        assert_same(again, g, True, what="bprop across thread orders")


def test_batchnorm_relu_reference_is_the_unfused_chain(rng):
    x = rng.standard_normal((4, 3, 3, 5))
    gamma, beta, dy = rng.standard_normal(5), rng.standard_normal(5), rng.standard_normal((4, 3, 3, 5))
    z, mean, invstd = ref.batchnorm_fprop_train(x, gamma, beta, 1e-3)
    y, m2, i2 = ref.batchnorm_relu_fprop_train(x, gamma, beta, 1e-3)
    assert np.array_equal(y, ref.relu_fprop(z)) and np.array_equal(mean, m2) and np.array_equal(invstd, i2)
    want = ref.batchnorm_bprop(ref.relu_bprop(dy, z), x, gamma, mean, invstd)
    for g, w in zip(ref.batchnorm_relu_bprop(dy, y, x, gamma, mean, invstd), want):
        assert np.array_equal(g, w)


def test_batchnorm_relu_bprop_refuses_mismatched_shapes():
    ops = emulated_ops()
    x, c = np.ones((2, 3, 3, 4), np.float32), np.ones(4, np.float32)
    with pytest.raises(ValueError, match="dy \\(2, 3, 3, 3\\) and y \\(2, 3, 3, 4\\) must have x's shape"):
        ops.batchnorm_relu_bprop(x[..., :3], x, x, c, c, c)


# ---- the same kernels on a GPU (native and jit builds; skipped without CuPy and a GPU) -------------------
@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["native", "jit"])
@pytest.mark.parametrize("name", ["patches_13x23", "k40_s2", "same_s2_c3", "depthwise_x2"])
def test_fused3x3_and_batchnorm_relu_on_gpu_match_reference(name, backend):
    from test_gpu_backends import _OnDevice, _gpu_ops
    dev = _OnDevice(_gpu_ops(backend), {})
    rng = np.random.default_rng(5)
    for ints in (True, False):   # small integers: every sum exact, even with FMA contraction
        a, (x_shape, w_shape, stride, pads, dil, groups) = inputs(rng, name, ints, np.float32)
        conv_shape = conv2d_output_shape(x_shape, w_shape, stride, pads, dil)
        pool = pool3_args(name, conv_shape)
        want = ref.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups, *pool)
        got = dev.conv2d_bias_relu_maxpool_fprop(a["x"], a["w"], a["b"], stride, pads, dil, groups, *pool)
        assert_same(got[0], want[0], ints, what=f"{backend} {name} y")
        if ints:
            assert_same(got[1], want[1], True, what=f"{backend} {name} argmax")
        dy = data(rng, want[0].shape, ints, np.float32)
        for g, w in zip(dev.relu_maxpool_bprop(dy, want[1], want[0], conv_shape, *pool),
                        ref.relu_maxpool_bprop(dy, want[1], want[0], conv_shape, *pool)):
            assert_same(g, w, ints, rtol=1e-5, atol=1e-5, what=f"{backend} {name} dz/db")
    x = rng.standard_normal(conv_shape).astype(np.float32)
    c = conv_shape[-1]
    gamma, beta, dy = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32), \
        rng.standard_normal(conv_shape).astype(np.float32)
    want = ref.batchnorm_relu_fprop_train(x, gamma, beta, 1e-3)
    for g, w in zip(dev.batchnorm_relu_fprop_train(x, gamma, beta, 1e-3), want):
        assert_same(g, w, False, rtol=1e-4, atol=1e-4, what=f"{backend} batchnorm_relu fprop")
    for g, w in zip(dev.batchnorm_relu_bprop(dy, want[0], x, gamma, want[1], want[2]),
                    ref.batchnorm_relu_bprop(dy, want[0], x, gamma, want[1], want[2])):
        assert_same(g, w, False, rtol=1e-4, atol=1e-4, what=f"{backend} batchnorm_relu bprop")
