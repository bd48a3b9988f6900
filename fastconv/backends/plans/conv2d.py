"""Launch plans of conv2d: fprop, dgrad and wgrad on CUDA cores (csrc/conv/: implicit GEMM, depthwise, the
stride-phase dgrad), on tensor cores (csrc/conv/*_tensor_op_sm80.h, sm_80+ mma.sync, in tf32 / fp16 / bf16 with fp32
accumulation and the fused bias + residual + activation epilogue), under a reduced precision policy (the
operands cast at each use, cast.py), and fused with bias, ReLU and max-pool (csrc/conv/conv2d_bias_relu_maxpool*.h: forward 2x2/2
'valid' or 3x3/2 with any padding; the pool + ReLU-mask + bias-gradient backward).

On sm_90 (and in the emulator) the tensor-core fprop, dgrad and wgrad are routed by conv2d_*_tensor_core: a 1x1
stride-1 unpadded conv through the wgmma GEMM (gemm.py), other convs through the sm_90a conv kernel
(conv2d_sm90.py; dgrad as the fprop of dy by stride phases, conv2d_dgrad_sm90.py; wgrad conv2d_wgrad_sm90.py)
where it can implement them, everything else through mma.sync.

Where no tensor-core kernel applies, the CUDA-core fp32 kernel runs on the operands rounded to the compute
format and widened back, so every path computes the same values (up to summation order) and
`fastconv.explain` says which ran and why.
"""
from __future__ import annotations

import numpy as np

from .. import kernel_table, tuning
from ..kernel_table import kernel_name
from ...explain import note
from ...shapes import conv_output_hw, needs_64bit_index
from . import conv2d_dgrad_sm90, conv2d_sm90, conv2d_wgrad_sm90
from .activation import act_fprop
from .cast import reduced, to_compute, to_float32
from .common import (ACTIVATIONS, SM90_SMS, TILES, ceil_div, choose_row_splits, choose_splits,
                     conv2d_problem, ctype, pool2d_problem, scalar)
from .gemm import WGMMA_TYPES, gemm_config, gemm_wgmma, sm90a_unavailable, wgmma_applies
from .pool import max_pool2d_fprop
from .reduce import ColumnFinal, column_finalize
from .tensor_op import (TENSOR_OP_CONV_CHANNELS, TENSOR_OP_TILES, TENSOR_OP_TYPES, narrow, tensor_op_name,
                        tensor_op_residual, tensor_op_splits, tensor_op_types, widen)

VALID = ((0, 0), (0, 0))
# The files of the fused kernels (fastconv/backends/kernel_table.py names each family's header).
FUSED_HEADERS = ("conv/conv2d_bias_relu_maxpool.h", "conv/conv2d_bias_relu_maxpool3x3.h", "norm/batchnorm_relu.h")
# Mirrors csrc/conv/conv2d_bias_relu_maxpool3x3.h MaxPool3x3s2Patch: pooled windows (TP, TQ) per block.
PATCH_3X3S2 = {"TileSmall": (1, 4), "TileMedium": (2, 5)}


def fusable_pool_kind(pool, pool_stride, pool_padding=VALID):
    """'2x2' (2x2/2 'valid'), '3x3s2' (3x3/2, padding up to 2 per side) or None: what csrc/conv/conv2d_bias_relu_maxpool*.h cover."""
    pool, pool_stride = tuple(pool), tuple(pool_stride)
    pads = tuple(tuple(int(v) for v in side) for side in pool_padding)
    if pool == (2, 2) and pool_stride == (2, 2) and pads == VALID:
        return "2x2"
    if pool == (3, 3) and pool_stride == (2, 2) and all(0 <= v < 3 for side in pads for v in side):
        return "3x3s2"
    return None


def check_fusable_pool(pool, pool_stride, pool_padding=VALID):
    kind = fusable_pool_kind(pool, pool_stride, pool_padding)
    if kind is None:
        raise NotImplementedError(f"the fused conv2d + max-pool kernels take pool (2, 2) stride (2, 2) 'valid' or "
                                  f"pool (3, 3) stride (2, 2) with padding < 3, got pool {tuple(pool)} stride "
                                  f"{tuple(pool_stride)} padding {tuple(map(tuple, pool_padding))}")
    return kind


def fused_kernel_names() -> list[str]:
    """The fused instantiations the plans below can launch (part of all_kernel_names()): a view of
    fastconv/backends/kernel_table.py."""
    return kernel_table.kernel_names(headers=FUSED_HEADERS)


def conv2d_fprop(lx, x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, bias=None,
                 activation=None, alpha=0.0, precision=None):
    x, w = lx.c(x), lx.c(w)
    if reduced(lx, precision, x, w):
        note(f"precision {precision}: conv2d_fprop operands cast to {precision}, fp32 accumulation, fp32 output")
        return to_float32(lx, conv2d_fprop_tensor_core(lx, to_compute(lx, x, precision), to_compute(lx, w, precision),
                                                       stride, padding, dilation, groups, bias, activation, alpha))
    pb, y_shape = conv2d_problem(x.shape, w.shape, stride, padding, dilation, groups)
    y = lx.xp.empty(y_shape, x.dtype)
    t = ctype(x.dtype)
    act = ACTIVATIONS[activation]
    b = lx.c(bias) if bias is not None else w    # w: a placeholder the kernel never reads
    n, p, q, k = y_shape
    if y.size == 0:
        return y
    cg, kg = w.shape[2], k // groups
    if cg == 1:
        lx.run1d(kernel_name("conv2d_fprop_depthwise", t=t), y.size,
                 (pb, x, w, y, b, np.int32(bias is not None), np.int32(act), scalar(x.dtype, alpha)))
        return y
    m = n * p * q
    tuned = lx.tuned("conv2d_fprop", x.dtype,
                     lambda: tuning.conv_problem(x.shape, w.shape, stride, padding, dilation, groups))
    tile, vec, index = gemm_config(lx, x.dtype, m, kg, (x.shape[3], cg, k, kg), (lx.ptr(x), lx.ptr(w)),
                                   (x.shape, w.shape, y_shape), groups, tuned)
    bm, bn, _, threads = TILES[tile]
    lx.launch(kernel_name("conv2d_fprop_implicit_gemm", tile=tile, vec=vec, index=index, t=t),
              lx.tile_grid(ceil_div(m, bm), ceil_div(kg, bn), groups), (threads,),
              (pb, x, w, y, b, np.int32(bias is not None), np.int32(act), scalar(x.dtype, alpha)))
    return y


