"""Launch plan of the sm_90a GEMM (csrc/hopper/gemm_wgmma.h: TMA-staged operands, warp-specialized wgmma),
the host side of its TMA tensor maps, and the routing of conv fprop on sm_90 (conv2d_fprop_sm90_route: 1x1
stride-1 convs through this GEMM, the others through the sm_90a conv kernel of plans/conv2d_sm90.py where it
can run, else the mma.sync tensor-op conv). A mixin of KernelOps (plans/kernel_ops.py).

The kernel takes each operand twice: as a pointer (what the emulator maps; the GPU does not read it) and as
a 128-byte tensor map. On a GPU the map comes from the driver's cuTensorMapEncodeTiled, through cuda-bindings
where it is installed, else straight from libcuda (tensor_map_libcuda.py); with neither the plan falls back
to mma.sync. In the emulator it comes from encode_tensor_map_emulated, which writes the fields
csrc/hopper/sm90_primitives.h (EmuTensorMap) reads, naming the global tensor by the kernel parameter that
carries it.
"""
from __future__ import annotations

import functools
import importlib
import sys

import numpy as np

from ...explain import note
from ...shapes import conv_output_hw
from . import tensor_map_libcuda
from .common import ACTIVATIONS, TARGET_BLOCKS, ceil_div, conv2d_problem

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
# struct EmuTensorMap in csrc/hopper/sm90_primitives.h, padded to the 128 bytes of a CUtensorMap.
EMU_TENSOR_MAP_DTYPE = np.dtype({
    "names": ["magic", "param_index", "elem_bytes", "swizzle", "dims", "row_stride", "box", "base_offset"],
    "formats": ["<u4", "<i4", "<u4", "<u4", ("<u8", 2), "<u8", ("<u4", 2), "<u8"],
    "offsets": [0, 4, 8, 12, 16, 32, 40, 48], "itemsize": 128})


def wgmma_kernel_names() -> list[str]:
    """The GEMM instantiations csrc/hopper/kernel_list.inc registers (same order)."""
    return [f"fc::gemm_wgmma<{wgmma_tile(bn)}, {t}, {o}>"
            for bn in WGMMA_BNS for t in ("__nv_bfloat16", "__half") for o in ("float", t)]


def _check_map(dims, row_stride, box, elem_bytes, swizzle):
    """The driver's cuTensorMapEncodeTiled rules that apply to 2-D maps, as clear errors."""
    if elem_bytes not in (1, 2, 4, 8):
        raise ValueError(f"tensor map: element size {elem_bytes} bytes is not 1, 2, 4 or 8")
    if any(d < 1 or d > 2**32 for d in dims):
        raise ValueError(f"tensor map: dims {tuple(dims)} must be in [1, 2^32]")
    if row_stride % 16 or row_stride >= 2**40:
        raise ValueError(f"tensor map: row stride {row_stride} bytes must be a multiple of 16 below 2^40 "
                         "(for 2-byte elements: the row length a multiple of 8)")
    if any(b < 1 or b > 256 for b in box):
        raise ValueError(f"tensor map: box {tuple(box)} must be in [1, 256] per dimension")
    width = {TMA_SWIZZLE_NONE: 0, TMA_SWIZZLE_32B: 32, TMA_SWIZZLE_64B: 64, TMA_SWIZZLE_128B: 128}.get(swizzle)
    if width is None:
        raise ValueError(f"tensor map: swizzle {swizzle} is not a CUtensorMapSwizzle value 0..3")
    if width and box[0] * elem_bytes > width:
        raise ValueError(f"tensor map: inner box {box[0] * elem_bytes} bytes exceeds the {width}-byte swizzle")
    if (box[0] * elem_bytes) % 16:
        raise ValueError(f"tensor map: inner box {box[0] * elem_bytes} bytes is not a multiple of 16")


def encode_tensor_map_emulated(param_index, elem_bytes, dims, row_stride, box, swizzle, base_offset=0):
    """The 128 bytes the emulated TMA reads: a 2-D tiled map over kernel parameter `param_index`.
    dims and box innermost first (elements); row_stride in bytes."""
    _check_map(dims, row_stride, box, elem_bytes, swizzle)
    m = np.zeros((), EMU_TENSOR_MAP_DTYPE)
    m["magic"], m["param_index"], m["elem_bytes"], m["swizzle"] = EMU_TENSOR_MAP_MAGIC, param_index, elem_bytes, swizzle
    m["dims"], m["row_stride"], m["box"], m["base_offset"] = dims, row_stride, box, base_offset
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


