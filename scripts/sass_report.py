#!/usr/bin/env python3
"""SASS report of the tensor-core kernels (csrc/conv/*_tensor_op_sm80.h, csrc/gemm/gemm_tensor_op_sm80.h): per
kernel and GPU target, how many HMMA (tensor-core mma), LDSM (ldmatrix), LDGSTS (cp.async) and LDL/STL (local memory: spills)
instructions the machine code holds, and the registers it uses.

    python scripts/sass_report.py                   # sm_80 and sm_90a
    python scripts/sass_report.py --arch sm_90a --json out.json

Compiles one translation unit instantiating every sm80 kernel of fastconv/backends/kernel_table.py with nvcc
into a cubin per target (the flags of the native build: -O3 --ftz=true), disassembles it with
`cuobjdump -sass` and reads the register counts from `cuobjdump -res-usage`. cuobjdump comes with the
toolkit or `pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm`. The counts are static
(instructions in the code, not executed): HMMA = 0 would mean the mma never reached the tensor cores,
LDL/STL > 0 that the accumulators spilled. tests/kernels/test_tensor_core_build.py asserts both.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from cuda_tools import demangle, find_tool, opcode_counts
from gen_kernel_list import instantiation_source

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
ARCHS = ("sm_80", "sm_90a")
OPCODES = ("HMMA", "LDSM", "LDGSTS", "LDL", "STL")


def kernel_names() -> list[str]:
    from fastconv.backends import kernel_table   # the checkout's: gen_kernel_list put it on sys.path
    return kernel_table.kernel_names(("sm80",))


def translation_unit() -> str:
    return instantiation_source(("sm80",))


def _aliases():
    """'fc::TensorOpTraits<float, 64, 64, 16, 32, 32, 3>' -> 'fc::TensorOpTf32Tile64' (gemm_tensor_op_sm80.h)."""
    text = (CSRC / "gemm" / "gemm_tensor_op_sm80.h").read_text()
    return {f"fc::TensorOpTraits<{args}>": f"fc::{alias}"
            for alias, args in re.findall(r"^using (\w+) = TensorOpTraits<(.*)>;", text, re.M)}


def _short_name(demangled, aliases):
    name = demangled.split("(")[0]
    name = name[5:] if name.startswith("void ") else name
    for full, alias in aliases.items():
        name = name.replace(full, alias)
    return name


def compile_cubin(arch: str, out_dir: Path, nvcc=None) -> Path:
    nvcc = nvcc or find_tool("nvcc")
    if nvcc is None:
        raise FileNotFoundError("nvcc not found")
    src = out_dir / "tensor_core_instances.cu"
    src.write_text(translation_unit())
    cubin = out_dir / f"tensor_core_{arch}.cubin"
    cmd = [nvcc, "-std=c++17", "-O3", "--ftz=true", f"-I{CSRC}", f"-gencode=arch=compute_{arch[3:]},code={arch}",
           "-cubin", str(src), "-o", str(cubin)]
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    return cubin


def sass_counts(cubin: Path, arch: str, cuobjdump=None) -> list[dict]:
    """One row per kernel: kernel, arch, HMMA, LDSM, LDGSTS, LDL, STL, registers."""
    rows, usage = opcode_counts(cubin, OPCODES, cuobjdump)
    symbols = list(rows)
    aliases = _aliases()
    out = []
    for sym, dem in zip(symbols, demangle(symbols)):
        out.append({"kernel": _short_name(dem, aliases), "arch": arch, **rows[sym], "registers": usage.get(sym, (-1, -1))[0],
                    "symbol": sym})
    return out


def report(archs=ARCHS, nvcc=None, cuobjdump=None) -> list[dict]:
    """Compiles for every arch (in parallel) and returns the rows of all."""
    with tempfile.TemporaryDirectory() as tmp:
        def one(arch):
            d = Path(tmp) / arch
            d.mkdir()
            return sass_counts(compile_cubin(arch, d, nvcc), arch, cuobjdump)
        with ThreadPoolExecutor(max_workers=len(archs)) as pool:
            return [row for rows in pool.map(one, archs) for row in rows]


def format_table(rows) -> str:
    width = max([len(r["kernel"]) for r in rows] + [6])
    head = f"{'kernel':<{width}} {'arch':<7} {'HMMA':>5} {'LDSM':>5} {'LDGSTS':>6} {'LDL':>4} {'STL':>4} {'regs':>4}"
    lines = [head, "-" * len(head)]
    for r in sorted(rows, key=lambda r: (r["kernel"], r["arch"])):
        lines.append(f"{r['kernel']:<{width}} {r['arch']:<7} {r['HMMA']:>5} {r['LDSM']:>5} {r['LDGSTS']:>6} "
                     f"{r['LDL']:>4} {r['STL']:>4} {r['registers']:>4}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="sm_80, sm_90a, ... (default: both)")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args(argv)
    try:
        rows = report(tuple(args.arch or ARCHS))
    except subprocess.CalledProcessError as exc:
        print(f"{' '.join(exc.cmd)} failed:\n{exc.stdout}\n{exc.stderr}", file=sys.stderr)
        return 2
    print(format_table(rows))
    bad = [r for r in rows if r["HMMA"] == 0 or r["LDL"] or r["STL"]]
    print(f"\n{len(rows)} kernel builds, {len(bad)} without HMMA or with local-memory traffic")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
