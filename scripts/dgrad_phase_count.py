#!/usr/bin/env python3
"""Counts for the stride-phase tensor-core dgrad (csrc/conv/conv2d_dgrad_phase.h) on a suite's strided
convs: the tensor-core work the K loop issues (mma on whole 64 x 64 x BK tiles, masked slices included)
and the filter bytes it pulls into shared memory, for the analytic dgrad (every tap, masked by the
stride) and the per-phase dgrad (each phase only its own taps), beside the useful FLOPs and the minimum
bytes of fastconv.bench.roofline. No GPU: counts and a roofline prediction only.

    python scripts/dgrad_phase_count.py [--suite benchmarks/suites/resnet50.json] [--batch 32] [--dtype bf16]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fastconv.bench.roofline import conv2d_bytes, conv2d_flops, dtype_bytes  # noqa: E402

BM = BN = 64


def phase_axis(x0, X, R, stride, pad, dil):
    """Mirror of Conv2dDgradPhaseAxis::make: (dx coordinates in the phase, taps reaching them)."""
    size = -(-(X - x0) // stride) if x0 < X else 0
    tstep = stride // math.gcd(stride, dil)
    t0 = next((r for r in range(tstep) if (x0 + pad - r * dil) % stride == 0), None)
    taps = -(-(R - t0) // tstep) if t0 is not None and t0 < R else 0
    return size, taps


def ceil_to(v, m):
    return -(-v // m) * m


def count(pb, n, dtype):
    H, W, C, K, R, S = pb["H"], pb["W"], pb["C"], pb["K"], pb["R"], pb["S"]
    (sh, sw), (dh, dw) = pb["stride"], pb["dilation"]
    (pt, _), (pl, _) = pb["padding"]
    P, Q = pb["out"]
    size = dtype_bytes(dtype)
    bk = 64 // size   # Tile64's BK: 64 bytes of each row
    cols = ceil_to(C, BN)
    analytic_m = ceil_to(n * H * W, BM)
    analytic = 2 * analytic_m * cols * ceil_to(R * S * K, bk)
    analytic_w = (analytic_m // BM) * cols * R * S * K * size   # the filter slices every CTA copies
    phased = phased_w = 0
    for ph in range(sh):
        hs, ht = phase_axis(ph, H, R, sh, pt, dh)
        for pw in range(sw):
            ws, wt = phase_axis(pw, W, S, sw, pl, dw)
            m = ceil_to(n * hs * ws, BM)
            phased += 2 * m * cols * ceil_to(ht * wt * K, bk)
            phased_w += (m // BM) * cols * ht * wt * K * size
    useful = conv2d_flops(n, P, Q, K, R, S, C)
    min_bytes = conv2d_bytes((n, H, W, C), (R, S, C, K), (n, P, Q, K), dtype)
    return useful, analytic, phased, min_bytes, analytic_w, phased_w


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default=str(ROOT / "benchmarks" / "suites" / "resnet50.json"))
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dtype", default="bf16")
    ap.add_argument("--tflops", type=float, default=989.0, help="matrix rate (H100 SXM bf16 datasheet)")
    ap.add_argument("--tbps", type=float, default=3.35, help="memory bandwidth (H100 SXM datasheet)")
    args = ap.parse_args(argv)
    suite = json.loads(Path(args.suite).read_text())
    print("| conv | C % 8 | useful GFLOP | issued GFLOP analytic -> phased | min MB | filter MB to smem analytic -> "
          "phased | floor µs analytic -> phased | predicted speedup |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    tot = [0.0, 0.0]
    for pb in suite["problems"]:
        if pb.get("kind") != "conv2d" or tuple(pb["stride"]) == (1, 1):
            continue
        useful, analytic, phased, mb, aw, pw = count(pb, args.batch, args.dtype)
        mem = mb / (args.tbps * 1e12) * 1e6
        ta = max(analytic / (args.tflops * 1e12) * 1e6, mem)
        tp = max(phased / (args.tflops * 1e12) * 1e6, mem)
        if pb["C"] % 8:   # the CUDA-core fallback (other tiles): the 64-wide tile counts do not apply
            print(f"| {pb['name']} | no: CUDA-core fp32 fallback, not counted | {useful / 1e9:.2f} | | {mb / 1e6:.1f} "
                  "| | | |")
            continue
        tot[0] += ta
        tot[1] += tp
        print(f"| {pb['name']} | yes | {useful / 1e9:.2f} | "
              f"{analytic / 1e9:.2f} -> {phased / 1e9:.2f} | {mb / 1e6:.1f} | {aw / 1e6:.0f} -> {pw / 1e6:.0f} | "
              f"{ta:.1f} -> {tp:.1f} | {ta / tp:.2f}x |")
    print(f"| total of the tensor-core rows (floors summed) | | | | | | {tot[0]:.1f} -> {tot[1]:.1f} | {tot[0] / tot[1]:.2f}x |")


if __name__ == "__main__":
    main()
