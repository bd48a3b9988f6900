"""`fastconv bench --op gemm --dtype bf16,fp16`: the GPU runner calls the plans' gemm_wgmma (the sm_90a wgmma
kernel where it applies, else its mma.sync fallback) and the result says which kernel ran ('kernel')."""
import json
import types

import numpy as np
import pytest

from fastconv.bench import runners
from fastconv.bench.cli import main
from fastconv.bench.runners import FastconvRunner, Prepared
from fastconv.bench.suites import expand_cases, load_suite

torch = pytest.importorskip("torch")


def case_of(suite, problem, op, batch, dtype):
    cases, _ = expand_cases([load_suite(suite)], [op], [batch], [dtype], [problem])
    return cases[0]


def test_bench_reports_the_fastconv_kernel(tmp_path, capsys, monkeypatch):
    """A runner's Prepared.info reaches the result JSON beside its timing, and the table names the kernel."""
    ceilings = tmp_path / "ceilings.json"
    ceilings.write_text(json.dumps({"peak_flops": {"fp32": 5e10}, "bandwidth": 1e10, "source": "test fixture"}))

    def setup(self, case, sets):
        return [Prepared("mine", lambda i: sets[i]["a"] @ sets[i]["b"], lambda y: y, {"kernel": "fc::example<7>"})]
    monkeypatch.setattr(FastconvRunner, "setup", setup)
    out = tmp_path / "r.json"
    rc = main(["bench", "--device", "cpu", "--suite", "seed", "--op", "gemm", "--batch", "2", "--repeats", "3",
               "--ceilings", str(ceilings), "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    assert "fastconv kernel: fc::example<7>" in printed
    (r,) = json.loads(out.read_text())["runs"][0]["results"]
    assert r["fastconv"]["kernel"] == "fc::example<7>" and r["fastconv"]["label"] == "mine"
    assert r["fastconv"]["median_s"] > 0


def test_gpu_gemm16_needs_gemm_wgmma(monkeypatch):
    """bf16 / fp16 GEMMs on the GPU run gemm_wgmma: a backend without it is reported, not worked around."""
    case = case_of("gemm", "square_8192", "gemm", 1, "bf16")
    runner = FastconvRunner("gpu")
    full = types.SimpleNamespace(dense_fprop=None, gemm_wgmma=None)
    monkeypatch.setattr(runner, "_module", lambda: (full, "native"))
    assert runner.available(case) == (True, "native")
    monkeypatch.setattr(runner, "_module", lambda: (types.SimpleNamespace(dense_fprop=None), "jit"))
    ok, why = runner.available(case)
    assert not ok and "has no gemm_wgmma" in why
    fp32 = case_of("gemm", "square_8192", "gemm", 1, "fp32")   # fp32 keeps the generic dense_fprop adapter
    assert runner.available(fp32) == (True, "jit")


def test_kernels_of_names_what_the_plans_launched():
    """_kernels_of (the 'kernel' field) on the emulated plans: the wgmma GEMM, or the mma.sync fallback."""
    from fastconv.backends import backend_status
    if not backend_status()["emulated"][0]:
        pytest.skip("fastconv._emu is not built")
    from fastconv.backends import emulated
    from fastconv.backends.plans.tensor_op import float32_to_bf16_bits
    ops = emulated.ops()
    rng = np.random.default_rng(0)
    a = float32_to_bf16_bits(np, rng.standard_normal((20, 16)).astype(np.float32))
    b = float32_to_bf16_bits(np, rng.standard_normal((16, 24)).astype(np.float32))
    got = runners._kernels_of(lambda i: ops.gemm_wgmma(a, b, out_dtype=np.uint16))
    assert got == "fc::gemm_wgmma<fc::WgmmaTile<128, 4>, __nv_bfloat16, __nv_bfloat16>"
    a12 = float32_to_bf16_bits(np, rng.standard_normal((20, 12)).astype(np.float32))   # K = 12: no TMA rows
    got = runners._kernels_of(lambda i: ops.gemm_wgmma(a12, b[:12]))   # fp32 out: 16-bit out lacks a narrow mma.sync
    assert got.startswith("fc::gemm_tensor_op<") and "wgmma" not in got


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_gpu_bench_square_8192_runs_the_wgmma_kernel_against_cublas(dtype, tmp_path, capsys):
    """On an H100: the 8192^3 case of benchmarks/gpu_check.sh measures gemm_wgmma (the 'kernel' field) and
    its output agrees with cuBLAS within the dtype's cross-check tolerance."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    if torch.cuda.get_device_capability() != (9, 0):
        pytest.skip("needs an sm_90 (Hopper) GPU")
    out = tmp_path / "r.json"
    rc = main(["bench", "--device", "gpu", "--suite", "gemm", "--op", "gemm", "--shape", "square_8192",
               "--dtype", dtype, "--repeats", "3", "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    (r,) = json.loads(out.read_text())["runs"][0]["results"]
    assert r["status"] == "ok" and r["check"]["ok"], r
    assert r["fastconv"]["kernel"].startswith("fc::gemm_wgmma<"), r["fastconv"]
    assert r["baseline"]["name"] == "cublas" and r["ratio"] > 0


@pytest.mark.gpu
def test_gpu_bench_skinny_bf16_gemm_runs_and_says_which_kernel(tmp_path, capsys):
    """A dense layer's GEMM (N = 10): too few tiles for wgmma, so the mma.sync fallback runs (fp32 output
    where it has no 16-bit-output instantiation, recorded in 'out_dtype'), checked against cuBLAS."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    out = tmp_path / "r.json"
    rc = main(["bench", "--device", "gpu", "--suite", "seed", "--op", "gemm", "--shape", "dense_10816x10",
               "--dtype", "bf16", "--batch", "128", "--repeats", "3", "--json", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    (r,) = json.loads(out.read_text())["runs"][0]["results"]
    assert r["status"] == "ok" and r["check"]["ok"], r
    assert r["fastconv"]["kernel"].startswith("fc::gemm_tensor_op<"), r["fastconv"]
