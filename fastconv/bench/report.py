"""Tables, JSON documents and plots of benchmark results (the dicts bench.measure_case returns)."""
from __future__ import annotations

import json
import math
import os

from .roofline import geomean

SCHEMA = "fastconv-bench/1"


def units(mode: str):
    """(time unit, time scale, rate unit, rate scale): µs and TFLOP/s on a GPU, ms and GFLOP/s on a CPU."""
    return ("us", 1e6, "TFLOP/s", 1e12) if mode == "gpu" else ("ms", 1e3, "GFLOP/s", 1e9)


def _f(v, fmt, width):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-".rjust(width)
    return format(v, fmt).rjust(width)


def group_title(r: dict) -> str:
    b = "batch-free" if r["batch"] is None else f"batch {r['batch']}"
    return f"{r['op']} | {r['dtype']} | {b}"


def table_header(mode: str, baseline: str, name_width: int = 28) -> str:
    tu, _, ru, _ = units(mode)
    b = baseline[:10]
    return (f"{'shape':<{name_width}} {'floor ' + tu:>10} {'bound':>7} | {'fastconv ' + tu:>12} {ru:>8} {'GB/s':>7} "
            f"{'%roof':>5} | {b + ' ' + tu:>14} {'layout':>6} {ru:>8} {'GB/s':>7} {'%roof':>5} | "
            f"{'ratio':>6} {'check':>9}")


def table_row(r: dict, mode: str, name_width: int = 28) -> str:
    _, ts, _, rs = units(mode)
    roof = r.get("roofline") or {}
    fc, base = r.get("fastconv") or {}, r.get("baseline") or {}

    def side(s, layout=False):
        t = s.get("median_s")
        cells = [_f(t * ts if t else None, ".1f" if mode == "gpu" else ".2f", 14 if layout else 12)]
        if layout:
            best = (s.get("variants") or {}).get(s.get("best_variant"), {})
            cells.append(str(best.get("layout") or "-")[:6].rjust(6))
        f, b = s.get("flops_per_s"), s.get("bytes_per_s")
        cells += [_f(f / rs if f else None, ".1f" if mode == "gpu" else ".2f", 8),
                  _f(b / 1e9 if b else None, ".0f" if mode == "gpu" else ".1f", 7),
                  _f(s.get("pct_roofline"), ".0f", 5)]
        return " ".join(cells)

    fc_cells = side(fc) if fc.get("median_s") else f"{'n/a':>12} {'':>8} {'':>7} {'':>5}"
    if r.get("status") not in (None, "ok"):
        fc_cells = f"{r['status']:>12} {'':>8} {'':>7} {'':>5}"
    base_cells = side(base, layout=True) if base.get("median_s") else f"{'n/a':>14} {'':>6} {'':>8} {'':>7} {'':>5}"
    chk = r.get("check") or {}
    check = "-"
    if chk.get("rel_err") is not None:
        check = f"{chk['rel_err']:.0e}" + ("" if chk["ok"] else " BAD")
    floor = roof.get("floor_s")
    name = r["problem"] if len(r["problem"]) <= name_width else r["problem"][:name_width - 1] + "~"
    return (f"{name:<{name_width}} {_f(floor * ts if floor else None, '.1f' if mode == 'gpu' else '.3f', 10)} "
            f"{roof.get('bound', '-'):>7} | {fc_cells} | {base_cells} | {_f(r.get('ratio'), '.2f', 6)} {check:>9}")


def summarize(results: list) -> list:
    """One line per (op, dtype, batch): geomean ratio where both ran, and the fastconv reasons."""
    groups: dict = {}
    for r in results:
        groups.setdefault(group_title(r), []).append(r)
    lines = []
    for title, rs in groups.items():
        ratios = [r["ratio"] for r in rs if r.get("ratio")]
        gm = geomean(ratios)
        base_pct = geomean([r["baseline"].get("pct_roofline") for r in rs if r.get("baseline")])
        fc_pct = geomean([r["fastconv"].get("pct_roofline") for r in rs if r.get("fastconv")])
        s = f"{title}: {len(rs)} shapes; "
        fc_ran = any((r.get("fastconv") or {}).get("median_s") for r in rs)
        s += (f"geomean ratio (baseline time / fastconv time) {gm:.2f}x over {len(ratios)}" if gm
              else "no ratio (no baseline ran)" if fc_ran else "no ratio (fastconv did not run)")
        if fc_pct:
            s += f"; fastconv geomean {fc_pct:.0f}% of roofline"
        if base_pct:
            s += f"; baseline geomean {base_pct:.0f}% of roofline"
        bad = [r["problem"] for r in rs if (r.get("check") or {}).get("ok") is False]
        if bad:
            s += f"; CHECK FAILED: {bad}"
        errors = [r["problem"] for r in rs if r.get("status") == "error"]
        if errors:
            s += f"; ERRORS: {errors}"
        lines.append(s)
    over = [r["problem"] for r in results for side in ("fastconv", "baseline")
            if ((r.get(side) or {}).get("pct_roofline") or 0) > 105]
    if over:
        lines.append(f"note: {len(over)} figure(s) above 100% of roofline: the measured ceiling is low for them "
                     f"(a busy machine while it was measured, changing clocks, or a library faster than the one "
                     f"that set the ceiling); read those percentages as rough")
    reasons = sorted({r["fastconv"]["reason"] for r in results
                      if r.get("fastconv") and not r["fastconv"].get("available") and r["fastconv"].get("reason")})
    for why in reasons:
        lines.append(f"fastconv not available: {why}")
    return lines


