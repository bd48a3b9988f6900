"""Launch plan of the sm_90a GEMM (csrc/hopper/gemm_wgmma.h: TMA-staged operands, warp-specialized wgmma)
and the host side of its TMA tensor maps. A mixin of KernelOps (plans/kernel_ops.py).

The kernel takes each operand twice: as a pointer (what the emulator maps; the GPU does not read it) and as
a 128-byte tensor map. On a GPU the map comes from the driver's cuTensorMapEncodeTiled, through cuda-bindings
where it is installed, else straight from libcuda (tensor_map_libcuda.py); with neither the plan falls back
to mma.sync. In the emulator it comes from encode_tensor_map_emulated, which writes the fields
csrc/hopper/sm90_primitives.h (EmuTensorMap) reads, naming the global tensor by the kernel parameter that
carries it.
"""
from __future__ import annotations

import functools

import numpy as np

from ...explain import note
from . import tensor_map_libcuda
from .common import ACTIVATIONS, TARGET_BLOCKS, ceil_div

# Mirrors fc::WgmmaTile<BN, 4> (csrc/hopper/gemm_wgmma.h): BN 128, or 256 when N >= 256.
WGMMA_BM, WGMMA_BK, WGMMA_STAGES, WGMMA_THREADS = 128, 64, 4, 384
WGMMA_BNS = (128, 256)


def wgmma_shared_bytes(bn):
    return WGMMA_STAGES * (WGMMA_BM + bn) * WGMMA_BK * 2 + 1024


def wgmma_tile(bn):
    return f"fc::WgmmaTile<{bn}, {WGMMA_STAGES}>"
# Operand dtype -> C++ type; bfloat16 travels as uint16 raw bits.
WGMMA_TYPES = {np.dtype(np.float16): "__half", np.dtype(np.uint16): "__nv_bfloat16"}
# Below this many output tiles the 132 SMs of an H100 are mostly idle and the mma.sync kernel is as good.
WGMMA_MIN_TILES = TARGET_BLOCKS

# CUtensorMapSwizzle values (the kernel's maps use 128B).
TMA_SWIZZLE_NONE, TMA_SWIZZLE_32B, TMA_SWIZZLE_64B, TMA_SWIZZLE_128B = 0, 1, 2, 3
EMU_TENSOR_MAP_MAGIC = 0x4D544346
# struct EmuTensorMap in csrc/hopper/sm90_primitives.h (a tiled map of rank 1..5), padded to the 128 bytes
# of a CUtensorMap.
EMU_TENSOR_MAP_DTYPE = np.dtype({
    "names": ["magic", "param_index", "elem_bytes", "swizzle", "rank", "box", "elem_strides", "dims", "strides",
              "base_offset"],
    "formats": ["<u4", "<i4", "<u4", "<u4", "<u4", ("<u2", 5), ("u1", 5), ("<u8", 5), ("<u8", 4), "<u8"],
    "offsets": [0, 4, 8, 12, 16, 20, 30, 40, 80, 112], "itemsize": 128})


def wgmma_kernel_names() -> list[str]:
    """The GEMM instantiations csrc/hopper/kernel_list.inc registers (same order)."""
    return [f"fc::gemm_wgmma<{wgmma_tile(bn)}, {t}, {o}>"
            for bn in WGMMA_BNS for t in ("__nv_bfloat16", "__half") for o in ("float", t)]


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


def _as_struct(raw: bytes):
    return np.frombuffer(raw, np.dtype((np.void, len(raw))))[0]