def conv2d_dgrad(lx, dy, w, x_shape, stride, padding, dilation, groups, precision=None):
    dy, w = lx.c(dy), lx.c(w)
    if reduced(lx, precision, dy, w):
        note(f"precision {precision}: conv2d_dgrad on the tensor-core plan, fp32 accumulation")
        dyc, wc = to_compute(lx, dy, precision), to_compute(lx, w, precision)
        return to_float32(lx, conv2d_dgrad_tensor_core(lx, dyc, wc, x_shape, stride, padding, dilation, groups))
    pb, y_shape = conv2d_problem(x_shape, w.shape, stride, padding, dilation, groups)
    if tuple(dy.shape) != tuple(y_shape):
        raise ValueError(f"dy has shape {tuple(dy.shape)}, expected {y_shape}")
    dx = lx.xp.empty(tuple(x_shape), dy.dtype)
    if dx.size == 0:
        return dx
    t = ctype(dy.dtype)
    n, h, wd, c = x_shape
    cg, k = w.shape[2], w.shape[3]
    kg = k // groups
    if cg == 1:
        lx.run1d(kernel_name("conv2d_dgrad_depthwise", t=t), dx.size, (pb, dy, w, dx))
        return dx
    m = n * h * wd
    tuned = lx.tuned("conv2d_dgrad", dy.dtype,
                     lambda: tuning.conv_problem(x_shape, w.shape, stride, padding, dilation, groups))
    tile, vec, index = gemm_config(lx, dy.dtype, m, cg, (k, kg), (lx.ptr(dy), lx.ptr(w)),
                                   (x_shape, w.shape, y_shape), groups, tuned)
    bm, bn, _, threads = TILES[tile]
    sh, sw = (int(v) for v in stride)
    if sh * sw > 1:   # csrc/conv/conv2d_dgrad_phase.h: each stride phase a dense GEMM over its own taps
        note(f"conv2d_dgrad stride-phase decomposition: {sh}x{sw} = {sh * sw} phases in one launch, each over "
             "only the taps that reach it (no taps masked by the stride)")
        rows = n * ceil_div(h, sh) * ceil_div(wd, sw)   # phase (0, 0), the largest
        lx.launch(kernel_name("conv2d_dgrad_strided_implicit_gemm", tile=tile, vec=vec, index=index, t=t),
                  lx.tile_grid(ceil_div(rows, bm), ceil_div(cg, bn), groups * sh * sw), (threads,),
                  (pb, dy, w, dx))
        return dx
    lx.launch(kernel_name("conv2d_dgrad_implicit_gemm", tile=tile, vec=vec, index=index, t=t),
              lx.tile_grid(ceil_div(m, bm), ceil_div(cg, bn), groups), (threads,), (pb, dy, w, dx))
    return dx


def conv2d_wgrad(lx, x, dy, w_shape, stride, padding, dilation, groups, precision=None):
    x, dy = lx.c(x), lx.c(dy)
    if reduced(lx, precision, x, dy):
        note(f"precision {precision}: conv2d_wgrad on the tensor-core plan, fp32 accumulation")
        xc, dyc = to_compute(lx, x, precision), to_compute(lx, dy, precision)
        return to_float32(lx, conv2d_wgrad_tensor_core(lx, xc, dyc, w_shape, stride, padding, dilation, groups))
    pb, y_shape = conv2d_problem(x.shape, w_shape, stride, padding, dilation, groups)
    if tuple(dy.shape) != tuple(y_shape):
        raise ValueError(f"dy has shape {tuple(dy.shape)}, expected {y_shape}")
    r, s, cg, k = (int(v) for v in w_shape)
    dw = lx.xp.empty((r, s, cg, k), x.dtype)
    t = ctype(x.dtype)
    n, p, q, _ = y_shape
    kdim = n * p * q
    if kdim == 0:
        dw[...] = 0
        return dw
    if cg == 1:
        splits = lx.force_splits or max(1, min(ceil_div(kdim, 2048), 64))
        rows_per_split = ceil_div(kdim, splits)
        splits = ceil_div(kdim, rows_per_split)
        out = dw if splits == 1 else lx.xp.empty((splits, r * s, k), x.dtype)
        lx.launch(kernel_name("conv2d_wgrad_depthwise", t=t), lx.tile_grid(ceil_div(k, 32), r * s, splits), (32, 8),
                  (pb, x, dy, out, np.int64(rows_per_split)))
    else:
        kg = k // groups
        rows = r * s * cg
        tuned = lx.tuned("conv2d_wgrad", x.dtype,
                         lambda: tuning.conv_problem(x.shape, w_shape, stride, padding, dilation, groups))
        tile, vec, index = gemm_config(lx, x.dtype, rows, kg, (x.shape[3], cg, k, kg),
                                       (lx.ptr(x), lx.ptr(dy)), (x.shape, w_shape, y_shape), groups,
                                       tuned)
        splits, k_per_split = choose_splits(rows, kg, kdim, tile, groups)
        bk = TILES[tile][2]
        # the tuned split-k only with the tuned tile it was timed with
        want = lx.force_splits or (tuned and tuned.config.get("tile") == tile and lx.force_tile is None
                                   and tuned.splits(ceil_div(kdim, bk)))
        if want:
            k_per_split = ceil_div(ceil_div(kdim, want), bk) * bk
            splits = ceil_div(kdim, k_per_split)
        out = dw if splits == 1 else lx.xp.empty((splits, rows, k), x.dtype)
        bm, bn, _, threads = TILES[tile]
        lx.launch(kernel_name("conv2d_wgrad_implicit_gemm", tile=tile, vec=vec, index=index, t=t),
                  lx.tile_grid(ceil_div(rows, bm), ceil_div(kg, bn), groups * splits), (threads,),
                  (pb, x, dy, out, np.int32(splits),
                   np.int64(k_per_split) if index == "int64_t" else np.int32(k_per_split)))
    if splits > 1:
        lx.run1d(kernel_name("split_k_reduce", t=t), dw.size, (out, dw, np.int32(splits), np.int64(dw.size)))
    return dw


