"""`fastconv tune` end to end: on the emulated backend with a tiny suite (wall-clock timing through the
CPU emulator, entries marked as not a real tuning), its refusals, and (gpu marker) on a real GPU."""
import json

import numpy as np
import pytest

from fastconv.backends import tuning
from fastconv.backends import backend_status
from fastconv.backends import reference as ref
from fastconv.cli import main
from fastconv.backends.device import cuda_available

needs_emu = pytest.mark.skipif(not backend_status()["emulated"][0], reason="fastconv._emu is not built")
TINY = {"name": "tiny", "batches": [2], "cpu_batch": 2, "dtypes": ["fp32", "fp16"], "problems": [
    {"name": "conv3x3", "kind": "conv2d", "H": 6, "W": 5, "C": 8, "K": 12, "R": 3, "S": 3, "stride": [1, 1],
     "padding": [[1, 1], [1, 1]]},
    {"name": "depthwise", "kind": "conv2d", "H": 5, "W": 5, "C": 4, "K": 4, "R": 3, "S": 3, "groups": 4},
    {"name": "fc", "kind": "gemm", "M": "batch", "N": 24, "K": 32}]}


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    return str(path)


def _tune(*args):
    return main(["tune", *args])


@needs_emu
def test_tune_end_to_end_on_the_emulator(suite, tmp_path, capsys, monkeypatch):
    out_file = tmp_path / "tuned.json"
    assert _tune("--suite", suite, "--backend", "emulated", "--file", str(out_file),
                 "--op", "fprop,dgrad,wgrad,gemm", "--dtype", "float32,float16") == 0
    text = capsys.readouterr().out
    assert "timer emulator wall clock (not a real tuning)" in text
    assert "depthwise" not in text or "nothing to tune" in text
    assert "skipped (no tile-parameterized kernel ran (fc::conv2d_fprop_depthwise<float>)" in text
    assert "conv2d_dgrad is tuned in float32, and conv2d_fprop in float16 / bfloat16 too" in text
    # the fp16 fprop: this tiny conv stays off the sm_90a conv (too few tiles for an H100; K = 12 is 24 bytes, so
    # not the tensor-op conv either but the CUDA-core one), so it has no sm_90a tile to tune
    assert ("skipped (the plan did not route it to the sm_90a conv (ran fc::conv2d_fprop_implicit_gemm<fc::TileSmall"
            in text)
    assert "chosen" in text and "heuristic" in text and "x vs heuristic" in text
    entries = tuning.TuningFile.read(out_file).entries
    ops = {(e["op"], e["dtype"]) for e in entries.values()}
    assert ops == {("conv2d_fprop", "float32"), ("conv2d_dgrad", "float32"), ("conv2d_wgrad", "float32"),
                   ("gemm", "float32"), ("gemm_tensor_op", "float16")}
    for e in entries.values():
        assert e["device"] == tuning.EMULATOR_DEVICE and e["real"] is False
        times = e["candidates_us"]
        label = e["config"]["tile"] + (f" splits={e['config']['splits']}" if "splits" in e["config"] else "")
        h = e["heuristic"]["tile"] + (f" splits={e['heuristic']['splits']}" if "splits" in e["heuristic"] else "")
        assert label in times and h in times and all(t > 0 for t in times.values())
        assert label == h or times[label] == min(times.values())       # the fastest, unless within noise
        assert e["speedup_vs_heuristic"] == pytest.approx(times[h] / times[label], rel=1e-2)
    wgrad = next(e for e in entries.values() if e["op"] == "conv2d_wgrad")
    assert len(wgrad["candidates_us"]) >= 4          # tiles x split-k counts
    gemm16 = next(e for e in entries.values() if e["op"] == "gemm_tensor_op")
    assert set(gemm16["candidates_us"]) == {"Tile64", "Tile128"}
    assert gemm16["problem"] == "M=2 N=24 K=32 nn out=float32"

    # the file it wrote steers the plans: the chosen wgrad config is what runs, with exact results
    from fastconv.backends import emulated
    monkeypatch.setenv(tuning.ENV, str(out_file))
    ops_ = emulated.ops()
    rng = np.random.default_rng(0)
    x = rng.integers(-3, 4, (2, 6, 5, 8)).astype(np.float32)
    dy = rng.integers(-3, 4, (2, 6, 5, 12)).astype(np.float32)
    args = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    np.testing.assert_array_equal(ops_.conv2d_wgrad(x, dy, (3, 3, 8, 12), *args),
                                  ref.conv2d_wgrad(x, dy, (3, 3, 8, 12), *args))
    assert ops_.executor.launched[0] == f"fc::conv2d_wgrad_implicit_gemm<fc::{wgrad['config']['tile']}, 4, int, float>"

    # a second run merges: other entries stay, re-tuned ones are replaced
    assert _tune("--suite", suite, "--backend", "emulated", "--file", str(out_file), "--op", "gemm") == 0
    assert tuning.TuningFile.read(out_file).entries.keys() == entries.keys()


