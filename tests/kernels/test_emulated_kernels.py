"""Every kernel, run by the CPU SIMT emulator through the launch plans the GPU backends use
(fastconv/backends/emulated.py), against the NumPy reference.

Each entry of CASES is one check: a name, a function making inputs, and a function running the op on
a backend module (the reference, or the emulated KernelOps). Each runs on small-integer data (compared
for exact equality: every sum is exact) and on random floats (compared with tolerances), under two
thread orders (forward and reverse: a race shows up as a difference). Adding a kernel to the test
matrix is adding one entry to CASES.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

from fastconv import optimizers
from fastconv.backends import reference as ref
from fastconv.backends.plans.cast import to_compute, to_float32
from problems import CONV, GEMM, POOL, conv_args
from conftest import assert_same, emulated_ops


@dataclass
class Case:
    name: str
    make: Callable          # (rng, ints: bool, dtype) -> dict of inputs
    run: Callable           # (backend, inputs) -> array or tuple of arrays
    knobs: dict = field(default_factory=dict)
    exact: bool = True      # integer data compares exactly (False: the op has transcendental math)
    rtol: float = 1e-4
    atol: float = 1e-4
    dtypes: tuple = (np.float32,)


def data(rng, shape, ints, dtype, low=-3, high=4):
    if ints:
        return rng.integers(low, high, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


CASES: list[Case] = []


# ---- conv2d ------------------------------------------------------------------------------------
def conv_case(problem, op, knobs=None, suffix="", dtypes=(np.float32,), bias_act=None):
    x_shape, w_shape, stride, pads, dil, groups = conv_args(problem)

    def make(rng, ints, dtype):
        from fastconv.shapes import conv2d_output_shape
        y_shape = conv2d_output_shape(x_shape, w_shape, stride, pads, dil)
        return {"x": data(rng, x_shape, ints, dtype), "w": data(rng, w_shape, ints, dtype),
                "dy": data(rng, y_shape, ints, dtype), "b": data(rng, (w_shape[3],), ints, dtype)}

    def run(B, a):
        if op == "fprop":
            if bias_act is None:
                return B.conv2d_fprop(a["x"], a["w"], stride, pads, dil, groups)
            if B is ref:   # the reference composes what the kernel's epilogue fuses
                y = ref.conv2d_fprop(a["x"], a["w"], stride, pads, dil, groups) + a["b"]
                return ref.leaky_relu_fprop(y, 0.25) if bias_act == "leaky_relu" else getattr(ref, f"{bias_act}_fprop")(y)
            return B.conv2d_fprop(a["x"], a["w"], stride, pads, dil, groups, bias=a["b"], activation=bias_act,
                                  alpha=0.25)
        if op == "dgrad":
            return B.conv2d_dgrad(a["dy"], a["w"], x_shape, stride, pads, dil, groups)
        return B.conv2d_wgrad(a["x"], a["dy"], w_shape, stride, pads, dil, groups)

    CASES.append(Case(f"conv2d_{op}[{problem}]{suffix}", make, run, knobs or {}, dtypes=dtypes,
                      exact=bias_act in (None, "relu", "leaky_relu")))


for _p in CONV:
    for _op in ("fprop", "dgrad", "wgrad"):
        conv_case(_p, _op)
# Every tile/vector/index path on shapes with partial tiles, vector and scalar channel counts.
for _p in ("1x1_vec4", "groups3_s2_vec4", "k40_s2", "asym_pad_s3x2", "m33_k33"):
    for _op in ("fprop", "dgrad", "wgrad"):
        conv_case(_p, _op, {"force_vec": 1}, "-scalar")
        conv_case(_p, _op, {"force_index64": True}, "-index64")
        conv_case(_p, _op, {"force_tile": "TileLarge"}, "-large")
for _p in ("k40_s2", "groups2_dil2_vec4", "depthwise_x2", "7x7s2_same_c3"):
    conv_case(_p, "wgrad", {"force_splits": 3}, "-splits3")
for _p in ("7x7s2_same_c3", "groups3_c6", "depthwise_x2"):
    for _op in ("fprop", "dgrad", "wgrad"):
        conv_case(_p, _op, suffix="-double", dtypes=(np.float64,))
for _act in ("relu", "leaky_relu", "sigmoid", "tanh"):
    conv_case("k40_s2", "fprop", suffix=f"-bias-{_act}", bias_act=_act)
conv_case("depthwise_x2", "fprop", suffix="-bias-relu", bias_act="relu")


# The stride-phase dgrad (csrc/conv/conv2d_dgrad_phase.h) on shapes aimed at the decomposition: stride 2,
# 3 and (2, 3); asymmetric and 'same' padding; dilation 2 and 3 (3 with stride 2 starts a phase below dy
# row 0); phases with no tap (1x1 s2, dil2 s2, R < stride) and with no dx pixel (H, W < stride); several
# M tiles in phase 0 and fewer in the rest; groups with a stride; Cg past one N tile.
def _resolved(x_shape, w_shape, stride, pad, dil, groups):
    from fastconv.shapes import resolve_padding
    return x_shape, w_shape, stride, tuple(resolve_padding(pad, x_shape[1:3], w_shape[:2], stride, dil)), dil, groups


STRIDED_DGRAD = {
    "s2_dil2_three_empty": _resolved((1, 9, 8, 4), (3, 3, 4, 8), (2, 2), ((2, 2), (1, 1)), (2, 2), 1),
    "s2_dil3_neg_base": _resolved((1, 10, 11, 4), (3, 3, 4, 5), (2, 2), ((3, 1), (0, 2)), (3, 3), 1),
    "s2_1x1_c72": _resolved((2, 7, 9, 72), (1, 1, 72, 12), (2, 2), ((0, 0), (0, 0)), (1, 1), 1),
    "s3_2x2_some_empty": _resolved((1, 10, 9, 4), (2, 2, 4, 8), (3, 3), ((1, 0), (0, 1)), (1, 1), 1),
    "s2x3_tiny": _resolved((3, 1, 2, 4), (3, 3, 4, 4), (2, 3), ((1, 1), (1, 1)), (1, 1), 1),
    "s2_5x5_same_m_tiles": _resolved((2, 17, 15, 8), (5, 5, 8, 4), (2, 2), "same", (1, 1), 1),
    "s2_groups2_dil2_same": _resolved((1, 12, 10, 8), (3, 3, 4, 8), (2, 2), "same", (2, 2), 2),
}


def strided_dgrad_case(problem, knobs=None, suffix="", dtypes=(np.float32,)):
    x_shape, w_shape, stride, pads, dil, groups = STRIDED_DGRAD[problem]

    def make(rng, ints, dtype):
        from fastconv.shapes import conv2d_output_shape
        y_shape = conv2d_output_shape(x_shape, w_shape, stride, pads, dil)
        return {"w": data(rng, w_shape, ints, dtype), "dy": data(rng, y_shape, ints, dtype)}

    def run(B, a):
        return B.conv2d_dgrad(a["dy"], a["w"], x_shape, stride, pads, dil, groups)

    CASES.append(Case(f"conv2d_dgrad_strided[{problem}]{suffix}", make, run, knobs or {}, dtypes=dtypes))


for _p in STRIDED_DGRAD:
    strided_dgrad_case(_p)
    strided_dgrad_case(_p, {"force_vec": 1, "force_index64": True}, "-scalar-index64")
    strided_dgrad_case(_p, {"force_tile": "TileLarge"}, "-large")
strided_dgrad_case("s2_dil3_neg_base", suffix="-double", dtypes=(np.float64,))

# ---- pooling -----------------------------------------------------------------------------------
def pool_cases(problem):
    x_shape, pool, stride, pads = POOL[problem]

    def make(rng, ints, dtype):
        from fastconv.shapes import conv_output_hw
        p, q = conv_output_hw(x_shape[1:3], pool, stride, pads)
        x = data(rng, x_shape, ints, dtype, -2, 3)      # few distinct values: many ties
        return {"x": x, "dy": data(rng, (x_shape[0], p, q, x_shape[3]), ints, dtype)}

    def max_f(B, a):
        return B.max_pool2d_fprop(a["x"], pool, stride, pads)

    def max_b(B, a):
        _, arg = ref.max_pool2d_fprop(a["x"], pool, stride, pads)
        return B.max_pool2d_bprop(a["dy"], arg, x_shape, pool, stride, pads)

    CASES.append(Case(f"max_pool2d_fprop[{problem}]", make, max_f))
    CASES.append(Case(f"max_pool2d_bprop[{problem}]", make, max_b))
    for cip in (False, True):
        CASES.append(Case(f"avg_pool2d_fprop[{problem}-cip{int(cip)}]", make,
                          lambda B, a, cip=cip: B.avg_pool2d_fprop(a["x"], pool, stride, pads, cip)))
        CASES.append(Case(f"avg_pool2d_bprop[{problem}-cip{int(cip)}]", make,
                          lambda B, a, cip=cip: B.avg_pool2d_bprop(a["dy"], x_shape, pool, stride, pads, cip)))


for _p in POOL:
    pool_cases(_p)


def _nan_pool_input(rng, ints, dtype):
    x = data(rng, (1, 6, 6, 3), ints, dtype)
    x[0, 0, 1, 0] = np.nan
    x[0, 1, 0, 0] = np.nan                    # two NaNs in one window: the first wins
    x[0, 4, 4, 1] = -np.inf
    x[0, 2:4, 2:4, 2] = -np.inf               # a window of -inf only: argmax is its first element
    return {"x": x}


CASES.append(Case("max_pool2d_fprop[nan_inf]", _nan_pool_input,
                  lambda B, a: B.max_pool2d_fprop(a["x"], (2, 2), (2, 2), ((0, 0), (0, 0)))))
CASES.append(Case("global_avg_pool_fprop", lambda rng, i, dt: {"x": data(rng, (3, 5, 7, 6), i, dt)},
                  lambda B, a: B.global_avg_pool_fprop(a["x"]), dtypes=(np.float32, np.float64)))
CASES.append(Case("global_avg_pool_bprop", lambda rng, i, dt: {"dy": data(rng, (3, 6), i, dt)},
                  lambda B, a: B.global_avg_pool_bprop(a["dy"], (3, 5, 7, 6))))


# ---- GEMM / dense --------------------------------------------------------------------------------
def gemm_case(problem, ta, tb, act=None, knobs=None, suffix=""):
    m, n, k = GEMM[problem]

    def make(rng, ints, dtype):
        return {"a": data(rng, (k, m) if ta else (m, k), ints, dtype),
                "b": data(rng, (n, k) if tb else (k, n), ints, dtype), "bias": data(rng, (n,), ints, dtype)}

    def run(B, a):
        if B is ref:
            y = (a["a"].T if ta else a["a"]) @ (a["b"].T if tb else a["b"])
            if act is None:
                return y
            y = y + a["bias"]
            return ref.leaky_relu_fprop(y, 0.25) if act == "leaky_relu" else getattr(ref, f"{act}_fprop")(y)
        if act is None:
            return B.gemm(a["a"], a["b"], ta, tb)
        return B.gemm(a["a"], a["b"], ta, tb, bias=a["bias"], activation=act, alpha=0.25)

    CASES.append(Case(f"gemm[{problem}-{'T' if ta else 'N'}{'T' if tb else 'N'}]{suffix}", make, run, knobs or {},
                      exact=act in (None, "relu", "leaky_relu")))


for _p in GEMM:
    for _ta in (False, True):
        for _tb in (False, True):
            gemm_case(_p, _ta, _tb)
for _ta in (False, True):
    for _tb in (False, True):
        gemm_case("100x36x20", _ta, _tb, knobs={"force_vec": 1}, suffix="-scalar")
        gemm_case("33x17x9", _ta, _tb, knobs={"force_index64": True}, suffix="-index64")
        gemm_case("64x64x64", _ta, _tb, knobs={"force_tile": "TileLarge"}, suffix="-large")
for _act in ("relu", "leaky_relu", "sigmoid", "tanh"):
    gemm_case("33x17x9", False, False, act=_act, suffix=f"-bias-{_act}")


def _dense_inputs(rng, ints, dtype):
    return {"x": data(rng, (7, 13), ints, dtype), "w": data(rng, (13, 6), ints, dtype),
            "b": data(rng, (6,), ints, dtype), "dy": data(rng, (7, 6), ints, dtype)}


CASES.append(Case("dense_fprop", _dense_inputs, lambda B, a: B.dense_fprop(a["x"], a["w"], a["b"]),
                  dtypes=(np.float32, np.float64)))
CASES.append(Case("dense_bprop", _dense_inputs, lambda B, a: B.dense_bprop(a["dy"], a["x"], a["w"]),
                  dtypes=(np.float32, np.float64)))
CASES.append(Case("dense_bprop[splits3]", lambda rng, i, dt: {"x": data(rng, (9000, 3), i, dt),
                                                             "w": data(rng, (3, 5), i, dt),
                                                             "dy": data(rng, (9000, 5), i, dt)},
                  lambda B, a: B.dense_bprop(a["dy"], a["x"], a["w"], need_dx=False)[1:], {"force_splits": 3}))


# ---- activations, softmax, dropout -------------------------------------------------------------
def _act_inputs(rng, ints, dtype):
    x = data(rng, (5, 37), ints, dtype)
    x[0, :4] = [np.nan, 0.0, -0.0, np.inf]
    y = data(rng, (5, 37), ints, dtype)
    return {"x": x, "dy": data(rng, (5, 37), ints, dtype), "y": 1 / (1 + np.exp(-y)) if not ints else y}


for _name, _exact in (("relu", True), ("sigmoid", False), ("tanh", False)):
    CASES.append(Case(f"{_name}_fprop", _act_inputs, lambda B, a, n=_name: getattr(B, f"{n}_fprop")(a["x"]),
                      exact=_exact, rtol=1e-6, atol=1e-7, dtypes=(np.float32, np.float64)))
CASES.append(Case("leaky_relu_fprop", _act_inputs, lambda B, a: B.leaky_relu_fprop(a["x"], 0.1)))
CASES.append(Case("relu_bprop", _act_inputs, lambda B, a: B.relu_bprop(a["dy"], a["x"])))
CASES.append(Case("leaky_relu_bprop", _act_inputs, lambda B, a: B.leaky_relu_bprop(a["dy"], a["x"], 0.1)))
CASES.append(Case("sigmoid_bprop", _act_inputs, lambda B, a: B.sigmoid_bprop(a["dy"], a["y"])))
CASES.append(Case("tanh_bprop", _act_inputs, lambda B, a: B.tanh_bprop(a["dy"], a["y"])))
for _axis in (-1, 1):
    CASES.append(Case(f"softmax_fprop[axis{_axis}]", lambda rng, i, dt: {"x": data(rng, (3, 5, 7), i, dt)},
                      lambda B, a, ax=_axis: B.softmax_fprop(a["x"], ax), exact=False, rtol=1e-5, atol=1e-6))
    CASES.append(Case(f"softmax_bprop[axis{_axis}]",
                      lambda rng, i, dt, ax=_axis: {"dy": data(rng, (3, 5, 7), i, dt),
                                                    "y": ref.softmax_fprop(data(rng, (3, 5, 7), i, dt), ax)},
                      lambda B, a, ax=_axis: B.softmax_bprop(a["dy"], a["y"], ax), exact=False, rtol=1e-5, atol=1e-6))
for _rate, _seed, _offset in ((0.5, 7, 0), (0.1, 2**63 + 5, 2**64 - 100), (0.0, 1, 3), (0.999, 3, 12345)):
    CASES.append(Case(f"dropout_mask[rate{_rate}-seed{_seed}]", lambda rng, i, dt: {},
                      lambda B, a, r=_rate, s=_seed, o=_offset: B.dropout_mask((4, 7, 9), r, s, o, dtype=np.float32)))
CASES.append(Case("dropout_fprop_bprop", lambda rng, i, dt: {"x": data(rng, (6, 11), i, dt)},
                  lambda B, a: (B.dropout_fprop(a["x"], ref.dropout_mask((6, 11), 0.5, 3, 9)),
                                B.dropout_bprop(a["x"], ref.dropout_mask((6, 11), 0.5, 3, 9)))))


# ---- batch normalization -----------------------------------------------------------------------
def _bn_inputs(rng, ints, dtype):
    x = data(rng, (3, 5, 4, 6), ints, dtype)
    return {"x": x, "dy": data(rng, x.shape, ints, dtype), "gamma": data(rng, (6,), ints, dtype),
            "beta": data(rng, (6,), ints, dtype), "var": np.abs(data(rng, (6,), ints, dtype)) + 1,
            "mean": data(rng, (6,), ints, dtype)}


for _knobs, _sfx in (({}, ""), ({"force_splits": 3}, "[splits3]")):
    CASES.append(Case(f"batchnorm_fprop_train{_sfx}", _bn_inputs,
                      lambda B, a: B.batchnorm_fprop_train(a["x"], a["gamma"], a["beta"], 1e-3), _knobs,
                      exact=False, rtol=1e-4, atol=1e-5))
    CASES.append(Case(f"batchnorm_bprop{_sfx}", _bn_inputs,
                      lambda B, a: B.batchnorm_bprop(a["dy"], a["x"], a["gamma"], a["mean"], 1 / np.sqrt(a["var"])),
                      _knobs, exact=False, rtol=1e-4, atol=1e-4))
CASES.append(Case("batchnorm_fprop_infer", _bn_inputs,
                  lambda B, a: B.batchnorm_fprop_infer(a["x"], a["gamma"], a["beta"], a["mean"], a["var"], 1e-3),
                  exact=False, rtol=1e-6, atol=1e-6))


# ---- losses ------------------------------------------------------------------------------------
def _loss_inputs(rng, ints, dtype):
    logits = data(rng, (9, 7), ints, dtype)
    ids = rng.integers(0, 7, 9)
    onehot = np.eye(7, dtype=dtype)[ids]
    soft = ref.softmax_fprop(data(rng, (9, 7), False, dtype))
    probs = ref.softmax_fprop(logits)
    probs[0, 0], probs[1, 1] = 0, 1          # outside the clip range: zero gradient
    return {"logits": logits, "ids": ids, "onehot": onehot, "soft": soft, "probs": probs,
            "dloss": np.asarray(0.75, dtype), "target": data(rng, (9, 7), ints, dtype)}


for _lab in ("ids", "onehot", "soft"):
    CASES.append(Case(f"softmax_cross_entropy_fprop[{_lab}]", _loss_inputs,
                      lambda B, a, lab=_lab: B.softmax_cross_entropy_fprop(a["logits"], a[lab]),
                      exact=False, rtol=1e-5, atol=1e-6))
    CASES.append(Case(f"softmax_cross_entropy_bprop[{_lab}]", _loss_inputs,
                      lambda B, a, lab=_lab: B.softmax_cross_entropy_bprop(a["probs"], a[lab], a["dloss"]),
                      exact=False, rtol=1e-6, atol=1e-7))
    CASES.append(Case(f"cross_entropy_fprop[{_lab}]", _loss_inputs,
                      lambda B, a, lab=_lab: B.cross_entropy_fprop(a["probs"], a[lab]), exact=False, rtol=1e-5))
    CASES.append(Case(f"cross_entropy_bprop[{_lab}]", _loss_inputs,
                      lambda B, a, lab=_lab: B.cross_entropy_bprop(a["probs"], a[lab], a["dloss"]), exact=False,
                      rtol=1e-6, atol=1e-7))
CASES.append(Case("mse_fprop", _loss_inputs, lambda B, a: B.mse_fprop(a["logits"], a["target"]), exact=False,
                  rtol=1e-6))
CASES.append(Case("mse_bprop", _loss_inputs, lambda B, a: B.mse_bprop(a["logits"], a["target"], a["dloss"]),
                  exact=False, rtol=1e-6, atol=1e-7))


# ---- the runner --------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["forward", "reverse"])
@pytest.mark.parametrize("ints", [True, False], ids=["ints", "floats"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_kernel_matches_reference(case, ints, order, rng):
    ops = emulated_ops(order, **case.knobs)
    for dtype in case.dtypes:
        inputs = case.make(rng, ints, dtype)
        want = case.run(ref, {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in inputs.items()})
        got = case.run(ops, inputs)
        want = want if isinstance(want, tuple) else (want,)
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(want)
        scale = 1e-9 if dtype == np.float64 else 1.0
        for i, (g, w) in enumerate(zip(got, want)):
            if w is None:
                assert g is None
                continue
            w = np.asarray(w)
            if w.dtype.kind == "f":
                w = w.astype(dtype, copy=False)
            assert_same(g, w, exact=ints and case.exact, rtol=case.rtol * scale ** 0.5, atol=case.atol * scale ** 0.5,
                        what=f"{case.name} output {i} ({np.dtype(dtype).name}, {'ints' if ints else 'floats'}, {order})")


# ---- optimizers: the multi-tensor update against fastconv.optimizers on NumPy ------------------
def _scalars(ops, opt, lr, t):
    """The StepScalars buffer of step t, as Optimizer.begin_step writes it, and the host values."""
    values = opt.step_scalars(lr, t)
    buf = ops.step_scalars()
    ops.set_step_scalars(buf, values)
    return buf, values


@pytest.mark.parametrize("config", [dict(momentum=0.0), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                    dict(momentum=0.5, weight_decay=0.01), dict(weight_decay=0.1)])
def test_sgd_multi_tensor_update(config, rng):
    ops = emulated_ops()
    shapes = [(3, 4), (70000,), (5,), (1,)]   # 70000 > one chunk: a tensor spanning two blocks
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    opt = optimizers.SGD(learning_rate=0.05, **config)
    want = [p.copy() for p in params]
    slots = [opt._new_slots(p) for p in want]
    vel = [rng.standard_normal(s).astype(np.float32) for s in shapes] if config.get("momentum") else [None] * 4
    buf, values = _scalars(ops, opt, 0.05, 1)
    for w, g, sl, v in zip(want, grads, slots, vel):
        if v is not None:
            sl["velocity"][...] = v
        opt._update(w, g, sl, values)
    got_v = [None if v is None else v.copy() for v in vel]
    got = [p.copy() for p in params]
    table = ops.multi_tensor_table([(p, g, v) for p, g, v in zip(got, grads, got_v)])
    ops.sgd_update(table, buf, config.get("momentum", 0.0), config.get("nesterov", False),
                   config.get("weight_decay", 0.0))
    for g, w in zip(got, want):
        np.testing.assert_array_max_ulp(g, w, maxulp=1)
    if config.get("momentum"):
        for g, sl in zip(got_v, slots):
            np.testing.assert_array_max_ulp(g, sl["velocity"], maxulp=1)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_adam_multi_tensor_update(weight_decay, rng):
    ops = emulated_ops()
    shapes = [(3, 4), (66000,), (7,)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    opt = optimizers.Adam(learning_rate=0.01, weight_decay=weight_decay)
    want = [p.copy() for p in params]
    slots = [opt._new_slots(p) for p in want]
    for sl in slots:
        sl["m"][...] = rng.standard_normal(sl["m"].shape)
        sl["v"][...] = np.abs(rng.standard_normal(sl["v"].shape))
    ms, vs = [sl["m"].copy() for sl in slots], [sl["v"].copy() for sl in slots]
    buf, values = _scalars(ops, opt, 0.01, 3)
    for w, g, sl in zip(want, grads, slots):
        opt._update(w, g, sl, values)
    got = [p.copy() for p in params]
    ops.adam_update(ops.multi_tensor_table(list(zip(got, grads, ms, vs))), buf, opt.beta_1, opt.beta_2, opt.epsilon)
    for g, w in zip(got, want):
        np.testing.assert_array_max_ulp(g, w, maxulp=2)
    for m, sl in zip(ms, slots):
        np.testing.assert_array_max_ulp(m, sl["m"], maxulp=1)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_multi_tensor_update_reads_each_steps_scalars_from_the_buffer(name, rng):
    """One table, one launch recipe, three steps of a cosine schedule: rewriting only the buffer
    between launches gives the reference's three updates (what a CUDA graph replay relies on)."""
    from fastconv.schedules import CosineDecay
    ops = emulated_ops()
    shapes = [(5, 3), (9,)]
    make = {"sgd": lambda: optimizers.SGD(CosineDecay(0.1, 3), momentum=0.9, nesterov=True, weight_decay=0.01),
            "adam": lambda: optimizers.Adam(CosineDecay(0.01, 3, alpha=0.1), weight_decay=0.05)}[name]
    opt_ref = make()
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
    want = [p.copy() for p in params]
    ref_slots = [opt_ref._new_slots(p) for p in want]
    got = [p.copy() for p in params]
    got_slots = [opt_ref._new_slots(p) for p in got]
    live_grads = [g.copy() for g in grads[0]]
    buf = ops.step_scalars()
    table = ops.multi_tensor_table([(p, g) + opt_ref._slot_arrays(s) for p, g, s in zip(got, live_grads, got_slots)],
                                   upload=False)
    ops.upload_table(table)          # deferred upload, as after a capture
    assert ops.multi_tensor_table([(p, g) + opt_ref._slot_arrays(s)
                                   for p, g, s in zip(got, live_grads, got_slots)], table) is table   # resident
    for t in range(1, 4):
        values = opt_ref.step_scalars(float(opt_ref.learning_rate(t - 1)), t)
        for w, g, sl in zip(want, grads[t - 1], ref_slots):
            opt_ref._update(w, g, sl, values)
        for dst, src in zip(live_grads, grads[t - 1]):
            dst[...] = src           # the graph's gradient buffers, rewritten in place by each replay
        ops.set_step_scalars(buf, values)   # the one-thread kernel begin_step launches
        np.testing.assert_array_equal(buf, [values["lr"], values.get("adam_step", 0.0), values.get("adam_decay", 0.0)])
        opt_ref._update_all(ops, table, buf)
    assert len({float(opt_ref.learning_rate(t)) for t in range(3)}) == 3   # the schedule did change lr
    for g, w in zip(got, want):
        np.testing.assert_array_max_ulp(g, w, maxulp=2)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_optimizer_gpu_path_replays_a_recorded_update(name, monkeypatch, rng):
    """fastconv.optimizers' GPU branch on the emulator, with launches recorded instead of run while
    `capturing()` (as a CUDA-graph capture does) and the recorded launch re-run per step after
    begin_step: one eager step, then four replays with a schedule, against the NumPy reference."""
    import types

    from fastconv.schedules import CosineDecay, StepDecay
    ops = emulated_ops()
    real, recording, recorded = ops.launch, [False], []

    def launch(kernel, grid, block, args, shared_bytes=0, **kw):
        if recording[0]:
            recorded.append((kernel, grid, block, args))
        else:
            real(kernel, grid, block, args, shared_bytes)
    ops.launch = launch
    monkeypatch.setattr(optimizers, "_cuda_backend", lambda: ops)
    make = {"sgd": lambda: optimizers.SGD(StepDecay(0.1, 2, 0.5), momentum=0.9, nesterov=True, weight_decay=0.01),
            "adam": lambda: optimizers.Adam(CosineDecay(0.01, 5, alpha=0.1), weight_decay=0.05)}[name]
    shapes = [(66000,), (4, 3)]
    init = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(5)]
    dev = [types.SimpleNamespace(data=a.copy(), grad=None, device="cuda") for a in init]
    cpu = [types.SimpleNamespace(data=a.copy(), grad=None, device="cpu") for a in init]
    opt, opt_ref = make(), make()
    for p, g in zip(dev, grads[0]):
        p.grad = g.copy()
    opt.step(dev)                                  # the eager warm-up step
    static = [np.empty_like(a) for a in init]      # the capture's gradient buffers (new addresses)
    for p, g in zip(dev, static):
        p.grad = g
    recording[0] = True
    with opt.capturing():
        opt.apply_update(dev)
        assert opt._defer_upload == [opt._table]   # a new table (new grad addresses), not written yet
    recording[0] = False
    np.testing.assert_array_equal(opt._table.device, opt._table.words)   # uploaded after the capture
    assert [k for k, *_ in recorded] == [f"fc::{name}_update_multi<float>"]
    for step in grads[1:]:
        for buf, g in zip(static, step):
            buf[...] = g
        opt.begin_step(dev)
        for kernel, grid, block, args in recorded:
            real(kernel, grid, block, args)
    for step in grads:
        for p, g in zip(cpu, step):
            p.grad = g
        opt_ref.step(cpu)
    assert opt.iterations == opt_ref.iterations == 5
    for a, b in zip(dev, cpu):
        np.testing.assert_array_max_ulp(a.data, b.data, maxulp=2)


