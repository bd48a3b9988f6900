"""The selftest kernels, platform.h and the tensor-core / cp.async wrappers must still compile for
the GPU: with nvcc for sm_80 and sm_90a, and with NVRTC (the jit path) for the same targets with
CuPy's options. Skipped cleanly where nvcc or cuda-bindings is missing."""
import shutil
import subprocess
from pathlib import Path

import pytest

from fastconv.backends import nvrtc_check

CSRC = Path(__file__).resolve().parents[2] / "csrc"
TABLE = CSRC / "selftest" / "selftest_table.inc"


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
def test_selftest_kernels_compile_with_nvcc(tmp_path):
    cmd = ["nvcc", "-std=c++17", f"-I{CSRC}", "-c", str(CSRC / "selftest" / "selftest_kernels.cu"),
           "-o", str(tmp_path / "selftest.o"),
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90a,code=sm_90a"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "selftest.o").stat().st_size > 0


def test_table_lists_every_selftest_kernel():
    exprs = nvrtc_check.table_name_expressions(TABLE)
    assert "fc_selftest::sgemm_tiled<16, true>" in exprs and "fc_selftest::mma_fragments<fc_selftest::kMmaBf16>" in exprs
    assert len(exprs) == TABLE.read_text().count("FC_EMU_KERNEL(")


@pytest.mark.skipif(not nvrtc_check.available(), reason="cuda-bindings / NVRTC not installed")
@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_selftest_kernels_compile_with_nvrtc(arch):
    result = nvrtc_check.compile_table(TABLE, arch=arch)
    assert result.binary[:4] == b"\x7fELF"                    # a CUBIN
    lowered = result.lowered_names
    assert len(lowered) == len(nvrtc_check.table_name_expressions(TABLE))
    assert all(name.startswith("_Z") and name.encode() in result.binary for name in lowered.values())


@pytest.mark.skipif(not nvrtc_check.available(), reason="cuda-bindings / NVRTC not installed")
def test_nvrtc_errors_carry_the_log():
    with pytest.raises(nvrtc_check.NvrtcError, match="undefined_identifier"):
        nvrtc_check.compile_source('#include "common/platform.h"\n__global__ void k() { undefined_identifier(); }\n')
