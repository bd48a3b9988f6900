"""The tensor-core conv2d kernels (fprop with the residual epilogue, dgrad, wgrad with split-k) through
the native (fastconv._C) and jit (NVRTC) backends on a real GPU, against the reference on operands
rounded to the compute type: exact on small integers, toleranced on random floats, and split-k wgrad
bitwise equal across runs. Skipped without CuPy and an sm_80+ GPU; run on a GPU machine with
`python -m pytest tests/kernels/test_tensor_core_gpu.py -q`.
"""
from __future__ import annotations

import numpy as np
import pytest

from fastconv.backends import reference as ref
from conftest import assert_same
from test_gpu_backends import _gpu_ops, _OnDevice
from test_tensor_core import (OPERAND, SPLIT_PROBLEM, TC_GRAD, TOLERANCE, _grad_inputs, operand, operand_value,
                              out_value, rel_err)

pytestmark = pytest.mark.gpu


def _device(backend):
    ops = _gpu_ops(backend)
    import cupy
    if int(cupy.cuda.Device().compute_capability) < 80:
        pytest.skip("the tensor-core kernels need sm_80 or newer")
    return _OnDevice(ops, {})


@pytest.mark.parametrize("backend", ["native", "jit"])
@pytest.mark.parametrize("problem", list(TC_GRAD))
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_gpu_conv2d_grads_exact_small_integers(prec, problem, backend):
    dev = _device(backend)
    rng = np.random.default_rng(0)
    x_shape, w_shape, stride, pads, dil, groups = TC_GRAD[problem]
    x, w, dy = _grad_inputs(rng, problem, prec, ints=True)
    xv, wv, dyv = (operand_value(a, prec) for a in (x, w, dy))
    dx = dev.conv2d_dgrad_tensor_op(dy, w, x_shape, stride, pads, dil, groups)
    assert_same(dx, ref.conv2d_dgrad(dyv, wv, x_shape, stride, pads, dil, groups).astype(np.float32), exact=True,
                what=f"{backend} dgrad {prec} {problem}")
    dw = dev.conv2d_wgrad_tensor_op(x, dy, w_shape, stride, pads, dil, groups)
    assert_same(dw, ref.conv2d_wgrad(xv, dyv, w_shape, stride, pads, dil, groups).astype(np.float32), exact=True,
                what=f"{backend} wgrad {prec} {problem}")


@pytest.mark.parametrize("backend", ["native", "jit"])
@pytest.mark.parametrize("prec", ["tf32", "f16", "bf16"])
def test_gpu_conv2d_grads_random_floats_and_deterministic_split_k(prec, backend):
    dev = _device(backend)
    rng = np.random.default_rng(1)
    x_shape, w_shape, *rest = SPLIT_PROBLEM
    x = operand(rng.standard_normal(x_shape), prec)
    dy = operand(rng.standard_normal((4, 16, 16, 16)), prec)
    w = operand(rng.standard_normal(w_shape), prec)
    runs = [dev.conv2d_wgrad_tensor_op(x, dy, w_shape, *rest) for _ in range(3)]
    assert all(np.array_equal(r.view(np.uint32), runs[0].view(np.uint32)) for r in runs[1:])
    err = rel_err(runs[0].astype(np.float64), ref.conv2d_wgrad(operand_value(x, prec), operand_value(dy, prec),
                                                                w_shape, *rest))
    assert err < TOLERANCE[prec], f"{backend} wgrad {prec}: relative error {err:.3g}"
    for out in ("float32", "operand"):
        dx = dev.conv2d_dgrad_tensor_op(dy, w, x_shape, *rest, out_dtype=OPERAND[prec] if out == "operand" else None)
        want = ref.conv2d_dgrad(operand_value(dy, prec), operand_value(w, prec), x_shape, *rest)
        err = rel_err(out_value(dx, out), want)
        assert err < TOLERANCE[prec], f"{backend} dgrad {prec} -> {out}: relative error {err:.3g}"


@pytest.mark.parametrize("backend", ["native", "jit"])
@pytest.mark.parametrize("prec", ["f16", "bf16"])
def test_gpu_conv2d_fprop_residual_relu_exact(prec, backend):
    dev = _device(backend)
    rng = np.random.default_rng(2)
    x_shape, w_shape, stride, pads, dil, groups = TC_GRAD["3x3_same_c16_k24"]
    x, w, _ = _grad_inputs(rng, "3x3_same_c16_k24", prec, ints=True)
    y = ref.conv2d_fprop(operand_value(x, prec), operand_value(w, prec), stride, pads, dil, groups)
    residual = operand(rng.integers(-20, 21, y.shape), prec)
    got = dev.conv2d_fprop_tensor_op(x, w, stride, pads, dil, groups, activation="relu", out_dtype=OPERAND[prec],
                                     residual=residual)
    want = operand_value(operand(np.maximum(y + operand_value(residual, prec), 0), prec), prec)
    assert_same(out_value(got, "operand"), want, exact=True, what=f"{backend} fprop residual {prec}")