class HopperPlans:
    def _sm90_target(self):
        """'emulator' on the CPU emulator, 'sm90' on a compute-capability 9.0 GPU, else None."""
        if self.xp is np:
            return "emulator"
        try:
            return "sm90" if str(self.xp.cuda.Device().compute_capability) == "90" else None
        except Exception:   # pragma: no cover - no device
            return None

    def _builds_sm90a(self) -> bool:
        """The executor's `builds_sm90a`: a bool, or a callable asked per use (per device: native's _C.sm90a_code,
        jit's compile-and-load probe)."""
        flag = getattr(self, "builds_sm90a", False)
        return bool(flag() if callable(flag) else flag)

    def wgmma_applies(self, m, n, k, dtype):
        """(True, why) when gemm_wgmma would run the sm_90a kernel for this problem, else (False, why not)."""
        target = self._sm90_target()
        if target is None:
            return False, "the device is not sm_90 (wgmma and TMA need a Hopper GPU)"
        if target == "sm90" and not self._builds_sm90a():
            # The executor must run sm_90a machine code for csrc/hopper (not plain sm_90): jit compiles it
            # through NVRTC (jit.compile_sm90a, with cuda-bindings); native asks _C whether the device runs
            # the sm_90a binary of its registry (_C.sm90a_code, csrc/launch/sm90a_probe.cuh). jit's probe
            # (compile + load one wgmma kernel per device) keeps the reason it failed: sm90a_reason.
            reason = getattr(self, "sm90a_reason", None)
            return False, ((reason() if callable(reason) else None) or
                           "this backend has no sm_90a code for the device (native: fastconv._C was built "
                           "without the sm_90a gencode; jit: needs NVRTC through cuda-bindings)")
        if target == "sm90":
            encode, why = tensor_map_encoder()
            if encode is None:
                return False, why
        if np.dtype(dtype) not in WGMMA_TYPES:
            return False, f"operands are {np.dtype(dtype)}; the wgmma kernel takes float16 or bfloat16 (uint16 bits)"
        if k % 8:
            return False, f"K={k} is not a multiple of 8 (TMA row strides must be multiples of 16 bytes)"
        if k == 0:
            return False, "K=0"
        if max(m, n, k) >= 2**31:
            return False, "a dimension does not fit 32 bits"
        tiles = ceil_div(m, WGMMA_BM) * ceil_div(n, 128)
        if target == "sm90" and tiles < WGMMA_MIN_TILES:
            return False, f"{tiles} output tiles of 128x128 are too few to fill the GPU"
        return True, ("sm_90a wgmma GEMM (TMA, 4 stages, warp-specialized)" +
                      (" in the emulator" if target == "emulator" else ""))

    def gemm_wgmma(self, a, b, bias=None, activation=None, out_dtype=None, alpha=0.0, b_layout="kn"):
        """C = act(A @ B + bias) with the sm_90a wgmma kernel when it applies (wgmma_applies), otherwise
        gemm_tensor_op (explain says why). A (M, K) row-major, float16 or uint16 (bfloat16 bits); B (K, N)
        row-major (b_layout 'kn'), or given as Bt (N, K) row-major ('nk': K-major, the layout the kernel reads
        and nn.Linear keeps its weight in, so no transposing copy); bias float32 (N,); C float32 (default) or
        the operand dtype. Tile 128 x 256 when N >= 256, else 128 x 128 (knob: force_wgmma_bn)."""
        a, b = self._c(a), self._c(b)
        if b_layout not in ("kn", "nk"):
            raise ValueError(f"gemm_wgmma: b_layout must be 'kn' (B is (K, N)) or 'nk' (B given as (N, K)), got {b_layout!r}")
        kb = b.shape[0] if b_layout == "kn" else (b.shape[1] if b.ndim == 2 else None)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != kb:
            want = "(K, N)" if b_layout == "kn" else "(N, K) (b_layout='nk')"
            raise ValueError(f"gemm_wgmma: A is {a.shape}, B is {b.shape}; expected (M, K) and {want}")
        if b.dtype != a.dtype:
            raise TypeError(f"gemm_wgmma: A is {a.dtype} but B is {b.dtype}")
        out = np.dtype(np.float32 if out_dtype is None else out_dtype)
        if out not in (np.dtype(np.float32), a.dtype):
            raise TypeError(f"gemm_wgmma: output must be float32 or the operand type {a.dtype}, got {out}")
        (m, kdim), n = a.shape, (b.shape[1] if b_layout == "kn" else b.shape[0])
        if bias is not None and tuple(bias.shape) != (n,):
            raise ValueError(f"gemm_wgmma: bias has shape {tuple(bias.shape)}; expected ({n},), one per output column")
        if activation not in ACTIVATIONS:
            raise ValueError(f"gemm_wgmma: activation {activation!r} is not one of {sorted(map(str, ACTIVATIONS))}")
        ok, why = self.wgmma_applies(m, n, kdim, a.dtype)
        if ok and self._ptr(a) % 16:
            ok, why = False, "A is not 16-byte aligned (a TMA global address must be)"
        elif ok and b_layout == "nk" and self._ptr(b) % 16:   # a (K, N) B is copied into fresh, aligned memory
            ok, why = False, "B (given as (N, K)) is not 16-byte aligned (a TMA global address must be)"
        if not ok:
            note("gemm_tensor_op (mma.sync) instead of the sm_90a wgmma GEMM: " + why)
            return self.gemm_tensor_op(a, b if b_layout == "kn" else self._c(b.T), bias, activation, alpha, out_dtype)
        note(why)
        c = self.xp.empty((m, n), out)
        if c.size == 0:
            return c
        # Bt (N, K): both operands K-major, which wgmma reads for every input type. One transposing
        # copy of a (K, N) B; a weight kept in this layout (b_layout='nk') skips it.
        bt = self._c(b.T) if b_layout == "kn" else b
        ct = WGMMA_TYPES[a.dtype]
        bn = getattr(self, "force_wgmma_bn", None) or (256 if n >= 256 else 128)
        if bn not in WGMMA_BNS:
            raise ValueError(f"force_wgmma_bn={bn}: the wgmma tiles have BN in {WGMMA_BNS}")
        name = f"fc::gemm_wgmma<{wgmma_tile(bn)}, {ct}, {'float' if out == np.float32 else ct}>"
        row = kdim * a.dtype.itemsize
        if self._sm90_target() == "emulator":
            map_a = encode_tensor_map_emulated(0, 2, (kdim, m), row, (WGMMA_BK, WGMMA_BM), TMA_SWIZZLE_128B)
            map_b = encode_tensor_map_emulated(1, 2, (kdim, n), row, (WGMMA_BK, bn), TMA_SWIZZLE_128B)
        else:   # pragma: no cover - GPU machines only
            map_a = encode_tensor_map_cuda(self._ptr(a), a.dtype, (kdim, m), row, (WGMMA_BK, WGMMA_BM), TMA_SWIZZLE_128B)
            map_b = encode_tensor_map_cuda(self._ptr(bt), a.dtype, (kdim, n), row, (WGMMA_BK, bn), TMA_SWIZZLE_128B)
        bias_arr = self._c(bias).astype(np.float32, copy=False) if bias is not None else self.xp.zeros((1,), np.float32)
        self._launch(name, self._tile_grid(ceil_div(n, bn), ceil_div(m, WGMMA_BM)), (WGMMA_THREADS,),
                     (a, bt, _as_struct(map_a), _as_struct(map_b), c, np.int32(m), np.int32(n), np.int32(kdim),
                      bias_arr, np.int32(bias is not None), np.int32(ACTIVATIONS[activation]), np.float32(alpha)),
                     shared_bytes=wgmma_shared_bytes(bn))
        return c