def conv2d_fprop_tensor_op(lx, x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1,
                           bias=None, activation=None, alpha=0.0, out_dtype=None, residual=None):
    """y = act(conv2d(x, w) + bias + residual) on tensor cores (implicit GEMM, fp32 accumulation) when
    groups == 1, C % 8 == 0, K a multiple of 16 bytes and x, w 16-byte aligned; otherwise the CUDA-core
    fp32 kernel on operands widened to float32 (same values). Operand/output dtypes as in gemm_tensor_op;
    bias float32; residual shaped as y, float32 or the operand dtype, read in y's dtype."""
    x, w = lx.c(x), lx.c(w)
    dt, out = tensor_op_types(x.dtype, out_dtype)
    if w.dtype != dt:
        raise TypeError(f"x is {dt} but w is {w.dtype}")
    pb, y_shape = conv2d_problem(x.shape, w.shape, stride, padding, dilation, groups)
    ct, prefix = TENSOR_OP_TYPES[dt]
    out_ct = "float" if out == np.float32 else ct
    c, k = x.shape[3], w.shape[3]
    vec = 16 // dt.itemsize
    reasons = []
    if groups != 1:
        reasons.append(f"groups={groups} (the tensor-core kernel takes groups == 1)")
    if c % TENSOR_OP_CONV_CHANNELS:
        reasons.append(f"C={c} is not a multiple of {TENSOR_OP_CONV_CHANNELS}")
    if k % vec:
        reasons.append(f"K={k} is not a multiple of {vec}")
    if lx.ptr(x) % 16 or lx.ptr(w) % 16:
        reasons.append("x or w is not 16-byte aligned")
    if needs_64bit_index(x.shape, w.shape, y_shape):
        reasons.append("a tensor has more than 2^31 - 1 elements")
    name = tensor_op_name("conv2d_fprop_tensor_op", prefix, "Tile64", vec, out_ct)
    if name is None:
        reasons.append(f"no tensor-core instantiation for {prefix} with {out_ct} output")
    res, has_res = tensor_op_residual(lx, residual, y_shape, dt, out)
    if reasons:
        note("CUDA-core conv2d_fprop (fp32) instead of tensor cores: " + "; ".join(reasons))
        y = conv2d_fprop(lx, widen(lx.xp, x), widen(lx.xp, w), stride, padding, dilation, groups,
                         None if bias is None else lx.c(bias).astype(np.float32),
                         None if has_res else activation, alpha)
        if has_res:   # the same order as the fused epilogue: act(conv + bias + residual)
            y = y + widen(lx.xp, res)
            if ACTIVATIONS[activation]:
                y = act_fprop(lx, activation, y, alpha)
        return narrow(lx.xp, y, out)
    note("tensor-core implicit GEMM: groups == 1, C % 8 == 0, K a multiple of 16 bytes, pointers aligned")
    y = lx.xp.empty(y_shape, out)
    if y.size == 0:
        return y
    n, p, q, _ = y_shape
    bm, bn, threads = TENSOR_OP_TILES["Tile64"]
    bias_arr = lx.c(bias).astype(np.float32, copy=False) if bias is not None else lx.xp.zeros((1,), np.float32)
    lx.launch(name, lx.tile_grid(ceil_div(n * p * q, bm), ceil_div(k, bn)), (threads,),
              (pb, x, w, y, bias_arr, np.int32(bias is not None), np.int32(ACTIVATIONS[activation]),
               np.float32(alpha), res, np.int32(has_res)))
    return y


# ---- sm_90 routing of the tensor-core fprop and dgrad -----------------------------------------------------------
# The output tile the routing counts (M = output pixels by K filters, or C for dgrad): the sm_90a conv's 64 x 128, the
# smallest its plan picks for K > 64. A conv goes there with at least one such tile per SM (min_tiles, SM90_SMS);
# under 66 tiles of 128x128 (half the SMs) the plan then picks 64-row tiles (conv2d_sm90.py choose_tile).
SM90_CONV_TILE = (64, 128)


def _one_by_one(w_shape, stride, padding):
    return tuple(w_shape[:2]) == (1, 1) and tuple(stride) == (1, 1) and all(v == 0 for side in padding for v in side)


def _gemm_tiles_short(m, n, min_tiles):
    """Why the wgmma GEMM would decline (M, N) for too few 128x128 tiles (its own rule, gemm.py wgmma_applies: two
    per SM, 2 * min_tiles at the default), else None: such a 1x1 conv runs the sm_90a conv's smaller tiles."""
    tiles = ceil_div(m, 128) * ceil_div(n, 128)
    return (f"1x1 conv with {tiles} tiles of 128x128, too few for the wgmma GEMM (under {2 * min_tiles}): the sm_90a "
            "conv on its smaller tiles") if tiles < 2 * min_tiles else None


def sm90_fprop_route(x_shape, w_shape, stride, padding, groups, dtype, min_tiles=SM90_SMS):
    """What the shapes alone say about a conv fprop on sm_90: ('gemm', why) for a 1x1 stride-1 unpadded conv in a
    16-bit format (the wgmma GEMM), ('conv', why) for the sm_90a conv kernel, ('tensor_op', why not) for the
    mma.sync conv, also when there are fewer than min_tiles output tiles (too few for 132 SMs). The device,
    alignment and the conv kernel's own can_implement are checked by conv2d_fprop_tensor_core."""
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
    if _one_by_one(w_shape, stride, padding) and dt in WGMMA_TYPES:
        short = _gemm_tiles_short(n * h * wd, k, min_tiles)
        return ("conv", short) if short else (
            "gemm", "1x1 stride-1 unpadded conv as the sm_90a wgmma GEMM: NHWC x is its (N*H*W, C) A matrix")
    return "conv", "sm_90a wgmma + TMA implicit-GEMM conv fprop"


