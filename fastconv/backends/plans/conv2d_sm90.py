"""Launch plan of the sm_90a conv2d fprop (csrc/conv/conv2d_fprop_wgmma_sm90.h: implicit GEMM on wgmma, the
activation tile of each filter tap loaded by a 4-D TMA box with element strides and zero fill, the filter
by a 3-D box). Plain functions over the Launcher (launcher.py); routing (when to call this rather than
mma.sync) is conv2d.py's conv2d_fprop_tensor_core.

    conv2d_fprop_sm90_can_implement(lx, x, w, stride, padding, dilation, groups=1, out_dtype=None)
        -> (True, what) or (False, why not)
    conv2d_fprop_sm90(lx, x, w, stride, padding, dilation, bias=None, activation=None, out_dtype=None,
                      alpha=0.0, residual=None, w_layout="rsck", bn=None, bm=None) -> y (N, P, Q, K)
    choose_tile(n, p, q, k, stride, ct) -> (bm, bn, why): the tile rule, where neither a knob nor the
        tuning file (op "conv2d_fprop_sm90", written by `fastconv tune --dtype bfloat16`) says otherwise
"""
from __future__ import annotations

import numpy as np

from ...explain import note
from .. import kernel_table, tuning
from ...shapes import resolve_padding
from .common import ACTIVATIONS, SM90_SMS, ceil_div, conv2d_problem
from .tensor_op import tensor_op_residual
from .gemm import WGMMA_BK, WGMMA_STAGES, WGMMA_TYPES, sm90a_unavailable, wgmma_shared_bytes, wgmma_threads
from .tensor_map import TMA_SWIZZLE_128B, as_struct, encode_tensor_map_cuda, encode_tensor_map_emulated

CONV_SM90_MAX_STRIDE = 8      # TMA element strides are 1..8
TMA_MAX_BOX = 256             # elements per box dimension
# struct fc::ConvPixelTile (csrc/conv/conv2d_fprop_wgmma_sm90.h)
CONV_PIXEL_TILE_DTYPE = np.dtype([("tq", "<i4"), ("tp", "<i4"), ("tn", "<i4")])
TUNING_DTYPES = {"__nv_bfloat16": "bfloat16", "__half": "float16"}   # the tuning file's names


def sm90_conv_tiles(ct):
    """The (BM, BN) tiles instantiated for operand type ct (kernel_table.SM90_CONV_TILES): BN 256 is bf16 only."""
    return tuple((bm, bn) for bm, bn in kernel_table.SM90_CONV_TILES if bn <= 128 or ct == "__nv_bfloat16")
# struct fc::ConvOutputView: output pixel (n, p, q) lands at (n, off_h + stride_h*p, off_w + stride_w*q) of (N, h, w, K)
CONV_OUTPUT_VIEW_DTYPE = np.dtype([(f, "<i4") for f in ("h", "w", "stride_h", "stride_w", "off_h", "off_w")])


def conv2d_fprop_sm90_kernel_names() -> list[str]:
    """The sm_90a conv fprop instantiations: a view of fastconv/backends/kernel_table.py."""
    return kernel_table.kernel_names(headers=("conv/conv2d_fprop_wgmma_sm90.h",))


def pixel_tile(n, p, q, stride, rows=128):
    """(TQ, TP, TN), powers of two with TQ * TP * TN = rows (BM): the output-pixel box of one tile that covers
    N x P x Q with the fewest tiles (the least work on pixels outside the output), then the widest rows
    (the longest contiguous reads). The TMA box spans TQ * stride_w input columns and TP * stride_h rows,
    at most 256 each."""
    best = None
    bits = rows.bit_length() - 1
    for lq in range(bits + 1):
        for lp in range(bits + 1 - lq):
            tq, tp = 1 << lq, 1 << lp
            tn = rows // (tq * tp)
            if tq * stride[1] > TMA_MAX_BOX or tp * stride[0] > TMA_MAX_BOX:
                continue
            key = (ceil_div(q, tq) * ceil_div(p, tp) * ceil_div(n, tn), -tq)
            if best is None or key < best[0]:
                best = (key, (tq, tp, tn))
    return best[1]


