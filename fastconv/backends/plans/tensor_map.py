"""The host side of TMA tensor maps, for the sm_90a kernels (gemm.py gemm_wgmma, conv2d_sm90.py).

A TMA kernel takes each operand twice: as a pointer (what the emulator maps; the GPU does not read it) and
as a 128-byte tensor map. On a GPU the map comes from the driver's cuTensorMapEncodeTiled, through
cuda-bindings where it is installed, else straight from libcuda (tensor_map_libcuda.py); with neither the
plan falls back to mma.sync. In the emulator it comes from encode_tensor_map_emulated, which writes the
fields csrc/arch/sm90/primitives.h (EmuTensorMap) reads, naming the global tensor by the kernel parameter
that carries it.
"""
from __future__ import annotations

import functools

import numpy as np

from . import tensor_map_libcuda


# CUtensorMapSwizzle values (the kernel's maps use 128B).
TMA_SWIZZLE_NONE, TMA_SWIZZLE_32B, TMA_SWIZZLE_64B, TMA_SWIZZLE_128B = 0, 1, 2, 3
EMU_TENSOR_MAP_MAGIC = 0x4D544346
# struct EmuTensorMap in csrc/arch/sm90/primitives.h (a tiled map of rank 1..5), padded to the 128 bytes
# of a CUtensorMap.
EMU_TENSOR_MAP_DTYPE = np.dtype({
    "names": ["magic", "param_index", "elem_bytes", "swizzle", "rank", "box", "elem_strides", "dims", "strides",
              "base_offset"],
    "formats": ["<u4", "<i4", "<u4", "<u4", "<u4", ("<u2", 5), ("u1", 5), ("<u8", 5), ("<u8", 4), "<u8"],
    "offsets": [0, 4, 8, 12, 16, 20, 30, 40, 80, 112], "itemsize": 128})


def _map_strides(dims, row_stride):
    """globalStrides (bytes, dims 1..rank-1): row_stride is an int for a 2-D map, else a sequence."""
    strides = (row_stride,) if np.isscalar(row_stride) else tuple(row_stride)
    if len(strides) != len(dims) - 1:
        raise ValueError(f"tensor map: {len(dims)} dims need {len(dims) - 1} strides, got {strides}")
    return tuple(int(s) for s in strides)


def _check_map(dims, row_stride, box, elem_bytes, swizzle, elem_strides=None):
    """cuTensorMapEncodeTiled's rules (CUDA driver API, "Tensor Map Object Management") for the tiled maps
    we use, as clear errors. Returns (strides, elem_strides) as tuples."""
    rank = len(dims)
    if not 1 <= rank <= 5 or len(box) != rank:
        raise ValueError(f"tensor map: rank {rank} with box {tuple(box)}; a tiled map has rank 1..5 and one box "
                         "extent per dimension")
    strides = _map_strides(dims, row_stride)
    es = (1,) * rank if elem_strides is None else tuple(int(e) for e in elem_strides)
    if elem_bytes not in (1, 2, 4, 8):
        raise ValueError(f"tensor map: element size {elem_bytes} bytes is not 1, 2, 4 or 8")
    if any(d < 1 or d > 2**32 for d in dims):
        raise ValueError(f"tensor map: dims {tuple(dims)} must be in [1, 2^32]")
    if any(s % 16 or s >= 2**40 for s in strides):
        raise ValueError(f"tensor map: row stride {strides if rank > 2 else strides[0]} bytes must be a multiple of 16 "
                         "below 2^40 (for 2-byte elements: the row length a multiple of 8)")
    if any(b < 1 or b > 256 for b in box):
        raise ValueError(f"tensor map: box {tuple(box)} must be in [1, 256] per dimension")
    if len(es) != rank or any(e < 1 or e > 8 for e in es) or es[0] != 1:
        raise ValueError(f"tensor map: element strides {es} must be one per dimension in [1, 8], the innermost 1 "
                         "(the driver ignores it without interleave; the emulator does not model it)")
    width = {TMA_SWIZZLE_NONE: 0, TMA_SWIZZLE_32B: 32, TMA_SWIZZLE_64B: 64, TMA_SWIZZLE_128B: 128}.get(swizzle)
    if width is None:
        raise ValueError(f"tensor map: swizzle {swizzle} is not a CUtensorMapSwizzle value 0..3")
    if width and box[0] * elem_bytes > width:
        raise ValueError(f"tensor map: inner box {box[0] * elem_bytes} bytes exceeds the {width}-byte swizzle")
    if (box[0] * elem_bytes) % 16:
        raise ValueError(f"tensor map: inner box {box[0] * elem_bytes} bytes is not a multiple of 16")
    return strides, es


