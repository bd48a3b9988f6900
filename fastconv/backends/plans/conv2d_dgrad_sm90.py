"""conv2d dgrad on the sm_90a conv (plans/conv2d_sm90.py) for stride 1: dx is the fprop of dy with the filter
turned by 180 degrees and its C and K swapped, padded by dilation * (R - 1) - pad on each side:

    dx[n, h, w, c] = sum_{r, s, k} dy[n, h + pad_t - r*d, w + pad_l - s*d, k] * w[r, s, c, k]
                   = sum_{r', s', k} dy[n, h + r'*d - (d*(R-1) - pad_t), ...] * w[R-1-r', S-1-s', c, k]

(the filter copy is (C, R, S, K) = w[::-1, ::-1] with C leading, which the fprop reads as KRSC). Strides > 1
need the stride-phase decomposition (dgrad_phase in the mma.sync plans), not yet on sm_90a: can_implement
says so and the caller falls back.
"""
from __future__ import annotations

from ...shapes import resolve_padding
from .conv2d_sm90 import conv2d_fprop_sm90, conv2d_fprop_sm90_can_implement


def _fprop_padding(w_shape, x_shape, stride, padding, dilation):
    r, s = w_shape[:2]
    (pt, pb), (pl, pr) = resolve_padding(padding, x_shape[1:3], (r, s), stride, dilation)
    eh, ew = dilation[0] * (r - 1), dilation[1] * (s - 1)
    return ((eh - pt, eh - pb), (ew - pl, ew - pr))


def conv2d_dgrad_sm90_can_implement(lx, dy, w, x_shape, stride=(1, 1), padding=((0, 0), (0, 0)),
                                    dilation=(1, 1), groups=1, out_dtype=None):
    """(True, what) when conv2d_dgrad_sm90 can run this problem here, else (False, why not): stride 1, padding
    at most dilation * (R - 1) per side, and the fprop's conditions on dy (K % 8 == 0, ...)."""
    stride, dilation = tuple(int(v) for v in stride), tuple(int(v) for v in dilation)
    if stride != (1, 1):
        return False, f"stride {stride}: dgrad on sm_90a takes stride 1 (no stride-phase decomposition yet)"
    pad = _fprop_padding(w.shape, x_shape, stride, padding, dilation)
    if min(min(p) for p in pad) < 0:
        return False, "padding exceeds dilation * (kernel - 1) on a side (the turned filter would need cropping)"
    # w viewed as (R, S, K, C): the turned filter's shape in the fprop's RSCK terms (the turn does not change it)
    ok, why = conv2d_fprop_sm90_can_implement(lx, dy, w.transpose(0, 1, 3, 2), (1, 1), pad, dilation, groups,
                                              out_dtype)
    return ok, (why.replace("conv2d fprop", "conv2d dgrad (as the fprop of dy)") if ok else why)


def conv2d_dgrad_sm90(lx, dy, w, x_shape, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1),
                      out_dtype=None):
    """dx (x_shape) of y = conv2d(x, w) from dy (N, P, Q, K) and w (R, S, C, K), float16 or uint16 (bfloat16
    bits); dx float32 (default) or the operand dtype. Raises ValueError when can_implement says no."""
    ok, why = conv2d_dgrad_sm90_can_implement(lx, dy, w, x_shape, stride, padding, dilation, 1, out_dtype)
    if not ok:
        raise ValueError(f"conv2d_dgrad_sm90 cannot run this problem: {why}")
    dilation = tuple(int(v) for v in dilation)
    pad = _fprop_padding(w.shape, x_shape, (1, 1), padding, dilation)
    turned = lx.c(lx.c(w)[::-1, ::-1].transpose(2, 0, 1, 3))   # (C, R, S, K): KRSC of the fprop
    dx = conv2d_fprop_sm90(lx, dy, turned, (1, 1), pad, dilation, out_dtype=out_dtype, w_layout="krsc")
    if tuple(dx.shape) != tuple(x_shape):
        raise ValueError(f"conv2d_dgrad_sm90: dy {tuple(dy.shape)} and w {tuple(w.shape)} give dx {tuple(dx.shape)}, "
                         f"not x's {tuple(x_shape)}")
    return dx
