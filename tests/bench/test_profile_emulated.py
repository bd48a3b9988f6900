"""`fastconv profile --emulated` and its pieces: the per-kernel aggregation (emulator.kernel_counters),
emulator.counting(), the occupancy calculator per target, the static report, and the CLI on an op,
the seed model's step and ResNet-18's convs, with the numbers checked against emulator.profile() on
the same launches and against hand-computed counts."""
import json

import numpy as np
import pytest

from fastconv import emulator
from fastconv.bench import static_resources
from fastconv.bench.occupancy import SM80, SM90, TARGETS, occupancy
from fastconv.cli import main
from fastconv.emulator_counters import METRICS, format_kernel_table, kernel_counters, line_counters

needs_emu = pytest.mark.skipif(not emulator.available(), reason="fastconv._emu is not built")


def _site(space, op, requests, lanes, nbytes, site="k.cu:1", **rest):
    return {"site": site, "space": space, "op": op, "requests": requests, "lanes": lanes, "bytes": nbytes, **rest}


# ---- kernel_counters: sums and ratios over launches (no emulator) ---------------------------------
def test_kernel_counters_sums_launches_and_derives_ratios():
    # launch 1: a coalesced fp32 load (8 requests, 256 lanes x 4 bytes, 32 sectors) and a 2-way conflicted
    # shared store (4 requests, 8 wavefronts where 4 would do); launch 2: a stride-32 load (8 requests, 256 sectors)
    one = [_site("global", "load", 8, 256, 1024, sectors=32),
           _site("shared", "store", 4, 128, 512, site="k.cu:2", wavefronts=8, ideal_wavefronts=4)]
    two = [_site("global", "load", 8, 256, 1024, sectors=256)]
    rows = kernel_counters([("k", one), ("k", two), ("other", [])])
    assert list(rows) == ["k", "other"]
    k = rows["k"]
    assert k["launches"] == 2 and k["global_ld_requests"] == 16 and k["global_ld_sectors"] == 288
    assert k["global_ld_sectors_per_request"] == 288 / 16
    assert k["global_ld_bytes_moved"] == 288 * 32 and k["global_ld_efficiency"] == 2048 / (288 * 32)
    assert k["shared_st_wavefronts"] == 8 and k["shared_st_conflicts"] == 4 and k["shared_st_wavefronts_per_request"] == 2
    assert k["global_st_requests"] == 0 and k["global_st_efficiency"] is None and k["shared_ld_wavefronts_per_request"] is None
    assert rows["other"]["launches"] == 1 and rows["other"]["global_ld_sectors"] == 0
    lines = line_counters([("k", one), ("k", two)])
    load = next(r for r in lines if r["space"] == "global")
    assert load["requests"] == 16 and load["sectors"] == 288 and load["sectors_per_request"] == 18
    assert next(r for r in lines if r["space"] == "shared")["conflicts"] == 4


def test_every_metric_column_names_an_ncu_metric():
    rows = kernel_counters([("k", [_site("global", "load", 1, 32, 128, sectors=4)])])
    table = format_kernel_table(rows)
    for metric in METRICS.values():
        assert metric in table
    assert all(m.startswith(("l1tex__", "smsp__")) and m.endswith((".sum", ".pct")) for m in METRICS.values())


@pytest.mark.parametrize("bad, error", [
    ("k", TypeError), ([("k",)], TypeError), ([(1, [])], TypeError),
    ([("k", [{"space": "local", "op": "load"}])], ValueError)])
def test_kernel_counters_rejects_what_is_not_a_launch(bad, error):
    with pytest.raises(error, match="launches"):
        kernel_counters(bad)


# ---- occupancy per target: hand-computed ------------------------------------------------------
def test_occupancy_targets_are_the_two_we_build():
    assert set(TARGETS) == {"sm_80", "sm_90a"} and TARGETS["sm_90a"] is SM90
    assert SM80.smem == 164 * 1024 and SM80.smem_per_block_max == 163 * 1024 and SM90.smem == 228 * 1024


