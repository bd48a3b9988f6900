#!/usr/bin/env python3
"""Predictions, before any GPU run, for the sm_90a (wgmma + TMA) convs on an H200, one row per ResNet-50 conv and
op (bf16 fprop, dgrad, wgrad): FLOPs and minimum bytes (fastconv.bench.roofline, through the suite's cases), the
floor at the H200's datasheet rates, the time expected of the sm_90a implicit GEMM (a wave simulation of its tiles
over 132 SMs, the K-loop bound by the tensor cores or by L2 bandwidth shared among the running CTAs, the epilogue
bytes, the host's launch cost), its % of the floor, a guess at cuDNN's time and the ratio, and the kernel the plan
picks today (plans/conv2d.py sm90_fprop_route; the sm_90a conv's tile from plans/conv2d_sm90.py choose_tile, 128 x
128 for the other kernels).

    python scripts/predict_sm90_convs.py [--batch 32]            # the markdown table benchmarks/NOTES.md holds
    python scripts/predict_sm90_convs.py --check benchmarks/NOTES.md   # exit 1 if NOTES.md's copy differs
    python scripts/predict_sm90_convs.py --compare BENCH.json    # predicted beside measured (gpu_check.sh)

Every constant below is a lead, said where it comes from; a GPU run is what tests them.
"""
from __future__ import annotations

import argparse
import heapq
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from dgrad_phase_count import phase_axis  # noqa: E402
from fastconv.backends.plans.conv2d import sm90_dgrad_route, sm90_fprop_route, sm90_wgrad_route  # noqa: E402
from fastconv.backends.plans.conv2d_sm90 import choose_tile, conv_tiles, pixel_tile  # noqa: E402
from fastconv.backends.plans.conv2d_wgrad_sm90 import WGRAD_SM90_PIXELS, wgrad_sm90_splits  # noqa: E402
from fastconv.bench import roofline as rl  # noqa: E402
from fastconv.bench.roofline import geomean  # noqa: E402
from fastconv.bench.suites import expand_cases, load_suite  # noqa: E402

OPS = ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad")
H200 = rl.DATASHEETS["H200"]          # the floor: 989 TFLOP/s dense bf16, 4.8 TB/s
SMS, CLOCK_HZ, FLOP_PER_CLK = 132, 1.83e9, 4096   # 132 x 1.83 GHz x 4096 = 989 TFLOP/s (../shared/FACTS.md)
BM = BN = 128                         # the tile of every kernel but the sm_90a conv (its plan picks: choose_tile)
BK = 64                               # one 128-byte swizzled row of bf16 per k-tile
KTILE_CYCLES = 2 * BM * BN * BK / FLOP_PER_CLK   # 512 cycles at peak
# The wgmma GEMM at 128 x 128 was predicted at 55-65% of peak in its steady K-loop (NOTES.md, 2026-11-28: 64 B/clk
# per SM of L2 traffic at peak, above what L2 is assumed to deliver); the conv's A boxes are the same bytes.
MAINLOOP_EFF = 0.60
BETTER_EFF = 0.80                     # what-if: cuBLAS's ~80% (../shared/FACTS.md), e.g. with 128 x 256 tiles and TMA multicast
# The K-loop of one CTA: per k-tile the larger of its tensor-core cycles at TENSOR_EFF and its TMA bytes (A and the
# in-bounds rows of B: TMA does not fetch what it zero-fills) over its share of L2: all of L2's bytes per clock split
# among the running CTAs, at most an SM's port. L2's rate is what makes 128 x 128 on all 132 SMs run at MAINLOOP_EFF
# (32 KiB per 853 cycles per SM: 38 B/clk/SM, 5.1 KB/clk = 9.3 TB/s, NOTES' "order of 10 TB/s"); the port and
# TENSOR_EFF are guesses. So a 64-row tile (1.5x the bytes per FLOP) gains only where 128-row tiles leave SMs idle.
TENSOR_EFF = 0.90
L2_PORT_BYTES_PER_CLK = 64
FILL_CYCLES = 1000                    # first TMA round trip before the first wgmma (~0.55 us; a guess)
STORE_BYTES_PER_CLK = 64              # epilogue stores from registers, per SM (a guess)
HBM_ACHIEVED = 4.3e12                 # device-to-device copy measured on H200s here (../shared/FACTS.md)
LAUNCH_S = 2e-6                       # launch and ramp per kernel between back-to-back launches (a guess)
# Host time per call; a sample of back-to-back calls takes the larger of host and device time. fastconv: the Python
# plan, two tensor maps, the launch (the plan alone took 90-380 us here with a no-op launcher, on a loaded 2-core
# VM: not representative of the GPU machine's host); PyTorch: ~5 us per op from Python (FACTS) plus dispatch.
HOST_S = {"fastconv": 30e-6, "cudnn": 8e-6}
# cuDNN: no published per-layer efficiency of cuDNN's Hopper convs was found. Guess: 70% of the bf16 peak on
# compute-bound convs (cuBLAS reaches ~80% on an 8192^3 GEMM, ../shared/FACTS.md; convs gather), the achieved copy
# bandwidth on memory-bound ones, with benchmark=True picking tiles and split-k that avoid wave quantization.
CUDNN_COMPUTE_EFF = 0.70
BEGIN, END = "<!-- predict_sm90_convs: begin -->", "<!-- predict_sm90_convs: end -->"


