"""Build checks with no GPU: every kernel template compiles with nvcc for sm_80 and sm_90a (and the
main kernels spill nothing), through NVRTC with CuPy's options for both targets, and the generated
kernel lists are in sync with the launch plans.
Skipped cleanly where nvcc / cuda-bindings are absent."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import resource_report  # noqa: E402


def test_generated_kernel_lists_are_fresh():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_kernel_list.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_nvcc_builds_every_kernel_without_spills(arch):
    if resource_report.find_nvcc() is None:
        pytest.skip("nvcc not found")
    names = resource_report.coverage_kernels()
    try:
        rows = resource_report.compile_report(arch, names)
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"nvcc failed for {arch}:\n{exc.stdout}\n{exc.stderr}")
    assert len(rows) == len(names), f"expected {len(names)} kernel entries, ptxas reported {len(rows)}"
    spilled = [r for r in rows if r.get("spill_stores") or r.get("spill_loads") or r.get("stack")]
    assert not spilled, "kernels with spills or stack frames:\n" + resource_report.format_table(spilled)


def _nvrtc_compile(arch, names):
    """Compile kernel_code() through NVRTC with CuPy's options; returns (ok, log)."""
    try:
        from fastconv.backends import nvrtc_check
    except ImportError:
        nvrtc_check = None
    from fastconv.backends import jit
    if nvrtc_check is not None and hasattr(nvrtc_check, "compile_source"):
        if not nvrtc_check.cuda_include_dirs():
            pytest.skip("the CUDA headers (cuda_fp16.h) are not installed")
        try:   # CuPy's options (-ftz=true, --std=c++17); csrc/ and the CUDA headers on the include path
            result = nvrtc_check.compile_source(jit.kernel_code(), arch=arch, name_expressions=names)
        except nvrtc_check.NvrtcError as exc:
            return False, str(exc)
        missing = [n for n in names if not result.lowered_names.get(n)]
        return not missing, f"names not lowered: {missing}"
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc")
    cuda_include = resource_report.find_cuda_include()
    if cuda_include is None:
        pytest.skip("the CUDA headers (cuda_fp16.h) are not installed")
    err, prog = nvrtc.nvrtcCreateProgram(jit.kernel_code().encode(), b"fastconv_kernels.cu", 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    for n in names:
        (err,) = nvrtc.nvrtcAddNameExpression(prog, n.encode())
        assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, n
    # CuPy's options: -ftz=true and the architecture; our include path; C++17.
    opts = [f"--gpu-architecture={arch}", "-ftz=true", "-std=c++17", f"-I{jit.CSRC}", f"-I{cuda_include}"]
    (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), [o.encode() for o in opts])
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, log)
    ok = err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    if ok:
        for n in names:
            e, lowered = nvrtc.nvrtcGetLoweredName(prog, n.encode())
            ok = ok and e == nvrtc.nvrtcResult.NVRTC_SUCCESS and bool(lowered)
    nvrtc.nvrtcDestroyProgram(prog)
    return ok, log.decode(errors="replace")


@pytest.mark.parametrize("arch", ["sm_80", "sm_90a"])
def test_nvrtc_builds_every_kernel(arch):
    pytest.importorskip("cuda.bindings")
    ok, log = _nvrtc_compile(arch, resource_report.coverage_kernels())
    assert ok, f"NVRTC failed for {arch}:\n{log}"
