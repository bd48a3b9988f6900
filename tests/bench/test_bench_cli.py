"""`fastconv bench` and `fastconv profile` on the CPU: tables, JSON, PNG, exit codes, parser wiring."""
import argparse
import json

import pytest

from fastconv.bench.cli import add_bench_parser, add_profile_parser, main

pytest.importorskip("torch")
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def ceilings(tmp_path):
    """Fixed CPU ceilings, so the tests skip the (second-long) measurement: 50 GFLOP/s, 10 GB/s."""
    path = tmp_path / "ceilings.json"
    path.write_text(json.dumps({"peak_flops": {"fp32": 5e10}, "bandwidth": 1e10, "source": "test fixture"}))
    return str(path)


def test_parsers_plug_into_any_cli():
    parser = argparse.ArgumentParser(prog="fastconv")
    sub = parser.add_subparsers(dest="command", required=True)
    add_bench_parser(sub)
    add_profile_parser(sub)
    args = parser.parse_args(["bench", "--suite", "seed", "--op", "gemm", "--limit", "1"])
    assert callable(args.func) and args.suite == "seed" and args.limit == 1
    args = parser.parse_args(["profile", "--model", "seed"])
    assert callable(args.func) and args.model == "seed"


def test_bench_cpu_table_json_and_png(tmp_path, capsys, ceilings):
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    rc = main(["bench", "--device", "cpu", "--suite", "seed", "--op", "conv2d_fprop,maxpool,gemm", "--batch", "2",
               "--repeats", "3", "--ceilings", ceilings, "--json", str(out_json), "--plot", str(out_png)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "CPU mode" in printed and "PyTorch CPU" in printed
    for needle in ("conv_3x3_64", "pool_2x2", "dense_10816x10", "torch-cpu", "%roof", "ratio", "bound",
                   "geomean ratio"):
        assert needle in printed
    doc = json.loads(out_json.read_text())
    assert doc["schema"] == "fastconv-bench/1" and doc["env"]["mode"] == "cpu"
    for key in ("date", "git", "torch", "numpy", "cpu", "threads"):
        assert key in doc["env"]
    assert doc["ceilings"]["measured"]["bandwidth"] == 1e10
    results = doc["runs"][0]["results"]
    assert [r["op"] for r in results] == ["conv2d_fprop", "maxpool", "gemm"]
    for r in results:
        assert r["status"] == "ok" and r["check"]["ok"] and r["check"]["rel_err"] < 1e-4
        assert r["fastconv"]["median_s"] > 0 and r["baseline"]["median_s"] > 0
        assert r["ratio"] == pytest.approx(r["baseline"]["median_s"] / r["fastconv"]["median_s"])
        assert r["roofline"]["bound"] in ("compute", "memory") and r["rotation"]["sets"] >= 2
        assert r["fastconv"]["pct_roofline"] == pytest.approx(
            100 * r["roofline"]["floor_s"] / r["fastconv"]["median_s"])
    conv = results[0]
    # seed conv at batch 2: 2 * (2*26*26) * 64 * 9 = 1,557,504 FLOPs; (1568 + 576 + 86528) * 4 bytes
    assert conv["flops"] == 1_557_504 and conv["bytes"] == (2 * 28 * 28 + 9 * 64 + 2 * 26 * 26 * 64) * 4
    assert out_png.read_bytes()[:8] == PNG


def test_bench_default_cpu_run_is_bounded(capsys, ceilings):
    """No --limit: the CPU mode's default limit applies (6 shapes); --time-budget stops early."""
    rc = main(["--device", "cpu", "--op", "conv2d_fprop", "--suite", "mobilenet_v1", "--repeats", "3",
               "--time-budget", "0.5", "--ceilings", ceilings])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "first 6 shapes" in printed and "cases not run" in printed


def test_bench_skips_what_cannot_run_on_the_cpu(capsys, ceilings, tmp_path):
    out = tmp_path / "r.json"
    rc = main(["bench", "--device", "cpu", "--suite", "gemm", "--op", "gemm", "--shape", "square_8192",
               "--dtype", "bf16", "--ceilings", ceilings, "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "fp32 only" in printed and "max-gflop" in printed
    r = json.loads(out.read_text())["runs"][0]["results"][0]
    assert r["status"] == "skipped" and r["dtype"] == "fp32"


def test_bench_baseline_none(capsys, ceilings):
    assert main(["bench", "--device", "cpu", "--suite", "seed", "--op", "gemm", "--batch", "2", "--repeats", "3",
                 "--baseline", "none", "--ceilings", ceilings]) == 0
    printed = capsys.readouterr().out
    assert "no ratio (no baseline ran)" in printed and "fastconv geomean" in printed


@pytest.mark.parametrize("argv,needle", [
    (["bench", "--suite", "nope"], "unknown suite"),
    (["bench", "--op", "conv3d"], "per-shape ops"),
    (["bench", "--op", "gemm,train_step"], "runs alone"),
    (["bench", "--device", "gpu", "--op", "gemm"], "--device gpu"),
    (["profile"], "exactly one of"),
])
def test_bench_errors_exit_2(argv, needle, capsys):
    from fastconv.bench.env import torch_cuda_status
    if "gpu" in argv and torch_cuda_status()[0]:
        pytest.skip("a GPU is visible")
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_plan_orders_dtype_first_and_limits_per_op():
    from fastconv.bench.bench import plan
    ns = argparse.Namespace(op="conv2d_fprop,conv2d_dgrad", batch="32", dtype="bf16,fp32", shape=None,
                            suite="resnet50", limit=2)
    cases, _ = plan(ns, "gpu")
    assert [(c.dtype, c.op) for c in cases] == [("bf16", "conv2d_fprop")] * 2 + [("bf16", "conv2d_dgrad")] * 2 + \
        [("fp32", "conv2d_fprop")] * 2 + [("fp32", "conv2d_dgrad")] * 2
    assert {c.problem.name for c in cases} == {"conv1_7x7_s2", "res2a_1x1_reduce"}


def test_ceilings_without_the_dtype_are_refused(capsys, tmp_path):
    path = tmp_path / "bf16-only.json"
    path.write_text(json.dumps({"peak_flops": {"bf16": 1e12}, "bandwidth": 1e10}))
    assert main(["bench", "--device", "cpu", "--suite", "seed", "--op", "gemm", "--ceilings", str(path)]) == 2
    assert "no ['fp32'] peak" in capsys.readouterr().err


def test_list_suites(capsys):
    assert main(["bench", "--list"]) == 0
    printed = capsys.readouterr().out
    assert "res2_1x1_reduce" in printed and "square_8192" in printed and "conv_dw_13" in printed


def test_train_step_cpu(tmp_path, capsys):
    out_json, out_png = tmp_path / "t.json", tmp_path / "t.png"
    rc = main(["bench", "--device", "cpu", "--op", "train_step", "--model", "seed", "--batch", "8", "--repeats", "3",
               "--json", str(out_json), "--plot", str(out_png)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "images/s" in printed and "torch eager" in printed and "pass --compile" in printed
    r = json.loads(out_json.read_text())["runs"][0]["results"][0]
    assert r["model"] == "seed" and r["batch"] == 8
    # 8 images * 2,206,464 FLOP per image (see NOTES.md)
    assert r["flops_per_step"] == 8 * 2_206_464
    assert r["impls"]["fastconv"]["images_per_s"] > 0 and r["impls"]["torch eager"]["images_per_s"] > 0
    assert r["impls"]["torch.compile"]["available"] is False
    assert out_png.read_bytes()[:8] == PNG


def test_profile_model_step_cpu(tmp_path, capsys, ceilings):
    out = tmp_path / "p.json"
    assert main(["profile", "--device", "cpu", "--model", "seed", "--batch", "4", "--steps", "2", "--warmup", "1",
                 "--ceilings", ceilings, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "NVTX off (no GPU)" in printed and "conv2d_fprop" in printed and "GFLOP/s" in printed
    ops = {o["name"]: o for o in json.loads(out.read_text())["ops"]}
    # two steps of the seed model at batch 4: conv fprop 2 * (4*26*26) * 64 * 9 per step
    assert ops["conv2d_fprop"]["calls"] == 2 and ops["conv2d_fprop"]["flops"] == 2 * 2 * 4 * 26 * 26 * 64 * 9
    assert {"conv2d_wgrad", "max_pool2d_fprop", "max_pool2d_bprop", "dense_fprop", "dense_bprop"} <= set(ops)
    assert "conv2d_dgrad" not in ops                # the first layer's input needs no gradient


def test_profile_op_and_layer_cpu(capsys, ceilings):
    assert main(["profile", "--device", "cpu", "--op", "conv2d_fprop", "--suite", "seed", "--batch", "2",
                 "--steps", "2", "--ceilings", ceilings]) == 0
    assert main(["profile", "--device", "cpu", "--layer", "conv_3x3_64", "--suite", "seed", "--batch", "2",
                 "--steps", "1", "--ceilings", ceilings]) == 0
    printed = capsys.readouterr().out
    assert printed.count("conv2d_fprop") >= 2 and "conv2d_wgrad" in printed and "conv2d_dgrad" in printed


def test_profile_ncu_prints_the_filtered_command(capsys):
    assert main(["profile", "--device", "cpu", "--op", "gemm", "--suite", "gemm", "--shape", "square_1024",
                 "--ncu", "--run"]) == 0
    printed = capsys.readouterr().out
    assert "--kernel-name 'regex:fastconv|conv2d|pool2d|gemm'" in printed
    assert "--nvtx --nvtx-include fastconv/" in printed and "--plain" in printed and "--shape square_1024" in printed
    assert "not run: no GPU here" in printed
