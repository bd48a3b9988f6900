"""The sm_90a GEMMs in the native build (fastconv._C), checked without a GPU and without rebuilding _C:
nvcc compiles csrc/launch/kernels_sm90a.cu and registry.cu (PTX only: no ptxas, a few seconds) and links
them (1) into a host program that lists what the shard registered, (2) with csrc/bind/fastconv_c.cpp into
a throwaway copy of the _C module, whose argument checks for the tensor-map parameters run here.
GPU checks (native gemm_wgmma and bf16/fp16 dense against the reference on an H100) carry the gpu marker.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from fastconv.backends.plans.conv2d_sm90 import conv2d_fprop_sm90_kernel_names
from fastconv.backends.plans.conv2d_wgrad_sm90 import conv2d_wgrad_sm90_kernel_names
from fastconv.backends.plans.gemm import wgmma_kernel_names, wgmma_shared_bytes
from fastconv.backends.plans.tensor_map import EMU_TENSOR_MAP_MAGIC, TMA_SWIZZLE_128B, encode_tensor_map_emulated

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sass_report  # noqa: E402

LAUNCH = ROOT / "csrc" / "launch"
NVCC_FLAGS = ["-std=c++17", "-Xcompiler", "-fPIC", f"-I{ROOT / 'csrc'}", "-gencode=arch=compute_80,code=compute_80"]


def test_generated_list_puts_the_wgmma_kernels_in_the_sm90a_shard_only():
    """kernel_list.inc (scripts/gen_kernel_list.py): one FC_KERNEL_SM90A line per plan kernel, 16-byte operand
    alignment; only kernels_sm90a.cu registers them (with the probe), every other shard defines them away."""
    import re
    text = (LAUNCH / "kernel_list.inc").read_text()
    listed = re.findall(r"^FC_KERNEL_SM90A\((\d+), (.*)\)$", text, re.M)
    assert [n for _, n in listed] == wgmma_kernel_names() + conv2d_fprop_sm90_kernel_names() + \
        conv2d_wgrad_sm90_kernel_names()
    assert {a for a, _ in listed} == {"16"}
    shard = (LAUNCH / "kernels_sm90a.cu").read_text()
    assert "#define FC_KERNEL_SM90A(align, ...) FC_REGISTER_SM90A(align, __VA_ARGS__)" in shard
    assert '#include "sm90a_probe.cuh"' in shard and '#include "../gemm/gemm_wgmma_sm90.h"' in shard
    assert '#include "../conv/conv2d_fprop_wgmma_sm90.h"' in shard
    assert '#include "../conv/conv2d_wgrad_wgmma_sm90.h"' in shard
    assert not re.search(r"#define FC_KERNEL_SHARD\d\(align, \.\.\.\) FC_REGISTER", shard)
    for other in sorted(LAUNCH.glob("kernels_shard*.cu")):
        assert "#define FC_KERNEL_SM90A(align, ...)\n" in other.read_text(), other.name


@pytest.fixture(scope="module")
def objects(tmp_path_factory):
    """kernels_sm90a.cu and registry.cu compiled by nvcc (PTX for compute_80: the wgmma bodies compile away,
    the registrations and the probe are what is checked)."""
    nvcc = sass_report.find_tool("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found")
    out = tmp_path_factory.mktemp("sm90a_shard")
    objs = []
    for src in ("kernels_sm90a.cu", "registry.cu"):
        obj = out / (src + ".o")
        proc = subprocess.run([nvcc, *NVCC_FLAGS, "-c", str(LAUNCH / src), "-o", str(obj)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-4000:]
        objs.append(obj)
    return nvcc, out, objs


LISTER = r'''#include <cstdio>
#include <exception>
#include "launch/registry.h"
int main() {
  for (const auto& n : fc::launch::kernel_names()) {
    const auto* k = fc::launch::find_kernel(n);
    std::printf("%s|%d|%d|", n.c_str(), k->operand_align, int(k->needs_sm90a));
    for (const auto& p : k->params) {
      if (p.kind == fc::launch::ParamKind::kPointer) std::printf("%s%c%d,", p.pointee_const ? "c" : "", p.pointee_kind, p.pointee_size);
      else if (p.kind == fc::launch::ParamKind::kTensorMap) std::printf("T%d,", p.size);
      else std::printf("s%d:%d,", int(p.kind), p.size);
    }
    std::printf("\n");
  }
  try {
    std::printf("probe|%d\n", int(fc::launch::sm90a_code_on_current_device()));
  } catch (const std::exception& e) {
    std::printf("probe|error: %s\n", e.what());
  }
}
'''


def test_sm90a_shard_registers_the_planned_kernels_with_tensor_map_parameters(objects):
    """Exactly wgmma_kernel_names() and conv2d_fprop_sm90_kernel_names(), each marked needs_sm90a, 16-byte
    operand alignment (TMA global addresses), and the parameter list the plans pass: A, Bt (const 16-bit),
    two 128-byte tensor maps, C (float32 or the operand type), M, N, K, bias (const float32), has_bias, act,
    alpha; the conv's as its launch in plans/conv2d_sm90.py, the wgrad's as in plans/conv2d_wgrad_sm90.py."""
    nvcc, out, objs = objects
    lister = out / "list_sm90a.cu"
    lister.write_text(LISTER)
    exe = out / "list_sm90a"
    proc = subprocess.run([nvcc, *NVCC_FLAGS, str(lister), *map(str, objs), "-o", str(exe)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    probe = [ln for ln in lines if ln.startswith("probe|")]
    rows = [ln.split("|") for ln in lines if not ln.startswith("probe|")]
    assert sorted(r[0] for r in rows) == sorted(wgmma_kernel_names() + conv2d_fprop_sm90_kernel_names() +
                                                conv2d_wgrad_sm90_kernel_names())
    for name, align, needs, params in rows:
        operand = "u2" if "__nv_bfloat16" in name else "f2"
        c = "f4" if name.endswith(", float>") else operand
        assert (align, needs) == ("16", "1"), name
        if name.startswith("fc::gemm_wgmma<"):
            want = [f"c{operand}", f"c{operand}", "T128", "T128", c, "s1:4", "s1:4", "s1:4", "cf4", "s1:4", "s1:4",
                    "s3:4"]
        elif name.startswith("fc::conv2d_wgrad_wgmma_sm90<"):   # x, dy, maps, dw or workspace, problem, tile, splits
            want = [f"c{operand}", f"c{operand}", "T128", "T128", "f4", "s4:64", "s4:12", "s1:4"]
        else:   # conv: x, w, maps, y, Conv2dProblem, ConvPixelTile, ConvOutputView, bias, has_bias, act, alpha,
            # residual, has_residual
            want = [f"c{operand}", f"c{operand}", "T128", "T128", c, "s4:64", "s4:12", "s4:24", "cf4", "s1:4", "s1:4",
                    "s3:4", f"c{c}", "s1:4"]
        assert params.rstrip(",").split(",") == want, name
    # The probe asks the runtime about the current device: a value on a GPU machine, a clear error without one.
    assert len(probe) == 1
    answer = probe[0].split("|", 1)[1]
    assert answer in ("0", "1") or "no current CUDA device" in answer, answer
    if answer in ("0", "1"):   # with a GPU: these objects hold no sm_90a binary, so never 1
        assert answer == "0"


def _per_kernel(text, arch):
    """{mangled kernel: text of its section} for one arch of `cuobjdump --dump-resource-usage` / `-sass`."""
    import re
    out, current, keep = {}, None, False
    for line in text.splitlines():
        m = re.search(r"arch = (sm_\w+)", line)
        if m:
            keep = m.group(1) == arch
        m = re.search(r"Function (\S+?):?$", line.strip()) or re.search(r"Function : (\S+)", line)
        if m:
            current = m.group(1).rstrip(":") if keep else None
            if current:
                out.setdefault(current, "")
        elif current:
            out[current] += line + "\n"
    return out


@pytest.mark.slow
def test_native_sm90a_shard_machine_code(tmp_path, monkeypatch):
    """kernels_sm90a.cu built as setup.py builds _C (sm_80 + sm_90a machine code, compute_90 PTX; ~2 min
    on 2 cores): in the sm_90a binary every wgmma GEMM and conv holds HGMMA and TMA loads (UTMALDG) and the probe its
    4 KiB shared marker; in the sm_80 binary they are traps and the probe has no marker, so
    sm90a_code_on_current_device can tell the two apart."""
    nvcc, cuobjdump = sass_report.find_tool("nvcc"), sass_report.find_tool("cuobjdump")
    if nvcc is None or cuobjdump is None:
        pytest.skip("nvcc / cuobjdump not found")
    import ast   # setup.py runs setup() when imported: take its gencode function (the default archs) alone
    tree = ast.parse((ROOT / "setup.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "cuda_gencode_flags")
    namespace = {}
    exec(compile(ast.Module([fn], type_ignores=[]), "setup.py", "exec"), namespace)
    monkeypatch.delenv("FASTCONV_CUDA_ARCHS", raising=False)
    flags = namespace["cuda_gencode_flags"]()
    assert "-gencode=arch=compute_90a,code=sm_90a" in flags and "-gencode=arch=compute_80,code=sm_80" in flags
    obj = tmp_path / "sm90a.o"
    proc = subprocess.run([nvcc, "-std=c++17", "-O3", "--ftz=true", "-Xcompiler", "-fPIC", f"-I{ROOT / 'csrc'}",
                           *flags, "-c", str(LAUNCH / "kernels_sm90a.cu"), "-o", str(obj)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    usage = subprocess.run([cuobjdump, "--dump-resource-usage", str(obj)], capture_output=True, text=True,
                           check=True).stdout
    sass = {arch: _per_kernel(subprocess.run([cuobjdump, "-sass", "-arch", arch, str(obj)], capture_output=True,
                                             text=True, check=True).stdout, arch) for arch in ("sm_80", "sm_90a")}
    import re
    for arch in ("sm_80", "sm_90a"):
        res = _per_kernel(usage, arch)
        probe = [v for k, v in res.items() if "sm90a_probe" in k]
        assert len(probe) == 1, res.keys()
        shared = int(re.search(r"SHARED:(\d+)", probe[0]).group(1))
        assert (shared >= 4096) == (arch == "sm_90a"), (arch, shared)
        gemms = {k: v for k, v in sass[arch].items() if "gemm_wgmma" in k}
        assert len(gemms) == len(wgmma_kernel_names()), sass[arch].keys()
        convs = {k: v for k, v in sass[arch].items() if "conv2d_fprop_wgmma_sm90" in k or "conv2d_wgrad_wgmma_sm90" in k}
        assert len(convs) == len(conv2d_fprop_sm90_kernel_names() + conv2d_wgrad_sm90_kernel_names()), sass[arch].keys()
        for name, code in {**gemms, **convs}.items():
            if arch == "sm_90a":
                assert "HGMMA" in code and "UTMALDG" in code and not re.search(r"\b(LDL|STL)\b", code), name
            else:
                assert "HGMMA" not in code and "TRAP" in code, name


@pytest.fixture(scope="module")
def c_module(objects):
    """A throwaway _C: the real binding file linked with the sm_90a shard and the registry."""
    nvcc, out, objs = objects
    pybind11 = pytest.importorskip("pybind11")
    so = out / ("_C" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [nvcc, *NVCC_FLAGS, "-shared", f"-I{sysconfig.get_paths()['include']}", f"-I{pybind11.get_include()}",
           str(ROOT / "csrc" / "bind" / "fastconv_c.cpp"), *map(str, objs), "-o", str(so)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    spec = importlib.util.spec_from_file_location("_C", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAME = "fc::gemm_wgmma<fc::WgmmaTile<128, 4>, __nv_bfloat16, float>"


def _args(map_a, map_b, a_ptr=1 << 20, a_kind="<u2"):
    from test_native_binding import FakeDeviceArray
    m = n = k = 256
    return [FakeDeviceArray((m, k), a_kind, ptr=a_ptr), FakeDeviceArray((n, k), "<u2", ptr=1 << 24), map_a, map_b,
            FakeDeviceArray((m, n), "<f4", ptr=1 << 28), m, n, k, FakeDeviceArray((n,), "<f4", ptr=1 << 30), 0, 0, 0.0]


def _driver_like_map(seed):
    """128 bytes that are neither zeros nor an emulator map: what a cuTensorMapEncodeTiled result looks like
    to the binding (it cannot look inside the driver's opaque layout)."""
    raw = np.random.default_rng(seed).integers(1, 255, 128, dtype=np.uint8)
    raw[:8] = np.frombuffer(np.uint64(1 << 20).tobytes(), np.uint8)   # starts with a global address
    return raw.tobytes()


def test_binding_reports_which_kernels_need_sm90a(c_module):
    sm90a = wgmma_kernel_names() + conv2d_fprop_sm90_kernel_names() + conv2d_wgrad_sm90_kernel_names()
    assert sorted(c_module.kernel_names()) == sorted(sm90a)
    assert all(c_module.kernel_requires(n) == "sm_90a" for n in sm90a)
    with pytest.raises(ValueError, match="no kernel named 'fc::nope'"):
        c_module.kernel_requires("fc::nope")
    if c_module.device_count() == 0:   # no device: asking is an error, never a silent yes
        with pytest.raises(RuntimeError, match="no current CUDA device"):
            c_module.sm90a_code()
        with pytest.raises(RuntimeError, match="no current CUDA device"):
            c_module.has_device_code(NAME)
    else:   # a PTX-only build holds no sm_90a binary
        assert c_module.sm90a_code() is False and c_module.has_device_code(NAME) is False


def test_binding_checks_tensor_map_arguments(c_module):
    good = _driver_like_map(0)
    emu = encode_tensor_map_emulated(0, 2, (256, 256), 512, (64, 128), TMA_SWIZZLE_128B)
    assert int.from_bytes(emu[:4], "little") == EMU_TENSOR_MAP_MAGIC

    def launch(args):
        c_module.launch(NAME, (2, 2), (384,), args, wgmma_shared_bytes(128), 0)

    with pytest.raises(ValueError, match=r"argument 2 \(fc::sm90::TensorMap \(CUtensorMap\)\) must be exactly 128 bytes"):
        launch(_args(good[:127], good))
    with pytest.raises(ValueError, match=r"argument 3 .* must be the 128 bytes of an encoded CUtensorMap"):
        launch(_args(good, 7))
    with pytest.raises(ValueError, match="argument 2 .* is all zeros"):
        launch(_args(bytes(128), good))
    with pytest.raises(ValueError, match="argument 3 .* holds an emulator tensor map"):
        launch(_args(good, emu))
    with pytest.raises(ValueError, match="argument 0 .* must be 16-byte aligned"):
        launch(_args(good, good, a_ptr=(1 << 20) + 8))
    with pytest.raises(ValueError, match=r"argument 0 \(const __nv_bfloat16\*\) needs elements of kind 'u'"):
        launch(_args(good, good, a_kind="<f2"))
    # np.void scalars (what the plan passes, native.py turns them into bytes) are accepted as well
    void = np.frombuffer(good, np.dtype((np.void, 128)))[0]
    if c_module.device_count() == 0:   # well-formed: the first CUDA call fails, as a RuntimeError
        with pytest.raises(RuntimeError, match="no current CUDA device"):
            launch(_args(void, good))
    else:   # this PTX-only build has no sm_90a code: refused by name, never launched to trap
        with pytest.raises(ValueError, match="machine code only for sm_90a"):
            launch(_args(void, good))


# ---- on an H100 ------------------------------------------------------------------------------------------
def _native_on_sm90():
    from fastconv.backends import native
    ok, why = native.status()
    if not ok:
        pytest.skip(why)
    cupy = pytest.importorskip("cupy")
    if str(cupy.cuda.Device().compute_capability) != "90":
        pytest.skip("needs an sm_90 (Hopper) GPU")
    from fastconv import _C
    if not hasattr(_C, "sm90a_code"):
        pytest.skip("fastconv._C predates the sm_90a registry: rebuild it")
    return native, cupy, _C


@pytest.mark.gpu
def test_native_c_runs_sm90a_code_on_an_h100():
    native, cupy, _C = _native_on_sm90()
    assert set(wgmma_kernel_names()) <= set(_C.kernel_names())
    assert _C.sm90a_code(), "fastconv._C has no sm_90a binary: build with FASTCONV_CUDA_ARCHS containing sm_90a"
    assert all(_C.has_device_code(n) for n in wgmma_kernel_names())
    assert native._ops().runs_sm90a()


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["bf16", "f16"])
@pytest.mark.parametrize("m,n,k,tol", [(3000, 2900, 1032, 1e-4), (8192, 8192, 8192, 1e-4)])
def test_native_gemm_wgmma_matches_numpy(kind, m, n, k, tol):
    """Through _C: partial tiles in M, N and K, and the 8192-class shape of the cuBLAS comparison; the
    wgmma kernel runs (explain), fp32 output against a float64 product of the same rounded operands."""
    native, cupy, _ = _native_on_sm90()
    from fastconv.explain import explain
    from test_hopper_gemm import operands
    rng = np.random.default_rng(m + k)
    a, b, a64, b64 = operands(kind, m, n, k, rng, integers=False)
    ex = explain(native.gemm_wgmma, cupy.asarray(a), cupy.asarray(b))
    assert any(name.startswith("fc::gemm_wgmma<") for name in ex.kernels), ex.kernels
    c = cupy.asnumpy(ex.result).astype(np.float64)
    rows = np.random.default_rng(1).choice(m, 256, replace=False)   # an 8192^3 float64 check would take minutes
    ref = a64[rows] @ b64
    assert np.linalg.norm(c[rows] - ref) / np.linalg.norm(ref) < tol


