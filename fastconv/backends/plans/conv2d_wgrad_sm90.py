"""Launch plan of the sm_90a conv2d wgrad (csrc/conv/conv2d_wgrad_wgmma_sm90.h: per tap a GEMM of C channels by K
filters reduced over the output pixels, both operands loaded by the fprop's 4-D TMA pixel boxes and read by wgmma
MN-major), split over the pixel tiles in a fixed order and summed by split_k_reduce, so results are bitwise
deterministic. Routing (when to call this rather than mma.sync) is conv2d.py's conv2d_wgrad_tensor_core.

    conv2d_wgrad_sm90_can_implement(lx, x, dy, w_shape, stride, padding, dilation, groups=1)
        -> (True, what) or (False, why not)
    conv2d_wgrad_sm90(lx, x, dy, w_shape, stride, padding, dilation, splits=None) -> dw (R, S, C, K) float32
"""
from __future__ import annotations

import numpy as np

from ...explain import note
from .. import kernel_table
from ...shapes import resolve_padding
from .common import TARGET_BLOCKS, ceil_div, conv2d_problem
from .conv2d_sm90 import CONV_PIXEL_TILE_DTYPE, pixel_tile, tma_conv_reasons
from .gemm import WGMMA_TYPES, sm90a_unavailable
from .tensor_map import TMA_SWIZZLE_128B, as_struct, encode_tensor_map_cuda, encode_tensor_map_emulated

# Mirrors fc::WgradWgmmaTile<4> (csrc/conv/conv2d_wgrad_wgmma_sm90.h): channels x filters x pixels per k-tile.
WGRAD_SM90_BM, WGRAD_SM90_BN, WGRAD_SM90_PIXELS, WGRAD_SM90_STAGES, WGRAD_SM90_BOX = 128, 128, 64, 4, 64
WGRAD_SM90_THREADS = 384
WGRAD_SM90_SHARED = WGRAD_SM90_STAGES * (WGRAD_SM90_BM + WGRAD_SM90_BN) * WGRAD_SM90_PIXELS * 2 + 1024


def conv2d_wgrad_sm90_kernel_names() -> list[str]:
    """The sm_90a conv wgrad instantiations (bf16, fp16): a view of fastconv/backends/kernel_table.py."""
    return kernel_table.kernel_names(headers=("conv/conv2d_wgrad_wgmma_sm90.h",))


