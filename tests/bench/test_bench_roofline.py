"""FLOP and byte counts of every op against hand-computed values, and the roofline arithmetic."""
import math

import pytest

from fastconv.bench import roofline as rl
from fastconv.bench.kernels import occupancy
from fastconv.bench.suites import Case, Problem


# ---- conv2d -------------------------------------------------------------------------------------
def test_conv2d_flops_dense():
    # N=2, P=Q=3 (5x5 input, 3x3 valid), K=4, R=S=3, C=3:
    # 2 * (2*3*3) * 4 * (3*3*3) = 2 * 18 * 4 * 27 = 3888
    assert rl.conv2d_flops(2, 3, 3, 4, 3, 3, 3) == 3888


def test_conv2d_flops_grouped_and_depthwise():
    # groups=2, C=4 -> 2 channels per group; N=1, P=Q=2, K=6, 1x1: 2 * 4 * 6 * 1 * 2 = 96
    assert rl.conv2d_flops(1, 2, 2, 6, 1, 1, 4, groups=2) == 96
    # depthwise 3x3, C=K=groups=8, N=1, P=Q=4: 2 * 16 * 8 * 9 * 1 = 2304
    assert rl.conv2d_flops(1, 4, 4, 8, 3, 3, 8, groups=8) == 2304
    with pytest.raises(ValueError):
        rl.conv2d_flops(1, 4, 4, 8, 3, 3, 6, groups=4)       # 4 does not divide C=6


def test_conv2d_bytes():
    # x 2*5*5*3 = 150, w 3*3*3*4 = 108, y 2*3*3*4 = 72: 330 elements
    assert rl.conv2d_bytes((2, 5, 5, 3), (3, 3, 3, 4), (2, 3, 3, 4), "fp32") == 330 * 4 == 1320
    assert rl.conv2d_bytes((2, 5, 5, 3), (3, 3, 3, 4), (2, 3, 3, 4), "tf32") == 1320    # fp32 storage
    assert rl.conv2d_bytes((2, 5, 5, 3), (3, 3, 3, 4), (2, 3, 3, 4), "bf16") == 660
    assert rl.conv2d_bytes((2, 5, 5, 3), (3, 3, 3, 4), (2, 3, 3, 4), "fp16") == 660


def _conv_case(op, dtype="fp32"):
    # 5x5x3 -> 3x3x4, 3x3 valid, N=2 (the shape above)
    p = Problem("t", "conv2d", {"H": 5, "W": 5, "C": 3, "K": 4, "R": 3, "S": 3, "stride": (1, 1),
                                "padding": ((0, 0), (0, 0)), "dilation": (1, 1), "groups": 1, "out": [3, 3]})
    return Case("test", op, p, 2, dtype)


@pytest.mark.parametrize("op", ["conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad"])
def test_case_counts_are_the_same_for_fprop_dgrad_wgrad(op):
    c = _conv_case(op)
    assert c.flops == 3888 and c.bytes == 1320
    # what each pass reads: fprop x, w; dgrad dy, w; wgrad x, dy
    want = {"conv2d_fprop": {"x": (2, 5, 5, 3), "w": (3, 3, 3, 4)},
            "conv2d_dgrad": {"dy": (2, 3, 3, 4), "w": (3, 3, 3, 4)},
            "conv2d_wgrad": {"x": (2, 5, 5, 3), "dy": (2, 3, 3, 4)}}[op]
    assert c.inputs == want
    assert c.output_shape == {"conv2d_fprop": (2, 3, 3, 4), "conv2d_dgrad": (2, 5, 5, 3),
                              "conv2d_wgrad": (3, 3, 3, 4)}[op]


# ---- max-pool ------------------------------------------------------------------------------------
def test_maxpool_counts():
    # 1x4x4x2 -> 1x2x2x2 with a 2x2/2 window: 8 outputs, 3 comparisons each = 24 FLOPs
    assert rl.maxpool_flops(1, 2, 2, 2, 2, 2) == 24
    # in 32 + out 8 elements, fp32: 40*4 = 160; + 1-byte argmax per output: 168
    assert rl.maxpool_bytes((1, 4, 4, 2), (1, 2, 2, 2), "fp32", argmax_bytes=0) == 160
    assert rl.maxpool_bytes((1, 4, 4, 2), (1, 2, 2, 2), "fp32") == 168
    # fp16: 40*2 + 8 = 88
    assert rl.maxpool_bytes((1, 4, 4, 2), (1, 2, 2, 2), "fp16") == 88


def test_maxpool_case_stores_argmax_and_uses_the_cuda_core_peak():
    p = Problem("p", "maxpool", {"H": 4, "W": 4, "C": 2, "pool": (2, 2), "stride": (2, 2),
                                 "padding": ((0, 0), (0, 0)), "out": [2, 2]})
    c = Case("test", "maxpool", p, 1, "fp32")
    assert (c.flops, c.bytes) == (24, 168)
    assert rl.peak_key("maxpool", "bf16") == "fp32" and rl.peak_key("conv2d_fprop", "bf16") == "bf16"


# ---- GEMM ---------------------------------------------------------------------------------------
def test_gemm_counts():
    # M=2, N=3, K=4: 2*2*3*4 = 48 FLOPs; (2*4 + 4*3 + 2*3) = 26 elements
    assert rl.gemm_flops(2, 3, 4) == 48
    assert rl.gemm_bytes(2, 3, 4, "fp32") == 104
    assert rl.gemm_bytes(2, 3, 4, "bf16") == 52


