"""conv2d dgrad on the sm_90a conv (plans/conv2d_sm90.py) by stride phases (csrc/conv/conv2d_dgrad_phase.h): dx's
pixels (a + sh*i, b + sw*j) of phase (a, b) take only the taps r = r0 + tstep*t (and likewise s) whose
h + pad - r*d is a multiple of the stride, at dy row i + base - t*pstep. Turning those taps (t' = T-1-t) makes the
phase a stride-1 fprop of dy with dilation pstep and top padding (T-1)*pstep - base (negative: dy's first rows are
skipped, which the TMA box origin allows):

    dx[n, a + sh*i, b + sw*j, c] = sum_{t', u', k} dy[n, i - pad_h' + t'*pstep_h, j - pad_w' + u'*pstep_w, k]
                                                   * w[r0 + (T-1-t')*tstep_h, s0 + (U-1-u')*tstep_w, c, k]

Each phase's filter is a small (C, T, U, K) copy, the fprop's KRSC, and the kernel's output view writes dx at
the phase's strided pixels. One launch per phase with taps; a phase no tap reaches (stride > kernel) is zeroed.
Stride 1 is the one phase (0, 0): dy padded by d*(R-1) - pad with the filter turned by 180 degrees.
"""
from __future__ import annotations

import math

import numpy as np

from ...explain import note
from ...shapes import resolve_padding
from .. import kernel_table
from .common import ACTIVATIONS, CONV2D_PROBLEM_DTYPE, ceil_div, conv2d_problem
from .conv2d_sm90 import (CONV_PIXEL_TILE_DTYPE, choose_tile, conv2d_fprop_sm90_can_implement, output_view, pixel_tile,
                          sm90_conv_tiles, tensor_maps)
from .gemm import WGMMA_STAGES, WGMMA_TYPES, wgmma_shared_bytes, wgmma_threads


def phase_axis(x0, size, taps, stride, pad, dil):
    """One axis of phase x0 (conv2d_dgrad_phase.h's Conv2dDgradPhaseAxis): (dx pixels, first tap, tap step, taps,
    dy coordinate of pixel 0 and tap 0, dy step per tap)."""
    g = math.gcd(stride, dil)
    tstep, pstep = stride // g, dil // g
    t0 = next((r for r in range(tstep) if (x0 + pad - r * dil) % stride == 0), taps)
    count = ceil_div(taps - t0, tstep) if t0 < taps else 0
    return ceil_div(max(size - x0, 0), stride), t0, tstep, count, (x0 + pad - t0 * dil) // stride, pstep


def dgrad_phases(x_shape, w_shape, stride, padding, dilation):
    """[((a, b), (rows, cols), (t0, tstep, T), (u0, ustep, U), fprop padding (top, left), fprop dilation)] over
    the sh * sw phases, row-major; T * U == 0 for a phase no tap reaches."""
    (pt, _), (pl, _) = resolve_padding(padding, x_shape[1:3], w_shape[:2], stride, dilation)
    out = []
    for a in range(stride[0]):
        rows, t0, tstep, th, base_h, step_h = phase_axis(a, x_shape[1], w_shape[0], stride[0], pt, dilation[0])
        for b in range(stride[1]):
            cols, u0, ustep, tw, base_w, step_w = phase_axis(b, x_shape[2], w_shape[1], stride[1], pl, dilation[1])
            out.append(((a, b), (rows, cols), (t0, tstep, th), (u0, ustep, tw),
                        ((th - 1) * step_h - base_h, (tw - 1) * step_w - base_w), (step_h, step_w)))
    return out


def conv2d_dgrad_sm90_can_implement(lx, dy, w, x_shape, stride=(1, 1), padding=((0, 0), (0, 0)),
                                    dilation=(1, 1), groups=1, out_dtype=None):
    """(True, what) when conv2d_dgrad_sm90 can run this problem here, else (False, why not): the fprop's conditions
    on dy and w (dtypes, dy's K % 8 == 0, alignment, the device), which do not depend on the geometry since every
    phase is a stride-1 conv. Any stride, padding and dilation. Bad shapes raise."""
    stride, dilation = tuple(int(v) for v in stride), tuple(int(v) for v in dilation)
    pad = resolve_padding(padding, x_shape[1:3], w.shape[:2], stride, dilation)
    conv2d_problem(x_shape, w.shape, stride, pad, dilation, groups)
    # a 1x1 view of w, (1, 1, K, C): the fprop's RSCK over dy, asked of a 'valid' stride-1 stand-in of any size
    ok, why = conv2d_fprop_sm90_can_implement(lx, dy, w[:1, :1].transpose(0, 1, 3, 2), (1, 1), "valid", (1, 1),
                                              groups, out_dtype)
    if not ok:
        return ok, f"as the fprop of dy (its C is dy's K): {why}"
    phases = stride[0] * stride[1]
    return True, ("sm_90a wgmma conv2d dgrad as the conv fprop of dy" +
                  (f", {stride[0]}x{stride[1]} = {phases} stride phases, each over only its own taps"
                   if phases > 1 else "") + (" in the emulator" if lx.sm90_target() == "emulator" else ""))


