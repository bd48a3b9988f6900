"""2-D convolution (cross-correlation, as every DL framework means it) on NHWC activations with
Keras-layout filters (R, S, C/groups, K): forward (fprop), input gradient (dgrad), filter gradient (wgrad).

All three are one BLAS matmul (batched over groups) on an im2col matrix:
    cols[g, m, (r, s, c)] = xpad[n, p*sh + r*dh, q*sw + s*dw, g*Cg + c],   m = (n, p, q)
    fprop: y_g = cols_g @ w_g      dgrad: dx = col2im(dy_g @ w_g^T)      wgrad: dw_g = cols_g^T @ dy_g
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ...shapes import conv_output_hw
from .rounding import round_operand


def im2col(x, kernel_hw, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1)):
    """Read-only strided view (N, P, Q, R, S, C) of the zero-padded x; no copy beyond the padding."""
    (r, s), (sh, sw), (dh, dw) = kernel_hw, stride, dilation
    p, q = conv_output_hw(x.shape[1:3], kernel_hw, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), padding[0], padding[1], (0, 0))) if np.any(padding) else x
    n, h, w, c = xp.strides
    return as_strided(xp, (x.shape[0], p, q, r, s, x.shape[3]),
                      (n, h * sh, w * sw, h * dh, w * dw, c), writeable=False)


def _cols(x, kernel_hw, stride, padding, dilation, groups):
    """Contiguous (G, N*P*Q, R*S*Cg) im2col matrix: the one copy of the input each conv pass makes."""
    v = im2col(x, kernel_hw, stride, padding, dilation)
    n, p, q, r, s, c = v.shape
    v = v.reshape(n, p, q, r, s, groups, c // groups).transpose(5, 0, 1, 2, 3, 4, 6)
    return np.ascontiguousarray(v).reshape(groups, n * p * q, r * s * (c // groups))


def _group_w(w, groups):
    """(R, S, Cg, K) -> (G, R*S*Cg, K/G), rows ordered like the im2col columns."""
    r, s, cg, k = w.shape
    return w.reshape(r * s * cg, groups, k // groups).transpose(1, 0, 2)


def _group_dy(dy, groups):
    """(N, P, Q, K) -> (G, N*P*Q, K/G)."""
    k = dy.shape[-1]
    return dy.reshape(-1, groups, k // groups).transpose(1, 0, 2)


def conv2d_fprop(x, w, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1, precision=None):
    assert x.ndim == 4 and w.ndim == 4 and w.shape[2] * groups == x.shape[3] and w.shape[3] % groups == 0
    x, w = round_operand(x, precision), round_operand(w, precision)   # tf32/bf16/fp16 policy, fp32 sums
    n, k = x.shape[0], w.shape[3]
    cols = _cols(x, w.shape[:2], stride, padding, dilation, groups)
    y = np.matmul(cols, _group_w(w, groups))               # (G, M, K/G); G == 1 is a single GEMM
    p, q = conv_output_hw(x.shape[1:3], w.shape[:2], stride, padding, dilation)
    return np.ascontiguousarray(y.transpose(1, 0, 2)).reshape(n, p, q, k)


def conv2d_dgrad(dy, w, x_shape, stride, padding, dilation, groups, precision=None):
    dy, w = round_operand(dy, precision), round_operand(w, precision)
    n, h, wd, c = x_shape
    r, s, cg, _ = w.shape
    (pt, pb), (pl, pr) = padding
    (sh, sw), (dh, dw) = stride, dilation
    _, p, q, _ = dy.shape
    # Gradient w.r.t. every im2col entry, then scatter-add each kernel tap back onto the padded input.
    dcols = np.matmul(_group_dy(dy, groups), _group_w(w, groups).transpose(0, 2, 1))  # (G, M, R*S*Cg)
    dcols = dcols.reshape(groups, n, p, q, r, s, cg)
    dxp = np.zeros((n, h + pt + pb, wd + pl + pr, groups, cg), dy.dtype)
    for i in range(r):
        for j in range(s):
            # Rows/cols no window touches (stride leftovers) are simply never written: they stay 0.
            dxp[:, i * dh:i * dh + (p - 1) * sh + 1:sh, j * dw:j * dw + (q - 1) * sw + 1:sw] += \
                dcols[:, :, :, :, i, j].transpose(1, 2, 3, 0, 4)
    return np.ascontiguousarray(dxp[:, pt:pt + h, pl:pl + wd].reshape(n, h, wd, c))


def conv2d_wgrad(x, dy, w_shape, stride, padding, dilation, groups, precision=None):
    x, dy = round_operand(x, precision), round_operand(dy, precision)
    r, s, cg, k = w_shape
    cols = _cols(x, (r, s), stride, padding, dilation, groups)
    dw = np.matmul(cols.transpose(0, 2, 1), _group_dy(dy, groups))   # (G, R*S*Cg, K/G)
    return np.ascontiguousarray(dw.transpose(1, 0, 2)).reshape(r, s, cg, k)
