"""Recorded results: merging bench JSONs into one `<date>-<gpu>.json`, and benchmarks/RESULTS.md.

    python -m fastconv.bench.results merge OUT IN.json [IN.json ...]   # OUT: a file, or a folder
    python -m fastconv.bench.results markdown [--results DIR] [--out PATH] [--check]
(benchmarks/make_results_md.py is the second command.)

A result is old when csrc/ changed after it was measured (a commit touching csrc/ after the
result's commit, or, when that commit is unknown here, after its date) or when it is more than
MAX_AGE_DAYS old. RESULTS.md says so next to each result.
"""
from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import subprocess
import sys
from pathlib import Path

from .env import results_name
from .report import SCHEMA, write_json
from .roofline import geomean

MAX_AGE_DAYS = 30
REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
RESULTS_MD = REPO_ROOT / "benchmarks" / "RESULTS.md"


def load_doc(path) -> dict:
    with open(path) as f:
        doc = json.load(f)
    if doc.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a fastconv bench result (schema {doc.get('schema')!r}, want {SCHEMA!r})")
    return doc


def merge_docs(docs: list) -> dict:
    """One document: the first one's environment and ceilings, every run of every document."""
    if not docs:
        raise ValueError("nothing to merge")
    out = dict(docs[0])
    out["runs"] = [run for d in docs for run in d.get("runs", [])]
    if not out.get("ceilings"):
        out["ceilings"] = next((d["ceilings"] for d in docs if d.get("ceilings")), None)
    return out


# ---- staleness --------------------------------------------------------------------------------
def _git(*args) -> str | None:
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=20, cwd=REPO_ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def newest_csrc_commit() -> dict | None:
    """{'commit', 'date'} of the newest commit touching csrc/, or None (no git, or none yet)."""
    out = _git("log", "-1", "--format=%H%x09%cI", "--", "csrc/")
    if not out:
        return None
    commit, date = out.split("\t")
    return {"commit": commit, "date": date}


def csrc_changed_since(commit: str) -> bool | None:
    """Whether a commit after `commit` touched csrc/; None when `commit` is unknown here."""
    if not commit or _git("cat-file", "-e", f"{commit}^{{commit}}") is None:
        return None
    out = _git("rev-list", f"{commit}..HEAD", "--", "csrc/")
    return None if out is None else bool(out)


def _parse_date(text: str) -> datetime.datetime:
    d = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return d if d.tzinfo else d.replace(tzinfo=datetime.timezone.utc)


def staleness(doc: dict, now: datetime.datetime, csrc: dict | None, changed_since=csrc_changed_since) -> list:
    """Reasons the numbers are old (empty when current)."""
    reasons = []
    date = _parse_date(doc["date"])
    age = (now - date).days
    if age > MAX_AGE_DAYS:
        reasons.append(f"{age} days old (more than {MAX_AGE_DAYS})")
    if csrc:
        commit = ((doc.get("env") or {}).get("git") or {}).get("commit")
        changed = changed_since(commit) if commit else None
        if changed is None:
            changed = date < _parse_date(csrc["date"])
        if changed:
            reasons.append(f"csrc/ changed since (newest csrc/ commit {csrc['commit'][:10]} of {csrc['date'][:10]})")
    return reasons


# ---- markdown ---------------------------------------------------------------------------------
def _t(seconds, mode):
    if seconds is None:
        return "n/a"
    return f"{seconds * 1e6:,.1f} µs" if mode == "gpu" else f"{seconds * 1e3:,.2f} ms"


def _pct(v):
    return "-" if v is None else f"{v:.0f}%"


def _card(doc):
    env = doc.get("env") or {}
    if env.get("mode") == "gpu":
        return (env.get("gpu") or {}).get("name") or "unknown GPU"
    return f"CPU ({env.get('cpu', '?')})"


def render_doc(name: str, doc: dict, now, csrc, changed_since=csrc_changed_since) -> list:
    env = doc.get("env") or {}
    git = env.get("git") or {}
    mode = env.get("mode", "gpu")
    commit = (git.get("commit") or "unknown")[:10] + (" (uncommitted changes)" if git.get("dirty") else "")
    lines = [f"## {_card(doc)} — {doc['date'][:10]} — commit {commit}", "", f"File: `benchmarks/results/{name}`."]
    old = staleness(doc, now, csrc, changed_since)
    if old:
        lines.append(f"**OLD NUMBERS:** {'; '.join(old)}. Re-measure before relying on them.")
    else:
        lines.append("Current: measured after the newest change to csrc/ and within the last "
                     f"{MAX_AGE_DAYS} days.")
    versions = [f"{k} {env[k]}" for k in ("driver", "cuda", "cudnn", "torch", "cupy") if env.get(k)]
    if versions:
        lines.append("Versions: " + ", ".join(versions) + ".")
    meas = ((doc.get("ceilings") or {}).get("measured")) or {}
    if meas:
        unit, scale = ("TFLOP/s", 1e12) if mode == "gpu" else ("GFLOP/s", 1e9)
        peaks = ", ".join(f"{k} {v / scale:,.1f}" for k, v in (meas.get("peak_flops") or {}).items())
        lines.append(f"Measured ceilings: {meas['bandwidth'] / 1e9:,.0f} GB/s copy; {unit} {peaks}.")
    lines.append("")
    for run in doc.get("runs", []):
        if run.get("kind") == "train_step":
            lines += _train_step_table(run, mode)
        else:
            lines += _op_tables(run, mode)
    return lines