def conv_tiles(n, p, q, k, stride, bm, bn):
    """The CTAs of a BM x BN tiling: pixel boxes (pixel_tile) times filter tiles."""
    tq, tp, tn = pixel_tile(n, p, q, stride, bm)
    return ceil_div(q, tq) * ceil_div(p, tp) * ceil_div(n, tn) * ceil_div(k, bn)


def choose_tile(n, p, q, k, stride, ct):
    """(bm, bn, why): the largest tile whose CTAs occupy at least half of the 132 SMs, of 128x256 (bf16, K >= 256),
    128x128 and 64x128 (64x64 when K <= 64), else the smallest. Why: a 64-row or 128-wide tile loads more bytes
    per FLOP, and the K-loop is modelled as L2-bound once most SMs run, so smaller tiles pay only where larger
    ones leave SMs idle (scripts/predict_sm90_convs.py; benchmarks/NOTES.md, 2026-12-03 hoptile)."""
    ladder = [(bm, bn) for bm, bn in ((128, 256), (128, 128), (64, 64 if k <= 64 else 128))
              if (bm, bn) in sm90_conv_tiles(ct) and (bn < 256 or k >= 256)]
    skipped = []
    for bm, bn in ladder:
        tiles = conv_tiles(n, p, q, k, stride, bm, bn)
        if 2 * tiles >= SM90_SMS:
            return bm, bn, (f"{tiles} tiles of {bm}x{bn} occupy at least half of the {SM90_SMS} SMs"
                            + (f" ({', '.join(skipped)} would not)" if skipped else ""))
        skipped.append(f"{tiles} of {bm}x{bn}")
    return bm, bn, f"{', '.join(skipped)}: under half of the {SM90_SMS} SMs each; the smallest tile"


def _tile(lx, pb, y_shape, stride, ct, rsck, pad, dilation, bm, bn):
    """(bm, bn, why): the arguments, else the knob lx.force_sm90_conv_tile, else the tuning file, else choose_tile."""
    n, p, q, k = y_shape
    tiles = sm90_conv_tiles(ct)
    if bm or bn or lx.force_sm90_conv_tile:
        bm, bn = (bm or 128, bn or 128) if bm or bn else tuple(lx.force_sm90_conv_tile)
        if (bm, bn) not in tiles:
            raise ValueError(f"conv2d_fprop_sm90: tile {bm}x{bn} (bm x bn); {ct} operands have {tiles}")
        return bm, bn, "tile forced"
    tuned = lx.tuned("conv2d_fprop_sm90", TUNING_DTYPES[ct], lambda: tuning.conv_problem(
        (n, int(pb["H"]), int(pb["W"]), int(pb["C"])), rsck, stride, pad, dilation, 1))
    name = tuned and tuned.tile([f"{m}x{b}" for m, b in tiles])
    if name:
        return (*(int(v) for v in name.split("x")), "tile from the tuning file")
    return choose_tile(n, p, q, k, stride, ct)


def output_view(hw, stride=(1, 1), offset=(0, 0)):
    """The kernel's ConvOutputView: y (N, *hw, K), the output pixel (p, q) at offset + stride * (p, q)."""
    return np.array([(*hw, *stride, *offset)], CONV_OUTPUT_VIEW_DTYPE)[0]


def tensor_maps(lx, x, wt, tile, stride, bn):
    """The kernel's TMA maps as launch structs: NHWC x as (C, W, H, N) in boxes of 64 channels by the
    (TQ, TP, TN) pixel tile (every stride-th pixel), KRSC wt as (C, R*S, K) in boxes of 64 channels x 1 tap x bn."""
    (n, h, wd, c), (k, r, s) = x.shape, wt.shape[:3]
    tq, tp, tn = tile
    e = x.dtype.itemsize
    # strides in bytes of dims 1..
    x_map = dict(dims=(c, wd, h, n), row_stride=(c * e, wd * c * e, h * wd * c * e),
                 box=(WGMMA_BK, tq * stride[1], tp * stride[0], tn), swizzle=TMA_SWIZZLE_128B,
                 elem_strides=(1, stride[1], stride[0], 1))
    w_map = dict(dims=(c, r * s, k), row_stride=(c * e, r * s * c * e), box=(WGMMA_BK, 1, bn), swizzle=TMA_SWIZZLE_128B)
    if lx.sm90_target() == "emulator":
        return as_struct(encode_tensor_map_emulated(0, e, **x_map)), as_struct(encode_tensor_map_emulated(1, e, **w_map))
    return (as_struct(encode_tensor_map_cuda(lx.ptr(x), x.dtype, **x_map)),    # pragma: no cover - GPU machines only
            as_struct(encode_tensor_map_cuda(lx.ptr(wt), x.dtype, **w_map)))