def encode_tensor_map_emulated(param_index, elem_bytes, dims, row_stride, box, swizzle, base_offset=0,
                               elem_strides=None):
    """The 128 bytes the emulated TMA reads: a tiled map (rank 1..5) over kernel parameter `param_index`.
    dims, box and elem_strides innermost first (elements); row_stride in bytes: an int for 2-D maps, else
    one stride per dimension after the first."""
    strides, es = _check_map(dims, row_stride, box, elem_bytes, swizzle, elem_strides)
    rank = len(dims)
    m = np.zeros((), EMU_TENSOR_MAP_DTYPE)
    m["magic"], m["param_index"], m["elem_bytes"], m["swizzle"] = EMU_TENSOR_MAP_MAGIC, param_index, elem_bytes, swizzle
    m["rank"], m["base_offset"] = rank, base_offset
    m["dims"][:rank], m["strides"][:rank - 1], m["box"][:rank], m["elem_strides"][:rank] = dims, strides, box, es
    return m.tobytes()


@functools.lru_cache(maxsize=None)
def tensor_map_encoder():
    """(encode, where) with encode(address, dtype, dims, row_stride, box, swizzle) -> the 128 map bytes of
    the driver's cuTensorMapEncodeTiled: cuda-bindings' where installed, else libcuda's through ctypes; or
    (None, why not). Asked once per process."""
    try:
        from cuda.bindings import driver  # noqa: F401
        return _encode_cuda_bindings, "cuda-bindings"
    except ImportError:
        pass
    try:
        fn = tensor_map_libcuda.load()
    except (OSError, AttributeError) as e:
        return None, ("no TMA tensor-map encoder: cuda-bindings is not installed and the driver library has no "
                      f"cuTensorMapEncodeTiled ({e})")
    return functools.partial(tensor_map_libcuda.encode_tiled, fn), "libcuda"


def encode_tensor_map_cuda(address, dtype, dims, row_stride, box, swizzle, elem_strides=None):
    """cuTensorMapEncodeTiled (the driver must be present; tensor_map_encoder says through what): the 128
    map bytes of a tiled map, dims, box and elem_strides innermost first (elements), row_stride in bytes
    (an int for 2-D maps, else one per dimension after the first)."""
    strides, es = _check_map(dims, row_stride, box, np.dtype(dtype).itemsize, swizzle, elem_strides)
    encode, why = tensor_map_encoder()
    if encode is None:
        raise RuntimeError(why)
    return encode(address, dtype, dims, strides if len(dims) > 2 else strides[0], box, swizzle, elem_strides=es)


def _encode_cuda_bindings(address, dtype, dims, row_stride, box, swizzle, elem_strides=None):
    from cuda.bindings import driver
    dt = {np.dtype(np.float16): driver.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
          np.dtype(np.uint16): driver.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16}[np.dtype(dtype)]
    u64, u32 = driver.cuuint64_t, driver.cuuint32_t
    strides = _map_strides(dims, row_stride)
    es = elem_strides or (1,) * len(dims)
    try:
        err, tmap = driver.cuTensorMapEncodeTiled(
            dt, len(dims), address, [u64(int(d)) for d in dims], [u64(s) for s in strides], [u32(int(b)) for b in box],
            [u32(int(e)) for e in es],
            driver.CUtensorMapInterleave.CU_TENSOR_MAP_INTERLEAVE_NONE, driver.CUtensorMapSwizzle(swizzle),
            driver.CUtensorMapL2promotion.CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            driver.CUtensorMapFloatOOBfill.CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
    except Exception as e:   # no driver library, or a binding error
        raise RuntimeError(f"cuTensorMapEncodeTiled is unavailable here: {e}") from e
    if err != driver.CUresult.CUDA_SUCCESS:
        raise RuntimeError(f"cuTensorMapEncodeTiled failed: {err}")
    return np.array(tmap.opaque, "<u8").tobytes()


def as_struct(raw: bytes):
    """128 map bytes as the by-value struct argument a launch passes."""
    return np.frombuffer(raw, np.dtype((np.void, len(raw))))[0]