def encode_tensor_map_cuda(address, dtype, dims, row_stride, box, swizzle):
    """cuTensorMapEncodeTiled (the driver must be present; tensor_map_encoder says through what): the 128
    map bytes of a 2-D tiled map, dims and box innermost first (elements), row_stride in bytes."""
    _check_map(dims, row_stride, box, np.dtype(dtype).itemsize, swizzle)
    encode, why = tensor_map_encoder()
    if encode is None:
        raise RuntimeError(why)
    return encode(address, dtype, dims, row_stride, box, swizzle)


def _encode_cuda_bindings(address, dtype, dims, row_stride, box, swizzle):
    from cuda.bindings import driver
    dt = {np.dtype(np.float16): driver.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
          np.dtype(np.uint16): driver.CUtensorMapDataType.CU_TENSOR_MAP_DATA_TYPE_BFLOAT16}[np.dtype(dtype)]
    u64, u32 = driver.cuuint64_t, driver.cuuint32_t
    try:
        err, tmap = driver.cuTensorMapEncodeTiled(
            dt, 2, address, [u64(int(d)) for d in dims], [u64(int(row_stride))], [u32(int(b)) for b in box], [u32(1), u32(1)],
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
        missing = sm90a_unavailable(self)
        if missing:
            return False, missing
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

    # ---- conv fprop on sm_90 ---------------------------------------------------------------------
    def conv2d_fprop_tensor_core(self, x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1,
                                 bias=None, activation=None, alpha=0.0, out_dtype=None, residual=None):
        """y = act(conv2d(x, w) + bias + residual) for tensor-core operands (as conv2d_fprop_tensor_op takes them),
        on the fastest kernel that can run it: on sm_90 (or in the emulator) a 1x1 stride-1 unpadded conv runs the
        wgmma GEMM (NHWC x is its (N*H*W, C) A matrix, the (C, K) filter its B), other convs the sm_90a conv
        kernel (plans/conv2d_sm90.py) where its can_implement agrees; everything else, and everything on other
        GPUs, the mma.sync conv2d_fprop_tensor_op. fastconv.explain says which and why."""
        x, w = self._c(x), self._c(w)
        route, why = self._sm90_fprop_choice(x, w, stride, padding, dilation, groups, residual, out_dtype)
        if route == "gemm":
            note(why)
            n, h, wd, c = x.shape
            y = self.gemm_wgmma(x.reshape(n * h * wd, c), w.reshape(c, w.shape[3]), bias=bias, activation=activation,
                                out_dtype=out_dtype, alpha=alpha)
            return y.reshape(n, h, wd, w.shape[3])
        if route == "conv":
            note(why)
            return sm90_conv_module().conv2d_fprop_sm90(self, x, w, stride, padding, dilation, bias, activation,
                                                        out_dtype, alpha=alpha)
        note("mma.sync tensor-op conv instead of the sm_90a kernels: " + why)
        return self.conv2d_fprop_tensor_op(x, w, stride, padding, dilation, groups, bias, activation, alpha, out_dtype,
                                           residual)

    def _sm90_fprop_choice(self, x, w, stride, padding, dilation, groups, residual, out_dtype):
        """('gemm' | 'conv' | 'tensor_op', why) for conv2d_fprop_tensor_core."""
        missing = sm90a_unavailable(self)
        if missing:
            return "tensor_op", missing
        if residual is not None:
            return "tensor_op", "a residual add is fused only in the mma.sync conv's epilogue"
        target = self._sm90_target()
        route, why = sm90_fprop_route(x.shape, w.shape, stride, padding, groups, x.dtype, sm90_min_tiles(self))
        if route == "gemm":
            n, h, wd, c = x.shape
            ok, gemm_why = self.wgmma_applies(n * h * wd, w.shape[3], c, x.dtype)
            if not ok:
                return "tensor_op", gemm_why
            if self._ptr(x) % 16:
                return "tensor_op", "x is not 16-byte aligned (a TMA global address must be)"
            return route, why + (" in the emulator" if target == "emulator" else "")
        if route != "conv":
            return route, why
        module = sm90_conv_module()
        if module is None:
            return "tensor_op", f"no sm_90a conv fprop kernel in this build ({SM90_CONV_MODULE} is not installed)"
        if self._ptr(x) % 16 or self._ptr(w) % 16:
            return "tensor_op", "x or w is not 16-byte aligned (a TMA global address must be)"
        ok, reason = module.conv2d_fprop_sm90_can_implement(self, x, w, stride, padding, dilation, groups, out_dtype)
        if not ok:
            return "tensor_op", f"conv2d_fprop_sm90 cannot run it: {reason}"
        return "conv", why + (" in the emulator" if target == "emulator" else "")

    # ---- conv dgrad on sm_90 ---------------------------------------------------------------------
    def conv2d_dgrad_tensor_core(self, dy, w, x_shape, stride, padding, dilation, groups, out_dtype=None):
        """dx for tensor-core operands (as conv2d_dgrad_tensor_op takes them): on sm_90 (or in the emulator) a 1x1
        stride-1 unpadded conv's dgrad is the wgmma GEMM dx (N*H*W, C) = dy (N*H*W, K) @ w^T, the (C, K) filter
        being already the K-major (N, K) B it reads; everything else runs conv2d_dgrad_tensor_op (mma.sync, by stride
        phases). fastconv.explain says which and why."""
        dy, w = self._c(dy), self._c(w)
        _, y_shape = conv2d_problem(x_shape, w.shape, stride, padding, dilation, groups)
        route, why = sm90_dgrad_route(x_shape, w.shape, stride, padding, groups, dy.dtype, sm90_min_tiles(self))
        missing = sm90a_unavailable(self)
        if route == "gemm" and tuple(dy.shape) == tuple(y_shape):
            n, h, wd, c = (int(v) for v in x_shape)
            ok, gemm_why = self.wgmma_applies(n * h * wd, c, w.shape[3], dy.dtype)
            if ok and not (self._ptr(dy) % 16 or self._ptr(w) % 16):
                note(why)
                dx = self.gemm_wgmma(dy.reshape(n * h * wd, w.shape[3]), w.reshape(c, w.shape[3]), out_dtype=out_dtype,
                                     b_layout="nk")
                return dx.reshape(n, h, wd, c)
            why = gemm_why if not ok else "dy or w is not 16-byte aligned (a TMA global address must be)"
        note("mma.sync tensor-op dgrad instead of the sm_90a wgmma GEMM: " + (missing or why))
        return self.conv2d_dgrad_tensor_op(dy, w, x_shape, stride, padding, dilation, groups, out_dtype)


# ---- sm_90a availability, the sm_90a conv kernel's module, and the routing rules of the shapes alone -----------
def sm90a_unavailable(ops):
    """None when the plans' backend `ops` can run sm_90a code (wgmma, TMA) on its device, or is the emulator;
    else why not. A function of the ops object (not a method), so that tests can hand it a stand-in."""
    target = ops._sm90_target()
    if target is None:
        return "the device is not sm_90 (wgmma and TMA need a Hopper GPU)"
    if target == "sm90" and not ops._builds_sm90a():
        # The executor must run sm_90a machine code for csrc/hopper (not plain sm_90): jit compiles it
        # through NVRTC (jit.compile_sm90a, with cuda-bindings); native asks _C whether the device runs
        # the sm_90a binary of its registry (_C.sm90a_code, csrc/launch/sm90a_probe.cuh). jit's probe
        # (compile + load one wgmma kernel per device) keeps the reason it failed: sm90a_reason.
        reason = getattr(ops, "sm90a_reason", None)
        return ((reason() if callable(reason) else None) or
                "this backend has no sm_90a code for the device (native: fastconv._C was built "
                "without the sm_90a gencode; jit: needs NVRTC through cuda-bindings)")
    if target == "sm90":
        encode, why = tensor_map_encoder()
        if encode is None:
            return why
    return None


# plans/conv2d_sm90.py exports conv2d_fprop_sm90(ops, x, w, stride, padding, dilation, bias, activation, out_dtype,
# alpha=0.0) and conv2d_fprop_sm90_can_implement(ops, x, w, stride, padding, dilation, groups, out_dtype) -> (ok, why).
SM90_CONV_MODULE = f"{__package__}.conv2d_sm90"
# The output tile the routing counts: the sm_90a conv kernel's 128 x 128 (M = N*P*Q pixels by K filters).
SM90_CONV_TILE = (128, 128)


def sm90_min_tiles(ops):
    """Fewest 128 x 128 output tiles for which a conv takes the sm_90a kernels: WGMMA_MIN_TILES on GPUs and in the
    emulator alike, so an emulated run picks what an H100 would (small test convs stay on mma.sync). Test knob:
    ops.sm90_conv_min_tiles (0: every size)."""
    return getattr(ops, "sm90_conv_min_tiles", WGMMA_MIN_TILES)


@functools.lru_cache(maxsize=None)
def _import_sm90_conv():
    try:
        return importlib.import_module(SM90_CONV_MODULE)
    except ModuleNotFoundError as e:
        if e.name != SM90_CONV_MODULE:
            raise   # the module is there but one of its imports is not: a real error
        return None


def sm90_conv_module():
    """plans/conv2d_sm90.py, or None where this checkout has no sm_90a conv kernel. sys.modules is asked first,
    so a test can register a stand-in."""
    return sys.modules.get(SM90_CONV_MODULE) or _import_sm90_conv()


def sm90_fprop_route(x_shape, w_shape, stride, padding, groups, dtype, min_tiles=WGMMA_MIN_TILES):
    """What the shapes alone say about a conv fprop on sm_90: ('gemm', why) for a 1x1 stride-1 unpadded conv in a
    16-bit format (the wgmma GEMM), ('conv', why) for the sm_90a conv kernel, ('tensor_op', why not) for the
    mma.sync conv, also when there are fewer than min_tiles output tiles (too few for 132 SMs). The device,
    alignment and the conv kernel's own can_implement are checked by HopperPlans._sm90_fprop_choice."""
    n, h, wd, c = (int(v) for v in x_shape)
    r, s, _, k = (int(v) for v in w_shape)
    dt = np.dtype(dtype)
    if groups != 1:
        return "tensor_op", f"groups={groups} (the sm_90a conv and GEMM take groups == 1)"
    per16 = 16 // dt.itemsize
    if c % per16:
        return "tensor_op", (f"C={c} is not a multiple of {per16} (a TMA row of C {dt.itemsize}-byte channels must "
                             "be a multiple of 16 bytes)")
    p, q = conv_output_hw((h, wd), (r, s), stride, padding)
    tiles = ceil_div(n * p * q, SM90_CONV_TILE[0]) * ceil_div(k, SM90_CONV_TILE[1])
    if tiles < min_tiles:
        return "tensor_op", (f"{tiles} output tiles of {SM90_CONV_TILE[0]}x{SM90_CONV_TILE[1]} are too few to fill "
                             f"the GPU (under {min_tiles})")
    one_by_one = (r, s) == (1, 1) and tuple(stride) == (1, 1) and all(v == 0 for side in padding for v in side)
    if one_by_one and dt in WGMMA_TYPES:
        return "gemm", "1x1 stride-1 unpadded conv as the sm_90a wgmma GEMM: NHWC x is its (N*H*W, C) A matrix"
    return "conv", "sm_90a wgmma + TMA implicit-GEMM conv fprop"


def sm90_dgrad_route(x_shape, w_shape, stride, padding, groups, dtype, min_tiles=WGMMA_MIN_TILES):
    """('gemm', why) when a conv's dgrad is one wgmma GEMM by its shapes (1x1 stride-1 unpadded, groups 1, bf16/fp16,
    enough tiles on a GPU), else ('tensor_op', why not): there is no sm_90a dgrad kernel for other convs yet."""
    n, h, wd, c = (int(v) for v in x_shape)
    r, s, _, k = (int(v) for v in w_shape)
    one_by_one = (r, s) == (1, 1) and tuple(stride) == (1, 1) and all(v == 0 for side in padding for v in side)
    if not (one_by_one and groups == 1):
        return "tensor_op", "no sm_90a dgrad kernel for other than 1x1 stride-1 unpadded convs with groups == 1"
    if np.dtype(dtype) not in WGMMA_TYPES:
        return "tensor_op", f"operands are {np.dtype(dtype)}; the wgmma GEMM takes float16 or bfloat16 (uint16 bits)"
    tiles = ceil_div(n * h * wd, WGMMA_BM) * ceil_div(c, 128)
    if tiles < min_tiles:
        return "tensor_op", f"{tiles} output tiles of 128x128 are too few to fill the GPU (under {min_tiles})"
    return "gemm", ("1x1 stride-1 unpadded conv's dgrad as the sm_90a wgmma GEMM: dy is its (N*H*W, K) A matrix, the "
                    "(C, K) filter its K-major B")
