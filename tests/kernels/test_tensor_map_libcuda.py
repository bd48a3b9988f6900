"""The sm_90a GEMM's TMA maps without cuda-bindings (fastconv/backends/plans/tensor_map_libcuda.py: libcuda's
cuTensorMapEncodeTiled through ctypes), checked against a fake driver function with the same C prototype;
and the plan on a Hopper (target monkeypatched to 'sm90') with and without a tensor-map encoder: it runs
the wgmma kernel with the encoder's map bytes, or falls back to mma.sync and says why. No GPU needed."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from fastconv.backends.plans import tensor_map, tensor_map_libcuda
from fastconv.backends.plans.gemm import WGMMA_BK, WGMMA_BM
from fastconv.backends.plans.tensor_map import TMA_SWIZZLE_128B, encode_tensor_map_cuda
from fastconv.explain import explain

FLOAT16, BFLOAT16 = 6, 9   # CU_TENSOR_MAP_DATA_TYPE_* in cuda.h


def fake_driver(result=0):
    """A cuTensorMapEncodeTiled stand-in that records what it was passed and fills the map with a pattern."""
    calls = []

    def encode(tmap, data_type, rank, address, dims, strides, box, element_strides, interleave, swizzle, l2, oob):
        calls.append(dict(tmap=tmap, data_type=data_type, rank=rank, address=address,
                          dims=[dims[i] for i in range(rank)], strides=[strides[i] for i in range(rank - 1)],
                          box=[box[i] for i in range(rank)], element_strides=[element_strides[i] for i in range(rank)],
                          interleave=interleave, swizzle=swizzle, l2=l2, oob=oob))
        ctypes.memmove(tmap, bytes(range(128)), 128)
        return result
    fn = tensor_map_libcuda.PROTOTYPE(encode)
    fn.calls = calls
    return fn


def test_libcuda_encoder_marshals_every_argument():
    fn = fake_driver()
    address = 0x7F00_0000_1000   # above 2^32: the pointer must travel as 64 bits
    raw = tensor_map_libcuda.encode_tiled(fn, address, np.uint16, (1032, 3000), 2064, (64, 128), TMA_SWIZZLE_128B)
    assert raw == bytes(range(128))
    (call,) = fn.calls
    assert call["tmap"] % 64 == 0   # CUtensorMap is alignas(64)
    assert call == dict(tmap=call["tmap"], data_type=BFLOAT16, rank=2, address=address, dims=[1032, 3000],
                        strides=[2064], box=[64, 128], element_strides=[1, 1], interleave=0, swizzle=3, l2=3, oob=0)
    tensor_map_libcuda.encode_tiled(fn, 4096, np.float16, (64, 64), 128, (64, 64), 0)
    assert fn.calls[-1]["data_type"] == FLOAT16 and fn.calls[-1]["swizzle"] == 0


def test_libcuda_encoder_errors_are_clear():
    with pytest.raises(RuntimeError, match="cuTensorMapEncodeTiled.*CUresult 1"):
        tensor_map_libcuda.encode_tiled(fake_driver(result=1), 4096, np.float16, (64, 64), 128, (64, 64), 3)
    with pytest.raises(TypeError, match="float32 is not float16 or uint16"):
        tensor_map_libcuda.encode_tiled(fake_driver(), 4096, np.float32, (64, 64), 256, (32, 64), 3)


def test_libcuda_enum_values_match_cuda_bindings():
    driver = pytest.importorskip("cuda.bindings.driver")
    t = driver.CUtensorMapDataType
    assert tensor_map_libcuda.DATA_TYPES == {np.dtype(np.float16): int(t.CU_TENSOR_MAP_DATA_TYPE_FLOAT16),
                                            np.dtype(np.uint16): int(t.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16)}
    assert tensor_map_libcuda.INTERLEAVE_NONE == int(driver.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE)
    assert tensor_map_libcuda.L2_PROMOTION_L2_256B == int(
        driver.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B)
    assert tensor_map_libcuda.FLOAT_OOB_FILL_NONE == int(
        driver.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
    assert TMA_SWIZZLE_128B == int(driver.CUtensorMapSwizzle.CU_TENSOR_MAP_SWIZZLE_128B)


def test_encoder_choice_without_cuda_bindings(monkeypatch):
    """No cuda-bindings: libcuda's function where the driver library has one, else no encoder and why."""
    import builtins
    real_import = builtins.__import__

    def no_cuda_bindings(name, *args, **kwargs):
        if name.startswith("cuda.bindings"):
            raise ImportError("no cuda-bindings here")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_cuda_bindings)
    fn = fake_driver()
    monkeypatch.setattr(tensor_map_libcuda, "load", lambda: fn)
    tensor_map.tensor_map_encoder.cache_clear()
    try:
        encode, where = tensor_map.tensor_map_encoder()
        assert where == "libcuda"
        assert encode_tensor_map_cuda(4096, np.float16, (64, 64), 128, (64, 64), TMA_SWIZZLE_128B) == bytes(range(128))
        assert fn.calls[0]["address"] == 4096
        tensor_map.tensor_map_encoder.cache_clear()

        def no_driver():
            raise OSError("libcuda.so.1: cannot open shared object file")
        monkeypatch.setattr(tensor_map_libcuda, "load", no_driver)
        encode, why = tensor_map.tensor_map_encoder()
        assert encode is None and "cuda-bindings is not installed" in why and "libcuda.so.1" in why
        with pytest.raises(RuntimeError, match="no TMA tensor-map encoder"):
            encode_tensor_map_cuda(4096, np.float16, (64, 64), 128, (64, 64), TMA_SWIZZLE_128B)
    finally:
        tensor_map.tensor_map_encoder.cache_clear()