def conv2d_dgrad_sm90(lx, dy, w, x_shape, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1),
                      out_dtype=None):
    """dx (x_shape) of y = conv2d(x, w) from dy (N, P, Q, K) and w (R, S, C, K), float16 or uint16 (bfloat16
    bits); dx float32 (default) or the operand dtype. One launch per stride phase with taps; the phases without
    taps zeroed. Raises ValueError when can_implement says no, or for a dy not shaped as conv2d(x, w)'s y."""
    dy, w = lx.c(dy), lx.c(w)
    stride, dilation = tuple(int(v) for v in stride), tuple(int(v) for v in dilation)
    ok, why = conv2d_dgrad_sm90_can_implement(lx, dy, w, x_shape, stride, padding, dilation, 1, out_dtype)
    if not ok:
        raise ValueError(f"conv2d_dgrad_sm90 cannot run this problem: {why}")
    pad = resolve_padding(padding, x_shape[1:3], w.shape[:2], stride, dilation)
    _, y_shape = conv2d_problem(x_shape, w.shape, stride, pad, dilation, 1)
    if tuple(dy.shape) != tuple(y_shape):
        raise ValueError(f"conv2d_dgrad_sm90: dy has shape {tuple(dy.shape)}; conv2d of x {tuple(x_shape)} with w "
                         f"{tuple(w.shape)} gives {tuple(y_shape)}")
    out = np.dtype(np.float32 if out_dtype is None else out_dtype)
    n, h, wd, c = (int(v) for v in x_shape)
    k = int(w.shape[3])
    dx = lx.xp.empty((n, h, wd, c), out)
    ct = WGMMA_TYPES[dy.dtype]
    if lx.force_sm90_conv_tile:
        bm, bn, tile_why = *(int(v) for v in lx.force_sm90_conv_tile), "tile forced"
        if (bm, bn) not in sm90_conv_tiles(ct):
            raise ValueError(f"conv2d_dgrad_sm90: tile {bm}x{bn} (bm x bn); {ct} operands have {sm90_conv_tiles(ct)}")
    else:   # the fprop's rule over all of dx, as if one launch covered every phase
        bm, bn, tile_why = choose_tile(n, h, wd, c, (1, 1), ct)
    name = kernel_table.kernel_name("conv2d_fprop_wgmma_sm90", bn=bn, stages=WGMMA_STAGES, bm=bm, t=ct,
                                    out="float" if out == np.float32 else ct)
    none = (lx.xp.zeros((1,), np.float32), np.int32(0), np.int32(ACTIVATIONS[None]), np.float32(0),
            lx.xp.zeros((1,), out), np.int32(0))   # no bias, activation or residual
    launched, empty = [], []
    for (a, b), (rows, cols), (t0, tstep, th), (u0, ustep, tw), (pad_h, pad_w), (dil_h, dil_w) in \
            dgrad_phases(x_shape, w.shape, stride, padding, dilation):
        if rows * cols * n * c == 0:
            continue
        if th * tw == 0 or k == 0:   # no tap reaches these pixels: their gradient is 0
            dx[:, a::stride[0], b::stride[1], :] = 0
            empty.append((a, b))
            continue
        taps = w[t0::tstep][:th][::-1][:, u0::ustep][:, :tw][:, ::-1]   # (T, U, C, K), turned
        wt = lx.c(taps.transpose(2, 0, 1, 3))                          # (C, T, U, K): the fprop's KRSC
        tile = pixel_tile(n, rows, cols, (1, 1), bm)
        pb = np.array([(n, y_shape[1], y_shape[2], k, c, th, tw, rows, cols, pad_h, pad_w, 1, 1, dil_h, dil_w, 1)],
                      CONV2D_PROBLEM_DTYPE)[0]
        map_x, map_w = tensor_maps(lx, dy, wt, tile, (1, 1), bn)
        m_tiles = ceil_div(cols, tile[0]) * ceil_div(rows, tile[1]) * ceil_div(n, tile[2])
        lx.launch(name, lx.tile_grid(ceil_div(c, bn), m_tiles), (wgmma_threads(bm),),
                  (dy, wt, map_x, map_w, dx, pb, np.array([tile], CONV_PIXEL_TILE_DTYPE)[0],
                   output_view((h, wd), stride, (a, b)), *none), shared_bytes=wgmma_shared_bytes(bn, bm))
        launched.append(f"({a},{b}) {th}x{tw} taps")
    note(f"{why}: {len(launched)} launches ({', '.join(launched) or 'none'}), tiles of {bm} pixels by {bn} channels "
         f"of dx ({tile_why})"
         + (f"; phases {', '.join(map(str, empty))} reached by no tap, zeroed" if empty else ""))
    return dx