def test_occupancy_register_limited_sm80():
    # 128 threads = 4 warps; 128 regs -> 4096 per warp -> 16 warps -> 4 blocks = 16 warps of 64 = 25%
    o = occupancy(128, 128, 0, SM80)
    assert (o["blocks_per_sm"], o["warps_per_sm"], o["limiter"]) == (4, 16, "registers") and o["occupancy"] == 0.25


def test_occupancy_shared_limited_differs_between_targets():
    # 256 threads, 32 regs (warps allow 8 blocks, registers 8); 40 KB + 1 KB reserved = 41,984 B per block:
    # sm_80: 167,936 // 41,984 = 4 blocks = 32 warps (50%); sm_90a: 233,472 // 41,984 = 5 blocks = 40 warps
    a, h = occupancy(256, 32, 40 * 1024, SM80), occupancy(256, 32, 40 * 1024, SM90)
    assert (a["blocks_per_sm"], a["limiter"], a["occupancy"]) == (4, "shared memory", 0.5)
    assert (h["blocks_per_sm"], h["warps_per_sm"], h["limiter"]) == (5, 40, "shared memory")


def test_occupancy_block_limited():
    # 32-thread blocks of 16 regs, no shared memory: warps would allow 64 blocks, registers 128, shared
    # memory 228 KB / 1 KB = 228; at most 32 blocks per SM -> 32 warps = 50%
    o = occupancy(32, 16, 0, SM90)
    assert (o["blocks_per_sm"], o["limiter"], o["occupancy"]) == (32, "blocks", 0.5)
    assert o["by"]["warps"] == 64 and o["by"]["registers"] == 128


def test_occupancy_errors_name_the_argument():
    with pytest.raises(ValueError, match="threads_per_block"):
        occupancy(0, 32)
    with pytest.raises(ValueError, match="threads_per_block"):
        occupancy(2048, 32)
    with pytest.raises(TypeError, match="regs_per_thread"):
        occupancy(128, 32.5)
    with pytest.raises(ValueError, match="exceeds 166912 on sm_80"):
        occupancy(128, 32, 164 * 1024, SM80)
    with pytest.raises(ValueError, match="arch must be one of"):
        static_resources.launch_occupancy({"registers": 32, "smem": 0}, "sm_70", 128, 0)


# ---- counting(): the same numbers as profile(), and hand-computed ones --------------------------
COPY = r"""
__global__ void copy(const float* x, float* y, int stride) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  y[i] = x[i * stride];
}
"""


@needs_emu
def test_counting_matches_profile_and_hand_counts():
    k = emulator.compile_kernel(COPY, "copy", filename="copy.cu")
    x, y = np.arange(256 * 32, dtype=np.float32), np.zeros(256, np.float32)
    with emulator.counting() as launches:
        emulator.launch(k, 2, 128, (x, y, 1))
        emulator.launch(k, 2, 128, (x, y, 32))
    assert [(a.kernel, a.grid, a.block, a.shared_bytes) for a in launches] == [("copy", (2, 1, 1), (128, 1, 1), 0)] * 2
    np.testing.assert_array_equal(y, x[::32])        # it ran
    assert launches[1].sites == emulator.profile(k, 2, 128, (x, y, 32))
    row = kernel_counters(launches)["copy"]
    # 256 threads = 8 warps per launch; stride 1: 4 sectors per 128-byte request, stride 32: 32 sectors
    assert row["launches"] == 2 and row["global_ld_requests"] == 16 and row["global_ld_sectors"] == 8 * 4 + 8 * 32
    assert row["global_st_sectors"] == 16 * 4 and row["global_st_efficiency"] == 1.0
    assert row["global_ld_bytes"] == 2 * 256 * 4 and row["shared_ld_requests"] == 0
    assert all(s["site"].startswith("copy.cu:4 ") for a in launches for s in a.sites)   # lines resolved


@needs_emu
def test_counting_does_not_nest_and_closes():
    with emulator.counting():
        with pytest.raises(RuntimeError, match="does not nest"):
            with emulator.counting():
                pass
    with emulator.counting() as again:     # closed above: opens again
        assert again == []


