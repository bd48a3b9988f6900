"""Launch plans of the GEMM-shaped ops: the CUDA-core GEMM (csrc/gemm/, also dense and the bias gradient),
its tile / vector / index choice for every implicit-GEMM kernel (gemm_config), the tensor-core GEMM
(csrc/gemm/gemm_tensor_op_sm80.h), the sm_90a wgmma GEMM (csrc/gemm/gemm_wgmma_sm90.h: TMA-staged operands,
warp-specialized wgmma) and the choice between them, and dense under a reduced precision (cast.py)."""
from __future__ import annotations

import numpy as np

from .. import kernel_table, tuning
from ..kernel_table import kernel_name
from ...explain import active as explain_active, note
from ...shapes import needs_64bit_index
from . import tensor_map
from .cast import reduced, to_compute, to_float32
from .common import ACTIVATIONS, TARGET_BLOCKS, TILES, ceil_div, choose_tile, ctype, scalar, vector_width
from .reduce import ColumnFinal, ColumnReduceMode, column_reduce
from .tensor_map import TMA_SWIZZLE_128B, as_struct, encode_tensor_map_cuda, encode_tensor_map_emulated
from .tensor_op import (TENSOR_OP_TILES, TENSOR_OP_TUNING_DTYPES, TENSOR_OP_TYPES, tensor_op_name, tensor_op_residual,
                        tensor_op_types)

# Mirrors fc::WgmmaTile<BN, 4> (csrc/gemm/gemm_wgmma_sm90.h): BN 128, or 256 when N >= 256.
WGMMA_BM, WGMMA_BK, WGMMA_STAGES, WGMMA_THREADS = 128, 64, 4, 384
WGMMA_BNS = (128, 256)


def wgmma_shared_bytes(bn, bm=WGMMA_BM):
    return WGMMA_STAGES * (bm + bn) * WGMMA_BK * 2 + 1024