def ceil_div(a, b):
    return -(-a // b)


def conv_tile(case):
    """(bm, bn, tiles) of the sm_90a conv where its shape goes there (fprop, or the fprop of dy for a dgrad: the
    strided ones' phases take the tile chosen for all of dx, as plans/conv2d_dgrad_sm90.py does), also when the
    routing keeps it on mma.sync for too few tiles; else None (128 x 128 is modelled)."""
    p, g = case.problem.params, case.geometry
    route = (sm90_fprop_route if case.op == "conv2d_fprop" else sm90_dgrad_route if case.op == "conv2d_dgrad" else None)
    if route is None or all(route(g["x"], g["w"], p["stride"], p["padding"], p["groups"], "uint16", **kw)[0] != "conv"
                            for kw in ({}, {"min_tiles": 0})):
        return None
    n, h, w, c = g["x"]
    _, pp, q, k = g["y"]
    out = (n, pp, q, k, tuple(p["stride"])) if case.op == "conv2d_fprop" else (n, h, w, c, (1, 1))
    bm, bn, _ = choose_tile(*out[:4], out[4], "__nv_bfloat16")
    return bm, bn, conv_tiles(*out, bm, bn)


def gemm_tiles(case):
    """([(tiles, k_tiles, bm, bn, in-bounds rows of B), ...] of the implicit GEMM, extra HBM bytes beyond the
    minimum, launches, M x N x K)."""
    p, g = case.problem.params, case.geometry
    n, h, w, c = g["x"]
    _, pp, q, k = g["y"]
    r, s = p["R"], p["S"]
    tile = conv_tile(case)
    if case.op == "conv2d_fprop":   # M = N*P*Q pixels, N = K filters, K = R*S*C (each tap's C in 64-wide k-tiles)
        bm, bn, tiles = tile or (BM, BN, ceil_div(n * pp * q, BM) * ceil_div(k, BN))
        return [(tiles, r * s * ceil_div(c, BK), bm, bn, min(bn, k))], 0, 1, (n * pp * q, k, r * s * c)
    if tile and tuple(p["stride"]) == (1, 1):   # stride-1 dgrad as the sm_90a conv's fprop of dy: N = C, K-loop R*S*K
        bm, bn, tiles = tile
        return [(tiles, r * s * ceil_div(k, BK), bm, bn, min(bn, c))], 0, 1, (n * h * w, c, r * s * k)
    if case.op == "conv2d_dgrad":   # stride phases (conv2d_dgrad_phase.h): each a GEMM over only its own taps,
        (sh, sw), (pt, _), (pl, _) = p["stride"], *p["padding"]   # in the plan's tile for all of dx (sm_90a conv)
        bm, bn = tile[:2] if tile else (BM, BN)
        groups = []
        for ph in range(sh):
            hs, ht = phase_axis(ph, h, r, sh, pt, p["dilation"][0])
            for pw in range(sw):
                ws, wt = phase_axis(pw, w, s, sw, pl, p["dilation"][1])
                if ht * wt:   # a phase no tap reaches is written as zeros (its bytes are in the minimum)
                    tiles = (conv_tiles(n, hs, ws, c, (1, 1), bm, bn) if tile
                             else ceil_div(n * hs * ws, BM) * ceil_div(c, BN))
                    groups.append((tiles, ht * wt * ceil_div(k, BK), bm, bn, min(bn, c)))
        return groups, 0, len(groups), (n * h * w, c, r * s * k)   # one launch per phase with taps
    # wgrad (csrc/conv/conv2d_wgrad_wgmma_sm90.h): per tap C x K in 128 x 128 tiles reduced over 64-pixel boxes,
    # split-k over the boxes as the plan splits (wgrad_sm90_splits); where C <= 64 one consumer issues no wgmma
    # (modelled as a 64-row tile); partial sums in fp32 written and read once more, dw in fp32 (2 bytes over bf16)
    tq, tp, tn = pixel_tile(n, pp, q, tuple(p["stride"]), WGRAD_SM90_PIXELS)
    tiles = r * s * ceil_div(c, BM) * ceil_div(k, BN)
    splits, per = wgrad_sm90_splits(tiles, ceil_div(q, tq) * ceil_div(pp, tp) * ceil_div(n, tn))
    extra = r * s * c * k * 2 + (2 * splits * r * s * c * k * 4 if splits > 1 else 0)
    return ([(tiles * splits, per, 64 if c <= 64 else BM, BN, min(BN, k))], extra, 1 + (splits > 1),
            (r * s * c, k, n * pp * q))


def ktile_cycles(bm, bn, b_rows, running, eff):
    """One k-tile of one CTA while `running` CTAs share L2 (calibrated so that 128 x 128 on every SM runs at eff)."""
    l2_bytes_per_clk = SMS * (BM + BN) * BK * 2 * eff / KTILE_CYCLES
    share = min(L2_PORT_BYTES_PER_CLK, l2_bytes_per_clk / running)
    return max(2 * bm * bn * BK / FLOP_PER_CLK / TENSOR_EFF, (bm + b_rows) * BK * 2 / share)


def makespan_s(groups, out_elem, eff):
    """CTAs dispatched in grid order to the first free SM; the i-th runs beside min(132, CTAs from the start of its
    round) others. One CTA per SM at a time: two 64-row CTAs sharing an SM take as long as one after the other."""
    sms = [0.0] * SMS
    total, i = sum(g[0] for g in groups), 0
    for tiles, k_tiles, bm, bn, b_rows in groups:
        for _ in range(tiles):
            running = min(SMS, total - i // SMS * SMS)
            cycles = (FILL_CYCLES + k_tiles * ktile_cycles(bm, bn, b_rows, running, eff)
                      + bm * bn * out_elem / STORE_BYTES_PER_CLK)
            heapq.heapreplace(sms, sms[0] + cycles)
            i += 1
    return max(sms) / CLOCK_HZ


def plan_today(case):
    """The kernel the plans run for this case on an H200 today."""
    p, g = case.problem.params, case.geometry
    if case.op == "conv2d_wgrad":
        route, why = sm90_wgrad_route(g["x"], g["w"], p["stride"], p["padding"], p["groups"], "uint16",
                                      dilation=p["dilation"])
        return "sm_90a wgrad" if route == "conv" else "mma.sync: few tiles" if "too few" in why else "mma.sync: " + why
    if case.op == "conv2d_dgrad":
        route, why = sm90_dgrad_route(g["x"], g["w"], p["stride"], p["padding"], p["groups"], "uint16")
        if route == "gemm":
            return "wgmma GEMM"
        if route == "conv":
            return "sm_90a conv (fprop of dy)" if tuple(p["stride"]) == (1, 1) else "sm_90a conv (stride phases)"
        return "mma.sync: few tiles" if "too few" in why else "mma.sync: C % 8" if "multiple of" in why else why
    route, why = sm90_fprop_route(g["x"], g["w"], p["stride"], p["padding"], p["groups"], "uint16")
    if route == "gemm":
        return "wgmma GEMM"
    if route == "conv":
        return "sm_90a conv"
    return "mma.sync: " + ("C % 8" if "multiple of" in why else "few tiles" if "too few" in why else why)


def predict(case, eff=MAINLOOP_EFF):
    floor = rl.roofline(case.flops, case.bytes, H200.peak("bf16"), H200.bandwidth)
    cudnn_dev = max(case.flops / (CUDNN_COMPUTE_EFF * H200.peak("bf16")), case.bytes / HBM_ACHIEVED) + LAUNCH_S
    row = {"case": case, "floor": floor, "cudnn_dev": cudnn_dev, "cudnn_s": max(cudnn_dev, HOST_S["cudnn"]),
           "plan": plan_today(case)}
    c, k = case.geometry["x"][3], case.geometry["y"][3]
    if c % 8 or k % 8:   # TMA rows of C (or K) bf16 channels must be multiples of 16 bytes: no sm_90a kernel
        return dict(row, gemm=None)
    groups, extra, launches, gemm = gemm_tiles(case)
    out_elem = 4 if case.op == "conv2d_wgrad" else 2
    # the dgrad's stride phases are launched one after another (plans/conv2d_dgrad_sm90.py): no wave spans two
    per_launch = [[g] for g in groups] if case.op == "conv2d_dgrad" else [groups]
    kernel = sum(makespan_s(g, out_elem, eff) for g in per_launch)
    device = max(kernel, (case.bytes + extra) / HBM_ACHIEVED) + launches * LAUNCH_S
    ours = max(device, HOST_S["fastconv"])
    tiles = sum(g[0] for g in groups)
    return dict(row, gemm=gemm, tiles=tiles, waves=tiles / SMS, device_s=device, ours_s=ours,
                tile="{}x{}".format(*groups[0][2:4]),
                k_tiles="/".join(str(kt) for kt in sorted({g[1] for g in groups}, reverse=True)),
                pct_floor=100 * floor.floor_s / device, ratio=row["cudnn_s"] / ours, device_ratio=cudnn_dev / device)


def predictions(batch, eff=MAINLOOP_EFF):
    cases, _ = expand_cases([load_suite("resnet50")], list(OPS), batches=[batch], dtypes=["bf16"])
    return [predict(c, eff) for c in cases]


def summary(rows, batch) -> list:
    out = []
    for op in OPS:
        rs = [r for r in rows if r["case"].op == op and r["gemm"]]
        weighted = (sum(r["case"].problem.count * r["cudnn_s"] for r in rs)
                    / sum(r["case"].problem.count * r["ours_s"] for r in rs))
        out.append(f"- batch {batch}, {op[7:]}: per-call ratio to cuDNN, geomean {geomean(r['ratio'] for r in rs):.2f} "
                   f"over {len(rs)} shapes ({sum(r['ratio'] > 1 for r in rs)} above 1), weighted by layer count "
                   f"{weighted:.2f}; kernel only (no host cost) {geomean(r['device_ratio'] for r in rs):.2f}; "
                   f"kernel at {geomean(r['pct_floor'] for r in rs):.0f}% of the floor (geomean)")
    return out


def table(batch, also=(256,)) -> str:
    rows = predictions(batch)
    out = [f"ResNet-50 convs, bf16, batch {batch}, H200 (floor at {H200.peak('bf16') / 1e12:.0f} TFLOP/s and "
           f"{H200.bandwidth / 1e12:.1f} TB/s). Generated by `python scripts/predict_sm90_convs.py --batch {batch}`; "
           "`--check benchmarks/NOTES.md` keeps this copy in step. Kernel: the sm_90a implicit GEMM; tiles: the sm_90a "
           "conv's as its plan picks them (choose_tile, pixel boxes), else 128 x 128 of flat M; "
           f"per call: the larger of kernel + launch and the host's {HOST_S['fastconv'] * 1e6:.0f} us "
           f"(cuDNN {HOST_S['cudnn'] * 1e6:.0f} us); ratio = cuDNN / ours per call (> 1: ours faster).", "",
           "| conv | op | GEMM M x N x K | GFLOP | min MB | floor µs | tiles (waves) | k-tiles | kernel µs | "
           "% of floor | per call µs | cuDNN µs (guess) | ratio | runs today |",
           "| --- | --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        c, f = r["case"], r["floor"]
        head = (f"| {c.problem.name} | {c.op[7:]} | ")
        mid = (f" | {c.flops / 1e9:.2f} | {c.bytes / 1e6:.1f} | {f.floor_s * 1e6:.1f} {f.bound[:3]} | ")
        if r["gemm"] is None:
            out.append(head + "C or K not a multiple of 8: no sm_90a kernel" + mid +
                       f"- | - | - | - | - | {r['cudnn_s'] * 1e6:.1f} | - | {r['plan']} |")
            continue
        m, n, k = r["gemm"]
        out.append(head + f"{m} x {n} x {k}" + mid + f"{r['tiles']} of {r['tile']} ({r['waves']:.2f}) | {r['k_tiles']} | "
                   f"{r['device_s'] * 1e6:.1f} | {r['pct_floor']:.0f}% | "
                   f"{r['ours_s'] * 1e6:.1f}{' host' if r['ours_s'] > r['device_s'] else ''} | "
                   f"{r['cudnn_s'] * 1e6:.1f} | {r['ratio']:.2f} | {r['plan']} |")
    out.append("")
    out += summary(rows, batch)
    for b in also:
        out += summary(predictions(b), b)
        better = {op: geomean(r["device_ratio"] for r in predictions(b, BETTER_EFF) if r["case"].op == op and r["gemm"])
                  for op in OPS}
        out.append(f"- batch {b}, kernel only, if the K-loop reached {BETTER_EFF:.0%} of peak instead of "
                   f"{MAINLOOP_EFF:.0%}: " + ", ".join(f"{op[7:]} {v:.2f}" for op, v in better.items()))
    return "\n".join(out) + "\n"


def compare(path, batch) -> str:
    """Predicted beside measured, for the resnet50 bf16 rows of a `fastconv bench --json` file."""
    doc = json.loads(Path(path).read_text())
    measured = {(r["problem"], r["op"]): r for run in doc.get("runs", []) for r in run.get("results", [])
                if r.get("suite") == "resnet50" and r.get("dtype") == "bf16" and r.get("batch") == batch}
    lines = ["| conv | op | expected µs | measured µs | cuDNN guess µs | cuDNN µs | ratio expected | ratio measured |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in predictions(batch):
        m = measured.get((r["case"].problem.name, r["case"].op))
        if m is None:
            continue
        fc, base = (m.get("fastconv") or {}).get("median_s"), (m.get("baseline") or {}).get("median_s")
        us = lambda t: f"{t * 1e6:.1f}" if t else "n/a"   # noqa: E731
        lines.append(f"| {r['case'].problem.name} | {r['case'].op[7:]} | {us(r.get('ours_s'))} | {us(fc)} | "
                     f"{us(r['cudnn_s'])} | {us(base)} | {(r.get('ratio') and format(r['ratio'], '.2f')) or 'n/a'} | "
                     f"{(m.get('ratio') and format(m['ratio'], '.2f')) or 'n/a'} |")
    if len(lines) == 2:
        return f"no resnet50 bf16 batch-{batch} results in {path}\n"
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--check", metavar="NOTES_MD", help="exit 1 if the table between the markers in this file differs")
    ap.add_argument("--compare", metavar="BENCH_JSON", help="predicted beside measured")
    args = ap.parse_args(argv)
    if args.compare:
        print(compare(args.compare, args.batch), end="")
        return 0
    text = table(args.batch)
    if args.check:
        notes = Path(args.check).read_text()
        held = notes[notes.index(BEGIN) + len(BEGIN):notes.index(END)].strip("\n") + "\n" if BEGIN in notes else None
        if held != text:
            print(f"{args.check}: the predictions table differs from the script's output; paste it between the "
                  f"markers {BEGIN} / {END}", file=sys.stderr)
            return 1
        print(f"{args.check}: predictions table up to date")
        return 0
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