def test_gemm_case_with_batch_as_m():
    p = Problem("d", "gemm", {"M": "batch", "N": 10, "K": 10816})
    c = Case("test", "gemm", p, 128, "fp32")
    # 2 * 128 * 10 * 10816 = 27,688,960
    # (128*10816 + 10816*10 + 128*10) * 4 = (1,384,448 + 108,160 + 1,280) * 4 = 1,493,888 * 4 = 5,975,552
    assert c.flops == 27_688_960 and c.bytes == 5_975_552
    assert c.inputs == {"a": (128, 10816), "b": (10816, 10)} and not p.batch_free
    assert Problem("s", "gemm", {"M": 64, "N": 64, "K": 64}).batch_free


def test_dtype_bytes_rejects_unknown():
    with pytest.raises(ValueError):
        rl.dtype_bytes("int8")


# ---- roofline -----------------------------------------------------------------------------------
def test_roofline_memory_bound():
    # 1 TFLOP at 1 PFLOP/s = 1 ms; 4 GB at 1 TB/s = 4 ms -> memory-bound, floor 4 ms
    r = rl.roofline(10**12, 4 * 10**9, 1e15, 1e12)
    assert r.bound == "memory"
    assert math.isclose(r.compute_s, 1e-3) and math.isclose(r.memory_s, 4e-3) and math.isclose(r.floor_s, 4e-3)
    assert math.isclose(r.intensity, 250.0)
    assert math.isclose(r.pct(8e-3), 50.0)          # measured twice the floor: 50% of roofline
    assert math.isclose(r.pct(4e-3), 100.0)


def test_roofline_compute_bound_and_tie():
    r = rl.roofline(10**12, 10**8, 1e15, 1e12)        # 1 ms of math, 0.1 ms of traffic
    assert r.bound == "compute" and math.isclose(r.floor_s, 1e-3)
    assert math.isclose(r.pct(2e-3), 50.0) and math.isclose(r.pct(1e-3), 100.0)
    tie = rl.roofline(10**12, 10**9, 1e15, 1e12)      # 1 ms each: called compute-bound
    assert tie.bound == "compute"


def test_percent_of_roofline_without_a_time():
    assert rl.percent_of_roofline(1e-3, None) is None and rl.percent_of_roofline(1e-3, 0) is None


def test_roofline_rejects_zero_ceilings():
    with pytest.raises(ValueError):
        rl.roofline(1, 1, 0, 1)


def test_datasheets():
    h100 = rl.datasheet_for("NVIDIA H100 80GB HBM3")
    assert h100.peak("bf16") == 989e12 and h100.peak("tf32") == 495e12 and h100.peak("fp32") == 67e12
    assert h100.bandwidth == 3.35e12
    h200 = rl.datasheet_for("NVIDIA H200")
    assert h200.peak("fp16") == 989e12 and h200.bandwidth == 4.8e12
    assert rl.datasheet_for("NVIDIA H100 PCIe").bandwidth == 2.0e12
    assert rl.datasheet_for("NVIDIA A10") is None and rl.datasheet_for(None) is None


def test_ceilings_json_round_trip_and_missing_peak():
    c = rl.Ceilings({"fp32": 1e12}, 1e11, "measured")
    assert rl.Ceilings.from_json(c.to_json()) == c
    with pytest.raises(KeyError):
        c.peak("bf16")


def test_achieved_and_geomean():
    assert rl.achieved(100, 50, 2.0) == (50.0, 25.0)
    assert rl.achieved(100, 50, None) == (None, None)
    assert math.isclose(rl.geomean([2.0, 8.0]), 4.0)
    assert rl.geomean([None, 0, float("nan")]) is None


# ---- occupancy (H100/H200: 64 warps, 32 blocks, 64K registers, 228 KB shared memory per SM) --------
def test_occupancy_register_limited():
    # 256 threads = 8 warps; 64 regs/thread -> 2048 regs/warp -> 65536/2048 = 32 warps -> 4 blocks;
    # warps allow 64/8 = 8 blocks; shared memory (1 KB reserved per block) 228 -> 4 blocks = 32 warps = 50%
    o = occupancy(256, 64, 0)
    assert o["blocks_per_sm"] == 4 and o["warps_per_sm"] == 32 and o["occupancy"] == 0.5
    assert o["limiter"] == "registers"


def test_occupancy_shared_memory_limited():
    # 128 threads = 4 warps; 32 regs -> 64 warps -> 16 blocks; 48 KB + 1 KB reserved = 50,176 B per block
    # -> 233,472 // 50,176 = 4 blocks = 16 warps = 25%
    o = occupancy(128, 32, 48 * 1024)
    assert o["blocks_per_sm"] == 4 and o["occupancy"] == 0.25 and o["limiter"] == "shared memory"


def test_occupancy_full_and_errors():
    # 1024 threads = 32 warps, 32 regs (1024 per warp -> 64 warps): 2 blocks = 64 warps = 100%
    assert occupancy(1024, 32, 0)["occupancy"] == 1.0
    # 255 regs round up to 8192 per warp -> 8 warps per SM: one 256-thread block, no 512-thread block
    assert occupancy(256, 255, 0)["blocks_per_sm"] == 1
    assert occupancy(512, 255, 0)["blocks_per_sm"] == 0
    with pytest.raises(ValueError):
        occupancy(128, 300, 0)
    with pytest.raises(ValueError):
        occupancy(128, 32, 228 * 1024)