# ---- the static report -------------------------------------------------------------------------
def test_static_report_without_nvcc_says_so(monkeypatch):
    monkeypatch.setattr(static_resources, "find_nvcc", lambda: None)
    report = static_resources.kernel_resources(["fc::reduce_to_scalar<float>"])
    assert report.rows == {} and "nvcc not found" in report.unavailable


def test_parse_ptxas():
    text = ("ptxas info    : Compiling entry function '_Z1kPf' for 'sm_80'\n"
            "ptxas info    : Function properties for _Z1kPf\n"
            "    16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
            "ptxas info    : Used 40 registers, 4608 bytes smem, 360 bytes cmem[0]\n")
    assert static_resources.parse_ptxas(text) == [{"symbol": "_Z1kPf", "arch": "sm_80", "stack": 16, "spill_stores": 8,
                                                   "spill_loads": 4, "registers": 40, "smem": 4608}]


@pytest.mark.slow   # nvcc: ~10 s per target the first time, then cached
@pytest.mark.skipif(static_resources.find_nvcc() is None, reason="needs nvcc")
def test_static_report_from_nvcc_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCONV_EMU_CACHE", str(tmp_path))
    names = ["fc::reduce_to_scalar<float>", "fc::gemm_bias_act<fc::TileSmall, 1, int, float, false, false>",
             "selftest.sgemm_tiled"]
    report = static_resources.kernel_resources(names)
    assert report.unavailable is None and not report.cached
    assert report.missing == {"selftest.sgemm_tiled": "not a kernel of the GPU build (emulator only)"}
    for arch in ("sm_80", "sm_90a"):
        gemm = report.rows[(names[1], arch)]
        # the 32x32 tile keeps A and B tiles of 2 x 32 x 8 floats (4096 bytes) and more: the kernel's own
        # shared memory, which ptxas reports; a GEMM tile needs tens of registers
        assert gemm["smem"] >= 4096 and 32 <= gemm["registers"] <= 255 and gemm["spill_stores"] == 0
    again = static_resources.kernel_resources(names[:2])
    assert again.cached and again.rows == {k: v for k, v in report.rows.items() if k[0] in names[:2]}


# ---- the CLI and the Python API --------------------------------------------------------------
def _run(capsys, *argv):
    code = main(["profile", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv, message", [
    (["--emulated"], "exactly one of --op OP or --model NAME"),
    (["--emulated", "--layer", "conv_3x3_64"], "--emulated does not take --layer"),
    (["--emulated", "--op", "gemm", "--dtype", "bf16"], "--emulated does not take --dtype bf16"),
    (["--emulated", "--op", "gemm", "--kernel", "("], "--kernel must be a regular expression"),
    (["--emulated", "--op", "gemm", "--arch", "sm_70", "--no-static"], "archs: each must be one of"),
    (["--emulated", "--convs", "--op", "gemm"], "--convs needs --model"),
    (["--emulated", "--model", "alexnet"], "model must be one of"),
    (["--emulated", "--op", "gemm", "--shape", "nope"], "--shape ['nope'] not found"),
    (["--lines", "--op", "gemm"], "--lines applies to --emulated only"),
])
def test_cli_bad_arguments(capsys, argv, message):
    code, _, err = _run(capsys, *argv)
    assert code == 2 and message in err, err


def _recording_profile(monkeypatch):
    """Record each counted launch's arguments, so that the test can profile() the same launch again."""
    seen = []
    real = emulator._counted_sites

    def spy(kernel, grid, block, args, shared_bytes, order, seed):
        seen.append((kernel, grid, block, [a.copy() if isinstance(a, np.ndarray) else a for a in args], shared_bytes))
        return real(kernel, grid, block, args, shared_bytes, order, seed)
    monkeypatch.setattr(emulator, "_counted_sites", spy)
    return seen


