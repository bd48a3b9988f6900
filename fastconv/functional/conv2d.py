"""conv2d on NHWC activations with Keras-layout filters (R, S, C/groups, K).

precision=None follows the policy (fastconv.set_precision); 'tf32' / 'bf16' / 'fp16' multiply operands
rounded to that format with fp32 sums, forward and backward alike (fastconv/precision.py)."""
from __future__ import annotations

from .._checks import check_int, check_rank, check_same_dtype, pair
from ..shapes import conv_output_hw, resolve_padding
from ..precision import effective, is_reduced
from ..tensor import Tensor
from ._util import backend, float_input, same_device


def check_conv2d_args(x, w, bias, stride, padding, dilation, groups):
    """conv2d's argument checks, shared with the fused ops.
    -> (x, w, b or None, stride, resolved padding, dilation, groups)."""
    x, w = float_input(x, "x"), float_input(w, "w")
    check_rank(x.data, 4, "x", "N, H, W, C")
    check_rank(w.data, 4, "w", "kernel_h, kernel_w, in_channels/groups, filters")
    check_same_dtype(x.data, w.data, "x", "w")
    groups = check_int(groups, "groups", 1)
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    n, h, wd, c = x.shape
    r, s, cg, k = w.shape
    if c % groups or k % groups:
        raise ValueError(f"groups={groups} must divide the input channels ({c}) and the filters ({k})")
    if cg * groups != c:
        raise ValueError(f"channel mismatch: x has {c} channels but w expects {cg} per group x {groups} "
                         f"group(s) = {cg * groups} (w shape {w.shape})")
    pads = resolve_padding(padding, (h, wd), (r, s), stride, dilation)
    conv_output_hw((h, wd), (r, s), stride, pads, dilation)
    b = None
    if bias is not None:
        b = float_input(bias, "bias")
        if b.shape != (k,):
            raise ValueError(f"bias must have shape ({k},) to match w's {k} filters, got {b.shape}")
        check_same_dtype(x.data, b.data, "x", "bias")
    same_device(("x", x), ("w", w), ("bias", b))
    return x, w, b, stride, pads, dilation, groups


def precision_kwargs(precision) -> dict:
    """The backend keyword for a call's precision (read once, at the forward, so the backward of the op
    runs under the same one); empty for fp32, so fp32 calls reach every backend unchanged."""
    p = effective(precision)
    return {"precision": p} if is_reduced(p) else {}


def conv2d(x, w, bias=None, stride=1, padding="valid", dilation=1, groups=1, precision=None) -> Tensor:
    x, w, b, stride, pads, dilation, groups = check_conv2d_args(x, w, bias, stride, padding, dilation, groups)
    B = backend(x)
    prec = precision_kwargs(precision)
    y = B.conv2d_fprop(x.data, w.data, stride, pads, dilation, groups, **prec)
    if b is not None:
        y += b.data

    def backward(g):
        dx = B.conv2d_dgrad(g, w.data, x.shape, stride, pads, dilation, groups, **prec) if x.requires_grad else None
        dw = B.conv2d_wgrad(x.data, g, w.shape, stride, pads, dilation, groups, **prec) if w.requires_grad else None
        db = g.sum(axis=(0, 1, 2)) if b is not None and b.requires_grad else None
        return dx, dw, db

    parents = (x, w) if b is None else (x, w, b)
    return Tensor.from_op(y, parents, backward)