# ---- JSON -------------------------------------------------------------------------------------
def document(env: dict, ceilings: dict | None, runs: list) -> dict:
    return {"schema": SCHEMA, "date": env.get("date"), "env": env, "ceilings": ceilings, "runs": runs}


def write_json(path: str, doc: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, default=_default)
    os.replace(tmp, path)


def write_outputs(args, doc: dict, plot) -> None:
    """--json and --plot, when asked for; plot(path) draws the figure (matplotlib is optional)."""
    if args.json:
        write_json(args.json, doc)
        print(f"wrote {args.json}")
    if args.plot:
        try:
            plot(args.plot)
            print(f"wrote {args.plot}")
        except ImportError:
            print("(matplotlib is not installed: no plot written)")


def _default(o):
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    return str(o)


# ---- plots ------------------------------------------------------------------------------------
_COLORS = {"fp32": "tab:blue", "tf32": "tab:green", "fp16": "tab:orange", "bf16": "tab:red"}


def plot_results(results: list, ceilings: dict | None, path: str, title: str, mode: str) -> None:
    """Left: per-shape ratio vs the baseline (or, where fastconv did not run, the baseline's % of
    roofline). Right: roofline scatter, achieved rate vs arithmetic intensity, roofs per dtype."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = [r for r in results if r.get("status") == "ok"]
    n = max(len(rows), 1)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(15, max(4.5, 0.2 * n + 1.5)),
                                   gridspec_kw={"width_ratios": [1, 1.2]})
    labels = [f"{r['problem'][:24]} {r['op'].replace('conv2d_', '')} {r['dtype']} N{r['batch'] or '-'}" for r in rows]
    ratios = [r.get("ratio") for r in rows]
    ys = list(range(len(rows)))
    if any(ratios):
        vals = [v if v else 0 for v in ratios]
        ax1.barh(ys, vals, color=["tab:green" if v and v >= 1 else "tab:red" for v in vals])
        ax1.axvline(1.0, color="k", lw=0.8)
        ax1.set_xscale("log")
        ax1.set_xlabel("ratio = baseline time / fastconv time  (> 1: fastconv faster)")
        ax1.set_title("fastconv vs baseline, per shape")
    else:
        vals = [(r.get("baseline") or {}).get("pct_roofline") or 0 for r in rows]
        ax1.barh(ys, vals, color="tab:gray")
        ax1.set_xlabel("baseline % of roofline")
        ax1.set_title("fastconv not available: baseline alone (% of roofline)")
    ax1.set_yticks(ys)
    ax1.set_yticklabels(labels, fontsize=6)
    ax1.invert_yaxis()
    _, _, ru, rs = units(mode)
    measured = (ceilings or {}).get("measured") or {}
    bw = measured.get("bandwidth")
    xs = [r["intensity"] for r in rows if r.get("intensity")]
    if bw and xs:
        import numpy as np
        grid = np.logspace(np.log10(max(min(xs) / 3, 1e-2)), np.log10(max(xs) * 3), 200)
        for dtype, peak in (measured.get("peak_flops") or {}).items():
            if any(r["dtype"] == dtype for r in rows):
                ax2.plot(grid, np.minimum(peak, bw * grid) / rs, color=_COLORS.get(dtype, "k"), lw=1,
                         label=f"roof {dtype} ({peak / rs:,.0f} {ru}, {bw / 1e9:,.0f} GB/s)")
    for r in rows:
        c = _COLORS.get(r["dtype"], "k")
        for side, marker in (("fastconv", "o"), ("baseline", "x")):
            s = r.get(side) or {}
            if s.get("flops_per_s"):
                ax2.scatter(r["intensity"], s["flops_per_s"] / rs, marker=marker, color=c, s=18)
    ax2.scatter([], [], marker="o", color="k", label="fastconv")
    ax2.scatter([], [], marker="x", color="k", label="baseline")
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("arithmetic intensity (FLOP / minimum byte)")
    ax2.set_ylabel(f"achieved {ru}")
    ax2.set_title("roofline (measured ceilings)")
    ax2.legend(fontsize=7, loc="lower right")
    ax2.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