def sm90_dgrad_route(x_shape, w_shape, stride, padding, groups, dtype, min_tiles=SM90_SMS, dilation=(1, 1)):
    """What the shapes alone say about a conv dgrad on sm_90: ('gemm', why) for a 1x1 stride-1 unpadded conv (the
    wgmma GEMM, the (C, K) filter its K-major B), ('conv', why) for other convs (the sm_90a conv kernel on dy and
    the turned filter, conv2d_dgrad_sm90.py; one launch per stride phase), else ('tensor_op', why not), also under
    min_tiles tiles of dx in the phases some tap reaches (all launches together; the others are zeroed)."""
    n, h, wd, c = (int(v) for v in x_shape)
    k = int(w_shape[3])
    sh, sw = (int(v) for v in stride)
    dt = np.dtype(dtype)
    if groups != 1:
        return "tensor_op", f"groups={groups} (the sm_90a conv and GEMM take groups == 1)"
    if dt not in WGMMA_TYPES:
        return "tensor_op", f"operands are {dt}; the sm_90a kernels take float16 or bfloat16 (uint16 bits)"
    phases = conv2d_dgrad_sm90.dgrad_phases(x_shape, w_shape, stride, padding, dilation)
    tiles = ceil_div(c, SM90_CONV_TILE[1]) * sum(ceil_div(n * rows * cols, SM90_CONV_TILE[0])
                                                 for _, (rows, cols), (*_, th), (*_, tw), *_ in phases if th * tw)
    if tiles < min_tiles:
        return "tensor_op", (f"{tiles} output tiles of {SM90_CONV_TILE[0]}x{SM90_CONV_TILE[1]} are too few to fill "
                             f"the GPU (under {min_tiles})")
    if _one_by_one(w_shape, stride, padding) and not _gemm_tiles_short(n * h * wd, c, min_tiles):
        return "gemm", ("1x1 stride-1 unpadded conv's dgrad as the sm_90a wgmma GEMM: dy is its (N*H*W, K) A matrix, "
                        "the (C, K) filter its K-major B")
    per16 = 16 // dt.itemsize
    if k % per16:
        return "tensor_op", f"K={k} is not a multiple of {per16} (dy's TMA rows must be multiples of 16 bytes)"
    if c % per16:   # the kernel would run it, but a stem's C = 3 fills 3 of every 128 columns of its tiles
        return "tensor_op", f"C={c} is not a multiple of {per16} (dx's channels: {c} of each 128-wide tile's columns)"
    if sh * sw > 1:
        return "conv", (f"stride-{sh}x{sw} conv's dgrad as {sh * sw} stride phases on the sm_90a wgmma + TMA conv "
                        "(each the fprop of dy over only its own turned taps, one launch each)")
    return "conv", "stride-1 conv's dgrad as the sm_90a wgmma + TMA conv fprop of dy with the turned filter"


def conv2d_fprop_tensor_core(lx, x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1,
                             bias=None, activation=None, alpha=0.0, out_dtype=None, residual=None):
    """y = act(conv2d(x, w) + bias + residual) for tensor-core operands (as conv2d_fprop_tensor_op takes them),
    on the fastest kernel that can run it: on sm_90 (or in the emulator) a 1x1 stride-1 unpadded conv runs the
    wgmma GEMM (NHWC x is its (N*H*W, C) A matrix, the (C, K) filter its B), other convs (and 1x1 ones with a
    residual, which the GEMM's epilogue lacks) the sm_90a conv kernel where its can_implement agrees; the rest,
    and everything on other GPUs, the mma.sync conv2d_fprop_tensor_op. fastconv.explain says which and why.
    Knob: lx.sm90_conv_min_tiles."""
    x, w = lx.c(x), lx.c(w)
    route, why = _sm90_fprop_choice(lx, x, w, stride, padding, dilation, groups, residual, out_dtype)
    if route == "gemm":
        note(why)
        n, h, wd, c = x.shape
        y = gemm_wgmma(lx, x.reshape(n * h * wd, c), w.reshape(c, w.shape[3]), bias=bias, activation=activation,
                       out_dtype=out_dtype, alpha=alpha)
        return y.reshape(n, h, wd, w.shape[3])
    if route == "conv":
        note(why)
        return conv2d_sm90.conv2d_fprop_sm90(lx, x, w, stride, padding, dilation, bias, activation, out_dtype,
                                             alpha=alpha, residual=residual)
    note("mma.sync tensor-op conv instead of the sm_90a kernels: " + why)
    return conv2d_fprop_tensor_op(lx, x, w, stride, padding, dilation, groups, bias, activation, alpha, out_dtype,
                                  residual)


def _sm90_fprop_choice(lx, x, w, stride, padding, dilation, groups, residual, out_dtype):
    """('gemm' | 'conv' | 'tensor_op', why) for conv2d_fprop_tensor_core."""
    missing = sm90a_unavailable(lx)
    if missing:
        return "tensor_op", missing
    emulated = " in the emulator" if lx.sm90_target() == "emulator" else ""
    route, why = sm90_fprop_route(x.shape, w.shape, stride, padding, groups, x.dtype, lx.sm90_conv_min_tiles)
    if route == "gemm" and residual is not None:
        route, why = "conv", "sm_90a wgmma + TMA implicit-GEMM conv fprop (a 1x1 conv with a residual add)"
    if route == "gemm":
        n, h, wd, c = x.shape
        ok, gemm_why = wgmma_applies(lx, n * h * wd, w.shape[3], c, x.dtype)
        if not ok:
            return "tensor_op", gemm_why
        if lx.ptr(x) % 16:
            return "tensor_op", "x is not 16-byte aligned (a TMA global address must be)"
        return route, why + emulated
    if route != "conv":
        return route, why
    if lx.ptr(x) % 16 or lx.ptr(w) % 16:
        return "tensor_op", "x or w is not 16-byte aligned (a TMA global address must be)"
    ok, reason = conv2d_sm90.conv2d_fprop_sm90_can_implement(lx, x, w, stride, padding, dilation, groups, out_dtype)
    if not ok:
        return "tensor_op", f"conv2d_fprop_sm90 cannot run it: {reason}"
    return "conv", why + emulated


