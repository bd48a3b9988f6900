"""cuTensorMapEncodeTiled called in the driver library (libcuda) through ctypes: the TMA maps of the sm_90a
GEMM where cuda-bindings is not installed (the `cuda` / `cuda13` extras install CuPy only, whose driver
module has no tensor-map call). libcuda is present wherever a GPU driver is. tensor_map.py checks the map's
arguments first (_check_map) and picks this encoder or cuda-bindings' (tensor_map_encoder).
"""
from __future__ import annotations

import ctypes

import numpy as np

# CUDA driver API enum values (cuda.h; tests/kernels/test_tensor_map_libcuda.py checks them against
# cuda-bindings where it is installed).
CUDA_SUCCESS = 0
DATA_TYPES = {np.dtype(np.float16): 6, np.dtype(np.uint16): 9}   # CU_TENSOR_MAP_DATA_TYPE_FLOAT16 / _BFLOAT16
INTERLEAVE_NONE = 0
L2_PROMOTION_L2_256B = 3
FLOAT_OOB_FILL_NONE = 0
TENSOR_MAP_BYTES, TENSOR_MAP_ALIGN = 128, 64   # CUtensorMap: 16 x uint64, alignas(64)

# CUresult cuTensorMapEncodeTiled(CUtensorMap* tensorMap, CUtensorMapDataType tensorDataType,
#     cuuint32_t tensorRank, void* globalAddress, const cuuint64_t* globalDim, const cuuint64_t* globalStrides,
#     const cuuint32_t* boxDim, const cuuint32_t* elementStrides, CUtensorMapInterleave interleave,
#     CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2Promotion, CUtensorMapFloatOOBfill oobFill)
# (C enums are ints.)
PROTOTYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32, ctypes.c_void_p,
                             ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint64),
                             ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint32), ctypes.c_int,
                             ctypes.c_int, ctypes.c_int, ctypes.c_int)


def load(library="libcuda.so.1"):
    """The driver's cuTensorMapEncodeTiled (CUDA 12.0+ drivers). OSError / AttributeError where there is none."""
    return PROTOTYPE(("cuTensorMapEncodeTiled", ctypes.CDLL(library)))


def encode_tiled(fn, address, dtype, dims, row_stride, box, swizzle, elem_strides=None):
    """The 128 bytes of a tiled map (dims, box and elem_strides innermost first, in elements; row_stride in
    bytes: an int for 2-D maps, else one per dimension after the first), no interleave, 256-byte L2
    promotion, zero fill out of bounds, as encode_tensor_map_cuda asks of cuda-bindings. fn: load()'s
    function (a test passes a fake)."""
    data_type = DATA_TYPES.get(np.dtype(dtype))
    if data_type is None:
        raise TypeError(f"tensor map: dtype {np.dtype(dtype)} is not float16 or uint16 (bfloat16 bits)")
    rank = len(dims)
    strides = [row_stride] if np.isscalar(row_stride) else list(row_stride)
    dims_c = (ctypes.c_uint64 * rank)(*(int(d) for d in dims))
    strides_c = (ctypes.c_uint64 * (rank - 1))(*(int(s) for s in strides))
    box_c = (ctypes.c_uint32 * rank)(*(int(b) for b in box))
    element_strides = (ctypes.c_uint32 * rank)(*(int(e) for e in (elem_strides or [1] * rank)))
    raw = ctypes.create_string_buffer(TENSOR_MAP_BYTES + TENSOR_MAP_ALIGN)
    at = ctypes.addressof(raw) + (-ctypes.addressof(raw)) % TENSOR_MAP_ALIGN   # the driver's CUtensorMap alignment
    err = fn(at, data_type, rank, int(address), dims_c, strides_c, box_c, element_strides, INTERLEAVE_NONE,
             int(swizzle), L2_PROMOTION_L2_256B, FLOAT_OOB_FILL_NONE)
    if err != CUDA_SUCCESS:
        raise RuntimeError(f"cuTensorMapEncodeTiled (libcuda) failed: CUresult {err}")
    return ctypes.string_at(at, TENSOR_MAP_BYTES)