def test_dropout_mask_reads_its_offset_from_device_memory():
    """The mask kernel takes the counter as a 0-d int64 array: the same array, rewritten between
    launches, gives the reference's masks of each offset, bit for bit."""
    ops = emulated_ops()
    counter = np.zeros((), np.int64)
    for offset in (0, 7, 2**33 + 5):
        counter[...] = offset
        np.testing.assert_array_equal(ops.dropout_mask((3, 5, 7), 0.3, 11, counter),
                                      ref.dropout_mask((3, 5, 7), 0.3, 11, offset))
    np.testing.assert_array_equal(ops.dropout_mask((4, 9), 0.6, 2, 2**64 - 3), ref.dropout_mask((4, 9), 0.6, 2, 2**64 - 3))


def test_plans_launch_only_registered_kernels():
    """Every kernel the plans launched in this module is one the native build registers."""
    from fastconv.backends.jit import all_kernel_names
    ops = emulated_ops()
    names = set(all_kernel_names())
    rng = np.random.default_rng(0)
    for case in CASES[::7]:
        ops_case = emulated_ops(**case.knobs)
        case.run(ops_case, case.make(rng, True, case.dtypes[0]))
        missing = set(ops_case.executor.launched) - names
        assert not missing, f"{case.name} launched unregistered kernels {missing}"
    assert ops is not None