def _op_tables(run, mode) -> list:
    groups: dict = {}
    for r in run.get("results", []):
        groups.setdefault((r["op"], r["dtype"]), []).append(r)
    lines = []
    for (op, dtype), rs in groups.items():
        base = next((r["baseline"].get("name") for r in rs if r.get("baseline")), "baseline")
        ratios = [r.get("ratio") for r in rs if r.get("ratio")]
        gm = geomean(ratios)
        ran = sum(1 for r in rs if (r.get("fastconv") or {}).get("median_s"))
        lines.append(f"### {op} — {dtype} — baseline {base}")
        lines.append("")
        if gm:
            lines.append(f"Geomean ratio (baseline time / fastconv time): **{gm:.2f}×** over {len(ratios)} shapes "
                         f"(fastconv ran on {ran} of {len(rs)}).")
        else:
            reasons = sorted({(r.get("fastconv") or {}).get("reason") or "-" for r in rs})
            lines.append(f"No ratio: fastconv did not run ({'; '.join(reasons)}). Baseline alone below.")
        lines += ["", "| shape | batch | fastconv | baseline | ratio | fastconv % roof | baseline % roof | bound |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in rs:
            fc, b = r.get("fastconv") or {}, r.get("baseline") or {}
            status = "" if r.get("status", "ok") == "ok" else f" ({r['status']})"
            lines.append(f"| {r['problem']}{status} | {r['batch'] if r['batch'] is not None else '-'} | "
                         f"{_t(fc.get('median_s'), mode)} | {_t(b.get('median_s'), mode)} | "
                         f"{'-' if not r.get('ratio') else format(r['ratio'], '.2f') + '×'} | "
                         f"{_pct(fc.get('pct_roofline'))} | {_pct(b.get('pct_roofline'))} | "
                         f"{(r.get('roofline') or {}).get('bound', '-')} |")
        lines.append("")
    return lines


def _train_step_table(run, mode) -> list:
    lines = ["### training step (forward, backward, Adam) — images per second", "",
             "| model | batch | dtype | fastconv eager | fastconv graph | torch eager | torch.compile | "
             "fastconv / eager | graph / eager |",
             "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in run.get("results", []):
        impl = r.get("impls", {})

        def ips(name):
            v = (impl.get(name) or {}).get("images_per_s")
            return f"{v:,.0f}" if v else "n/a"

        def ratio(key):
            v = r.get(key)
            return "-" if not v else format(v, ".2f") + "×"
        lines.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | {ips('fastconv')} | {ips('fastconv graph')} | "
                     f"{ips('torch eager')} | {ips('torch.compile')} | {ratio('ratio_fastconv_vs_eager')} | "
                     f"{ratio('ratio_graph_vs_eager')} |")
    return lines + [""]


HEADER = ["# fastconv benchmark results", "",
          "Generated by `python benchmarks/make_results_md.py` from `benchmarks/results/*.json`; do not edit by hand.",
          "Ratio = baseline time / fastconv time (> 1: fastconv is faster). % roof = the roofline floor "
          "(the larger of FLOPs / measured peak and minimum bytes / measured bandwidth) over the measured median time. "
          "Method and floors: `benchmarks/NOTES.md`.", ""]


def render_markdown(results_dir, now=None, csrc="auto", changed_since=csrc_changed_since) -> str:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if csrc == "auto":
        csrc = newest_csrc_commit()
    paths = sorted(glob.glob(os.path.join(str(results_dir), "*.json")))
    docs = []
    for p in paths:
        docs.append((os.path.basename(p), load_doc(p)))
    lines = list(HEADER)
    if not docs:
        lines += ["**No results recorded yet.** Run `bash benchmarks/gpu_check.sh OUT` on a machine with an "
                  "NVIDIA GPU, copy `OUT/<date>-<gpu>.json` into `benchmarks/results/`, then run "
                  "`python benchmarks/make_results_md.py`.", ""]
        return "\n".join(lines)
    docs.sort(key=lambda nd: nd[1]["date"], reverse=True)
    lines.append("Newest first. " + (f"Newest csrc/ commit: {csrc['commit'][:10]} ({csrc['date'][:10]})."
                                     if csrc else "No commit touches csrc/ yet."))
    lines.append("")
    for name, doc in docs:
        lines += render_doc(name, doc, now, csrc, changed_since)
    return "\n".join(lines).rstrip() + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastconv.bench.results", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("merge", help="merge bench JSONs into one results file")
    m.add_argument("out", help="output file, or a folder to write <date>-<gpu>.json into")
    m.add_argument("inputs", nargs="+")
    md = sub.add_parser("markdown", help="write benchmarks/RESULTS.md")
    md.add_argument("--results", default=str(RESULTS_DIR))
    md.add_argument("--out", default=str(RESULTS_MD))
    md.add_argument("--check", action="store_true", help="exit 1 if the file on disk is not what would be written")
    args = parser.parse_args(argv)
    if args.cmd == "merge":
        docs = []
        for p in args.inputs:
            try:
                docs.append(load_doc(p))
            except (OSError, ValueError) as exc:
                print(f"skipping {p}: {exc}", file=sys.stderr)
        if not docs:
            print("no result to merge", file=sys.stderr)
            return 1
        doc = merge_docs(docs)
        out = args.out
        if os.path.isdir(out):
            out = os.path.join(out, results_name(doc["env"]))
        write_json(out, doc)
        print(out)
        return 0
    text = render_markdown(args.results)
    if args.check:
        same = os.path.exists(args.out) and Path(args.out).read_text() == text
        print(f"{args.out}: {'up to date' if same else 'OUT OF DATE (run python benchmarks/make_results_md.py)'}")
        return 0 if same else 1
    Path(args.out).write_text(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