@needs_emu
def test_cli_op_agrees_with_profile_on_the_same_launches(capsys, tmp_path, monkeypatch):
    seen = _recording_profile(monkeypatch)
    out_json = tmp_path / "prof.json"
    code, out, _ = _run(capsys, "--emulated", "--op", "gemm", "--batch", "2", "--no-static", "--lines",
                        "--json", str(out_json))
    assert code == 0, out
    report = json.loads(out_json.read_text())
    assert seen and len(report["launches"]) == len(seen)
    monkeypatch.undo()
    again = [(k, emulator.profile(k, g, b, a, s)) for k, g, b, a, s in seen]
    assert report["kernels"] == json.loads(json.dumps(kernel_counters(again)))
    for name, row in report["kernels"].items():
        assert name in out and str(row["global_ld_sectors"]) in out
    # the op's floor: the seed suite's GEMM (M = batch 2, K = 10816, N = 10) reads A and B and writes C once
    (op,) = report["ops"]
    assert op["op"] == "dense_fprop" and op["flops"] == 2 * 2 * 10816 * 10
    assert op["min_bytes"] == (2 * 10816 + 10816 * 10 + 2 * 10) * 4
    moved = sum(r["global_ld_bytes_moved"] + r["global_st_bytes_moved"] for r in report["kernels"].values())
    assert op["bytes_moved"] == moved and op["moved_over_min"] == moved / op["min_bytes"]
    assert "a model, not a measurement" in out and "per source line" in out
    assert report["static"] == [] and "--no-static" in report["static_unavailable"]


@needs_emu
def test_profile_step_counts_every_launch_of_the_seed_step():
    """The seed model's train_on_batch counted launch for launch: the same kernels, in the same order, as the
    emulated backend launches in an uncounted step; every launch charged to the backend op that made it."""
    from fastconv.backends import emulated
    from fastconv.bench.profile_emulated import _emulated_backend, profile_step
    import fastconv as fc
    from fastconv.bench.train_step import MODELS
    prof = profile_step("seed", batch=1, static=False)
    executor = emulated._default().executor
    shape = MODELS["seed"]["input"]
    net = fc.models.ZOO["seed"](shape, 10)
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = np.random.default_rng(1).random((1, *shape), dtype=np.float32), np.array([3])
    with _emulated_backend():
        net._ensure_built(shape)
        start = len(executor.launched)
        net.train_on_batch(x, y)          # the first step, as profile_step counts it
    assert [launch.kernel for launch in prof.launches] == executor.launched[start:]
    assert all(launch.op for launch in prof.launches)
    rows = prof.kernels()
    assert sum(r["launches"] for r in rows.values()) == len(prof.launches)
    total = sum(s["sectors"] for launch in prof.launches for s in launch.sites if s["space"] == "global")
    assert sum(r["global_ld_sectors"] + r["global_st_sectors"] for r in rows.values()) == total
    assert sum(r["launches"] for r in prof.op_rows()) == len(prof.launches)
    gemm = [k for k in rows if k.startswith("fc::gemm_bias_act")]
    assert gemm and all(k in prof.format() for k in gemm)
    assert prof.kernels("softmax") and set(prof.kernels("softmax")) <= set(rows)


@needs_emu
@pytest.mark.slow   # ResNet-18's 11 distinct convs at 8x8, batch 1, forward and backward: ~40 s of CPU
def test_profile_convs_of_resnet18():
    from fastconv.bench.profile_emulated import profile_convs
    prof = profile_convs("resnet18", batch=1, image_size=8, static=False)
    ops = {r["op"]: r for r in prof.op_rows()}
    assert {"conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad"} <= set(ops)
    for name in ("conv2d_fprop", "conv2d_wgrad"):
        assert ops[name]["flops"] > 0 and ops[name]["bytes_moved"] >= ops[name]["min_bytes"] > 0
    assert all(launch.op for launch in prof.launches)


