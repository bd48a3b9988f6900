"""Build checks of the sm_90a kernels (csrc/gemm/gemm_wgmma_sm90.h): the nvcc sm_90a cubin holds HGMMA (wgmma) and UTMALDG
(TMA) with no local-memory traffic (scripts/sass_report_hopper.py), NVRTC compiles the same source for
sm_90a (the jit path), and the plan's kernel names match the emulator's registry. No GPU needed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import sass_report_hopper  # noqa: E402
from fastconv.backends import nvrtc_check  # noqa: E402
from fastconv.backends.plans.conv2d_sm90 import conv2d_fprop_sm90_kernel_names  # noqa: E402
from fastconv.backends.plans.conv2d_wgrad_sm90 import conv2d_wgrad_sm90_kernel_names  # noqa: E402
from fastconv.backends.plans.gemm import wgmma_kernel_names  # noqa: E402


@pytest.fixture(scope="module")
def sass_rows():
    if sass_report_hopper.find_tool("nvcc") is None:
        pytest.skip("nvcc not found")
    if sass_report_hopper.find_tool("cuobjdump") is None:
        pytest.skip("cuobjdump not found (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    try:
        return sass_report_hopper.report()
    except subprocess.CalledProcessError as exc:
        pytest.fail(f"{' '.join(map(str, exc.cmd))} failed:\n{exc.stdout}\n{exc.stderr}")


def test_gemm_sass_uses_hgmma_and_tma_without_spills(sass_rows):
    gemms = [r for r in sass_rows if r["kernel"].startswith("fc::gemm_wgmma<")]
    assert sorted(r["kernel"] for r in gemms) == sorted(wgmma_kernel_names()), sass_report_hopper.format_table(sass_rows)
    bad = [r for r in gemms if r["HGMMA"] == 0 or r["UTMALDG"] == 0 or r["SYNCS"] == 0 or r["LDL"] or r["STL"]
           or r["stack"]]
    assert not bad, "GEMMs without HGMMA/UTMALDG/mbarrier or with local memory:\n" + sass_report_hopper.format_table(bad)


def test_conv_sass_uses_hgmma_and_both_tma_boxes_without_spills(sass_rows):
    """Every sm_90a conv kernel: HGMMA, the 4-D activation and 3-D filter TMA loads (UTMALDG >= 2), mbarriers,
    no local memory."""
    convs = [r for r in sass_rows if r["kernel"].startswith("fc::conv2d_fprop_wgmma_sm90<")]
    assert sorted(r["kernel"] for r in convs) == sorted(conv2d_fprop_sm90_kernel_names()), \
        sass_report_hopper.format_table(sass_rows)
    bad = [r for r in convs if r["HGMMA"] == 0 or r["UTMALDG"] < 2 or r["SYNCS"] == 0 or r["LDL"] or r["STL"]
           or r["stack"]]
    assert not bad, "convs without HGMMA/UTMALDG/mbarrier or with local memory:\n" + sass_report_hopper.format_table(bad)


def test_wgrad_sass_uses_hgmma_and_four_tma_boxes_without_spills(sass_rows):
    """The sm_90a conv wgrad: HGMMA (MN-major operands), the two activation and two output-gradient boxes per
    k-tile (UTMALDG >= 4), mbarriers, no local memory."""
    wgrads = [r for r in sass_rows if r["kernel"].startswith("fc::conv2d_wgrad_wgmma_sm90<")]
    assert sorted(r["kernel"] for r in wgrads) == sorted(conv2d_wgrad_sm90_kernel_names()), \
        sass_report_hopper.format_table(sass_rows)
    bad = [r for r in wgrads if r["HGMMA"] == 0 or r["UTMALDG"] < 4 or r["SYNCS"] == 0 or r["LDL"] or r["STL"]
           or r["stack"]]
    assert not bad, "wgrads without HGMMA/UTMALDG/mbarrier or with local memory:\n" + sass_report_hopper.format_table(bad)


def test_primitive_selftests_reach_the_hardware_instructions(sass_rows):
    by = {r["kernel"]: r for r in sass_rows}
    assert by["fc_sm90_selftest::tma_box"]["UTMALDG"] == 1
    assert all(by[f"fc_sm90_selftest::tma_box_nd<{rank}>"]["UTMALDG"] == 1 for rank in (3, 4, 5))
    assert all(by[k]["HGMMA"] == 1 for k in by if k.startswith("fc_sm90_selftest::wgmma_from_image"))


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_other_targets_build_without_wgmma(sass_rows, arch, tmp_path):
    """The same source builds for targets without wgmma (the native build's other gencodes): the wgmma
    bodies compile away there instead of failing in ptxas."""
    cubin = sass_report_hopper.compile_cubin(tmp_path, arch=arch)
    rows = sass_report_hopper.sass_counts(cubin)
    assert rows and all(r["HGMMA"] == 0 for r in rows)


def test_nvrtc_builds_the_sm90a_gemm():
    pytest.importorskip("cuda.bindings")
    from fastconv.backends import nvrtc_check
    if not nvrtc_check.cuda_include_dirs():
        pytest.skip("the CUDA headers (cuda_fp16.h) are not installed")
    names = wgmma_kernel_names()
    try:
        result = nvrtc_check.compile_source('#include "gemm/gemm_wgmma_sm90.h"\n', arch="sm_90a", name_expressions=names)
    except nvrtc_check.NvrtcError as exc:
        pytest.fail(f"NVRTC failed for sm_90a:\n{exc}")
    assert all(result.lowered_names.get(n) for n in names)


def test_nvrtc_builds_the_sm90a_conv():
    pytest.importorskip("cuda.bindings")
    if not nvrtc_check.cuda_include_dirs():
        pytest.skip("the CUDA headers (cuda_fp16.h) are not installed")
    names = conv2d_fprop_sm90_kernel_names()
    try:
        result = nvrtc_check.compile_source('#include "conv/conv2d_fprop_wgmma_sm90.h"\n', arch="sm_90a",
                                            name_expressions=names)
    except nvrtc_check.NvrtcError as exc:
        pytest.fail(f"NVRTC failed for sm_90a:\n{exc}")
    assert all(result.lowered_names.get(n) for n in names)


def test_nvrtc_builds_the_sm90a_wgrad():
    pytest.importorskip("cuda.bindings")
    if not nvrtc_check.cuda_include_dirs():
        pytest.skip("the CUDA headers (cuda_fp16.h) are not installed")
    names = conv2d_wgrad_sm90_kernel_names()
    try:
        result = nvrtc_check.compile_source('#include "conv/conv2d_wgrad_wgmma_sm90.h"\n', arch="sm_90a",
                                            name_expressions=names)
    except nvrtc_check.NvrtcError as exc:
        pytest.fail(f"NVRTC failed for sm_90a:\n{exc}")
    assert all(result.lowered_names.get(n) for n in names)


def test_plan_names_are_registered_in_the_emulator():
    emulator = pytest.importorskip("fastconv.emulator")
    if not emulator.available():
        pytest.skip("fastconv._emu is not built")
    assert set(wgmma_kernel_names() + conv2d_fprop_sm90_kernel_names() + conv2d_wgrad_sm90_kernel_names()) <= \
        set(emulator.kernels())


@pytest.mark.skipif(not nvrtc_check.available(), reason="NVRTC (cuda-bindings) is not installed")
def test_jit_compiles_every_wgmma_kernel_for_sm90a_and_resolves_its_mangled_name():
    from fastconv.backends import jit
    names = wgmma_kernel_names()
    assert names and all(n.startswith(jit.SM90A_KERNEL_PREFIXES) for n in names)
    cubin, mangled = jit.compile_sm90a(names[0])
    assert cubin[:4] == b"\x7fELF" and mangled.startswith("_Z") and "gemm_wgmma" in mangled
    assert jit.builds_sm90a()
