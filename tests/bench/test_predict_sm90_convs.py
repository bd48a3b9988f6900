"""scripts/predict_sm90_convs.py: the ResNet-50 bf16 predictions in benchmarks/NOTES.md are the script's output,
its counts agree with hand arithmetic, and --compare sets a bench JSON's measurements beside them."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "predict_sm90_convs.py"


@pytest.fixture(scope="module")
def predict():
    spec = importlib.util.spec_from_file_location("predict_sm90_convs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(rows, name, op):
    (r,) = [r for r in rows if r["case"].problem.name == name and r["case"].op == op]
    return r


def test_notes_hold_the_scripts_table():
    p = subprocess.run([sys.executable, str(SCRIPT), "--check", str(ROOT / "benchmarks" / "NOTES.md")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_counts_and_floor_by_hand(predict):
    rows = predict.predictions(32)
    r = row(rows, "res2_3x3", "conv2d_fprop")          # 32 x 56 x 56 x 64 -> 64, 3x3 pad 1
    flops = 2 * 32 * 56 * 56 * 64 * 9 * 64
    nbytes = (2 * 32 * 56 * 56 * 64 + 9 * 64 * 64) * 2
    assert r["case"].flops == flops and r["case"].bytes == nbytes
    assert r["floor"].floor_s == pytest.approx(max(flops / 989e12, nbytes / 4.8e12))
    assert r["gemm"] == (32 * 56 * 56, 64, 9 * 64) and r["tiles"] == 784 and r["k_tiles"] == "9"
    # res4_3x3: the plan's 98 tiles of 128x128 (49 of 128x256 would fill under half of 132 SMs), one round: one
    # tile's time. L2 gives 132 x 32 KiB per 512 / 0.6 cycles (128x128 on every SM at 60%), shared by the 98 CTAs
    # (under the 64 B/clk port): a k-tile is the larger of 512 / 0.9 tensor cycles and 32 KiB at that share; 36
    # k-tiles (9 taps x 256 / 64), the 1000-cycle fill and the 32 KiB bf16 epilogue at 64 B/clk; plus one launch
    l2 = 132 * 32768 * 0.6 / 512
    r = row(rows, "res4_3x3", "conv2d_fprop")
    assert r["tiles"] == 98 and r["tile"] == "128x128" and r["k_tiles"] == "36"
    cycles = 1000 + 36 * max(512 / 0.9, 32768 / min(64, l2 / 98)) + 128 * 128 * 2 / 64
    assert r["device_s"] == pytest.approx(cycles / 1.83e9 + 2e-6)
    # res5_3x3 (kept on mma.sync today: 112 < 132 tiles of 64x128, but modelled as the sm_90a conv would run it):
    # 112 tiles of 64x128 in one round, a k-tile 256 / 0.9 tensor cycles or (64 + 128) x 128 bytes at L2 / 112
    r = row(rows, "res5_3x3", "conv2d_fprop")
    assert r["tiles"] == 112 and r["tile"] == "64x128" and r["plan"] == "mma.sync: few tiles"
    cycles = 1000 + 72 * max(256 / 0.9, 192 * 128 / min(64, l2 / 112)) + 64 * 128 * 2 / 64
    assert r["device_s"] == pytest.approx(cycles / 1.83e9 + 2e-6)
    assert r["ours_s"] == pytest.approx(max(r["device_s"], 30e-6))
    # dgrad by stride phases: 3x3/2 pad 1 gives 1, 2, 2 and 4 taps, times K = 128 in two k-tiles
    assert row(rows, "res3a_3x3_s2", "conv2d_dgrad")["k_tiles"] == "8/4/2"
    # the stem (C = 3): no sm_90a kernel, and the plan says why it runs mma.sync
    stem = row(rows, "conv1_7x7_s2", "conv2d_fprop")
    assert stem["gemm"] is None and stem["plan"] == "mma.sync: C % 8"
    assert row(rows, "res2_1x1_expand", "conv2d_fprop")["plan"] == "wgmma GEMM"


def test_compare_sets_measurements_beside_the_predictions(tmp_path, predict):
    doc = {"runs": [{"results": [
        {"suite": "resnet50", "problem": "res2_3x3", "op": "conv2d_fprop", "dtype": "bf16", "batch": 32,
         "fastconv": {"median_s": 40e-6}, "baseline": {"median_s": 20e-6}, "ratio": 0.5},
        {"suite": "resnet50", "problem": "res2_3x3", "op": "conv2d_fprop", "dtype": "fp32", "batch": 32,
         "fastconv": {"median_s": 1.0}, "baseline": {"median_s": 1.0}, "ratio": 1.0}]}]}
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(doc))
    text = predict.compare(path, 32)
    lines = [line for line in text.splitlines() if line.startswith("| res2_3x3")]
    expected = row(predict.predictions(32), "res2_3x3", "conv2d_fprop")
    assert lines == [f"| res2_3x3 | fprop | {expected['ours_s'] * 1e6:.1f} | 40.0 | {expected['cudnn_s'] * 1e6:.1f} | "
                     f"20.0 | {expected['ratio']:.2f} | 0.50 |"]
    assert "no resnet50 bf16 batch-256 results" in predict.compare(path, 256)