# ---- gpu_check.sh's ncu comparison (its GPU half runs only there) --------------------------------
def _ncu_compare():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "ncu_compare.py"
    spec = importlib.util.spec_from_file_location("ncu_compare", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ncu_compare_skips_without_ncu(monkeypatch, capsys):
    ncu_compare = _ncu_compare()
    monkeypatch.setattr(ncu_compare.shutil, "which", lambda name: None)
    assert ncu_compare.main([]) == 3 and "SKIP: ncu is not on PATH" in capsys.readouterr().out


def test_ncu_compare_marks_differences():
    compare = _ncu_compare().compare
    metric = METRICS["global_ld_sectors"]
    joined, lines = compare({"k": {metric: 32.0}}, {"k": {metric: 32.0}})
    assert joined == {"k": {metric: {"emulated": 32.0, "ncu": 32.0}}} and "differs" not in lines[1]
    _, lines = compare({"k": {metric: 32.0}}, {"k": {metric: 40.0}})
    assert lines[1].endswith("<- differs")
    _, lines = compare({"k": {metric: 32.0}}, {})            # ncu did not report it
    assert lines[1].endswith("<- differs")


@needs_emu
def test_ncu_compare_emulated_side_is_the_hand_computed_counts():
    emulated_counters = _ncu_compare().emulated_counters
    ours = emulated_counters()
    sectors, conflicts = METRICS["global_ld_sectors"], METRICS["shared_ld_conflicts"]
    # 8192 threads = 256 warps: 4 sectors per coalesced fp32 request, 32 at stride 32; copy4: 64 warps of
    # 16-byte loads, 16 sectors each
    assert ours["copy stride 1"][sectors] == 256 * 4 and ours["copy stride 32"][sectors] == 256 * 32
    assert ours["copy4 (128-bit)"][sectors] == 64 * 16
    assert ours["copy stride 1"][METRICS["global_ld_efficiency"]] == 100.0
    # the column read of an unpadded 32x32 tile: 32 requests of 32 wavefronts, 31 of them conflicts
    assert ours["transpose32 no pad"][conflicts] == 32 * 31 and ours["transpose32 pad 1"][conflicts] == 0


@needs_emu
def test_emulator_api_profiles_an_op():
    prof = emulator.profile_op("maxpool", batch=1, static=False)
    (op,) = prof.op_rows()
    # the seed suite's 2x2/2 pool of 26x26x64: reads x once, writes y and a 1-byte argmax per output
    assert op["op"] == "max_pool2d_fprop" and op["min_bytes"] == (26 * 26 * 64 + 13 * 13 * 64) * 4 + 13 * 13 * 64
    assert op["bytes_moved"] >= 26 * 26 * 64 * 4 and prof.kernels() and prof.resources is None
    with pytest.raises(ValueError, match="op must be one of"):
        emulator.profile_op("conv3d")


@needs_emu
def test_cli_says_when_the_static_report_is_unavailable(capsys, monkeypatch):
    monkeypatch.setattr(static_resources, "find_nvcc", lambda: None)
    code, out, _ = _run(capsys, "--emulated", "--op", "gemm", "--batch", "1")
    assert code == 0 and "static resources: unavailable: no static report: nvcc not found" in out
    assert "fc::gemm_bias_act" in out                # the counters are there all the same


WARP_SUM = r"""
__global__ void warp_sum(const float* x, float* y) {
  __shared__ float partial[2];
  float v = x[blockIdx.x * blockDim.x + threadIdx.x];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) y[blockIdx.x] = partial[0] + partial[1];
}
"""


@needs_emu
def test_executed_warp_instructions_are_counted():
    """3 blocks of 64 threads = 6 warps: 5 butterfly shuffles per warp, one barrier per warp."""
    k = emulator.compile_kernel(WARP_SUM, "warp_sum", filename="warp_sum.cu")
    x, y = np.arange(192, dtype=np.float32), np.zeros(3, np.float32)
    with emulator.counting() as launches:
        emulator.launch(k, 3, 64, (x, y))
    np.testing.assert_array_equal(y, x.reshape(3, 64).sum(axis=1))
    row = kernel_counters(launches)["warp_sum"]
    assert row["instructions"] == {"__shfl_xor_sync": 6 * 5, "__syncthreads": 6}
    assert row["shared_st_requests"] == 6 and row["shared_st_lanes"] == 6     # lane 0 of each warp
    assert "__shfl_xor_sync 30" in format_kernel_table({"warp_sum": row})
    assert all(s["space"] != "instruction" for s in line_counters(launches))
