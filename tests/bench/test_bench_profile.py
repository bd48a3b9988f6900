"""Profiling pieces that run without a GPU: per-op accounting, backend wrapping, the Kineto trace
parser (on a synthetic trace), kernel attributes, NVTX as a no-op, the sanitizer run's SKIP."""
import types

import numpy as np
import pytest

from fastconv.bench.kernels import fastconv_kernel_attributes, match_attributes, parse_trace
from fastconv.bench.nvtx import DOMAIN, Nvtx
from fastconv.bench.profile import OpTimer, count_op


def test_count_op_conv_pool_dense():
    x = np.zeros((2, 5, 5, 3), np.float32)
    w = np.zeros((3, 3, 3, 4), np.float32)
    y = np.zeros((2, 3, 3, 4), np.float32)
    # 2 * 18 * 4 * 27 = 3888 FLOPs; (150 + 108 + 72) * 4 = 1320 bytes
    assert count_op("conv2d_fprop", (x, w, (1, 1), ((0, 0), (0, 0)), (1, 1), 1), y) == (3888, 1320)
    assert count_op("conv2d_dgrad", (y, w, x.shape, (1, 1), ((0, 0), (0, 0)), (1, 1), 1), x) == (3888, 1320)
    assert count_op("conv2d_wgrad", (x, y, w.shape, (1, 1), ((0, 0), (0, 0)), (1, 1), 1), w) == (3888, 1320)
    xp, yp = np.zeros((1, 4, 4, 2), np.float32), np.zeros((1, 2, 2, 2), np.float32)
    arg = np.zeros((1, 2, 2, 2), np.uint8)
    # 8 outputs * 3 comparisons; (32 + 8) * 4 + 8 bytes of argmax
    assert count_op("max_pool2d_fprop", (xp, (2, 2), (2, 2), ((0, 0), (0, 0))), (yp, arg)) == (24, 168)
    a, b, c = np.zeros((2, 4), np.float32), np.zeros((4, 3), np.float32), np.zeros((2, 3), np.float32)
    assert count_op("dense_fprop", (a, b), c) == (48, 104)
    # bprop: dx and dw GEMMs (2 * 48) + the bias sum (2*3)
    assert count_op("dense_bprop", (c, a, b, True), (a, b, np.zeros(3, np.float32)))[0] == 2 * 48 + 6
    flops, nbytes = count_op("relu_fprop", (a,), a)
    assert flops is None and nbytes == 64


def test_op_timer_wraps_and_restores_a_plain_module():
    calls = []
    mod = types.SimpleNamespace(__all__=["dense_fprop"], dense_fprop=lambda x, w: (calls.append(1), x @ w)[1])
    original = mod.dense_fprop
    nvtx = Nvtx(enabled=False)
    a, b = np.ones((2, 4), np.float32), np.ones((4, 3), np.float32)
    with OpTimer(mod, nvtx, gpu=False) as t:
        mod.dense_fprop(a, b)
        mod.dense_fprop(a, b)
    assert mod.dense_fprop is original and len(calls) == 2
    s = t.stats["dense_fprop"]
    assert s["calls"] == 2 and s["flops"] == 2 * 48 and s["bytes"] == 2 * 104 and s["seconds"] >= 0
    assert nvtx.pushed == [f"{DOMAIN}/dense_fprop"] * 2


def test_op_timer_handles_a_getattr_backend_module():
    """The GPU backends serve their ops through a module __getattr__ (fastconv/backends/jit.py):
    the wrapper must shadow it during the run and remove itself afterwards."""
    mod = types.ModuleType("fake_backend")
    mod.REFERENCE_API = ("relu_fprop",)
    mod.EXTRA_API = ()
    mod.__getattr__ = lambda name: (lambda x: np.maximum(x, 0)) if name == "relu_fprop" else (_ for _ in ()).throw(
        AttributeError(name))
    with OpTimer(mod, Nvtx(False), gpu=False) as t:
        assert "relu_fprop" in vars(mod)
        mod.relu_fprop(np.ones(4, np.float32))
    assert "relu_fprop" not in vars(mod) and t.stats["relu_fprop"]["calls"] == 1


def test_nvtx_is_a_noop_without_a_gpu():
    n = Nvtx(enabled=False)
    with n.domain():
        with n.range("x"):
            pass
    assert n.pushed == [DOMAIN, "x"] and n.backend.startswith("off")


TRACE = {"traceEvents": [   # TEST FIXTURE: a hand-written Kineto trace (times in µs)
    {"ph": "X", "cat": "gpu_user_annotation", "name": "fastconv/iter", "ts": 100.0, "dur": 50.0},
    {"ph": "X", "cat": "gpu_user_annotation", "name": "fastconv/conv2d_fprop", "ts": 100.0, "dur": 20.0},
    {"ph": "X", "cat": "kernel", "name": "fc::conv2d_fprop_implicit_gemm<fc::TileLarge, 4, int, float>",
     "ts": 101.0, "dur": 12.0, "args": {"registers per thread": 128, "shared memory": 32768, "block": [256, 1, 1],
                                        "grid": [132, 1, 1], "est. achieved occupancy %": 24}},
    {"ph": "X", "cat": "kernel", "name": "fc::conv2d_fprop_implicit_gemm<fc::TileLarge, 4, int, float>",
     "ts": 130.0, "dur": 14.0, "args": {"registers per thread": 128, "shared memory": 32768, "block": [256, 1, 1]}},
    {"ph": "X", "cat": "kernel", "name": "elementwise_kernel", "ts": 200.0, "dur": 2.0, "args": {}},
    {"ph": "X", "cat": "cpu_op", "name": "aten::conv2d", "ts": 90.0, "dur": 30.0},
]}