def wgrad_sm90_splits(output_tiles, pixel_tiles, force=None):
    """(splits, pixel tiles per split) from the shape alone, so a shape always sums in one order: as many CTAs as
    fit 2 waves of 132 SMs (TARGET_BLOCKS; rounding up would start a third wave of a few CTAs), each split at least
    4 pixel tiles (the 4-stage ring full). The fp32 workspace is then at most TARGET_BLOCKS tiles of 128 x 128
    (17 MB), read once more by split_k_reduce."""
    want = force or max(1, min(TARGET_BLOCKS // output_tiles, pixel_tiles // 4))
    per = ceil_div(pixel_tiles, max(1, min(int(want), pixel_tiles)))
    return ceil_div(pixel_tiles, per), per


def _problem(x, dy, w_shape, stride, padding, dilation, groups):
    if x.ndim != 4 or dy.ndim != 4 or len(w_shape) != 4:
        raise ValueError(f"conv2d_wgrad_sm90: x is {x.shape}, dy {dy.shape}, w_shape {tuple(w_shape)}; expected NHWC "
                         "x and dy and an (R, S, C, K) filter shape")
    stride, dilation = tuple(int(v) for v in stride), tuple(int(v) for v in dilation)
    pad = resolve_padding(padding, x.shape[1:3], tuple(w_shape[:2]), stride, dilation)
    pb, y_shape = conv2d_problem(x.shape, tuple(int(v) for v in w_shape), stride, pad, dilation, groups)
    if tuple(dy.shape) != tuple(y_shape):
        raise ValueError(f"conv2d_wgrad_sm90: dy has shape {tuple(dy.shape)}, expected {y_shape}")
    return pb, y_shape, stride


def conv2d_wgrad_sm90_can_implement(lx, x, dy, w_shape, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1),
                                    groups=1):
    """(True, what) when conv2d_wgrad_sm90 can run this problem here, else (False, why not): an sm_90 GPU with
    sm_90a code, or the emulator; x and dy float16 or bfloat16 (uint16 bits) of one dtype; groups 1; C and K
    multiples of 8 (TMA strides are multiples of 16 bytes); strides <= 8 (TMA element strides); x and dy 16-byte
    aligned. Any padding and dilation. Bad arguments (shapes that do not fit) raise instead."""
    pb, _, stride = _problem(x, dy, w_shape, stride, padding, dilation, groups)
    missing = sm90a_unavailable(lx)
    if missing:
        return False, missing
    reasons = tma_conv_reasons(lx, x, dy, "dy", pb, ("C", "K"), groups, stride)
    if reasons:
        return False, "; ".join(reasons)
    return True, ("sm_90a wgmma conv2d wgrad (TMA pixel boxes per filter tap, MN-major operands, fixed-order split-k)"
                  + (" in the emulator" if lx.sm90_target() == "emulator" else ""))


def conv2d_wgrad_sm90(lx, x, dy, w_shape, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), splits=None):
    """dw (R, S, C, K) float32 of y = conv2d(x, w) from x NHWC and dy (N, P, Q, K), float16 or uint16 (bfloat16
    bits). padding: anything fastconv.shapes.resolve_padding takes. splits: the split-k over pixel tiles (default
    wgrad_sm90_splits; lx.force_splits also forces it). Raises ValueError when can_implement says no."""
    x, dy = lx.c(x), lx.c(dy)
    ok, why = conv2d_wgrad_sm90_can_implement(lx, x, dy, w_shape, stride, padding, dilation, 1)
    if not ok:
        raise ValueError(f"conv2d_wgrad_sm90 cannot run this problem: {why}")
    pb, (n, p, q, k), stride = _problem(x, dy, w_shape, stride, padding, dilation, 1)
    r, s, c = int(pb["R"]), int(pb["S"]), int(pb["C"])
    if splits is not None and not (isinstance(splits, (int, np.integer)) and splits >= 1):
        raise ValueError(f"conv2d_wgrad_sm90: splits must be a positive integer, got {splits!r}")
    dw = lx.xp.empty((r, s, c, k), np.float32)
    if dw.size == 0:
        return dw
    tq, tp, tn = pixel_tile(n, p, q, stride, WGRAD_SM90_PIXELS)
    pixel_tiles = ceil_div(q, tq) * ceil_div(p, tp) * ceil_div(n, tn)
    output_tiles = ceil_div(k, WGRAD_SM90_BN) * ceil_div(c, WGRAD_SM90_BM) * r * s
    splits, per = wgrad_sm90_splits(output_tiles, pixel_tiles, splits or lx.force_splits)
    note(f"{why}: {r * s} taps of {c} x {k} by {n * p * q} pixels in tiles of {tq}x{tp}x{tn} (Q x P x N), "
         f"{splits} split(s) of {per} pixel tiles, summed in a fixed order")
    out = dw if splits == 1 else lx.xp.empty((splits, r * s * c, k), np.float32)
    e = x.dtype.itemsize
    h, wd = int(pb["H"]), int(pb["W"])
    # x as (C, W, H, N) and dy as (K, Q, P, N), innermost first; strides in bytes of dims 1..
    x_map = dict(dims=(c, wd, h, n), row_stride=(c * e, wd * c * e, h * wd * c * e),
                 box=(WGRAD_SM90_BOX, tq * stride[1], tp * stride[0], tn), swizzle=TMA_SWIZZLE_128B,
                 elem_strides=(1, stride[1], stride[0], 1))
    dy_map = dict(dims=(k, q, p, n), row_stride=(k * e, q * k * e, p * q * k * e), box=(WGRAD_SM90_BOX, tq, tp, tn),
                  swizzle=TMA_SWIZZLE_128B)
    if lx.sm90_target() == "emulator":
        map_x, map_dy = encode_tensor_map_emulated(0, e, **x_map), encode_tensor_map_emulated(1, e, **dy_map)
    else:   # pragma: no cover - GPU machines only
        map_x = encode_tensor_map_cuda(lx.ptr(x), x.dtype, **x_map)
        map_dy = encode_tensor_map_cuda(lx.ptr(dy), x.dtype, **dy_map)
    pt = np.array([(tq, tp, tn)], CONV_PIXEL_TILE_DTYPE)[0]
    name = kernel_table.kernel_name("conv2d_wgrad_wgmma_sm90", stages=WGRAD_SM90_STAGES, t=WGMMA_TYPES[x.dtype])
    lx.launch(name, lx.tile_grid(ceil_div(k, WGRAD_SM90_BN), ceil_div(c, WGRAD_SM90_BM) * r * s, splits),
              (WGRAD_SM90_THREADS,), (x, dy, as_struct(map_x), as_struct(map_dy), out, pb, pt, np.int32(per)),
              shared_bytes=WGRAD_SM90_SHARED)
    if splits > 1:
        lx.run1d(kernel_table.kernel_name("split_k_reduce", t="float"), dw.size,
                 (out, dw, np.int32(splits), np.int64(dw.size)))
    return dw
