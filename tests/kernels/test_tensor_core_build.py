"""Build checks of the tensor-core kernels (the sm80 families of fastconv/backends/kernel_table.py), no GPU needed:
- nvcc builds each for sm_80 and sm_90a, and its SASS (scripts/sass_report.py) holds HMMA, cp.async
  (LDGSTS) and, for 16-bit operands, ldmatrix (LDSM), and no local-memory traffic (LDL/STL: spills);
- NVRTC builds each with CuPy's options for both targets (the jit path).
- fastconv._C's tensor-core shards register exactly the planned kernels with the right operand kinds.
Skipped cleanly where nvcc / cuobjdump / cuda-bindings are absent. On 2 cores: 30-60 s for nvcc (both
targets in parallel) and about 45 s for NVRTC (both targets).
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import sass_report  # noqa: E402

ARCHS = ("sm_80", "sm_90a")


@pytest.fixture(scope="module")
def sass_rows():
    if sass_report.find_tool("nvcc") is None:
        pytest.skip("nvcc not found")
    if sass_report.find_tool("cuobjdump") is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    try:
        return sass_report.report(ARCHS)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"{' '.join(map(str, exc.cmd))} failed:\n{exc.stdout}\n{exc.stderr}")


@pytest.mark.parametrize("arch", ARCHS)
def test_nvcc_sass_uses_tensor_cores_without_spills(sass_rows, arch):
    rows = [r for r in sass_rows if r["arch"] == arch]
    names = sass_report.kernel_names()
    assert sorted(r["kernel"] for r in rows) == sorted(names), sass_report.format_table(rows)
    bad = [r for r in rows if r["HMMA"] == 0 or r["LDGSTS"] == 0 or r["LDL"] or r["STL"]
           or (r["LDSM"] == 0 and "Tf32" not in r["kernel"])]
    assert not bad, "kernels without HMMA/LDGSTS/LDSM or with spills:\n" + sass_report.format_table(bad)


@pytest.mark.parametrize("arch", ARCHS)
def test_nvrtc_builds_tensor_core_kernels(arch):
    pytest.importorskip("cuda.bindings")
    from fastconv.backends import nvrtc_check
    if not nvrtc_check.cuda_include_dirs():
        pytest.skip("the CUDA headers (cuda_fp16.h) are not installed")
    names = sass_report.kernel_names()
    try:
        result = nvrtc_check.compile_source('#include "conv/conv2d.h"\n#include "gemm/gemm.h"\n', arch=arch, name_expressions=names)
    except nvrtc_check.NvrtcError as exc:
        pytest.fail(f"NVRTC failed for {arch}:\n{exc}")
    missing = [n for n in names if not result.lowered_names.get(n)]
    assert not missing, f"names not lowered: {missing}"


@pytest.mark.parametrize("name, good, bad", [
    ("fc::conv2d_dgrad_tensor_op<fc::TensorOpF16Tile64, 8, __half>", "<f2", "<u2"),
    ("fc::conv2d_dgrad_tensor_op<fc::TensorOpBf16Tile64, 8, __nv_bfloat16>", "<u2", "<f2")])
def test_native_binding_takes_half_as_float16_and_bf16_as_uint16(name, good, bad):
    """fastconv._C's argument checks for 16-bit operands (no GPU): __half* takes float16 arrays and
    __nv_bfloat16* uint16 raw bits (csrc/launch/register_kernels.cuh), the other is refused by name."""
    _C = pytest.importorskip("fastconv._C")
    if name not in _C.kernel_names():
        pytest.skip("fastconv._C predates the tensor-core registry: rebuild it (python setup.py build_ext --inplace)")
    from test_native_binding import FakeDeviceArray
    pb = b"\0" * 64
    ok, wrong = FakeDeviceArray((64,), good), FakeDeviceArray((64,), bad)
    with pytest.raises(ValueError, match=f"needs elements of kind '{good[1]}' and 2 bytes, got typestr {bad}"):
        _C.launch(name, (1,), (128,), [pb, wrong, ok, ok], 0, 0)
    with pytest.raises(ValueError, match="16-byte aligned"):
        _C.launch(name, (1,), (128,), [pb, FakeDeviceArray((64,), good, ptr=(1 << 20) + 4), ok, ok], 0, 0)
    if _C.device_count() == 0:
        with pytest.raises(RuntimeError, match="CUDA device|cuda"):
            _C.launch(name, (1,), (128,), [pb, ok, ok, ok], 0, 0)


def test_native_tensor_op_shards_register_the_planned_kernels(tmp_path):
    """The tensor-core shards of fastconv._C (csrc/launch/kernels_shard4.cu, kernels_shard5.cu) built
    with nvcc (PTX only: no ptxas, ~30 s) and linked to the registry in a host program that lists what it registered: exactly
    tensor_op_kernel_names(), with the pointer kinds the plans pass (float32 'f4', float16 'f2', bfloat16
    as uint16 'u2') and one cp.async of alignment on the two operands. Needs nvcc, not a GPU."""
    nvcc = sass_report.find_tool("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found")
    from fastconv.backends.jit import tensor_op_kernel_names
    lister = tmp_path / "list_kernels.cpp"
    lister.write_text('#include <cstdio>\n#include "launch/registry.h"\nint main() {\n'
                      '  for (const auto& n : fc::launch::kernel_names()) {\n'
                      '    const auto* k = fc::launch::find_kernel(n);\n'
                      '    std::printf("%s|%d|", n.c_str(), k->operand_align);\n'
                      '    for (const auto& p : k->params)\n'
                      '      if (p.kind == fc::launch::ParamKind::kPointer) std::printf("%c%d,", p.pointee_kind, p.pointee_size);\n'
                      '    std::printf("\\n");\n  }\n}\n')
    exe = tmp_path / "list_kernels"
    launch = ROOT / "csrc" / "launch"
    cmd = [nvcc, "-std=c++17", f"-I{ROOT / 'csrc'}", "-gencode=arch=compute_80,code=compute_80", "-x", "cu",
           str(lister), str(launch / "kernels_shard4.cu"), str(launch / "kernels_shard5.cu"),
           str(launch / "registry.cu"), "-o", str(exe)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [line.split("|") for line in subprocess.run([str(exe)], capture_output=True, text=True,
                                                      check=True).stdout.splitlines()]
    assert sorted(r[0] for r in rows) == sorted(tensor_op_kernel_names())
    for name, align, pointers in rows:
        operand = {"Tf32": "f4", "F16": "f2", "Bf16": "u2"}[re.search(r"TensorOp(Tf32|F16|Bf16)", name).group(1)]
        kinds = pointers.rstrip(",").split(",")
        assert kinds[:2] == [operand, operand], (name, kinds)
        vec = int(re.search(r"Tile\d+, (\d+)", name).group(1))
        assert int(align) == vec * int(operand[1]), (name, align)
