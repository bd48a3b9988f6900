"""Fused conv2d + bias + ReLU + 2x2/2 max-pool, forward beside backward.

Numerically the unfused chain max_pool2d(relu(conv2d(x, w, b)), 2): on the reference backend the very
same arrays (bitwise), on the kernels the same values up to the conv's summation order (exact on
small integers). The forward never materializes the conv output; the backward turns the pooled
gradient into the conv output gradient and the bias gradient in one pass (relu_maxpool_bprop), then
runs the usual dgrad/wgrad on it.
"""
from __future__ import annotations

from .._checks import pair
from ..explain import note
from ..shapes import conv_output_hw
from ..tensor import Tensor
from ..backends.reference.fused import VALID
from ._util import backend
from .activations import relu
from .conv2d import check_conv2d_args, conv2d, precision_kwargs
from .pooling import max_pool2d

FUSABLE_POOL = ((2, 2), (2, 2))   # (pool_size, strides) the kernels cover; 3x3/2 is next


def conv2d_bias_relu_maxpool(x, w, bias=None, stride=1, padding="valid", dilation=1, groups=1, pool_size=2,
                             strides=None, precision=None) -> Tensor:
    pool = pair(pool_size, "pool_size")
    pool_stride = pool if strides is None else pair(strides, "strides")
    prec = precision_kwargs(precision)
    if prec:   # csrc/fused/ is fp32 only: run the chain it fuses, its conv on the tensor-core plan
        note(f"conv2d_bias_relu_maxpool unfused: precision {prec['precision']} and the fused kernel is fp32 only")
        return max_pool2d(relu(conv2d(x, w, bias, stride, padding, dilation, groups, **prec)), pool, pool_stride)
    x, w, b, stride, pads, dilation, groups = check_conv2d_args(x, w, bias, stride, padding, dilation, groups)
    n, h, wd, _ = x.shape
    r, s, _, k = w.shape
    p, q = conv_output_hw((h, wd), (r, s), stride, pads, dilation)
    conv_shape = (n, p, q, k)
    conv_output_hw((p, q), pool, pool_stride, VALID, what="pool_size")
    B = backend(x)
    y, argmax = B.conv2d_bias_relu_maxpool_fprop(x.data, w.data, None if b is None else b.data, stride, pads,
                                                 dilation, groups, pool, pool_stride)

    def backward(g):
        dz, db = B.relu_maxpool_bprop(g, argmax, y, conv_shape, pool, pool_stride)
        dx = B.conv2d_dgrad(dz, w.data, x.shape, stride, pads, dilation, groups) if x.requires_grad else None
        dw = B.conv2d_wgrad(x.data, dz, w.shape, stride, pads, dilation, groups) if w.requires_grad else None
        return dx, dw, (db if b is not None and b.requires_grad else None)

    parents = (x, w) if b is None else (x, w, b)
    return Tensor.from_op(y, parents, backward)
