#!/usr/bin/env python3
"""ptxas resource report (registers, shared memory, stack, spills) of fastconv's kernels, per GPU target.

    python scripts/resource_report.py                    # the main kernels, sm_80 and sm_90a
    python scripts/resource_report.py --all --arch sm_90a
    python scripts/resource_report.py --json out.json

Compiles one translation unit that instantiates the chosen kernels (by their C++ template-ids, the
names the plans and the native registry use) with `nvcc -Xptxas -v` and parses ptxas' report.
tests/kernels/test_compile.py uses compile_report() to check that every kernel template builds for
sm_80 and sm_90a and that the main kernels spill nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from cuda_tools import demangle, find_tool

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
sys.path.insert(0, str(ROOT))

ARCHS = ("sm_80", "sm_90a")


def _gemm_shaped(op, tile, vec, index="int", t="float", trans=(False, False)):
    from fastconv.backends.kernel_table import kernel_name   # the checkout's (ROOT is on sys.path)
    if op == "gemm_bias_act":
        return kernel_name(op, tile=tile, vec=vec, index=index, t=t, trans_a=trans[0], trans_b=trans[1])
    return kernel_name(f"conv2d_{op}_implicit_gemm", tile=tile, vec=vec, index=index, t=t)


def main_kernels() -> list[str]:
    """The hot kernels: every GEMM-shaped kernel in each tile at both vector widths, 32-bit index."""
    return [_gemm_shaped(op, tile, vec) for tile in ("TileSmall", "TileMedium", "TileLarge") for vec in (1, 4)
            for op in ("fprop", "dgrad", "wgrad", "gemm_bias_act")]


def coverage_kernels() -> list[str]:
    """At least one instantiation of every kernel template, and each code path of the GEMM-shaped
    ones (scalar and 16-byte loads, 32- and 64-bit index, float and double, all four GEMM
    transposes), including the register-heaviest (TileLarge, scalar): what the compile checks
    build (about 20 s per target on one core)."""
    from fastconv.backends.kernel_table import instances
    names = [_gemm_shaped(op, *cfg) for op in ("fprop", "dgrad", "wgrad")
             for cfg in (("TileLarge", 1), ("TileSmall", 4), ("TileMedium", 4, "int64_t"))]
    names += [_gemm_shaped("fprop", "TileSmall", 1, "int64_t", "double")]
    names += [_gemm_shaped("gemm_bias_act", "TileSmall", 4, trans=(a, b)) for a in (False, True) for b in (False, True)]
    names += [_gemm_shaped("gemm_bias_act", "TileLarge", 1)]
    seen = {n.split("<")[0] for n in names}
    for i in instances(("any", "sm80")):   # the first non-double instantiation of every other template
        if i.family.name not in {s[len("fc::"):] for s in seen} and "double" not in i.config.values():
            names.append(i.name)
            seen.add(f"fc::{i.family.name}")
    return names


def translation_unit(names) -> str:
    lines = ['#include "launch/all_kernels.h"']
    for i, n in enumerate(names):   # taking the address instantiates the kernel
        lines.append(f"static const void* const fc_instance_{i} = reinterpret_cast<const void*>(&{n});")
    return "\n".join(lines) + "\n"


def find_nvcc():
    return find_tool("nvcc")


def find_cuda_include():
    """The CUDA toolkit's include directory (NVRTC needs it for cuda_fp16.h), or None."""
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = find_nvcc()
    if nvcc:
        candidates.append(str(Path(nvcc).resolve().parents[1]))
    for home in filter(None, candidates):
        inc = Path(home) / "include"
        if (inc / "cuda_fp16.h").exists():
            return inc
    return None


def _canonical(demangled: str) -> str:
    """'void fc::conv2d_fprop_implicit_gemm<fc::GemmTile<...>, 4, int, float>(...)' -> a short name."""
    name = demangled.split("(")[0]
    name = name[5:] if name.startswith("void ") else name
    for alias, tile in (("TileSmall", "32, 32, 8, 4, 4"), ("TileMedium", "64, 64, 8, 4, 4"),
                        ("TileLarge", "128, 128, 8, 8, 8")):
        name = name.replace(f"fc::GemmTile<{tile}>", f"fc::{alias}")
    return name.replace("long", "int64_t")


def compile_report(arch: str, names, nvcc=None, extra_flags=()) -> list[dict]:
    """Compiles `names` for `arch` (e.g. sm_90a) and returns one dict per kernel entry:
    kernel, arch, registers, smem, stack, spill_stores, spill_loads. Raises CalledProcessError
    (with nvcc's output) when the build fails."""
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found")
    num = arch.split("_")[1]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "instances.cu"
        src.write_text(translation_unit(names))
        cmd = [nvcc, "-std=c++17", f"-I{CSRC}", "--ftz=true", f"-gencode=arch=compute_{num},code={arch}",
               "-Xptxas", "-v", "-c", str(src), "-o", str(Path(tmp) / "instances.o"), *extra_flags]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    from fastconv.bench.static_resources import parse_ptxas   # the one ptxas parser (profile --emulated too)
    entries = parse_ptxas(proc.stdout + proc.stderr)
    for e, d in zip(entries, demangle([e["symbol"] for e in entries])):
        e["kernel"] = _canonical(d)
    return entries


def format_table(rows) -> str:
    head = f"{'kernel':<72} {'arch':<7} {'regs':>4} {'smem':>6} {'stack':>5} {'spill st/ld':>11}"
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: (r["kernel"], r["arch"])):
        lines.append(f"{r['kernel']:<72} {r['arch']:<7} {r.get('registers', 0):>4} {r.get('smem', 0):>6} "
                     f"{r.get('stack', 0):>5} {r.get('spill_stores', 0):>5}/{r.get('spill_loads', 0):<5}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="sm_80, sm_90a, ... (default: both)")
    ap.add_argument("--all", action="store_true", help="every registered kernel, not just the main ones")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    from fastconv.backends.jit import all_kernel_names
    names = all_kernel_names() if args.all else main_kernels()
    rows = []
    for arch in args.arch or ARCHS:
        rows += compile_report(arch, names)
    print(format_table(rows))
    spilled = [r for r in rows if r.get("spill_stores") or r.get("spill_loads")]
    print(f"\n{len(rows)} kernel builds, {len(spilled)} with spills")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if spilled else 0


if __name__ == "__main__":
    sys.exit(main())