def conv2d_dgrad_tensor_core(lx, dy, w, x_shape, stride, padding, dilation, groups, out_dtype=None):
    """dx for tensor-core operands (as conv2d_dgrad_tensor_op takes them): on sm_90 (or in the emulator) a 1x1
    stride-1 unpadded conv's dgrad is the wgmma GEMM dx (N*H*W, C) = dy (N*H*W, K) @ w^T, the (C, K) filter
    being already the K-major (N, K) B it reads; another conv's dgrad the sm_90a conv kernel on dy and the
    turned filter, by stride phases (conv2d_dgrad_sm90.py) where it can implement it; everything else
    conv2d_dgrad_tensor_op (mma.sync, by stride phases). fastconv.explain says which and why."""
    dy, w = lx.c(dy), lx.c(w)
    _, y_shape = conv2d_problem(x_shape, w.shape, stride, padding, dilation, groups)
    missing = sm90a_unavailable(lx)
    route, why = sm90_dgrad_route(x_shape, w.shape, stride, padding, groups, dy.dtype, lx.sm90_conv_min_tiles,
                                  dilation)
    if missing or tuple(dy.shape) != tuple(y_shape):
        route = "tensor_op"   # a misshapen dy gets conv2d_dgrad_tensor_op's error
    elif route == "gemm":
        n, h, wd, c = (int(v) for v in x_shape)
        ok, gemm_why = wgmma_applies(lx, n * h * wd, c, w.shape[3], dy.dtype)
        if ok and not (lx.ptr(dy) % 16 or lx.ptr(w) % 16):
            note(why)
            dx = gemm_wgmma(lx, dy.reshape(n * h * wd, w.shape[3]), w.reshape(c, w.shape[3]), out_dtype=out_dtype,
                            b_layout="nk")
            return dx.reshape(n, h, wd, c)
        route, why = "tensor_op", gemm_why if not ok else "dy or w is not 16-byte aligned (a TMA global address must be)"
    elif route == "conv":
        ok, reason = conv2d_dgrad_sm90.conv2d_dgrad_sm90_can_implement(lx, dy, w, x_shape, stride, padding, dilation,
                                                                       groups, out_dtype)
        if ok:
            note(why + (" in the emulator" if lx.sm90_target() == "emulator" else ""))
            return conv2d_dgrad_sm90.conv2d_dgrad_sm90(lx, dy, w, x_shape, stride, padding, dilation, out_dtype)
        route, why = "tensor_op", f"conv2d_dgrad_sm90 cannot run it: {reason}"
    note("mma.sync tensor-op dgrad instead of the sm_90a kernels: " + (missing or why))
    return conv2d_dgrad_tensor_op(lx, dy, w, x_shape, stride, padding, dilation, groups, out_dtype)


