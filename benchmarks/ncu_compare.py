"""Nsight Compute's counters next to the emulator's, for a few small kernels (benchmarks/gpu_check.sh).

    python benchmarks/ncu_compare.py --out ncu-counters.json   # on a GPU machine with ncu, from the repo root

The same CUDA source runs twice: in the emulator's instrumented build (emulator.profile: our
counters) and on the GPU through CuPy under `ncu --metrics` (the hardware's), with the same launch
configurations. The JSON holds, per kernel and metric (emulator_counters.METRICS), both values; the
printed table marks where they differ. The kernels are the emulator's hand-computed cases: a
coalesced and a stride-32 fp32 copy, 128-bit loads, a 32x32 transpose through shared memory with
and without padding. Exit 3 (a SKIP for gpu_check.sh) without ncu or a GPU.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np

SOURCE = r"""
extern "C" __global__ void copy(const float* x, float* y, int stride) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  y[i] = x[i * stride];
}

extern "C" __global__ void copy4(const float4* x, float4* y) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  y[i] = x[i];
}

template <int PAD>
__global__ void transpose32(const float* x, float* y) {
  __shared__ float tile[32][32 + PAD];
  tile[threadIdx.y][threadIdx.x] = x[threadIdx.y * 32 + threadIdx.x];
  __syncthreads();
  y[threadIdx.y * 32 + threadIdx.x] = tile[threadIdx.x][threadIdx.y];
}
"""

# (label, kernel name, grid, block, argument builder): launched in this order on both sides.
CASES = (
    ("copy stride 1", "copy", 64, 128, lambda: (np.arange(8192, dtype=np.float32), np.zeros(8192, np.float32), 1)),
    ("copy stride 32", "copy", 64, 128,
     lambda: (np.arange(8192 * 32, dtype=np.float32), np.zeros(8192, np.float32), 32)),
    ("copy4 (128-bit)", "copy4", 16, 128, lambda: (np.arange(4 * 2048, dtype=np.float32), np.zeros(4 * 2048, np.float32))),
    ("transpose32 no pad", "transpose32<0>", 1, (32, 32),
     lambda: (np.arange(1024, dtype=np.float32), np.zeros(1024, np.float32))),
    ("transpose32 pad 1", "transpose32<1>", 1, (32, 32),
     lambda: (np.arange(1024, dtype=np.float32), np.zeros(1024, np.float32))),
)


def emulated_counters() -> dict:
    """{label: {ncu metric: our value}} from the emulator's instrumented build."""
    from fastconv import emulator
    from fastconv.emulator_counters import METRICS, kernel_counters
    names = sorted({c[1] for c in CASES})
    kernels = dict(zip(names, emulator.compile_kernel(SOURCE, names, filename="ncu_compare.cu")))
    out = {}
    for label, name, grid, block, args in CASES:
        row = kernel_counters([(name, emulator.profile(kernels[name], grid, block, args()))])[name]
        out[label] = {metric: (100 * row[key] if key.endswith("efficiency") and row[key] is not None else row[key])
                      for key, metric in METRICS.items()}
    return out


def run_on_gpu() -> None:
    """Launch every case once with CuPy (what ncu profiles)."""
    import cupy
    module = cupy.RawModule(code=SOURCE, options=("-std=c++17",), name_expressions=[c[1] for c in CASES])
    for _, name, grid, block, args in CASES:
        fn = module.get_function(name)
        dev = [cupy.asarray(a) if isinstance(a, np.ndarray) else np.int32(a) for a in args()]
        fn((grid,) if isinstance(grid, int) else grid, (block,) if isinstance(block, int) else block, tuple(dev))
    cupy.cuda.runtime.deviceSynchronize()


def ncu_counters(ncu: str) -> dict:
    """{label: {metric: ncu's value}}: this module rerun under ncu, its launches in CASES order."""
    from fastconv.emulator_counters import METRICS
    metrics = list(METRICS.values())
    for _ in range(2):   # a metric this ncu does not know fails the run: drop what it names, once
        cmd = [ncu, "--csv", "--print-units", "base", "--metrics", ",".join(metrics),
               sys.executable, os.path.abspath(__file__), "--launch"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        unknown = [m for m in metrics if m in proc.stdout + proc.stderr and "rror" in proc.stdout + proc.stderr]
        if proc.returncode == 0 or not unknown or len(unknown) == len(metrics):
            break
        print(f"ncu rejected {unknown}; retrying without them")
        metrics = [m for m in metrics if m not in unknown]
    if proc.returncode:
        raise RuntimeError(f"ncu failed (exit {proc.returncode}): {(proc.stderr or proc.stdout)[-600:]}")
    text = proc.stdout[proc.stdout.find('"ID"'):]
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise RuntimeError(f"ncu printed no metrics: {proc.stdout[-600:]}")
    ids = sorted({int(r["ID"]) for r in rows})
    if len(ids) != len(CASES):
        raise RuntimeError(f"ncu profiled {len(ids)} launches, expected {len(CASES)}")
    out = {c[0]: {} for c in CASES}
    for r in rows:
        value = r["Metric Value"].replace(",", "")
        try:
            out[CASES[ids.index(int(r["ID"]))][0]][r["Metric Name"]] = float(value)
        except ValueError:
            out[CASES[ids.index(int(r["ID"]))][0]][r["Metric Name"]] = None
    return out


def compare(ours: dict, theirs: dict) -> tuple[dict, list[str]]:
    """({label: {metric: {"emulated": x, "ncu": y}}}, table lines marking differences)."""
    joined, lines = {}, [f"{'kernel':<20} {'metric':<66} {'emulated':>10} {'ncu':>10}"]
    for label in ours:
        joined[label] = {}
        for metric, mine in ours[label].items():
            hw = theirs.get(label, {}).get(metric)
            joined[label][metric] = {"emulated": mine, "ncu": hw}
            same = mine is not None and hw is not None and abs(mine - hw) <= 0.5   # ncu rounds .pct values
            lines.append(f"{label:<20} {metric:<66} {_v(mine):>10} {_v(hw):>10}" + ("" if same else "  <- differs"))
    return joined, lines


def _v(x) -> str:
    return "-" if x is None else f"{x:.6g}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the emulated and ncu values per kernel and metric to this JSON file")
    ap.add_argument("--launch", action="store_true", help=argparse.SUPPRESS)   # the child that ncu profiles
    args = ap.parse_args(argv)
    if args.launch:
        run_on_gpu()
        return 0
    ncu = shutil.which("ncu")
    if ncu is None:
        print("SKIP: ncu is not on PATH")
        return 3
    ours = emulated_counters()
    theirs = ncu_counters(ncu)
    joined, lines = compare(ours, theirs)
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"source": SOURCE, "cases": [c[:4] for c in CASES], "counters": joined}, f, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # the checkout's fastconv
    sys.exit(main())
