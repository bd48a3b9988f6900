"""Build checks of the row kernels of csrc/ops/softmax.h, no GPU needed: every instantiation the plans
can launch builds with nvcc (the native build's -O3 --ftz=true) and with NVRTC (CuPy's options, the jit
path) for sm_80 and sm_90a, and the SASS of each shows what the design promises: no local memory
(LDL/STL: spills) and no stack frame, 16-byte global loads (LDG.E.128) in the V = 4 versions and
16-byte stores where they write rows, and the warp-shuffle butterfly (SHFL.BFLY) wherever a row is
reduced. Skipped cleanly where nvcc / cuobjdump / cuda-bindings are absent. About 30 s on 2 cores.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from fastconv.backends.jit import all_kernel_names

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

from cuda_tools import demangle, find_tool  # noqa: E402

ARCHS = ("sm_80", "sm_90a")
NAMES = [n for n in all_kernel_names() if "_rows<" in n]
STORES_ROWS = ("softmax_fprop_rows", "softmax_bprop_rows", "softmax_xent_fprop_rows", "softmax_xent_bprop_rows")


def _canonical(demangled):
    name = demangled.split("(")[0]
    name = name[5:] if name.startswith("void ") else name
    return name.replace("long long", "int64_t").replace("long", "int64_t")   # NVRTC: long long; nvcc: long


def _sass(cubin: Path):
    """{kernel name: (SASS text, registers, stack bytes)} of every kernel in a cubin."""
    cuobjdump = find_tool("cuobjdump")

    def run(flag):
        return subprocess.run([cuobjdump, flag, str(cubin)], capture_output=True, text=True, check=True).stdout
    usage = {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"Function (\w+):\s*\n\s*REG:(\d+) STACK:(\d+)",
                                                              run("-res-usage"))}
    text = {}
    for chunk in re.split(r"\n\s*Function : ", run("-sass"))[1:]:
        symbol, _, body = chunk.partition("\n")
        text[symbol.strip()] = body
    symbols = sorted(text)
    return {_canonical(d): (text[s], *usage[s]) for s, d in zip(symbols, demangle(symbols))}


def _check_sass(kernels, what):
    assert sorted(kernels) == sorted(NAMES), f"{what}: built {sorted(kernels)}"
    bad = []
    for name, (sass, regs, stack) in kernels.items():
        base, vec4 = name.split("<")[0][len("fc::"):], name.endswith(", 4>")
        reduces = not (base == "softmax_xent_bprop_rows" and "int64_t" in name)   # sum(y_row) of a class id is 1
        problems = [p for p, wrong in (
            ("local memory (LDL/STL)", re.search(r"\b(LDL|STL)\b", sass)),
            (f"a {stack}-byte stack frame", stack),
            ("no 16-byte loads", vec4 and not re.search(r"\bLDG\.E[.\w]*\.128\b", sass)),
            ("no 16-byte stores", vec4 and base in STORES_ROWS and not re.search(r"\bSTG\.E[.\w]*\.128\b", sass)),
            ("no shuffle butterfly", reduces and "SHFL.BFLY" not in sass)) if wrong]
        if problems:
            bad.append(f"  {name} ({regs} registers): {', '.join(problems)}")
    assert not bad, f"{what}:\n" + "\n".join(bad)


@pytest.mark.parametrize("arch", ARCHS)
def test_nvcc_builds_the_row_kernels_coalesced_without_spills(arch, tmp_path):
    nvcc = find_tool("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found")
    if find_tool("cuobjdump") is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    src = tmp_path / "rows.cu"
    src.write_text('#include "ops/softmax.h"\n' + "".join(   # taking the address instantiates the kernel
        f"static const void* const fc_instance_{i} = reinterpret_cast<const void*>(&{n});\n" for i, n in enumerate(NAMES)))
    cubin = tmp_path / f"rows_{arch}.cubin"
    cmd = [nvcc, "-std=c++17", "-O3", "--ftz=true", f"-I{ROOT / 'csrc'}",
           f"-gencode=arch=compute_{arch[3:]},code={arch}", "-cubin", str(src), "-o", str(cubin)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"nvcc failed for {arch}:\n{proc.stdout}\n{proc.stderr}"
    _check_sass(_sass(cubin), f"nvcc {arch}")


@pytest.mark.parametrize("arch", ARCHS)
def test_nvrtc_builds_the_row_kernels_coalesced_without_spills(arch, tmp_path):
    pytest.importorskip("cuda.bindings")
    from fastconv.backends import nvrtc_check
    try:
        nvrtc_check.cuda_include_dirs()
    except FileNotFoundError:
        pytest.skip("the CUDA headers (cuda_fp16.h) are not installed")
    if find_tool("cuobjdump") is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    try:
        result = nvrtc_check.compile_source('#include "ops/softmax.h"\n', arch=arch, name_expressions=NAMES)
    except nvrtc_check.NvrtcError as exc:
        pytest.fail(f"NVRTC failed for {arch}:\n{exc}")
    assert all(result.lowered_names.get(n) for n in NAMES), result.lowered_names
    cubin = tmp_path / f"rows_{arch}_nvrtc.cubin"
    cubin.write_bytes(result.binary)
    _check_sass(_sass(cubin), f"NVRTC {arch}")
