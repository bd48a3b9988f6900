"""Max, average and global average pooling on NHWC activations."""
from __future__ import annotations

from .._checks import check_rank, pair
from ..shapes import conv_output_hw, resolve_padding
from ..tensor import Tensor
from ._util import backend, float_input


def _window(x, pool_size, strides, padding):
    check_rank(x.data, 4, "x", "N, H, W, C")
    pool = pair(pool_size, "pool_size")
    stride = pool if strides is None else pair(strides, "strides")
    pads = resolve_padding(padding, x.shape[1:3], pool, stride)
    conv_output_hw(x.shape[1:3], pool, stride, pads, what="pool_size")
    return pool, stride, pads


def max_pool2d(x, pool_size=2, strides=None, padding="valid") -> Tensor:
    x = float_input(x, "x")
    pool, stride, pads = _window(x, pool_size, strides, padding)
    B = backend(x)
    y, argmax = B.max_pool2d_fprop(x.data, pool, stride, pads)

    def backward(g):
        return (B.max_pool2d_bprop(g, argmax, x.shape, pool, stride, pads),)

    return Tensor.from_op(y, (x,), backward)


def avg_pool2d(x, pool_size=2, strides=None, padding="valid", count_include_pad=False) -> Tensor:
    x = float_input(x, "x")
    pool, stride, pads = _window(x, pool_size, strides, padding)
    B = backend(x)
    y = B.avg_pool2d_fprop(x.data, pool, stride, pads, count_include_pad)

    def backward(g):
        return (B.avg_pool2d_bprop(g, x.shape, pool, stride, pads, count_include_pad),)

    return Tensor.from_op(y, (x,), backward)


def global_avg_pool2d(x) -> Tensor:
    x = float_input(x, "x")
    check_rank(x.data, 4, "x", "N, H, W, C")
    B = backend(x)
    y = B.global_avg_pool_fprop(x.data)
    return Tensor.from_op(y, (x,), lambda g: (B.global_avg_pool_bprop(g, x.shape),))