def _problem(x, w, stride, padding, dilation, groups, w_layout):
    if w_layout not in ("rsck", "krsc"):
        raise ValueError(f"conv2d_fprop_sm90: w_layout must be 'rsck' (Keras (R, S, C, K)) or 'krsc', got {w_layout!r}")
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d_fprop_sm90: x is {x.shape} and w is {w.shape}; expected NHWC x and a 4-D filter")
    rsck = tuple(w.shape) if w_layout == "rsck" else (w.shape[1], w.shape[2], w.shape[3], w.shape[0])
    stride, dilation = tuple(int(v) for v in stride), tuple(int(v) for v in dilation)
    pad = resolve_padding(padding, x.shape[1:3], rsck[:2], stride, dilation)
    pb, y_shape = conv2d_problem(x.shape, rsck, stride, pad, dilation, groups)
    return pb, y_shape, stride, rsck, pad, dilation


def tma_conv_reasons(lx, x, other, name, pb, channels, groups, stride, out_dtype=None) -> list[str]:
    """Why the sm_90a convs (fprop, wgrad) cannot take x and `other` (named `name`): 16-bit operands of one dtype
    (and an output float32 or that dtype), groups 1, the `channels` of pb multiples of 8 (TMA strides are multiples
    of 16 bytes), strides <= 8 (TMA element strides), 16-byte aligned addresses. [] when they can."""
    reasons = []
    if np.dtype(x.dtype) not in WGMMA_TYPES:
        reasons.append(f"x is {np.dtype(x.dtype)}; the kernel takes float16 or bfloat16 (uint16 bits)")
    elif other.dtype != x.dtype:
        reasons.append(f"x is {x.dtype} but {name} is {other.dtype}")
    elif out_dtype is not None and np.dtype(out_dtype) not in (np.dtype(np.float32), np.dtype(x.dtype)):
        reasons.append(f"output {np.dtype(out_dtype)} is neither float32 nor the operand type {np.dtype(x.dtype)}")
    if groups != 1:
        reasons.append(f"groups={groups} (the kernel takes groups == 1)")
    for ch in channels:
        if pb[ch] % 8:
            reasons.append(f"{ch}={int(pb[ch])} is not a multiple of 8 (TMA strides must be multiples of 16 bytes)")
    if max(stride) > CONV_SM90_MAX_STRIDE:
        reasons.append(f"stride {stride} exceeds {CONV_SM90_MAX_STRIDE} (the TMA element-stride limit)")
    if lx.ptr(x) % 16 or lx.ptr(other) % 16:
        reasons.append(f"x or {name} is not 16-byte aligned (a TMA global address must be)")
    return reasons


def conv2d_fprop_sm90_can_implement(lx, x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1),
                                    groups=1, out_dtype=None, w_layout="rsck"):
    """(True, what) when conv2d_fprop_sm90 can run this problem here, else (False, why not): an sm_90 GPU
    with sm_90a code and a tensor-map encoder, or the emulator; x and w float16 or bfloat16 (uint16 bits) of
    one dtype; output float32 or that dtype; groups 1; C % 8 == 0 (TMA strides are multiples of 16 bytes);
    strides <= 8 (TMA element strides); x and w 16-byte aligned (TMA global addresses). Any padding and
    dilation. Bad arguments (shapes that do not fit) raise instead."""
    pb, _, stride, *_ = _problem(x, w, stride, padding, dilation, groups, w_layout)
    missing = sm90a_unavailable(lx)
    if missing:
        return False, missing
    reasons = tma_conv_reasons(lx, x, w, "w", pb, ("C",), groups, stride, out_dtype)
    if reasons:
        return False, "; ".join(reasons)
    return True, ("sm_90a wgmma conv2d fprop (TMA boxes per filter tap, 4 stages, warp-specialized)" +
                  (" in the emulator" if lx.sm90_target() == "emulator" else ""))