def wgmma_threads(bm=WGMMA_BM):
    """WgmmaTile::kThreads: the producer warpgroup and one consumer warpgroup per 64 rows."""
    return 128 * (1 + bm // 64)


# Operand dtype -> C++ type; bfloat16 travels as uint16 raw bits.
WGMMA_TYPES = {np.dtype(np.float16): "__half", np.dtype(np.uint16): "__nv_bfloat16"}
# Below this many output tiles the 132 SMs of an H100 are mostly idle and the mma.sync kernel is as good.
WGMMA_MIN_TILES = TARGET_BLOCKS


def wgmma_kernel_names() -> list[str]:
    """The sm_90a GEMM instantiations: a view of fastconv/backends/kernel_table.py."""
    return kernel_table.kernel_names(headers=("gemm/gemm_wgmma_sm90.h",))


def sm90a_kernel_names() -> list[str]:
    """Every sm_90a instantiation (the GEMMs and the convs): a view of fastconv/backends/kernel_table.py."""
    return kernel_table.kernel_names(("sm90a",))


def gemm_config(lx, dtype, m, n, divisible, pointers, shapes, batches=1, tuned=None):
    """(tile, vec, index-ctype) of a GEMM-shaped kernel; see kernel_table.GEMM_CONFIGS for the full set.
    tuned: the tuning file's entry for this problem (lx.tuned), preferred to the heuristic."""
    if np.dtype(dtype) == np.float64:   # one double instantiation per kernel: correctness, not speed
        note("float64 runs the one TileSmall, scalar-load, 64-bit-index instantiation (correctness, not speed)")
        return "TileSmall", 1, "int64_t"
    vec = vector_width(dtype, divisible, pointers)
    if lx.force_vec is not None:
        vec = min(vec, lx.force_vec)
    if explain_active():
        if vec == 4:
            note("16-byte loads: every channel count is a multiple of 4 and every pointer 16-byte aligned")
        elif any(d % 4 for d in divisible):
            note(f"scalar loads: channel counts {tuple(int(d) for d in divisible)} are not all multiples of 4")
        else:
            note("scalar loads: a pointer is not 16-byte aligned, or the test knob force_vec asked for them")
    if lx.force_index64 or needs_64bit_index(*shapes):
        note("64-bit index arithmetic: a tensor has more than 2^31 - 1 elements (or force_index64)")
        if tuned is not None and lx.force_tile is None:
            tuned.tile(("TileMedium",))   # 64-bit offsets have one tile: a tuned other one is ignored
        return "TileMedium", vec, "int64_t"   # 64-bit offsets: one tile (huge problems fill any tile)
    tile = lx.force_tile or (tuned and tuned.tile(TILES))
    if not tile:
        tile = choose_tile(m, n, batches)
        note(f"{tile} for a {m} x {n} GEMM ({batches} batch(es)); 32-bit index arithmetic is safe")
    return tile, vec, "int"


def gemm(lx, a, b, trans_a=False, trans_b=False, bias=None, activation=None, alpha=0.0):
    """op(a) @ op(b) (+ bias, activation) for 2-D row-major a, b."""
    a, b = lx.c(a), lx.c(b)
    m, k = (a.shape[1], a.shape[0]) if trans_a else a.shape
    kb, n = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if k != kb:
        raise ValueError(f"gemm inner dimensions differ: op(a) is {m}x{k}, op(b) is {kb}x{n}")
    c = lx.xp.empty((m, n), a.dtype)
    if c.size == 0:
        return c
    if k == 0:
        c[...] = 0
        if bias is not None or activation not in (None, "identity", "linear"):
            raise ValueError("gemm with K == 0 and an epilogue is not supported")
        return c
    t = ctype(a.dtype)
    lda, ldb = a.shape[1], b.shape[1]
    tuned = lx.tuned("gemm", a.dtype, lambda: tuning.gemm_problem(m, n, k, trans_a, trans_b))
    tile, vec, index = gemm_config(lx, a.dtype, m, n, (m, n, k, lda, ldb), (lx.ptr(a), lx.ptr(b)),
                                   (a.shape, b.shape, c.shape), tuned=tuned)
    it = np.int64 if index == "int64_t" else np.int32
    bm, bn, _, threads = TILES[tile]
    name = kernel_name("gemm_bias_act", tile=tile, vec=vec, index=index, t=t,
                       trans_a=bool(trans_a), trans_b=bool(trans_b))
    lx.launch(name, lx.tile_grid(ceil_div(m, bm), ceil_div(n, bn)), (threads,),
              (it(m), it(n), it(k), a, it(lda), b, it(ldb), c, it(n),
               b if bias is None else lx.c(bias), np.int32(bias is not None), np.int32(ACTIVATIONS[activation]),
               scalar(a.dtype, alpha)))
    return c


def bias_grad(lx, dy):
    """Column sums of dy seen as (rows, dy.shape[-1]): the bias gradient of dense and conv2d."""
    dy = lx.c(dy)
    cols = dy.shape[-1]
    rows = dy.size // cols if cols else 0
    return column_reduce(lx, ColumnReduceMode.SUM, dy, dy, dy, dy, rows, cols, ColumnFinal.SUM)


def dense_fprop(lx, x, w, b=None, precision=None):
    if reduced(lx, precision, x, w):
        return _gemm_reduced(lx, to_compute(lx, x, precision), to_compute(lx, w, precision), precision, b, "dense fprop")
    return gemm(lx, x, w, bias=b)


def dense_bprop(lx, dy, x, w, need_dx=True, precision=None):
    if reduced(lx, precision, dy, x, w):
        dyc = to_compute(lx, dy, precision)
        dx = None
        if need_dx:   # dx = dy @ w^T: w (K_in, units) is w^T in the (N, K) layout the wgmma GEMM reads
            dx = _gemm_reduced(lx, dyc, to_compute(lx, w, precision), precision, what="dense dgrad", b_layout="nk")
        dw = _gemm_reduced(lx, lx.c(to_compute(lx, x, precision).T), dyc, precision, what="dense wgrad")
        return dx, dw, bias_grad(lx, dy)
    dx = gemm(lx, dy, w, trans_b=True) if need_dx else None
    return dx, gemm(lx, x, dy, trans_a=True), bias_grad(lx, dy)


def _gemm_reduced(lx, a, b, precision, bias=None, what="dense", b_layout="kn"):
    """a @ b (+ bias) for compute operands a (M, K), b (K, N), row-major; float32 out. b_layout='nk': b is
    given as (N, K) row-major (what the wgmma GEMM reads; the other paths transpose it)."""
    k, n = b.shape if b_layout == "kn" else b.shape[::-1]
    if b_layout == "nk" and not (a.dtype.itemsize == 2 and k > 0 and k % 8 == 0 and n % 2 == 0):
        b, b_layout = lx.c(b.T), "kn"   # only gemm_wgmma (reached below only then) reads (N, K) directly
    if a.dtype.itemsize == 2 and (k % 2 or n % 2):
        note(f"{what}: CUDA-core GEMM (fp32) on {precision}-rounded operands: the 16-bit tensor-core GEMM "
             f"needs even K and N (K={k}, N={n})")
        return gemm(lx, to_float32(lx, a), to_float32(lx, b), bias=bias)
    if k == 0:
        note(f"{what}: K == 0, no products: the CUDA-core GEMM writes the zeros")
        return gemm(lx, to_float32(lx, a), to_float32(lx, b), bias=bias)
    note(f"{what}: tensor-core GEMM in {precision}, fp32 accumulation, fp32 output")
    if a.dtype.itemsize == 2:   # bf16 / fp16: the sm_90a wgmma GEMM, which falls back to mma.sync (and says why)
        return gemm_wgmma(lx, a, b, bias=bias, b_layout=b_layout)
    return gemm_tensor_op(lx, a, b, bias=bias)


def gemm_tensor_op(lx, a, b, bias=None, activation=None, alpha=0.0, out_dtype=None, residual=None):
    """C = act(A @ B + bias + residual) on tensor cores, fp32 accumulation. A (M, K) and B (K, N)
    row-major, both float32 (tf32 mma), float16 or uint16 (bfloat16 bits); bias float32 (N,); C float32
    (default) or the operand dtype; residual (M, N), float32 or the operand dtype, is read in C's dtype.
    Knob: force_tensor_op_tile ('Tile64' / 'Tile128')."""
    a, b = lx.c(a), lx.c(b)
    dt, out = tensor_op_types(a.dtype, out_dtype)
    if b.dtype != dt:
        raise TypeError(f"A is {dt} but B is {b.dtype}")
    (m, kdim), (kb, n) = a.shape, b.shape
    if kdim != kb:
        raise ValueError(f"gemm_tensor_op: A is {a.shape}, B is {b.shape}")
    if needs_64bit_index(a.shape, b.shape, (m, n)):
        raise ValueError("gemm_tensor_op: 32-bit offsets only; a tensor has more than 2^31 - 1 elements")
    ct, prefix = TENSOR_OP_TYPES[dt]
    out_ct = "float" if out == np.float32 else ct
    c = lx.xp.empty((m, n), out)
    if c.size == 0:
        return c
    full = 16 // dt.itemsize   # one 16-byte cp.async
    narrow = 4 // dt.itemsize   # one 4-byte cp.async
    ptrs = (lx.ptr(a), lx.ptr(b))
    if kdim % full == 0 and n % full == 0 and all(p % 16 == 0 for p in ptrs):
        vec = full
        note("tensor cores, 16-byte cp.async: K and N are multiples of 16 bytes, pointers aligned")
    elif kdim % narrow == 0 and n % narrow == 0 and all(p % 4 == 0 for p in ptrs):
        vec = narrow
        note("tensor cores, 4-byte cp.async: K or N is not a multiple of 16 bytes (or a pointer unaligned)")
    else:
        raise ValueError(f"gemm_tensor_op: 16-bit operands need even K and N (got K={kdim}, N={n})")
    tile = lx.force_tensor_op_tile
    if tile is None:
        out_name = TENSOR_OP_TUNING_DTYPES.get(out, out.name).replace("tf32", "float32")
        tuned = lx.tuned("gemm_tensor_op", TENSOR_OP_TUNING_DTYPES[dt],
                         lambda: tuning.gemm_problem(m, n, kdim, out=out_name))
        tile = tuned.tile([t for t in TENSOR_OP_TILES if tensor_op_name(
            "gemm_tensor_op", prefix, t, vec, out_ct)]) if tuned else None
    if tile is None:
        bm, bn, _ = TENSOR_OP_TILES["Tile128"]
        big = ceil_div(m, bm) * ceil_div(n, bn) >= TARGET_BLOCKS
        tile = "Tile128" if big and tensor_op_name("gemm_tensor_op", prefix, "Tile128", vec, out_ct) else "Tile64"
    name = tensor_op_name("gemm_tensor_op", prefix, tile, vec, out_ct)
    if name is None:
        raise ValueError(f"no tensor-core GEMM instantiation for {prefix} {tile}, {vec}-element copies, {out_ct} out")
    bm, bn, threads = TENSOR_OP_TILES[tile]
    bias_arr = lx.c(bias).astype(np.float32, copy=False) if bias is not None else lx.xp.zeros((1,), np.float32)
    res, has_res = tensor_op_residual(lx, residual, (m, n), dt, out)
    lx.launch(name, lx.tile_grid(ceil_div(m, bm), ceil_div(n, bn)), (threads,),
              (np.int32(m), np.int32(n), np.int32(kdim), a, np.int32(kdim), b, np.int32(n), c, np.int32(n),
               bias_arr, np.int32(bias is not None), np.int32(ACTIVATIONS[activation]), np.float32(alpha),
               res, np.int32(has_res)))
    return c


def sm90a_unavailable(lx):
    """None when the launcher's backend can run sm_90a code (wgmma, TMA) on its device, or is the emulator;
    else why not. What the wgmma GEMM and the sm_90a conv (conv2d_sm90.py) both need."""
    target = lx.sm90_target()
    if target is None:
        return "the device is not sm_90 (wgmma and TMA need a Hopper GPU)"
    if target == "sm90" and not lx.runs_sm90a():
        # The executor must run sm_90a machine code for the kernel table's sm90a kernels (not plain sm_90): jit compiles it
        # through NVRTC (jit.compile_sm90a, with cuda-bindings); native asks _C whether the device runs
        # the sm_90a binary of its registry (_C.sm90a_code, csrc/launch/sm90a_probe.cuh). jit's probe
        # (compile + load one wgmma kernel per device) keeps the reason it failed: sm90a_reason.
        reason = lx.sm90a_reason
        return ((reason() if callable(reason) else None) or
                "this backend has no sm_90a code for the device (native: fastconv._C was built "
                "without the sm_90a gencode; jit: needs NVRTC through cuda-bindings)")
    if target == "sm90":
        encode, why = tensor_map.tensor_map_encoder()
        if encode is None:
            return why
    return None


def wgmma_applies(lx, m, n, k, dtype):
    """(True, why) when gemm_wgmma would run the sm_90a kernel for this problem, else (False, why not)."""
    target = lx.sm90_target()
    missing = sm90a_unavailable(lx)
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


def gemm_wgmma(lx, a, b, bias=None, activation=None, out_dtype=None, alpha=0.0, b_layout="kn"):
    """C = act(A @ B + bias) with the sm_90a wgmma kernel when it applies (wgmma_applies), otherwise
    gemm_tensor_op (explain says why). A (M, K) row-major, float16 or uint16 (bfloat16 bits); B (K, N)
    row-major (b_layout 'kn'), or given as Bt (N, K) row-major ('nk': K-major, the layout the kernel reads
    and nn.Linear keeps its weight in, so no transposing copy); bias float32 (N,); C float32 (default) or
    the operand dtype. Tile 128 x 256 when N >= 256, else 128 x 128 (knob: force_wgmma_bn)."""
    a, b = lx.c(a), lx.c(b)
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
    ok, why = wgmma_applies(lx, m, n, kdim, a.dtype)
    if ok and lx.ptr(a) % 16:
        ok, why = False, "A is not 16-byte aligned (a TMA global address must be)"
    elif ok and b_layout == "nk" and lx.ptr(b) % 16:   # a (K, N) B is copied into fresh, aligned memory
        ok, why = False, "B (given as (N, K)) is not 16-byte aligned (a TMA global address must be)"
    if not ok:
        note("gemm_tensor_op (mma.sync) instead of the sm_90a wgmma GEMM: " + why)
        return gemm_tensor_op(lx, a, b if b_layout == "kn" else lx.c(b.T), bias, activation, alpha, out_dtype)
    note(why)
    c = lx.xp.empty((m, n), out)
    if c.size == 0:
        return c
    # Bt (N, K): both operands K-major, which wgmma reads for every input type. One transposing
    # copy of a (K, N) B; a weight kept in this layout (b_layout='nk') skips it.
    bt = lx.c(b.T) if b_layout == "kn" else b
    ct = WGMMA_TYPES[a.dtype]
    bn = lx.force_wgmma_bn or (256 if n >= 256 else 128)
    if bn not in WGMMA_BNS:
        raise ValueError(f"force_wgmma_bn={bn}: the wgmma tiles have BN in {WGMMA_BNS}")
    name = kernel_name("gemm_wgmma", bn=bn, stages=WGMMA_STAGES, t=ct, out="float" if out == np.float32 else ct)
    row = kdim * a.dtype.itemsize
    if lx.sm90_target() == "emulator":
        map_a = encode_tensor_map_emulated(0, 2, (kdim, m), row, (WGMMA_BK, WGMMA_BM), TMA_SWIZZLE_128B)
        map_b = encode_tensor_map_emulated(1, 2, (kdim, n), row, (WGMMA_BK, bn), TMA_SWIZZLE_128B)
    else:   # pragma: no cover - GPU machines only
        map_a = encode_tensor_map_cuda(lx.ptr(a), a.dtype, (kdim, m), row, (WGMMA_BK, WGMMA_BM), TMA_SWIZZLE_128B)
        map_b = encode_tensor_map_cuda(lx.ptr(bt), a.dtype, (kdim, n), row, (WGMMA_BK, bn), TMA_SWIZZLE_128B)
    bias_arr = lx.c(bias).astype(np.float32, copy=False) if bias is not None else lx.xp.zeros((1,), np.float32)
    lx.launch(name, lx.tile_grid(ceil_div(n, bn), ceil_div(m, WGMMA_BM)), (WGMMA_THREADS,),
              (a, bt, as_struct(map_a), as_struct(map_b), c, np.int32(m), np.int32(n), np.int32(kdim),
               bias_arr, np.int32(bias is not None), np.int32(ACTIVATIONS[activation]), np.float32(alpha)),
              shared_bytes=wgmma_shared_bytes(bn))
    return c