def hopper_ops(monkeypatch, encoder):
    """KernelOps as a Hopper GPU backend would run it (sm_90 device, sm_90a code), with the given tensor-map
    encoder; the launches are recorded, not run."""
    from fastconv.backends.plans.kernel_ops import KernelOps
    launched = []
    ops = KernelOps(np, lambda kernel, grid, block, args, shared_bytes=0, keep_alive=None:
                    launched.append((kernel, tuple(grid), args)), lambda a: int(a.ctypes.data), builds_sm90a=True)
    monkeypatch.setattr(ops, "sm90_target", lambda: "sm90")
    monkeypatch.setattr(tensor_map, "tensor_map_encoder", lambda: encoder)
    return ops, launched


BIG = (4096, 2048, 64)   # 32 x 16 output tiles of 128 x 128: enough to fill an H100


def operands(m, n, k):
    return np.zeros((m, k), np.float16), np.zeros((k, n), np.float16)


def test_hopper_without_an_encoder_falls_back_to_mma_sync_and_says_why(monkeypatch):
    ops, launched = hopper_ops(monkeypatch, (None, "no TMA tensor-map encoder: cuda-bindings is not installed"))
    ok, why = ops.wgmma_applies(*BIG, np.float16)
    assert not ok and why.startswith("no TMA tensor-map encoder")
    report = explain(ops.gemm_wgmma, *operands(*BIG[:2], BIG[2]))
    assert [k for k, _, _ in launched] == report.kernels
    assert report.kernels[-1].startswith("fc::gemm_tensor_op<")
    assert any(e.kind == "note" and "instead of the sm_90a wgmma GEMM: no TMA tensor-map encoder" in e.text
               for e in report.events)


def test_hopper_with_an_encoder_launches_wgmma_with_its_maps(monkeypatch):
    seen = []

    def encode(address, dtype, dims, row_stride, box, swizzle, elem_strides=None):
        assert elem_strides == (1, 1)
        seen.append((address, np.dtype(dtype), tuple(dims), row_stride, tuple(box), swizzle))
        return bytes([len(seen)]) * 128
    ops, launched = hopper_ops(monkeypatch, (encode, "fake"))
    m, n, k = BIG
    a, b = operands(m, n, k)
    ops.gemm_wgmma(a, b)
    (kernel, grid, args), = launched
    assert kernel.startswith("fc::gemm_wgmma<fc::WgmmaTile<256, 4>, __half, float>")
    assert grid == (n // 256, m // WGMMA_BM)
    assert seen[0] == (a.ctypes.data, np.dtype(np.float16), (k, m), 2 * k, (WGMMA_BK, WGMMA_BM), TMA_SWIZZLE_128B)
    assert seen[1][1:] == (np.dtype(np.float16), (k, n), 2 * k, (WGMMA_BK, 256), TMA_SWIZZLE_128B)
    assert args[2].tobytes() == bytes([1]) * 128 and args[3].tobytes() == bytes([2]) * 128