def test_parse_trace():
    kernels, ranges = parse_trace(TRACE)
    assert [k["name"][:22] for k in kernels] == ["fc::conv2d_fprop_impli", "elementwise_kernel"]
    k = kernels[0]
    assert k["launches"] == 2 and k["total_us"] == 26.0 and k["mean_us"] == 13.0
    assert (k["registers"], k["shared_memory"], k["block"], k["grid"]) == (128, 32768, [256, 1, 1], [132, 1, 1])
    assert k["est_occupancy_pct"] == 24.0
    # innermost range of each launch: the first in the conv2d_fprop range, the second only in the iteration
    assert k["ranges"] == ["fastconv/conv2d_fprop", "fastconv/iter"]
    assert kernels[1]["ranges"] == [] and len(ranges) == 2
    only, _ = parse_trace(TRACE, name_filter="fastconv|conv2d|pool2d|gemm")
    assert len(only) == 1


def test_kernel_attributes_come_from_the_jit_kernels_and_match_trace_names(monkeypatch):
    from fastconv.backends import jit
    from fastconv.bench import kernels
    monkeypatch.setattr(jit, "loaded_kernels", dict)
    assert fastconv_kernel_attributes() == ({}, "no fastconv kernel attributes: the jit backend has loaded no "
                                                "kernel in this process")
    monkeypatch.setattr(jit, "loaded_kernels", lambda: {"fc::gemm": "fn", "fc::broken": None})
    monkeypatch.setattr(kernels, "function_attributes", lambda fn: {"num_regs": 40} if fn else 1 / 0)
    assert fastconv_kernel_attributes() == ({"fc::gemm": {"num_regs": 40}},
                                            "attributes of the jit backend's compiled kernels")
    attrs = {"fc::max_pool2d_fprop<float>": {"num_regs": 30}}
    assert match_attributes("void fc::max_pool2d_fprop<float>(fc::Pool2dProblem, ...)", attrs) == {"num_regs": 30}
    assert match_attributes("other", attrs) is None


def test_sanitize_check_skips_without_a_gpu_backend():
    from fastconv.bench import sanitize_check
    from fastconv.bench.env import torch_cuda_status
    if torch_cuda_status()[0]:
        pytest.skip("a GPU is visible")
    assert sanitize_check.main() == sanitize_check.SKIP
    names = [n for n, _, _, _ in sanitize_check.problems(np.random.default_rng(0))]
    assert any("depthwise" in n or "g6" in n for n in names) and any("dense_bprop" in n for n in names)


def test_sanitize_check_passes_through_the_emulated_kernels(capsys):
    """The sanitizer run's problem list (tensor-core and fused kernels included) goes through the very
    check the GPU run uses, on the emulated kernels: every op exists on a kernel backend, every problem
    is valid, and the kernels match the reference within the check's tolerances."""
    from fastconv.backends import emulated
    from fastconv.bench import sanitize_check
    if not emulated.status()[0]:
        pytest.skip(emulated.status()[1])
    assert sanitize_check.check(emulated, lambda a: a, lambda v: v) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "has no" not in out and "FAIL" not in out
    assert out.count("  ok   ") == len(sanitize_check.problems(np.random.default_rng(0)))
    assert "conv2d_wgrad bf16" in out and "conv2d_bias_relu_maxpool_fprop" in out


def test_env_names_and_modes():
    from fastconv.bench.env import device_mode, results_name, slug
    assert device_mode("cpu") == ("cpu", "--device cpu")
    with pytest.raises(ValueError):
        device_mode("tpu")
    assert slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    env = {"date": "2026-11-28T12:00:00+00:00", "mode": "gpu", "gpu": {"name": "NVIDIA H200"}}
    assert results_name(env) == "2026-11-28-nvidia-h200.json"


def test_kernel_table_from_a_trace(capsys):
    """The GPU kernel table, fed the synthetic trace: occupancy from registers, shared memory and block."""
    from fastconv.bench.profile import _kernel_table
    from fastconv.bench.roofline import Ceilings
    from fastconv.bench.suites import expand_cases, load_suite
    case = expand_cases([load_suite("resnet50")], ["conv2d_fprop"], [32], ["fp32"], ["res2_3x3"])[0][0]
    ceil = Ceilings({"fp32": 5e13}, 3e12, "test fixture")
    kernels = _kernel_table(TRACE, None, {}, case, ceil, steps=2)
    printed = capsys.readouterr().out
    k = kernels[0]
    # 256 threads = 8 warps; 128 regs -> 4096 per warp -> 16 warps -> 2 blocks; smem 32 KB + 1 KB -> 6 blocks;
    # 2 blocks x 8 warps = 16 of 64 warps = 25%
    assert k["theoretical_occupancy_pct"] == 25.0
    assert "fc::conv2d_fprop_implicit_gemm" in printed and "op = the sum of its 2 kernel(s)" in printed
    # (12 + 14 + 2) us over 2 iterations = 14 us per call
    assert "14.00 us per call" in printed