def sm90_wgrad_route(x_shape, w_shape, stride, padding, groups, dtype, min_tiles=SM90_SMS, dilation=(1, 1)):
    """What the shapes alone say about a conv wgrad on sm_90: ('conv', why) for the sm_90a wgrad (conv2d_wgrad_sm90.py),
    else ('tensor_op', why not), also when even its most split grid (128 x 128 tiles of C x K per tap, times a split
    per 4 pixel tiles of 64) has under min_tiles CTAs."""
    n, h, wd, c = (int(v) for v in x_shape)
    r, s, _, k = (int(v) for v in w_shape)
    dt = np.dtype(dtype)
    if groups != 1:
        return "tensor_op", f"groups={groups} (the sm_90a wgrad takes groups == 1)"
    if dt not in WGMMA_TYPES:
        return "tensor_op", f"operands are {dt}; the sm_90a kernels take float16 or bfloat16 (uint16 bits)"
    if c % 8 or k % 8:
        return "tensor_op", f"C={c} or K={k} is not a multiple of 8 (TMA rows must be multiples of 16 bytes)"
    p, q = conv_output_hw((h, wd), (r, s), stride, padding, dilation)
    tq, tp, tn = conv2d_sm90.pixel_tile(n, p, q, stride, conv2d_wgrad_sm90.WGRAD_SM90_PIXELS)
    tiles = ceil_div(c, conv2d_wgrad_sm90.WGRAD_SM90_BM) * ceil_div(k, conv2d_wgrad_sm90.WGRAD_SM90_BN) * r * s
    splits = max(1, ceil_div(q, tq) * ceil_div(p, tp) * ceil_div(n, tn) // 4)
    if tiles * splits < min_tiles:
        return "tensor_op", (f"{tiles} tiles of 128x128 (C x K per tap) in at most {splits} split(s) are too few to "
                             f"fill the GPU (under {min_tiles})")
    return "conv", "sm_90a wgmma + TMA conv wgrad (MN-major pixel boxes, fixed-order split-k)"


def conv2d_wgrad_tensor_core(lx, x, dy, w_shape, stride, padding, dilation, groups):
    """dw (R, S, C, K) float32 for tensor-core operands (as conv2d_wgrad_tensor_op takes them): on sm_90 (or in the
    emulator) the sm_90a wgrad (conv2d_wgrad_sm90.py) where sm90_wgrad_route and its can_implement agree, everything
    else conv2d_wgrad_tensor_op (mma.sync). Both sum their split-k in a fixed order. fastconv.explain says which and
    why. Knob: lx.sm90_conv_min_tiles."""
    x, dy = lx.c(x), lx.c(dy)
    _, y_shape = conv2d_problem(x.shape, w_shape, stride, padding, dilation, groups)
    missing = sm90a_unavailable(lx)
    route, why = sm90_wgrad_route(x.shape, w_shape, stride, padding, groups, x.dtype, lx.sm90_conv_min_tiles,
                                  dilation)
    if missing or tuple(dy.shape) != tuple(y_shape) or dy.dtype != x.dtype:
        route = "tensor_op"   # a misshapen or mistyped dy gets conv2d_wgrad_tensor_op's error
    elif route == "conv":
        ok, reason = conv2d_wgrad_sm90.conv2d_wgrad_sm90_can_implement(lx, x, dy, w_shape, stride, padding, dilation,
                                                                       groups)
        if ok:
            note(why + (" in the emulator" if lx.sm90_target() == "emulator" else ""))
            return conv2d_wgrad_sm90.conv2d_wgrad_sm90(lx, x, dy, w_shape, stride, padding, dilation)
        route, why = "tensor_op", f"conv2d_wgrad_sm90 cannot run it: {reason}"
    note("mma.sync tensor-op wgrad instead of the sm_90a kernel: " + (missing or why))
    return conv2d_wgrad_tensor_op(lx, x, dy, w_shape, stride, padding, dilation, groups)


def _tensor_op_grad_reasons(lx, groups, c, k, vec, arrays, shapes):
    """Why a conv2d dgrad/wgrad (or the fused conv + pool) cannot run on tensor cores ([] when it can)."""
    reasons = []
    if groups != 1:
        reasons.append(f"groups={groups} (the tensor-core kernels take groups == 1)")
    if c % vec:
        reasons.append(f"C={c} is not a multiple of {vec}")
    if k % vec:
        reasons.append(f"K={k} is not a multiple of {vec}")
    if any(lx.ptr(a) % 16 for a in arrays):
        reasons.append("an operand is not 16-byte aligned")
    if needs_64bit_index(*shapes):
        reasons.append("a tensor has more than 2^31 - 1 elements")
    return reasons


def conv2d_dgrad_tensor_op(lx, dy, w, x_shape, stride, padding, dilation, groups, out_dtype=None):
    """conv2d_dgrad (dx = dy * w^T, NHWC, filter (R, S, C, K)) on tensor cores with fp32 accumulation
    when groups == 1, C and K multiples of 16 bytes of the operand type, dy and w 16-byte aligned;
    otherwise the CUDA-core fp32 dgrad on operands widened to float32 (same values). dy and w: float32
    (tf32), float16 or uint16 (bfloat16 bits); dx float32 (default) or the operand dtype. Stride > 1 runs
    conv2d_dgrad_strided_tensor_op: the sh*sw stride phases in one launch, each over only its own taps."""
    dy, w = lx.c(dy), lx.c(w)
    dt, out = tensor_op_types(dy.dtype, out_dtype)
    if w.dtype != dt:
        raise TypeError(f"dy is {dt} but w is {w.dtype}")
    pb, y_shape = conv2d_problem(x_shape, w.shape, stride, padding, dilation, groups)
    if tuple(dy.shape) != tuple(y_shape):
        raise ValueError(f"dy has shape {tuple(dy.shape)}, expected {y_shape}")
    ct, prefix = TENSOR_OP_TYPES[dt]
    out_ct = "float" if out == np.float32 else ct
    n, h, wd, c = (int(v) for v in x_shape)
    k = int(w.shape[3])
    vec = 16 // dt.itemsize
    reasons = _tensor_op_grad_reasons(lx, groups, c, k, vec, (dy, w), (x_shape, w.shape, y_shape))
    name = tensor_op_name("conv2d_dgrad_tensor_op", prefix, "Tile64", vec, out_ct)
    if name is None:
        reasons.append(f"no tensor-core dgrad instantiation for {prefix} with {out_ct} output")
    if reasons:
        note("CUDA-core conv2d_dgrad (fp32) instead of tensor cores: " + "; ".join(reasons))
        dx = conv2d_dgrad(lx, widen(lx.xp, dy), widen(lx.xp, w), x_shape, stride, padding, dilation, groups)
        return narrow(lx.xp, dx, out)
    sh, sw = (int(v) for v in stride)
    phases = sh * sw
    if phases > 1:   # csrc/conv/conv2d_dgrad_phase.h: each stride phase a dense GEMM over its own taps
        name = tensor_op_name("conv2d_dgrad_strided_tensor_op", prefix, "Tile64", vec, out_ct)
        note(f"tensor-core implicit GEMM dgrad, stride-phase decomposition: {sh}x{sw} = {phases} phases in one "
             "launch, each over only the taps that reach it (no taps masked by the stride)")
    else:
        note("tensor-core implicit GEMM dgrad: groups == 1, C and K multiples of 16 bytes, pointers aligned")
    dx = lx.xp.empty((n, h, wd, c), out)
    if dx.size == 0:
        return dx
    if dy.size == 0 or w.size == 0:
        dx[...] = 0
        return dx
    bm, bn, threads = TENSOR_OP_TILES["Tile64"]
    rows = n * ceil_div(h, sh) * ceil_div(wd, sw)   # phase (0, 0), the largest
    lx.launch(name, lx.tile_grid(ceil_div(rows, bm), ceil_div(c, bn), phases), (threads,), (pb, dy, w, dx))
    return dx


def conv2d_wgrad_tensor_op(lx, x, dy, w_shape, stride, padding, dilation, groups):
    """conv2d_wgrad (dw = x^T * dy, NHWC, dw (R, S, C, K) float32) on tensor cores with fp32 accumulation
    and a deterministic split-k (fixed-order reduction) when groups == 1, C and K multiples of 16 bytes
    of the operand type, x and dy 16-byte aligned; otherwise the CUDA-core fp32 wgrad on operands widened
    to float32 (same values). x and dy: float32 (tf32), float16 or uint16 (bfloat16 bits).
    Knob: force_splits."""
    x, dy = lx.c(x), lx.c(dy)
    dt, _ = tensor_op_types(x.dtype, None)
    if dy.dtype != dt:
        raise TypeError(f"x is {dt} but dy is {dy.dtype}")
    pb, y_shape = conv2d_problem(x.shape, w_shape, stride, padding, dilation, groups)
    if tuple(dy.shape) != tuple(y_shape):
        raise ValueError(f"dy has shape {tuple(dy.shape)}, expected {y_shape}")
    _, prefix = TENSOR_OP_TYPES[dt]
    r, s, cg, k = (int(v) for v in w_shape)
    c = int(x.shape[3])
    vec = 16 // dt.itemsize
    reasons = _tensor_op_grad_reasons(lx, groups, c, k, vec, (x, dy), (x.shape, w_shape, y_shape))
    name = tensor_op_name("conv2d_wgrad_tensor_op", prefix, "Tile64", vec)
    if name is None:
        reasons.append(f"no tensor-core wgrad instantiation for {prefix}")
    if reasons:
        note("CUDA-core conv2d_wgrad (fp32) instead of tensor cores: " + "; ".join(reasons))
        return conv2d_wgrad(lx, widen(lx.xp, x), widen(lx.xp, dy), w_shape, stride, padding, dilation,
                            groups)
    n, p, q, _ = y_shape
    kdim, rows = n * p * q, r * s * c
    dw = lx.xp.empty((r, s, c, k), np.float32)
    if dw.size == 0:
        return dw
    if kdim == 0:
        dw[...] = 0
        return dw
    bk = 16 if dt == np.float32 else 32   # Tile64's BK: 64 bytes of each row (gemm/gemm_tensor_op_sm80.h)
    splits, k_per_split = tensor_op_splits(rows, k, kdim, "Tile64", bk, lx.force_splits)
    note(f"tensor-core implicit GEMM wgrad: {rows} x {k} x {kdim}, {splits} split(s) of {k_per_split}, "
         "summed in a fixed order")
    out = dw if splits == 1 else lx.xp.empty((splits, rows, k), np.float32)
    bm, bn, threads = TENSOR_OP_TILES["Tile64"]
    lx.launch(name, lx.tile_grid(ceil_div(rows, bm), ceil_div(k, bn), splits), (threads,),
              (pb, x, dy, out, np.int32(k_per_split)))
    if splits > 1:
        lx.run1d(kernel_name("split_k_reduce", t="float"), dw.size, (out, dw, np.int32(splits), np.int64(dw.size)))
    return dw


def conv2d_bias_relu_maxpool_fprop(lx, x, w, b, stride=(1, 1), padding=VALID, dilation=(1, 1), groups=1,
                                   pool=(2, 2), pool_stride=(2, 2), pool_padding=VALID, precision=None):
    """-> (y, argmax) of max_pool2d(relu(conv2d(x, w) + b), pool, pool_stride, pool_padding); b may be
    None. The full-resolution conv output is never written. Under a reduced precision the operands are cast
    (conv2d_fprop's rule) and conv2d_bias_relu_maxpool_tensor_op runs them, y float32 as the unfused chain's."""
    kind = check_fusable_pool(pool, pool_stride, pool_padding)
    x, w = lx.c(x), lx.c(w)
    if reduced(lx, precision, x, w):
        note(f"precision {precision}: conv2d_bias_relu_maxpool operands cast to {precision}, fp32 accumulation")
        return conv2d_bias_relu_maxpool_tensor_op(lx, to_compute(lx, x, precision), to_compute(lx, w, precision), b,
                                                  stride, padding, dilation, groups, pool, pool_stride, pool_padding)
    pb, (n, p, q, k) = conv2d_problem(x.shape, w.shape, stride, padding, dilation, groups)
    ppb, y_shape = pool2d_problem((n, p, q, k), pool, pool_stride, pool_padding)   # the pool's own checks
    y = lx.xp.empty(y_shape, x.dtype)
    argmax = lx.xp.empty(y_shape, np.uint8)
    if y.size == 0:
        return y, argmax
    t = ctype(x.dtype)
    bias = lx.c(b) if b is not None else w    # w: a placeholder the kernel never reads
    cg, kg = w.shape[2], k // groups
    pp, qq = y_shape[1:3]
    if kind == "2x2":
        m = n * pp * qq * 4                      # GEMM rows: the 4 taps of every pool window
    else:
        m = n * 4 * pp * qq                      # conv outputs the windows need (about): picks the tile
    tile, vec, index = gemm_config(lx, x.dtype, m, kg, (x.shape[3], cg, k, kg), (lx.ptr(x), lx.ptr(w)),
                                   (x.shape, w.shape, (n, p, q, k)), groups)
    bm, bn, _, threads = TILES[tile]
    if kind == "2x2":
        lx.launch(kernel_name("conv2d_bias_relu_maxpool2x2_fprop", tile=tile, vec=vec, index=index, t=t),
                  lx.tile_grid(ceil_div(m, bm), ceil_div(kg, bn), groups), (threads,),
                  (pb, x, w, bias, np.int32(b is not None), y, argmax))
        return y, argmax
    if tile == "TileLarge":
        tile = "TileMedium"
        bm, bn, _, threads = TILES[tile]
        note("3x3/2 pool: TileMedium instead of TileLarge (a 128 x 128 conv patch exceeds static shared memory)")
    tp, tq = PATCH_3X3S2[tile]
    blocks = n * ceil_div(pp, tp) * ceil_div(qq, tq)
    if index == "int" and blocks * bm > 2**31 - 1:   # GEMM rows count the patches' halo and padding too
        tile, index = "TileMedium", "int64_t"
        bm, bn, _, threads = TILES[tile]
        tp, tq = PATCH_3X3S2[tile]
        blocks = n * ceil_div(pp, tp) * ceil_div(qq, tq)
        note("64-bit index arithmetic: the 3x3/2 patches' GEMM rows exceed 2^31 - 1")
    note(f"3x3/2 pool fused: each block pools {tp} x {tq} windows from a {2 * tp + 1} x {2 * tq + 1} conv "
         f"patch in shared memory ({bm / (4 * tp * tq):.2f}x the conv FLOPs)")
    lx.launch(kernel_name("conv2d_bias_relu_maxpool3x3s2_fprop", tile=tile, vec=vec, index=index, t=t),
              lx.tile_grid(blocks, ceil_div(kg, bn), groups), (threads,),
              (pb, ppb, x, w, bias, np.int32(b is not None), y, argmax))
    return y, argmax


def conv2d_bias_relu_maxpool_tensor_op(lx, x, w, b, stride=(1, 1), padding=VALID, dilation=(1, 1), groups=1,
                                       pool=(2, 2), pool_stride=(2, 2), pool_padding=VALID, out_dtype=None):
    """conv2d_bias_relu_maxpool_fprop for tensor-core operands (as conv2d_fprop_tensor_op takes them; b float32):
    the mma.sync kernel for a 2x2/2 pool when groups == 1, C % 8 == 0, K % 8 == 0 and x, w 16-byte aligned,
    y float32 or the operand dtype (then each conv value is cast before the max, as the unfused chain does).
    Otherwise the same values unfused-equivalently: float32 y from the CUDA-core fused kernel on the widened
    operands; operand-dtype y from conv2d_fprop_tensor_op (bias, ReLU, cast) and max_pool2d."""
    x, w = lx.c(x), lx.c(w)
    dt, out = tensor_op_types(x.dtype, out_dtype)
    if w.dtype != dt:
        raise TypeError(f"x is {dt} but w is {w.dtype}")
    kind = check_fusable_pool(pool, pool_stride, pool_padding)
    pb, conv_shape = conv2d_problem(x.shape, w.shape, stride, padding, dilation, groups)
    _, y_shape = pool2d_problem(conv_shape, pool, pool_stride, pool_padding)
    ct, prefix = TENSOR_OP_TYPES[dt]
    c, k = int(x.shape[3]), int(w.shape[3])
    reasons = [] if kind == "2x2" else ["a 3x3/2 pool (overlapping windows need the conv tile in shared memory, "
                                        "which the tensor-core pipeline's stages hold)"]
    reasons += _tensor_op_grad_reasons(lx, groups, c, k, 8, (x, w), (x.shape, w.shape, conv_shape))
    out_ct = "float" if out == np.float32 else ct
    name = tensor_op_name("conv2d_bias_relu_maxpool2x2_tensor_op", prefix, "Tile64", 8, out_ct)
    if name is None:
        reasons.append(f"no tensor-core instantiation for {prefix}")
    bias = lx.c(b).astype(np.float32, copy=False) if b is not None else None
    if reasons and out == np.float32:
        note("CUDA-core fused conv2d + ReLU + max-pool (fp32) on the widened operands instead of tensor cores: "
             + "; ".join(reasons))
        return conv2d_bias_relu_maxpool_fprop(lx, widen(lx.xp, x), widen(lx.xp, w), bias, stride, padding,
                                              dilation, groups, pool, pool_stride, pool_padding)
    if reasons:
        note("conv2d + ReLU + max-pool unfused (the tensor-core conv, then max_pool2d): " + "; ".join(reasons))
        z = conv2d_fprop_tensor_op(lx, x, w, stride, padding, dilation, groups, bias, "relu", out_dtype=out)
        y, argmax = max_pool2d_fprop(lx, widen(lx.xp, z), pool, pool_stride, pool_padding)
        return narrow(lx.xp, y, out), argmax
    note("tensor-core fused conv2d + bias + ReLU + 2x2 max-pool: groups == 1, C and K multiples of 8, pointers "
         "aligned")
    y, argmax = lx.xp.empty(y_shape, out), lx.xp.empty(y_shape, np.uint8)
    if y.size == 0:
        return y, argmax
    bm, bn, threads = TENSOR_OP_TILES["Tile64"]
    rows = 32 * ceil_div(y.size // k, 8)   # csrc/conv/conv2d_bias_relu_maxpool_tensor_op_sm80.h: 8 windows x 4 taps
    lx.launch(name, lx.tile_grid(ceil_div(rows, bm), ceil_div(k, bn)), (threads,),
              (pb, x, w, lx.xp.zeros((1,), np.float32) if bias is None else bias, np.int32(b is not None), y, argmax))
    return y, argmax


def relu_maxpool_bprop(lx, dy, argmax, y, conv_shape, pool=(2, 2), pool_stride=(2, 2), pool_padding=VALID):
    """-> (dz, db): the conv output gradient from the pooled gradient (max-pool backward and the
    ReLU mask, recovered from the pooled y, in one pass) and the bias gradient (its column sums,
    reduced in the same pass in a fixed order)."""
    kind = check_fusable_pool(pool, pool_stride, pool_padding)
    dy, argmax, y = lx.c(dy), lx.c(argmax), lx.c(y)
    n, p, q, k = (int(v) for v in conv_shape)
    ppb, y_shape = pool2d_problem((n, p, q, k), pool, pool_stride, pool_padding)
    if tuple(dy.shape) != y_shape or tuple(argmax.shape) != y_shape or argmax.dtype != np.uint8:
        raise ValueError(f"dy {tuple(dy.shape)} / argmax {tuple(argmax.shape)} {argmax.dtype} do not fit conv "
                         f"output {tuple(conv_shape)} pooled to {y_shape} (argmax uint8)")
    t = ctype(dy.dtype)
    dz = lx.xp.empty((n, p, q, k), dy.dtype)
    db = lx.xp.empty((k,), dy.dtype)
    rows = n * y_shape[1] * y_shape[2] if kind == "2x2" else n * p * q   # windows / conv positions
    if rows == 0 or k == 0:
        dz[...] = 0
        db[...] = 0
        return dz, db
    splits = lx.force_splits or choose_row_splits(rows)
    per_split = ceil_div(rows, splits)
    splits = ceil_div(rows, per_split)
    partial = db if splits == 1 else lx.xp.empty((splits, k), dy.dtype)
    if kind == "2x2":
        lx.launch(kernel_name("relu_maxpool2x2_bprop", t=t), (ceil_div(k, 32), splits), (32, 8),
                  (np.int32(n), np.int32(p), np.int32(q), np.int32(k), dy, argmax, y, dz, partial,
                   np.int64(per_split)))
    else:
        lx.launch(kernel_name("relu_maxpool_bprop", t=t, arg="uint8_t"), (ceil_div(k, 32), splits), (32, 8),
                  (ppb, dy, argmax, y, dz, partial, np.int64(per_split)))
    if splits > 1:
        column_finalize(lx, partial, splits, k, ColumnFinal.SUM, rows, 0.0, db)
    return dz, db
