"""`fastconv bench --op conv2d_{fprop,dgrad,wgrad} --dtype bf16,fp16` on the GPU: the runner calls the tensor-core
plans on the 16-bit operands as they are (runners._conv16_call), fprop through conv2d_fprop_tensor_core (the sm_90
routing). Checked here on the emulated plans with small shapes, against the NumPy reference."""
import types

import numpy as np
import pytest

from fastconv.backends import reference as ref
from fastconv.backends.plans.tensor_op import bf16_bits_to_float32, float32_to_bf16_bits
from fastconv.bench import runners
from fastconv.bench.runners import FastconvRunner
from fastconv.bench.suites import Case, validate_problem

pytest.importorskip("torch")
pytest.importorskip("cupy")   # _conv16_call's canonical view of the output; its call runs on NumPy here


def small_case(op, dtype, stride=1, r=3, pad=1):
    prob = validate_problem({"name": "t", "kind": "conv2d", "H": 7, "W": 6, "C": 16, "K": 24, "R": r, "S": r,
                             "stride": [stride, stride], "padding": [[pad, pad], [pad, pad]]}, "test")
    return Case("test", op, prob, 2, dtype)


def emulated():
    from fastconv.backends import backend_status
    if not backend_status()["emulated"][0]:
        pytest.skip("fastconv._emu is not built")
    from fastconv.backends import emulated
    return emulated.ops()


def operand(dtype, a):
    return float32_to_bf16_bits(np, a) if dtype == "bf16" else a.astype(np.float16)


def as_float(dtype, a):
    return bf16_bits_to_float32(np, a) if a.dtype == np.uint16 else a.astype(np.float32)


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
@pytest.mark.parametrize("op,stride,r,pad", [("conv2d_fprop", 1, 3, 1), ("conv2d_fprop", 1, 1, 0),
                                             ("conv2d_dgrad", 2, 3, 1), ("conv2d_wgrad", 1, 3, 1)])
def test_conv16_call_matches_the_reference(op, stride, r, pad, dtype):
    """Small integers: every product and sum exact, so the outputs equal the reference's; fprop and dgrad in the
    operand format (as cuDNN's), wgrad in float32."""
    case = small_case(op, dtype, stride, r, pad)
    ops = emulated()
    g = case.geometry
    rng = np.random.default_rng(len(op) + stride + r)
    s = {k: operand(dtype, rng.integers(-3, 4, shape).astype(np.float32)) for k, shape in case.inputs.items()}
    call, _ = runners._conv16_call(ops, case)
    got = call(s)
    conv = (g["stride"], g["padding"], g["dilation"], g["groups"])
    f = {k: as_float(dtype, v).astype(np.float64) for k, v in s.items()}
    if op == "conv2d_fprop":
        want = ref.conv2d_fprop(f["x"], f["w"], *conv)
    elif op == "conv2d_dgrad":
        want = ref.conv2d_dgrad(f["dy"], f["w"], g["x"], *conv)
    else:
        want = ref.conv2d_wgrad(f["x"], f["dy"], g["w"], *conv)
    assert got.dtype == (np.float32 if op == "conv2d_wgrad" else s["w" if "w" in s else "x"].dtype)
    assert tuple(got.shape) == tuple(case.output_shape)
    np.testing.assert_array_equal(as_float(dtype, got), want.astype(np.float32))


def test_gpu_conv16_needs_the_tensor_core_plans(monkeypatch):
    """A GPU backend without the plan a 16-bit conv needs is reported, not worked around; fp32 keeps the
    generic adapter."""
    runner = FastconvRunner("gpu")
    full = types.SimpleNamespace(conv2d_fprop=None, conv2d_fprop_tensor_core=None)
    monkeypatch.setattr(runner, "_module", lambda: (full, "native"))
    assert runner.available(small_case("conv2d_fprop", "bf16")) == (True, "native")
    monkeypatch.setattr(runner, "_module", lambda: (types.SimpleNamespace(conv2d_fprop=None), "jit"))
    ok, why = runner.available(small_case("conv2d_fprop", "bf16"))
    assert not ok and "has no conv2d_fprop_tensor_core" in why
    assert runner.available(small_case("conv2d_fprop", "fp32")) == (True, "jit")
