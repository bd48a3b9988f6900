#!/usr/bin/env python3
"""SASS report of the sm_90a kernels (the kernel table's sm90a families: csrc/gemm/gemm_wgmma_sm90.h, csrc/conv/conv2d_fprop_wgmma_sm90.h, csrc/conv/conv2d_wgrad_wgmma_sm90.h) and the sm90 primitive selftests
(csrc/selftest/sm90.cuh): per kernel, how many HGMMA (wgmma), UTMALDG (TMA tensor loads), SYNCS (mbarrier operations) and LDL/STL (local memory: spills) instructions the sm_90a
machine code holds, with its registers and stack frame.

    python scripts/sass_report_hopper.py [--json out.json] [--markdown]   (--markdown: the register table of
                                                                          benchmarks/NOTES.md)

A sibling of sass_report.py (the sm_80 tensor-core kernels): one translation unit instantiating every sm90a kernel
of fastconv/backends/kernel_table.py and every selftest of csrc/selftest/sm90_table.inc, nvcc -gencode=arch=compute_90a,code=sm_90a (-O3 --ftz=true, as the native
build), `cuobjdump -sass` / `-res-usage`. Static counts: HGMMA = 0 means the matrix work left the tensor
cores' warpgroup path; LDL/STL > 0 that the accumulators spilled. tests/kernels/test_hopper_build.py
asserts both for the GEMMs and the convs (which also need UTMALDG >= 2: the activation and filter boxes).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from cuda_tools import demangle, find_tool, opcode_counts
from gen_kernel_list import instantiation_source

from fastconv.backends.kernel_table import table_spelling

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
ARCH = "sm_90a"
OPCODES = ("HGMMA", "UTMALDG", "SYNCS", "LDL", "STL")


def translation_unit() -> str:
    return (instantiation_source(("sm90a",)) + "#define FC_CAT2(a, b) a##b\n#define FC_CAT(a, b) FC_CAT2(a, b)\n"
            "// taking the address instantiates the kernel\n"
            "#define FC_EMU_KERNEL(name, ...) static const void* const FC_CAT(fc_instance_, __LINE__) = "
            "reinterpret_cast<const void*>(&__VA_ARGS__);\n"
            '#include "selftest/sm90_table.inc"\n')


def compile_cubin(out_dir: Path, nvcc=None, arch=ARCH) -> Path:
    nvcc = nvcc or find_tool("nvcc")
    if nvcc is None:
        raise FileNotFoundError("nvcc not found")
    src = out_dir / "hopper_instances.cu"
    src.write_text(translation_unit())
    cubin = out_dir / f"hopper_{arch}.cubin"
    cmd = [nvcc, "-std=c++17", "-O3", "--ftz=true", f"-I{CSRC}", f"-gencode=arch=compute_{arch[3:]},code={arch}", "-cubin",
           str(src), "-o", str(cubin)]
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    return cubin


def sass_counts(cubin: Path, cuobjdump=None) -> list[dict]:
    """One row per kernel: kernel, HGMMA, UTMALDG, SYNCS, LDL, STL, registers, stack."""
    rows, usage = opcode_counts(cubin, OPCODES, cuobjdump)
    symbols = list(rows)
    out = []
    for sym, dem in zip(symbols, demangle(symbols)):
        name = dem.split("(")[0]
        name = table_spelling(name[5:] if name.startswith("void ") else name)
        regs, stack = usage.get(sym, (-1, -1))
        out.append({"kernel": name, "arch": ARCH, **rows[sym], "registers": regs, "stack": stack, "symbol": sym})
    return out


def report(nvcc=None, cuobjdump=None) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        return sass_counts(compile_cubin(Path(tmp), nvcc), cuobjdump)


def format_table(rows) -> str:
    width = max([len(r["kernel"]) for r in rows] + [6])
    head = (f"{'kernel':<{width}} {'HGMMA':>5} {'UTMALDG':>7} {'SYNCS':>5} {'LDL':>4} {'STL':>4} {'regs':>4} "
            f"{'stack':>5}")
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: r["kernel"]):
        lines.append(f"{r['kernel']:<{width}} {r['HGMMA']:>5} {r['UTMALDG']:>7} {r['SYNCS']:>5} {r['LDL']:>4} "
                     f"{r['STL']:>4} {r['registers']:>4} {r['stack']:>5}")
    return "\n".join(lines)


def format_markdown(rows) -> str:
    """The plan kernels (GEMMs, convs) as a Markdown table: the registers and spills column of NOTES.md."""
    lines = ["| kernel (sm_90a) | HGMMA | UTMALDG | registers | stack | LDL/STL |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in sorted(rows, key=lambda r: r["kernel"]):
        if not r["kernel"].startswith("fc::"):
            continue
        lines.append(f"| `{r['kernel']}` | {r['HGMMA']} | {r['UTMALDG']} | {r['registers']} | {r['stack']} | "
                     f"{r['LDL'] + r['STL']} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--markdown", action="store_true", help="print the plan kernels as a Markdown table instead")
    args = ap.parse_args(argv)
    try:
        rows = report()
    except subprocess.CalledProcessError as exc:
        print(f"{' '.join(exc.cmd)} failed:\n{exc.stdout}\n{exc.stderr}", file=sys.stderr)
        return 2
    print(format_markdown(rows) if args.markdown else format_table(rows))
    plan = [r for r in rows if r["kernel"].startswith(("fc::gemm_wgmma<", "fc::conv2d_fprop_wgmma_sm90<",
                                                       "fc::conv2d_wgrad_wgmma_sm90<"))]
    bad = [r for r in plan if r["HGMMA"] == 0 or r["UTMALDG"] == 0 or r["LDL"] or r["STL"]]
    print(f"\n{len(plan)} GEMM and conv builds, {len(bad)} without HGMMA/UTMALDG or with local-memory traffic")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
