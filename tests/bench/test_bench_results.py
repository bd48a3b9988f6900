"""benchmarks/RESULTS.md generation and results merging, on a small FAKE results file.

TEST FIXTURE: every number below is made up for these tests and lives only in a temporary folder.
Real results go in benchmarks/results/ (never fake ones).
"""
import datetime
import json

import pytest

from fastconv.bench.report import SCHEMA
from fastconv.bench.results import main, merge_docs, render_markdown, staleness

NOW = datetime.datetime(2026, 12, 1, tzinfo=datetime.timezone.utc)
CSRC = {"commit": "c" * 40, "date": "2026-11-20T10:00:00+00:00"}


def fake_result(problem, op, dtype, batch, fc_s, base_s, bound="memory"):
    """TEST FIXTURE: a made-up measurement."""
    return {"problem": problem, "op": op, "dtype": dtype, "batch": batch, "status": "ok", "suite": "fake",
            "roofline": {"floor_s": base_s / 2, "bound": bound},
            "fastconv": {"available": fc_s is not None, "reason": "fake", "median_s": fc_s,
                         "pct_roofline": 50.0 if fc_s else None},
            "baseline": {"name": "cudnn", "available": True, "median_s": base_s, "pct_roofline": 80.0},
            "ratio": (base_s / fc_s) if fc_s else None}


def fake_doc(date, commit="a" * 40, gpu="NVIDIA H200 (TEST FIXTURE)"):
    return {
        "schema": SCHEMA, "date": date, "fixture": "TEST FIXTURE: fake numbers, not a measurement",
        "env": {"mode": "gpu", "date": date, "gpu": {"name": gpu}, "driver": "580.00", "cuda": "13.0",
                "cudnn": 91000, "torch": "2.11.0", "cupy": "14.2.0", "git": {"commit": commit, "dirty": False}},
        "ceilings": {"measured": {"peak_flops": {"bf16": 7.9e14, "fp32": 5.1e13}, "bandwidth": 4.3e12}},
        "runs": [{"kind": "ops", "config": {}, "results": [
            fake_result("res2_3x3", "conv2d_fprop", "bf16", 32, 20e-6, 10e-6, "compute"),   # ratio 0.5
            fake_result("res2_1x1_reduce", "conv2d_fprop", "bf16", 32, 10e-6, 20e-6),          # ratio 2.0
            fake_result("res2_3x3", "conv2d_fprop", "fp32", 32, None, 40e-6),                  # fastconv n/a
        ]}, {"kind": "train_step", "config": {}, "results": [
            {"model": "seed", "batch": 128, "dtype": "fp32", "ratio_fastconv_vs_eager": 1.5,
             "impls": {"fastconv": {"images_per_s": 3.0e6}, "torch eager": {"images_per_s": 2.0e6},
                       "torch.compile": {"available": False}}}]}],
    }


def write(folder, name, doc):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(json.dumps(doc))


def never_changed(commit):
    return False


def test_markdown_tables_geomean_and_header(tmp_path):
    write(tmp_path, "2026-11-28-nvidia-h200.json", fake_doc("2026-11-28T12:00:00+00:00"))
    md = render_markdown(tmp_path, now=NOW, csrc=CSRC, changed_since=never_changed)
    assert md.startswith("# fastconv benchmark results")
    assert "## NVIDIA H200 (TEST FIXTURE) — 2026-11-28 — commit aaaaaaaaaa" in md
    assert "### conv2d_fprop — bf16 — baseline cudnn" in md and "### conv2d_fprop — fp32 — baseline cudnn" in md
    # geomean of 0.5 and 2.0 is 1.0
    assert "**1.00×** over 2 shapes (fastconv ran on 2 of 2)" in md
    assert "| res2_3x3 | 32 | 20.0 µs | 10.0 µs | 0.50× | 50% | 80% | compute |" in md
    assert "No ratio: fastconv did not run (fake)" in md
    assert "| seed | 128 | fp32 | 3,000,000 | n/a | 2,000,000 | n/a | 1.50× | - |" in md   # no graph row: n/a, -
    assert "Current:" in md and "OLD" not in md
    assert "driver 580.00" in md and "cuda 13.0" in md


def test_old_numbers_are_marked(tmp_path):
    write(tmp_path, "old.json", fake_doc("2026-10-01T00:00:00+00:00"))
    write(tmp_path, "new.json", fake_doc("2026-11-30T00:00:00+00:00", commit="b" * 40))
    md = render_markdown(tmp_path, now=NOW, csrc=CSRC, changed_since=lambda c: c == "a" * 40)
    new_at, old_at = md.index("2026-11-30"), md.index("2026-10-01")
    assert new_at < old_at                                   # newest first
    old_section = md[old_at:]
    assert "**OLD NUMBERS:** 61 days old (more than 30); csrc/ changed since" in old_section
    assert "Current:" in md[new_at:old_at]


def test_staleness_by_date_when_the_commit_is_unknown():
    doc = fake_doc("2026-11-10T00:00:00+00:00")
    # commit unknown here (changed_since -> None): compared by date with the newest csrc/ commit
    assert any("csrc/ changed" in r for r in staleness(doc, NOW, CSRC, lambda c: None))
    doc = fake_doc("2026-11-25T00:00:00+00:00")
    assert staleness(doc, NOW, CSRC, lambda c: None) == []
    assert staleness(doc, NOW, None) == []                   # no commit touches csrc/ yet


def test_no_results_yet(tmp_path):
    md = render_markdown(tmp_path, now=NOW, csrc=None)
    assert "No results recorded yet" in md and "gpu_check.sh" in md


def test_the_committed_results_md_is_up_to_date():
    from fastconv.bench.results import RESULTS_DIR, RESULTS_MD
    assert RESULTS_MD.read_text() == render_markdown(RESULTS_DIR), "run python benchmarks/make_results_md.py"


def test_merge_and_cli(tmp_path, capsys):
    a, b = fake_doc("2026-11-28T12:00:00+00:00"), fake_doc("2026-11-28T12:05:00+00:00")
    merged = merge_docs([a, b])
    assert len(merged["runs"]) == 4 and merged["env"] == a["env"]
    ins = tmp_path / "in"
    write(ins, "a.json", a)
    write(ins, "b.json", b)
    outdir = tmp_path / "out"
    outdir.mkdir()
    assert main(["merge", str(outdir), str(ins / "a.json"), str(ins / "b.json")]) == 0
    files = list(outdir.iterdir())
    assert [f.name for f in files] == ["2026-11-28-nvidia-h200-test-fixture.json"]
    assert len(json.loads(files[0].read_text())["runs"]) == 4
    md = tmp_path / "R.md"
    assert main(["markdown", "--results", str(outdir), "--out", str(md)]) == 0
    assert "conv2d_fprop — bf16" in md.read_text()
    assert main(["markdown", "--results", str(outdir), "--out", str(md), "--check"]) == 0
    md.write_text("stale")
    assert main(["markdown", "--results", str(outdir), "--out", str(md), "--check"]) == 1
    (ins / "bad.json").write_text(json.dumps({"schema": "other"}))
    with pytest.raises(ValueError, match="schema"):
        render_markdown(ins, now=NOW, csrc=None)