@needs_emu
def test_tune_times_every_sm90_conv_tile(tmp_path, capsys, monkeypatch):
    """fp16 / bf16 conv fprop routed to the sm_90a conv (here by sm90_conv_min_tiles = 0: the emulator counts tiles
    as an H100 would): every BM x BN tile of the type is checked and timed, the heuristic is the plan's rule, the
    entry's op is conv2d_fprop_sm90, and the file then steers the plan."""
    from fastconv.backends import emulated
    from fastconv.backends.plans.conv2d_sm90 import choose_tile
    from fastconv.bench import tune
    real_backend = tune.emulated_backend

    def backend():
        b = real_backend()
        monkeypatch.setattr(b.ops, "sm90_conv_min_tiles", 0)
        return b
    monkeypatch.setattr(tune, "emulated_backend", backend)
    suite = tmp_path / "tiny16.json"
    suite.write_text(json.dumps({**TINY, "name": "tiny16", "dtypes": ["fp16", "bf16"],
                                 "problems": TINY["problems"][:1]}))
    out_file = tmp_path / "t.json"
    assert _tune("--suite", str(suite), "--backend", "emulated", "--file", str(out_file), "--op", "fprop",
                 "--dtype", "float16,bfloat16") == 0
    entries = {e["dtype"]: e for e in tuning.TuningFile.read(out_file).entries.values()}
    assert set(entries) == {"float16", "bfloat16"}
    assert set(entries["float16"]["candidates_us"]) == {"128x128", "64x128", "64x64"}
    assert set(entries["bfloat16"]["candidates_us"]) == {"128x128", "128x256", "64x128", "64x64"}
    rule = "{}x{}".format(*choose_tile(2, 6, 5, 12, (1, 1), "__half")[:2])
    for e in entries.values():
        assert e["op"] == "conv2d_fprop_sm90" and e["heuristic"] == {"tile": rule}
        assert e["config"]["tile"] in e["candidates_us"]
    monkeypatch.setenv(tuning.ENV, str(out_file))
    ops = emulated.ops()
    monkeypatch.setattr(ops, "sm90_conv_min_tiles", 0)
    x = np.random.default_rng(0).integers(-3, 4, (2, 6, 5, 8)).astype(np.float16)
    w = np.random.default_rng(1).integers(-3, 4, (3, 3, 8, 12)).astype(np.float16)
    args = ((1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    y = ops.conv2d_fprop_tensor_core(x, w, *args)
    np.testing.assert_array_equal(y, ref.conv2d_fprop(x.astype(np.float32), w.astype(np.float32), *args))
    bm, bn = (int(v) for v in entries["float16"]["config"]["tile"].split("x"))
    assert ops.executor.launched[-1] == ("fc::conv2d_fprop_wgmma_sm90<fc::WgmmaTile<{}, 4{}>, __half, float>"
                                         .format(bn, "" if bm == 128 else f", {bm}"))


@needs_emu
def test_heuristic_recorded_is_what_the_plan_picks(suite, tmp_path, capsys):
    """The tuner reads the heuristic from the launch trace; check it against the plan's own choice."""
    from fastconv.backends.plans.common import choose_splits, choose_tile
    out_file = tmp_path / "t.json"
    assert _tune("--suite", suite, "--backend", "emulated", "--file", str(out_file), "--op", "fprop,wgrad") == 0
    entries = {e["op"]: e for e in tuning.TuningFile.read(out_file).entries.values()}
    assert entries["conv2d_fprop"]["heuristic"] == {"tile": choose_tile(2 * 6 * 5, 12)}
    tile = choose_tile(3 * 3 * 8, 12)
    assert entries["conv2d_wgrad"]["heuristic"] == {"tile": tile, "splits": choose_splits(72, 12, 60, tile)[0]}


@pytest.mark.skipif(cuda_available(), reason="checks the refusal on a machine without a GPU")
def test_refuses_without_a_gpu(suite, tmp_path, capsys):
    assert _tune("--suite", suite, "--file", str(tmp_path / "t.json")) == 2
    err = capsys.readouterr().err
    assert "fastconv tune times kernels on a GPU, and none is usable" in err and "--backend emulated" in err
    assert not (tmp_path / "t.json").exists()


def test_emulated_needs_an_explicit_file(suite, capsys):
    assert _tune("--suite", suite, "--backend", "emulated") == 2
    assert "--backend emulated writes only to an explicit --file" in capsys.readouterr().err


@needs_emu
def test_corrupt_file_is_refused_and_kept(suite, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "fastconv-tuning", "version": 1, "entries": ')
    assert _tune("--suite", suite, "--backend", "emulated", "--file", str(bad)) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "is not valid JSON" in err
    assert bad.read_text() == '{"format": "fastconv-tuning", "version": 1, "entries": '


@pytest.mark.parametrize("args, words", [(["--op", "pool"], "--op 'pool' is not one of"),
                                         (["--dtype", "int8"], "--dtype 'int8' is not one of"),
                                         (["--shape", "nope"], "--shape ['nope'] not found")])
@needs_emu
def test_bad_arguments(suite, tmp_path, capsys, args, words):
    assert _tune("--suite", suite, "--backend", "emulated", "--file", str(tmp_path / "t.json"), *args) == 2
    assert words in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU")
def test_tune_on_the_gpu(suite, tmp_path, capsys, monkeypatch):
    """A real tuning: CUDA events, the GPU's name and compute capability in the key, and the plans
    launching the tuned GEMM tile afterwards (checked through fastconv.explain)."""
    import cupy

    import fastconv as fc
    from fastconv.backends import native
    out_file = tmp_path / "t.json"
    assert _tune("--suite", suite, "--file", str(out_file), "--op", "fprop,wgrad,gemm") == 0
    assert "timer cuda events" in capsys.readouterr().out
    entries = tuning.TuningFile.read(out_file).entries
    assert entries and all(e["real"] is True and "(sm_" in e["device"] for e in entries.values())
    gemm = next(e for e in entries.values() if e["op"] == "gemm")
    monkeypatch.setenv(tuning.ENV, str(out_file))
    a = cupy.asarray(np.random.default_rng(0).integers(-3, 4, (2, 32)).astype(np.float32))
    b = cupy.asarray(np.random.default_rng(1).integers(-3, 4, (32, 24)).astype(np.float32))
    report = fc.explain(lambda: native._ops().gemm(a, b))
    assert report.kernels[0].startswith(f"fc::gemm_bias_act<fc::{gemm['config']['tile']}, ")
    np.testing.assert_array_equal(cupy.asnumpy(report.result), cupy.asnumpy(a) @ cupy.asnumpy(b))