# ---- the stride-phase dgrad: chosen for stride > 1, explained, bitwise the same in any thread order ----
def test_strided_dgrad_is_chosen_explained_and_deterministic(rng):
    import fastconv as fc
    x_shape, w_shape, stride, pads, dil, groups = STRIDED_DGRAD["s2_5x5_same_m_tiles"]
    w = data(rng, w_shape, False, np.float32)
    dy = data(rng, (x_shape[0], 9, 8, w_shape[3]), False, np.float32)
    runs = []
    for order in ("forward", "reverse", "random"):
        ops = emulated_ops(order)
        report = fc.explain(lambda: ops.conv2d_dgrad(dy, w, x_shape, stride, pads, dil, groups))
        assert [n for n in ops.executor.launched if "dgrad" in n] == \
            ["fc::conv2d_dgrad_strided_implicit_gemm<fc::TileSmall, 4, int, float>"], ops.executor.launched
        assert any("stride-phase decomposition: 2x2 = 4 phases" in e.text for e in report.events if e.kind == "note")
        runs.append(report.result)
    for other in runs[1:]:
        assert np.array_equal(runs[0].view(np.uint32), other.view(np.uint32))
    assert_same(runs[0], ref.conv2d_dgrad(dy, w, x_shape, stride, pads, dil, groups).astype(np.float32),
                exact=False, rtol=1e-4, atol=1e-4, what="strided dgrad, random floats")
    # stride 1 keeps the one-GEMM kernel
    ops = emulated_ops()
    x1, w1, s1, p1, d1, g1 = conv_args("1x1_vec4")
    ops.conv2d_dgrad(data(rng, (2, 5, 5, 12), True, np.float32), data(rng, w1, True, np.float32), x1, s1, p1, d1, g1)
    assert any(n.startswith("fc::conv2d_dgrad_implicit_gemm<") for n in ops.executor.launched), ops.executor.launched


# ---- the precision casts (csrc/ops/cast.h), otherwise launched only by whole-model tests ----------
@pytest.mark.parametrize("order", ["forward", "random"])
@pytest.mark.parametrize("precision", ["tf32", "bf16", "fp16"])
def test_precision_cast_kernels_match_the_reference_rounding(precision, order, rng):
    from fastconv.backends.reference.rounding import ROUNDING
    ops = emulated_ops(order)
    x = rng.standard_normal(1000).astype(np.float32) * np.float32(3.0) ** rng.integers(-20, 20, 1000).astype(np.float32)
    got = to_float32(ops, to_compute(ops, x, precision))
    assert ops.executor.launched[0].startswith(("fc::cast_fp32_kernel<", "fc::round_tf32_kernel<"))
    np.testing.assert_array_equal(got.view(np.uint32), ROUNDING[precision](x).view(np.uint32))