@pytest.mark.gpu
@pytest.mark.parametrize("prec", ["bf16", "fp16"])
def test_native_dense_under_16bit_precision_runs_wgmma(prec):
    native, cupy, _ = _native_on_sm90()
    from fastconv.backends import reference as ref
    from fastconv.explain import explain
    rng = np.random.default_rng(7)
    m, k, n = 2048, 1024, 2304
    x, w = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    ex = explain(lambda: native.dense_fprop(cupy.asarray(x), cupy.asarray(w), cupy.asarray(b), precision=prec))
    assert any(name.startswith("fc::gemm_wgmma<") for name in ex.kernels), ex.kernels
    want = ref.dense_fprop(x, w, b, precision=prec)
    got = cupy.asnumpy(ex.result)
    assert np.abs(got - want).max() / (np.abs(x) @ np.abs(w) + np.abs(b)).max() < 1e-5


@pytest.mark.gpu
def test_native_c_refuses_wgmma_on_other_gpus():
    """On a GPU that is not compute capability 9.0 the registered wgmma kernels are trapping stand-ins:
    _C says so, the plan falls back (explain), and a direct launch is refused by name, never run."""
    from fastconv.backends import native
    ok, why = native.status()
    if not ok:
        pytest.skip(why)
    cupy = pytest.importorskip("cupy")
    if str(cupy.cuda.Device().compute_capability) == "90":
        pytest.skip("a Hopper GPU runs the sm_90a code")
    from fastconv import _C
    if not hasattr(_C, "sm90a_code"):
        pytest.skip("fastconv._C predates the sm_90a registry: rebuild it")
    from fastconv.explain import explain
    assert not _C.sm90a_code() and not _C.has_device_code(NAME)
    a = cupy.ones((512, 256), cupy.uint16)
    ex = explain(native.gemm_wgmma, a, cupy.ones((256, 512), cupy.uint16))
    assert not any("gemm_wgmma" in name for name in ex.kernels)
    assert any("instead of the sm_90a wgmma GEMM" in e.text for e in ex.events if e.kind == "note")
    with pytest.raises(ValueError, match="machine code only for sm_90a"):
        _C.launch(NAME, (2, 4), (384,), _args(_driver_like_map(1), _driver_like_map(2)), wgmma_shared_bytes(128), 0)