def conv2d_fprop_sm90(lx, x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), bias=None,
                      activation=None, out_dtype=None, alpha=0.0, residual=None, w_layout="rsck", bn=None, bm=None):
    """y = act(conv2d(x, w) + bias + residual) on the sm_90a kernel: x NHWC, w (R, S, C, K) (w_layout 'rsck',
    copied once into KRSC) or already (K, R, S, C) ('krsc', no copy), float16 or uint16 (bfloat16 bits); bias
    float32 (K,); residual shaped as y, float32 or the operand dtype (read in y's dtype, as the mma.sync conv
    does); y (N, P, Q, K) float32 (default) or the operand dtype. padding: anything
    fastconv.shapes.resolve_padding takes. bm x bn: the tile (sm90_conv_tiles; either given, the other
    defaults to 128); default the knob lx.force_sm90_conv_tile, the tuning file's, else choose_tile's.
    Raises ValueError when conv2d_fprop_sm90_can_implement says no."""
    x, w = lx.c(x), lx.c(w)
    ok, why = conv2d_fprop_sm90_can_implement(lx, x, w, stride, padding, dilation, 1, out_dtype, w_layout)
    if not ok:
        raise ValueError(f"conv2d_fprop_sm90 cannot run this problem: {why}")
    pb, y_shape, stride, rsck, pad, dilation = _problem(x, w, stride, padding, dilation, 1, w_layout)
    out = np.dtype(np.float32 if out_dtype is None else out_dtype)
    n, p, q, k = y_shape
    if bias is not None and tuple(bias.shape) != (k,):
        raise ValueError(f"conv2d_fprop_sm90: bias has shape {tuple(bias.shape)}; expected ({k},), one per filter")
    if activation not in ACTIVATIONS:
        raise ValueError(f"conv2d_fprop_sm90: activation {activation!r} is not one of {sorted(map(str, ACTIVATIONS))}")
    res, has_res = tensor_op_residual(lx, residual, y_shape, x.dtype, out)
    ct = WGMMA_TYPES[x.dtype]
    bm, bn, tile_why = _tile(lx, pb, y_shape, stride, ct, rsck, pad, dilation, bm, bn)
    tq, tp, tn = pixel_tile(n, p, q, stride, bm)
    note(f"{why}: tile {bm}x{bn} ({tile_why}): boxes of {tq}x{tp}x{tn} output pixels (Q x P x N) by {bn} filters")
    y = lx.xp.empty(y_shape, out)
    if y.size == 0:
        return y
    wt = w if w_layout == "krsc" else lx.c(w.transpose(3, 0, 1, 2))   # KRSC: filters K-major
    map_x, map_w = tensor_maps(lx, x, wt, (tq, tp, tn), stride, bn)
    pt = np.array([(tq, tp, tn)], CONV_PIXEL_TILE_DTYPE)[0]
    bias_arr = lx.c(bias).astype(np.float32, copy=False) if bias is not None else lx.xp.zeros((1,), np.float32)
    name = kernel_table.kernel_name("conv2d_fprop_wgmma_sm90", bn=bn, stages=WGMMA_STAGES, bm=bm, t=ct,
                                    out="float" if out == np.float32 else ct)
    m_tiles = ceil_div(q, tq) * ceil_div(p, tp) * ceil_div(n, tn)
    lx.launch(name, lx.tile_grid(ceil_div(k, bn), m_tiles), (wgmma_threads(bm),),
              (x, wt, map_x, map_w, y, pb, pt, output_view((p, q)), bias_arr, np.int32(bias is not None),
               np.int32(ACTIVATIONS[activation]), np.float32(alpha), res, np.int32(has_res)),
              shared_bytes=wgmma_shared_bytes(bn, bm))
    return y
