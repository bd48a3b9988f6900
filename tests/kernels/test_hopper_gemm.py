"""The sm_90a GEMM (csrc/gemm/gemm_wgmma_sm90.h: TMA into a 4-stage ring, warp-specialized wgmma) through its
plan (fastconv/backends/plans/gemm.py gemm_wgmma), run by the CPU emulator against NumPy:

- small integers in [-3, 3]: exact (every product and sum exact in fp32), on shapes with partial tiles in
  M, N and K (TMA zero fill), more k-tiles than stages (the ring wraps: empty/full parities), in forward,
  reverse and random thread order and with poison_async (a TMA destination read before its mbarrier
  completes is NaN);
- random floats: relative error against a float64 product of the rounded operands;
- bias + activation epilogue, 16-bit outputs, the fallback to gemm_tensor_op and its explain note.
GPU checks (an H100: the same against the reference) carry the gpu marker.
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import hopper_jit, sm90_emulated_ops
from fastconv.backends.plans.gemm import wgmma_kernel_names, wgmma_shared_bytes
from fastconv.backends.plans.tensor_op import bf16_bits_to_float32, float32_to_bf16_bits
from fastconv.explain import explain

OPERAND = {"f16": np.float16, "bf16": np.uint16}


def emu_ops(order="forward", poison=False, seed=1):
    return sm90_emulated_ops(wgmma_kernel_names(), order, poison, seed)


def operands(kind, m, n, k, rng, integers=True):
    if integers:
        a, b = rng.integers(-3, 4, (m, k)).astype(np.float32), rng.integers(-3, 4, (k, n)).astype(np.float32)
    else:
        a, b = rng.standard_normal((m, k)).astype(np.float32), rng.standard_normal((k, n)).astype(np.float32)
    if kind == "f16":
        a16, b16 = a.astype(np.float16), b.astype(np.float16)
        return a16, b16, a16.astype(np.float64), b16.astype(np.float64)
    a16, b16 = float32_to_bf16_bits(np, a), float32_to_bf16_bits(np, b)
    return a16, b16, bf16_bits_to_float32(np, a16).astype(np.float64), bf16_bits_to_float32(np, b16).astype(np.float64)


SHAPES = [(128, 128, 64), (130, 120, 72), (257, 136, 328), (150, 130, 520), (40, 300, 8)]   # partial M/N/K;
# 6 and 9 k-tiles > 4 stages: the ring wraps, and a stage released before its wgmmas finished is overwritten


@pytest.mark.parametrize("kind", list(OPERAND))
@pytest.mark.parametrize("m,n,k", SHAPES)
def test_gemm_wgmma_exact_on_small_integers(kind, m, n, k):
    rng = np.random.default_rng(m * n + k)
    a, b, a64, b64 = operands(kind, m, n, k, rng)
    ops = emu_ops(order="random", poison=True)
    c = ops.gemm_wgmma(a, b)
    bn = 256 if n >= 256 else 128
    assert ops.launched[0][0] == f"fc::gemm_wgmma<fc::WgmmaTile<{bn}, 4>, {'__half' if kind == 'f16' else '__nv_bfloat16'}, float>"
    assert ops.launched[0][1:] == ((-(-n // bn), -(-m // 128)), (384,), wgmma_shared_bytes(bn))
    np.testing.assert_array_equal(c, (a64 @ b64).astype(np.float32))


@pytest.mark.parametrize("bn", [128, 256])
def test_gemm_wgmma_both_tiles_on_partial_n(bn):
    rng = np.random.default_rng(bn)
    a, b, a64, b64 = operands("bf16", 140, 300, 520, rng)   # N = 300: 1.17 tiles of 256, 2.3 of 128
    ops = emu_ops(order="random", poison=True)
    ops.force_wgmma_bn = bn
    np.testing.assert_array_equal(ops.gemm_wgmma(a, b), (a64 @ b64).astype(np.float32))
    assert f"WgmmaTile<{bn}, 4>" in ops.launched[0][0]
    ops.force_wgmma_bn = 96
    with pytest.raises(ValueError, match="force_wgmma_bn=96"):
        ops.gemm_wgmma(a, b)


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_gemm_wgmma_thread_orders(order):
    rng = np.random.default_rng(5)
    a, b, a64, b64 = operands("bf16", 200, 140, 320, rng)
    np.testing.assert_array_equal(emu_ops(order=order).gemm_wgmma(a, b), (a64 @ b64).astype(np.float32))


@pytest.mark.parametrize("kind,tol", [("f16", 2e-3), ("bf16", 1e-2)])
def test_gemm_wgmma_random_bias_activation_and_16bit_out(kind, tol):
    rng = np.random.default_rng(11)
    m, n, k = 190, 150, 200
    a, b, a64, b64 = operands(kind, m, n, k, rng, integers=False)
    bias = rng.standard_normal(n).astype(np.float32)
    ops = emu_ops(order="random")
    ref = np.maximum(a64 @ b64 + bias, 0)
    c = ops.gemm_wgmma(a, b, bias=bias, activation="relu")
    assert np.linalg.norm(c - ref) / np.linalg.norm(ref) < 1e-5      # fp32 out: accumulation error only
    c16 = ops.gemm_wgmma(a, b, bias=bias, activation="relu", out_dtype=OPERAND[kind])
    c16 = c16.astype(np.float64) if kind == "f16" else bf16_bits_to_float32(np, c16).astype(np.float64)
    assert np.linalg.norm(c16 - ref) / np.linalg.norm(ref) < tol
    lrelu = ops.gemm_wgmma(a, b, activation="leaky_relu", alpha=0.1)
    x = a64 @ b64
    np.testing.assert_allclose(lrelu, np.where(x > 0, x, 0.1 * x), rtol=1e-5, atol=1e-4)


def test_gemm_wgmma_falls_back_and_says_why():
    rng = np.random.default_rng(2)
    a, b, a64, b64 = operands("f16", 64, 48, 20, rng)        # K = 20: TMA rows of 40 bytes
    ops = emu_ops()
    ex = explain(ops.gemm_wgmma, a, b)
    assert any("K=20 is not a multiple of 8" in str(e.text) for e in ex.events)
    assert all("gemm_wgmma" not in name for name, *_ in ops.launched)
    np.testing.assert_array_equal(ex.result, (a64 @ b64).astype(np.float32))
    buf = np.zeros(64 * 32 + 8, np.float16)
    start = (-buf.ctypes.data // 2) % 8 + 2                    # 4 bytes past a 16-byte boundary
    unaligned = buf[start:start + 64 * 32].reshape(64, 32)
    unaligned[:] = rng.integers(-3, 4, (64, 32))
    b2 = rng.integers(-3, 4, (32, 48)).astype(np.float16)
    ex = explain(ops.gemm_wgmma, unaligned, b2)
    assert any("not 16-byte aligned" in str(e.text) for e in ex.events)
    np.testing.assert_array_equal(ex.result, unaligned.astype(np.float32) @ b2.astype(np.float32))
    ex = explain(ops.gemm_wgmma, *operands("f16", 64, 48, 32, rng)[:2])
    assert any("wgmma GEMM" in str(e.text) and "emulator" in str(e.text) for e in ex.events)


@pytest.mark.parametrize("m,n,k", [(130, 120, 72), (64, 48, 20)])   # wgmma; K = 20: the mma.sync fallback
def test_gemm_wgmma_takes_b_as_n_by_k(m, n, k):
    """b_layout='nk': B given as Bt (N, K) row-major, the layout the kernel reads (no transposing copy)."""
    rng = np.random.default_rng(m + k)
    a, b, a64, b64 = operands("bf16", m, n, k, rng)
    ops = emu_ops(order="random", poison=True)
    c = ops.gemm_wgmma(a, np.ascontiguousarray(b.T), b_layout="nk")
    np.testing.assert_array_equal(c, (a64 @ b64).astype(np.float32))
    assert ("gemm_wgmma" in ops.launched[-1][0]) == (k % 8 == 0)
    with pytest.raises(ValueError, match=r"expected \(M, K\) and \(N, K\) \(b_layout='nk'\)"):
        ops.gemm_wgmma(a, b, b_layout="nk")
    with pytest.raises(ValueError, match="b_layout must be 'kn'"):
        ops.gemm_wgmma(a, b, b_layout="t")
    if k % 8 == 0:   # an unaligned (N, K) B: the fallback runs, and explain says why
        buf = np.zeros(n * k + 8, np.uint16)
        start = (-buf.ctypes.data // 2) % 8 + 2                 # 4 bytes past a 16-byte boundary
        bt = buf[start:start + n * k].reshape(n, k)
        bt[:] = b.T
        ex = explain(ops.gemm_wgmma, a, bt, b_layout="nk")
        assert any("B (given as (N, K)) is not 16-byte aligned" in str(e.text) for e in ex.events)
        np.testing.assert_array_equal(ex.result, (a64 @ b64).astype(np.float32))


def test_gemm_wgmma_bad_input_errors():
    ops = emu_ops()
    a = np.ones((4, 8), np.float16)
    with pytest.raises(ValueError, match=r"expected \(M, K\) and \(K, N\)"):
        ops.gemm_wgmma(a, np.ones((4, 8), np.float16))
    with pytest.raises(TypeError, match="A is float16 but B is uint16"):
        ops.gemm_wgmma(a, np.ones((8, 4), np.uint16))
    with pytest.raises(TypeError, match="output must be float32 or the operand type"):
        ops.gemm_wgmma(a, np.ones((8, 4), np.float16), out_dtype=np.uint16)
    with pytest.raises(ValueError, match=r"bias has shape \(3,\); expected \(4,\)"):
        ops.gemm_wgmma(a, np.ones((8, 4), np.float16), bias=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="activation 'gelu' is not one of"):
        ops.gemm_wgmma(a, np.ones((8, 4), np.float16), activation="gelu")


def _emulated_backend_ops():
    from fastconv.backends import backend_status
    if not backend_status()["emulated"][0]:
        pytest.skip("fastconv._emu is not built")
    from fastconv.backends import emulated
    return emulated.ops()


def _notes(report):
    return " | ".join(e.text for e in report.events if e.kind == "note")


# (M, K, N), M (wgrad's K) a multiple of 8: one partial tile, dgrad (K = N = 10) on mma.sync; two partial
# tiles in N, 2 k-tiles (one partial) in fprop and 3 in dgrad (K = N = 136).
DENSE_WGMMA = [(8, 40, 10), (16, 72, 136)]


@pytest.mark.parametrize("prec", ["bf16", "fp16"])
@pytest.mark.parametrize("m,k,n", DENSE_WGMMA)
def test_emulated_dense_under_16bit_precision_runs_wgmma(prec, m, k, n):
    """Dense fprop / dgrad / wgrad under a bf16 / fp16 policy go through gemm_wgmma (the emulator runs it
    for any K % 8 == 0): exact against the reference's rounding oracle on small integers, and within the
    fp32-summation-order tolerance on random floats; explain names the kernel and why."""
    from fastconv.backends import reference as ref
    ops = _emulated_backend_ops()
    rng = np.random.default_rng(m * k + n)
    xi, wi = rng.integers(-3, 4, (m, k)).astype(np.float32), rng.integers(-3, 4, (k, n)).astype(np.float32)
    bi = rng.integers(-3, 4, n).astype(np.float32)
    report = explain(lambda: ops.dense_fprop(xi, wi, bi, precision=prec))
    assert report.kernels[-1].startswith("fc::gemm_wgmma<"), report.kernels
    assert "sm_90a wgmma GEMM" in _notes(report) and "in the emulator" in _notes(report)
    np.testing.assert_array_equal(report.result, ref.dense_fprop(xi, wi, bi, precision=prec))
    x = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    dy = rng.standard_normal((m, n)).astype(np.float32)
    rep = explain(lambda: ops.dense_bprop(dy, x, w, precision=prec))
    dx, dw, db = rep.result
    want = ref.dense_bprop(dy, x, w, precision=prec)
    dgrad, wgrad = [kern for kern in rep.kernels if kern.startswith("fc::gemm_")]
    assert wgrad.startswith("fc::gemm_wgmma<"), rep.kernels                 # dw = x^T dy: K = M
    assert dgrad.startswith("fc::gemm_wgmma<" if n % 8 == 0 else "fc::gemm_tensor_op<"), rep.kernels   # K = N
    for got, oracle, scale in ((dx, want[0], np.abs(dy) @ np.abs(w).T), (dw, want[1], np.abs(x).T @ np.abs(dy))):
        err = np.abs(got - oracle).max() / max(scale.max(), 1e-30)
        assert err < 1e-5, err
    np.testing.assert_allclose(db, want[2], rtol=1e-5, atol=1e-5)


def test_emulated_dense_falls_back_to_mma_sync_when_k_is_not_a_multiple_of_8():
    from fastconv.backends import reference as ref
    ops = _emulated_backend_ops()
    rng = np.random.default_rng(4)
    x, w = rng.integers(-3, 4, (5, 12)).astype(np.float32), rng.integers(-3, 4, (12, 6)).astype(np.float32)
    report = explain(lambda: ops.dense_fprop(x, w, None, precision="bf16"))
    assert report.kernels[-1].startswith("fc::gemm_tensor_op<"), report.kernels
    assert "instead of the sm_90a wgmma GEMM: K=12 is not a multiple of 8" in _notes(report)
    np.testing.assert_array_equal(report.result, ref.dense_fprop(x, w, None, precision="bf16"))


class _FakeGpuOps:
    """wgmma_applies as a GPU backend sees it, with the device kind and wiring chosen by the test."""

    def __init__(self, target, builds):
        from fastconv.backends.plans.launcher import Launcher
        self.lx = Launcher(np, None, None, builds_sm90a=builds)
        self.lx.sm90_target = lambda: target

    def applies(self, *args):
        from fastconv.backends.plans.gemm import wgmma_applies
        return wgmma_applies(self.lx, *args)


def test_wgmma_selection_on_gpus(monkeypatch):
    from fastconv.backends.plans import tensor_map
    monkeypatch.setattr(tensor_map, "tensor_map_encoder", lambda: (object(), "fake"))   # test_tensor_map_libcuda.py
    big = (4096, 4096, 4096, np.float16)
    assert _FakeGpuOps("sm90", True).applies(*big)[0]
    ok, why = _FakeGpuOps(None, True).applies(*big)
    assert not ok and "not sm_90" in why
    ok, why = _FakeGpuOps("sm90", False).applies(*big)
    assert not ok and "no sm_90a code for the device" in why
    # native: builds_sm90a is _C.sm90a_code, asked per use (the current device)
    assert _FakeGpuOps("sm90", lambda: True).applies(*big)[0]
    ok, why = _FakeGpuOps("sm90", lambda: False).applies(*big)
    assert not ok and "built without the sm_90a gencode" in why
    ok, why = _FakeGpuOps("sm90", True).applies(256, 256, 4096, np.float16)
    assert not ok and "too few to fill the GPU" in why
    ok, why = _FakeGpuOps("sm90", True).applies(4096, 4096, 4096, np.float32)
    assert not ok and "float16 or bfloat16" in why
    assert _FakeGpuOps("emulator", False).applies(64, 64, 64, np.uint16)[0]   # the emulator runs any size


def test_cuda_tensor_map_needs_the_driver_and_says_so():
    pytest.importorskip("cuda.bindings")
    from fastconv.backends.plans.tensor_map import TMA_SWIZZLE_128B, encode_tensor_map_cuda
    from fastconv.backends.device import cuda_status
    if cuda_status()[0]:
        pytest.skip("a driver is present: the GPU test covers the encoder")
    with pytest.raises(RuntimeError, match="cuTensorMapEncodeTiled"):
        encode_tensor_map_cuda(4096, np.float16, (64, 64), 128, (64, 64), TMA_SWIZZLE_128B)
    with pytest.raises(ValueError, match="row stride"):
        encode_tensor_map_cuda(4096, np.float16, (60, 64), 120, (64, 64), TMA_SWIZZLE_128B)


@pytest.mark.gpu
@pytest.mark.parametrize("kind", list(OPERAND))
@pytest.mark.parametrize("m,n,k", [(4096, 4096, 4096), (3000, 2900, 1032)])
def test_gemm_wgmma_on_h100(kind, m, n, k):
    """On an sm_90 GPU through the jit backend: the wgmma kernel runs (explain) and matches NumPy."""
    cupy, jit = hopper_jit()
    rng = np.random.default_rng(0)
    a, b, a64, b64 = operands(kind, m, n, k, rng, integers=False)
    ops = jit._ops()
    ex = explain(ops.gemm_wgmma, cupy.asarray(a), cupy.asarray(b))
    assert any("gemm_wgmma" in name for name in ex.kernels)
    ref = a64 @ b64
    c = cupy.asnumpy(ex.result)
    assert np.linalg.norm(c - ref) / np.linalg.norm(ref) < 1e-4
