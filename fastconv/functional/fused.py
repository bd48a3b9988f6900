"""Fused ops, forward beside backward: conv2d + bias + ReLU + max-pool (2x2/2 'valid' or 3x3/2 any
padding), and batch norm + ReLU.

Numerically the unfused chains max_pool2d(relu(conv2d(x, w, b)), ...) and relu(batch_norm(...)): on the
reference backend the very same arrays (bitwise), on the kernels the same values up to summation
order (the conv + pool exact on small integers), under a reduced precision too (the operands cast
as conv2d's; fp32 sums, bias, ReLU and pool). The conv + pool forward never materializes the conv
output; its backward turns the pooled gradient into the conv output gradient and the bias gradient in
one pass (relu_maxpool_bprop), then runs the usual dgrad/wgrad on it. A pool the fused kernels do not
take runs as the unfused chain (fastconv.explain says so).
"""
from __future__ import annotations

from .._checks import pair
from ..explain import note
from ..shapes import conv_output_hw, resolve_padding
from ..tensor import Tensor
from ..backends.plans.conv2d import fusable_pool_kind
from ._util import backend
from .batchnorm import _infer_backward, check_batch_norm_args, update_running_stats
from .activations import relu
from .conv2d import check_conv2d_args, conv2d, precision_kwargs
from .pooling import max_pool2d


def fusable_pool(pool_size, strides, padding, conv_hw) -> bool:
    """Whether the fused kernels (csrc/conv/conv2d_bias_relu_maxpool*.h) cover this max-pool over a
    conv output of conv_hw (P, Q)."""
    pool = pair(pool_size, "pool_size")
    stride = pool if strides is None else pair(strides, "strides")
    return fusable_pool_kind(pool, stride, resolve_padding(padding, conv_hw, pool, stride)) is not None


def conv2d_bias_relu_maxpool(x, w, bias=None, stride=1, padding="valid", dilation=1, groups=1, pool_size=2,
                             strides=None, pool_padding="valid", precision=None) -> Tensor:
    pool = pair(pool_size, "pool_size")
    pool_stride = pool if strides is None else pair(strides, "strides")
    prec = precision_kwargs(precision)   # forward and backward (dgrad, wgrad) alike, as conv2d's
    x, w, b, stride, pads, dilation, groups = check_conv2d_args(x, w, bias, stride, padding, dilation, groups)
    n, h, wd, _ = x.shape
    r, s, _, k = w.shape
    p, q = conv_output_hw((h, wd), (r, s), stride, pads, dilation)
    conv_shape = (n, p, q, k)
    pool_pads = resolve_padding(pool_padding, (p, q), pool, pool_stride)
    conv_output_hw((p, q), pool, pool_stride, pool_pads, what="pool_size")
    if fusable_pool_kind(pool, pool_stride, pool_pads) is None:
        note(f"conv2d_bias_relu_maxpool: pool {pool} stride {pool_stride} padding {pool_pads} is not one the fused "
             f"kernels take (2x2/2 'valid', 3x3/2 padding < 3): conv2d -> relu -> max_pool2d run unfused")
        return max_pool2d(relu(conv2d(x, w, b, stride, pads, dilation, groups, **prec)), pool, pool_stride,
                          pool_pads)
    B = backend(x)
    y, argmax = B.conv2d_bias_relu_maxpool_fprop(x.data, w.data, None if b is None else b.data, stride, pads,
                                                 dilation, groups, pool, pool_stride, pool_pads, **prec)

    def backward(g):
        dz, db = B.relu_maxpool_bprop(g, argmax, y, conv_shape, pool, pool_stride, pool_pads)
        dx = B.conv2d_dgrad(dz, w.data, x.shape, stride, pads, dilation, groups, **prec) if x.requires_grad else None
        dw = B.conv2d_wgrad(x.data, dz, w.shape, stride, pads, dilation, groups, **prec) if w.requires_grad else None
        return dx, dw, (db if b is not None and b.requires_grad else None)

    parents = (x, w) if b is None else (x, w, b)
    return Tensor.from_op(y, parents, backward)


def batch_norm_relu(x, gamma, beta, running_mean, running_var, training: bool, momentum: float = 0.99,
                    epsilon: float = 1e-3) -> Tensor:
    """relu(batch_norm(...)) as one op (csrc/norm/batchnorm_relu.h): the normalize pass applies ReLU and
    the backward folds the ReLU mask into batch norm's; running statistics update as batch_norm's."""
    x, gamma, beta, epsilon = check_batch_norm_args(x, gamma, beta, running_mean, running_var, epsilon)
    B = backend(x)
    if not training:
        y = B.batchnorm_relu_fprop_infer(x.data, gamma.data, beta.data, running_mean.data, running_var.data, epsilon)
        infer_bn = _infer_backward(x, gamma, running_mean, running_var, epsilon)
        return Tensor.from_op(y, (x, gamma, beta), lambda g: infer_bn(B.relu_bprop(g, y)))
    y, mean, invstd = B.batchnorm_relu_fprop_train(x.data, gamma.data, beta.data, epsilon)
    update_running_stats(running_mean, running_var, mean, invstd, epsilon, momentum)

    def backward(g):
        return B.batchnorm_relu_bprop(g, y, x.data, gamma.data, mean, invstd)

    return Tensor.from_op(y, (x, gamma, beta), backward)
