"""The tuning file (fastconv/backends/tuning.py) and the plans that consult it: format, atomic writes, errors,
caching, lookup precedence, and the emulated KernelOps launching the tuned instantiation with results
still equal to the reference (small integers: exact whatever the tile or split-k)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastconv as fc
from fastconv.backends import tuning
from fastconv.backends import backend_status
from fastconv.backends import reference as ref

needs_emu = pytest.mark.skipif(not backend_status()["emulated"][0], reason="fastconv._emu is not built")
EMU = tuning.EMULATOR_DEVICE
OTHER_GPU = "NVIDIA H100 80GB HBM3 (sm_90)"
# conv problem with partial tiles everywhere: M = 2*6*5 = 60 rows, K = 12 columns, C = 8
X, W = (2, 6, 5, 8), (3, 3, 8, 12)
CONV = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1)


@pytest.fixture
def tuning_file(tmp_path, monkeypatch):
    path = tmp_path / "tuning.json"
    monkeypatch.setenv(tuning.ENV, str(path))
    return path


def _ints(shape, seed):
    return np.random.default_rng(seed).integers(-3, 4, shape).astype(np.float32)


def _conv_key():
    return tuning.conv_problem(X, W, CONV["stride"], CONV["padding"], CONV["dilation"], CONV["groups"])


def _write(path, entries):
    tf = tuning.TuningFile(path)
    for device, op, dtype, problem, config in entries:
        tf.put(device, op, dtype, problem, config, timer="test", real=False)
    tf.save()
    return tf


def _ops(device=None):
    from fastconv.backends import emulated
    ops = emulated.ops()
    ops.tuning_device = device
    return ops


# ---- the file ----------------------------------------------------------------------------------
def test_round_trip_and_stable_formatting(tmp_path):
    a = tuning.TuningFile(tmp_path / "a.json")
    b = tuning.TuningFile(tmp_path / "b.json")
    rows = [(OTHER_GPU, "gemm", "float32", tuning.gemm_problem(64, 32, 16), {"tile": "TileSmall"}),
            (EMU, "conv2d_wgrad", "float32", _conv_key(), {"tile": "TileLarge", "splits": 3})]
    for tf, order in ((a, rows), (b, rows[::-1])):      # insertion order must not matter
        for device, op, dtype, problem, config in order:
            tf.put(device, op, dtype, problem, config, candidates_us={"TileSmall": 2.5, "TileLarge": 1.25}, real=True)
        tf.save()
    text = (tmp_path / "a.json").read_text()
    assert text == (tmp_path / "b.json").read_text()
    assert text.endswith("}\n") and text.count("\n  ") > 10          # indented, one field a line
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    back = tuning.TuningFile.read(tmp_path / "a.json")
    assert back.entries == a.entries
    back.save()                                           # read + write again: byte for byte the same
    assert (tmp_path / "a.json").read_text() == text
    e = back.get(EMU, "conv2d_wgrad", "float32", _conv_key())
    assert e["config"] == {"tile": "TileLarge", "splits": 3} and e["fastconv"] == fc.__version__
    assert e["date"] and e["device"] == EMU and e["problem"] == _conv_key()


def test_keys_say_the_whole_problem():
    k = tuning.conv_problem((2, 6, 5, 8), (3, 3, 4, 12), (2, 1), ((1, 0), (2, 3)), (1, 2), 2)
    assert k == "x=2x6x5x8 w=3x3x4x12 stride=2x1 pad=1,0,2,3 dil=1x2 groups=2"
    assert tuning.gemm_problem(5, 6, 7, trans_a=True) == "M=5 N=6 K=7 tn"
    assert tuning.gemm_problem(5, 6, 7, out="bfloat16") == "M=5 N=6 K=7 nn out=bfloat16"
    assert tuning.entry_key("dev", "gemm", "float32", "M=1 N=2 K=3 nn") == "dev | gemm | float32 | M=1 N=2 K=3 nn"


def test_default_path_follows_env_and_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(tuning.ENV, str(tmp_path / "x.json"))
    assert tuning.default_path() == tmp_path / "x.json"
    monkeypatch.delenv(tuning.ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert tuning.default_path() == tmp_path / "cache" / "fastconv" / "tuning.json"


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    old = _write(path, [(EMU, "gemm", "float32", "M=1 N=1 K=1 nn", {"tile": "TileSmall"})])
    before = path.read_text()
    old.put(EMU, "gemm", "float32", "M=2 N=2 K=2 nn", {"tile": "TileLarge"})

    def crash(fd):
        raise KeyboardInterrupt("simulated crash after the data, before the rename")
    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(KeyboardInterrupt):
        old.save()
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.json"]


def test_process_killed_mid_write_leaves_the_old_file(tmp_path):
    """A real crash: the writing process dies (os._exit) after writing half the new text."""
    path = tmp_path / "t.json"
    _write(path, [(EMU, "gemm", "float32", "M=1 N=1 K=1 nn", {"tile": "TileSmall"})])
    before = path.read_text()
    script = textwrap.dedent(f"""
        import os, fastconv.backends.tuning as t
        tf = t.TuningFile.read({str(path)!r})
        for i in range(200):
            tf.put("dev", "gemm", "float32", f"M={{i}} N=1 K=1 nn", {{"tile": "TileLarge"}})
        real_fdopen = os.fdopen
        class Half:
            def __init__(self, f): self.f = f
            def __enter__(self): return self
            def __exit__(self, *a): pass
            def write(self, text):
                self.f.write(text[: len(text) // 2]); self.f.flush(); os._exit(3)
        os.fdopen = lambda fd, mode: Half(real_fdopen(fd, mode))
        tf.save()
    """)
    proc = subprocess.run([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode == 3
    assert path.read_text() == before
    assert tuning.TuningFile.read(path).entries.keys() == {f"{EMU} | gemm | float32 | M=1 N=1 K=1 nn"}


@pytest.mark.parametrize("text, words", [
    ("{not json", "is not valid JSON"),
    ('{"format": "something-else", "version": 1, "entries": {}}', "is not a fastconv tuning file"),
    ('{"format": "fastconv-tuning", "version": 99, "entries": {}}', "has version 99; this fastconv reads version 1"),
    ('{"format": "fastconv-tuning", "version": 1, "entries": []}', '"entries" must be an object'),
    ('{"format": "fastconv-tuning", "version": 1, "entries": {"a | gemm | float32 | p": {"device": "a", "op": "gemm", '
     '"dtype": "float32", "problem": "q", "config": {}}}}', "does not match its fields"),
    ('{"format": "fastconv-tuning", "version": 1, "entries": {"a | gemm | float32 | p": {"device": "a", "op": "gemm", '
     '"dtype": "float32", "problem": "p"}}}', 'needs a "config" object'),
])
def test_unreadable_file_raises_naming_it(tmp_path, monkeypatch, text, words):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(tuning.TuningFileError, match=words) as info:
        tuning.TuningFile.read(path)
    assert str(path) in str(info.value)
    monkeypatch.setenv(tuning.ENV, str(path))
    with pytest.raises(tuning.TuningFileError, match=words):   # the plans do not silently ignore it either
        tuning.lookup(EMU, "gemm", "float32", "M=1 N=1 K=1 nn")
    assert path.read_text() == text


def test_loaded_once_and_reloaded_when_changed(tuning_file):
    assert tuning.current() is None
    _write(tuning_file, [(EMU, "gemm", "float32", "M=1 N=1 K=1 nn", {"tile": "TileSmall"})])
    first = tuning.current()
    assert tuning.current() is first                        # cached: same object, no re-parse
    _write(tuning_file, [(EMU, "gemm", "float32", "M=1 N=1 K=1 nn", {"tile": "TileLarge"}),
                         (EMU, "gemm", "float32", "M=2 N=1 K=1 nn", {"tile": "TileLarge"})])
    second = tuning.current()
    assert second is not first and len(second.entries) == 2
    assert tuning.lookup(EMU, "gemm", "float32", "M=1 N=1 K=1 nn").config == {"tile": "TileLarge"}


def test_bypassed_ignores_the_file(tuning_file):
    _write(tuning_file, [(EMU, "gemm", "float32", "M=1 N=1 K=1 nn", {"tile": "TileLarge"})])
    with tuning.bypassed():
        assert tuning.lookup(EMU, "gemm", "float32", "M=1 N=1 K=1 nn") is None
    assert tuning.lookup(EMU, "gemm", "float32", "M=1 N=1 K=1 nn") is not None


# ---- the plans consult it ----------------------------------------------------------------------
def _fprop(ops):
    x, w = _ints(X, 0), _ints(W, 1)
    return ops.conv2d_fprop(x, w, **CONV), ref.conv2d_fprop(x, w, **CONV)


@needs_emu
def test_heuristic_when_untuned(tuning_file):
    ops = _ops()
    y, want = _fprop(ops)
    np.testing.assert_array_equal(y, want)
    assert ops.executor.launched == ["fc::conv2d_fprop_implicit_gemm<fc::TileSmall, 4, int, float>"]


@needs_emu
def test_tuned_tile_is_launched_and_still_exact(tuning_file):
    _write(tuning_file, [(EMU, "conv2d_fprop", "float32", _conv_key(), {"tile": "TileLarge"})])
    ops = _ops()
    report = fc.explain(lambda: _fprop(ops))
    y, want = report.result
    assert ops.executor.launched == ["fc::conv2d_fprop_implicit_gemm<fc::TileLarge, 4, int, float>"]
    np.testing.assert_array_equal(y, want)
    key = tuning.entry_key(EMU, "conv2d_fprop", "float32", _conv_key())
    assert f"tile TileLarge from tuning file {tuning_file} (entry {key})" in str(report)


@needs_emu
def test_other_gpus_entries_are_ignored(tuning_file):
    _write(tuning_file, [(OTHER_GPU, "conv2d_fprop", "float32", _conv_key(), {"tile": "TileLarge"})])
    ops = _ops()
    report = fc.explain(lambda: _fprop(ops))
    assert ops.executor.launched == ["fc::conv2d_fprop_implicit_gemm<fc::TileSmall, 4, int, float>"]
    assert "heuristic: shape not tuned (no entry fastconv emulator (CPU) | conv2d_fprop" in str(report)
    ops = _ops(device=OTHER_GPU)                             # the same plans on "that GPU" take it
    _fprop(ops)
    assert ops.executor.launched == ["fc::conv2d_fprop_implicit_gemm<fc::TileLarge, 4, int, float>"]


@needs_emu
def test_test_knob_beats_the_tuning_file(tuning_file):
    _write(tuning_file, [(EMU, "conv2d_fprop", "float32", _conv_key(), {"tile": "TileLarge"})])
    ops = _ops()
    ops.force_tile = "TileSmall"
    _fprop(ops)
    assert ops.executor.launched == ["fc::conv2d_fprop_implicit_gemm<fc::TileSmall, 4, int, float>"]


@needs_emu
@pytest.mark.parametrize("config, why", [({"tile": "TileHuge"}, "tuned tile 'TileHuge' ignored"),
                                         ({"splits": 4}, "tuned tile None ignored")])
def test_invalid_tuned_tile_is_ignored_with_a_note(tuning_file, config, why):
    _write(tuning_file, [(EMU, "conv2d_fprop", "float32", _conv_key(), config)])
    ops = _ops()
    report = fc.explain(lambda: _fprop(ops))
    np.testing.assert_array_equal(*report.result)
    assert ops.executor.launched == ["fc::conv2d_fprop_implicit_gemm<fc::TileSmall, 4, int, float>"]
    assert why in str(report)


@needs_emu
def test_tuned_tile_ignored_on_the_64bit_index_path(tuning_file):
    _write(tuning_file, [(EMU, "conv2d_fprop", "float32", _conv_key(), {"tile": "TileLarge"})])
    ops = _ops()
    ops.force_index64 = True
    report = fc.explain(lambda: _fprop(ops))
    np.testing.assert_array_equal(*report.result)
    assert ops.executor.launched == ["fc::conv2d_fprop_implicit_gemm<fc::TileMedium, 4, int64_t, float>"]
    assert "tuned tile 'TileLarge' ignored (not valid here; valid: ['TileMedium'])" in str(report)


@needs_emu
def test_tuned_dgrad_and_gemm(tuning_file):
    a, b = _ints((10, 20), 2), _ints((20, 12), 3)
    _write(tuning_file, [(EMU, "conv2d_dgrad", "float32", _conv_key(), {"tile": "TileLarge"}),
                         (EMU, "gemm", "float32", tuning.gemm_problem(10, 12, 20), {"tile": "TileLarge"})])
    ops = _ops()
    dy, w = _ints((2, 6, 5, 12), 4), _ints(W, 5)
    args = (CONV["stride"], CONV["padding"], CONV["dilation"], CONV["groups"])
    np.testing.assert_array_equal(ops.conv2d_dgrad(dy, w, X, *args), ref.conv2d_dgrad(dy, w, X, *args))
    np.testing.assert_array_equal(ops.gemm(a, b), a @ b)
    np.testing.assert_array_equal(ops.gemm(a.T.copy(), b, trans_a=True), a @ b)   # "tn": another key, heuristic
    assert ops.executor.launched == ["fc::conv2d_dgrad_implicit_gemm<fc::TileLarge, 4, int, float>",
                                     "fc::gemm_bias_act<fc::TileLarge, 1, int, float, false, false>",
                                     "fc::gemm_bias_act<fc::TileSmall, 1, int, float, true, false>"]


@needs_emu
@pytest.mark.parametrize("splits, launched", [(3, 3), (10**6, None)])
def test_tuned_wgrad_tile_and_split_k(tuning_file, splits, launched):
    _write(tuning_file, [(EMU, "conv2d_wgrad", "float32", _conv_key(), {"tile": "TileLarge", "splits": splits})])
    ops = _ops()
    x, dy = _ints(X, 6), _ints((2, 6, 5, 12), 7)
    args = (CONV["stride"], CONV["padding"], CONV["dilation"], CONV["groups"])
    report = fc.explain(lambda: ops.conv2d_wgrad(x, dy, W, *args))
    np.testing.assert_array_equal(report.result, ref.conv2d_wgrad(x, dy, W, *args))
    kernels = [e for e in report.events if e.kind == "kernel"]
    assert kernels[0].text == "fc::conv2d_wgrad_implicit_gemm<fc::TileLarge, 4, int, float>"
    if launched:
        assert kernels[0].detail["grid"][2] == launched and kernels[1].text == "fc::split_k_reduce<float>"
        assert "split-k 3 from tuning file" in str(report)
    else:   # 60 reduction rows allow at most 8 splits of BK = 8: the tuned count is ignored
        assert "tuned split-k 1000000 ignored (this shape allows 1..8)" in str(report)


@needs_emu
def test_tuned_tensor_core_tile(tuning_file):
    m, n, k = 20, 24, 32
    a, b = _ints((m, k), 8).astype(np.float16), _ints((k, n), 9).astype(np.float16)
    problem = tuning.gemm_problem(m, n, k, out="float32")
    _write(tuning_file, [(EMU, "gemm_tensor_op", "float16", problem, {"tile": "Tile128"}),
                         (EMU, "gemm_tensor_op", "tf32", problem, {"tile": "Tile128"})])
    ops = _ops()
    np.testing.assert_array_equal(ops.gemm_tensor_op(a, b), a.astype(np.float32) @ b.astype(np.float32))
    assert ops.executor.launched == ["fc::gemm_tensor_op<fc::TensorOpF16Tile128, 8, float>"]
    report = fc.explain(lambda: ops.gemm_tensor_op(a.astype(np.float32), b.astype(np.float32)))
    assert ops.executor.launched[-1] == "fc::gemm_tensor_op<fc::TensorOpTf32Tile64, 4, float>"   # no tf32 Tile128
    assert "tuned tile 'Tile128' ignored (not valid here; valid: ['Tile64'])" in str(report)
    np.testing.assert_array_equal(report.result, a.astype(np.float32) @ b.astype(np.float32))
