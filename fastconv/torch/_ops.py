"""fastconv's kernels as torch.library custom ops, namespace `fastconv`.

    torch.ops.fastconv.conv2d_fprop(x, w, stride, padding, dilation, groups) -> y
    torch.ops.fastconv.conv2d_dgrad(dy, w, x_shape, stride, padding, dilation, groups) -> dx
    torch.ops.fastconv.conv2d_wgrad(x, dy, w_shape, stride, padding, dilation, groups) -> dw
    torch.ops.fastconv.max_pool2d_fprop(x, kernel_size, stride, padding) -> (y, indices)
    torch.ops.fastconv.max_pool2d_bprop(dy, indices, x_shape, kernel_size, stride, padding) -> dx
    torch.ops.fastconv.dense_fprop(x, w, b) -> y
    torch.ops.fastconv.dense_bprop(dy, x, w, need_dx) -> (dx, dw, db)

Tensors are in torch's conventions: activations NCHW-shaped (any memory format; channels_last is
what the kernels read without a copy), conv weights (K, C/groups, R, S), dense weights (out, in),
x_shape / w_shape in torch order. `padding` is always four explicit ints [top, bottom, left, right]
(the functional wrappers resolve 'same' and ceil_mode into it). `indices` are torch's: the flat
h * W + w position of the chosen element in its (n, c) plane, int64.

Every op has a fake (meta) implementation whose shapes come from fastconv.shapes, and the
differentiable ones have autograd formulas built from the other fastconv ops (never torch's conv
or pooling), so torch.compile(fullgraph=True) traces through them and autograd runs fastconv's
dgrad / wgrad / bprop. The conv and dense formulas are themselves differentiable (double backward).
Every op's implementation, on CPU and CUDA tensors alike, is the bridge in `_kernels`: zero-copy
array views of the tensors, the chosen backend's op (CUDA: fastconv's kernels through the shared
KernelOps launch plans, on torch's stream and allocator, see `_cuda`; CPU: the NumPy reference, or
the same KernelOps plans in the CPU emulator after `set_kernel_backend('emulated')`), and
zero-copy tensors back.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..shapes import conv_output_hw
from . import _bridge as br
from . import _kernels
from ._bridge import pads2d

Tensor = torch.Tensor
DEVICES = ("cpu", "cuda")


def conv_out_hw(x_shape, w_shape, stride, padding, dilation):
    """(P, Q) of a conv on NCHW x_shape with torch-layout w_shape (K, C/g, R, S)."""
    return conv_output_hw(tuple(x_shape[2:]), tuple(w_shape[2:]), tuple(stride), pads2d(padding),
                          tuple(dilation))


def pool_out_hw(x_shape, kernel_size, stride, padding):
    return conv_output_hw(tuple(x_shape[2:]), tuple(kernel_size), tuple(stride), pads2d(padding),
                          what="kernel_size")


# --------------------------------------------------------------------------------------------
# convolution

@torch.library.custom_op("fastconv::conv2d_fprop", mutates_args=(), device_types=DEVICES)
def conv2d_fprop(x: Tensor, w: Tensor, stride: Sequence[int], padding: Sequence[int],
                 dilation: Sequence[int], groups: int) -> Tensor:
    return _kernels.conv2d_fprop(x, w, stride, padding, dilation, groups)


@conv2d_fprop.register_fake
def _(x, w, stride, padding, dilation, groups):
    p, q = conv_out_hw(x.shape, w.shape, stride, padding, dilation)
    return br.empty_nchw(x, x.shape[0], w.shape[0], p, q, br.is_channels_last(x))


@torch.library.custom_op("fastconv::conv2d_dgrad", mutates_args=(), device_types=DEVICES)
def conv2d_dgrad(dy: Tensor, w: Tensor, x_shape: Sequence[int], stride: Sequence[int],
                 padding: Sequence[int], dilation: Sequence[int], groups: int) -> Tensor:
    return _kernels.conv2d_dgrad(dy, w, x_shape, stride, padding, dilation, groups)


@conv2d_dgrad.register_fake
def _(dy, w, x_shape, stride, padding, dilation, groups):
    n, c, h, wd = x_shape
    return br.empty_nchw(dy, n, c, h, wd, br.is_channels_last(dy))


@torch.library.custom_op("fastconv::conv2d_wgrad", mutates_args=(), device_types=DEVICES)
def conv2d_wgrad(x: Tensor, dy: Tensor, w_shape: Sequence[int], stride: Sequence[int],
                 padding: Sequence[int], dilation: Sequence[int], groups: int) -> Tensor:
    return _kernels.conv2d_wgrad(x, dy, w_shape, stride, padding, dilation, groups)


@conv2d_wgrad.register_fake
def _(x, dy, w_shape, stride, padding, dilation, groups):
    return x.new_empty(tuple(w_shape))


def _conv_setup(ctx, inputs, output):
    x, w, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(x, w)
    ctx.geometry = (stride, padding, dilation, groups)


def _conv_backward(ctx, dy):
    x, w = ctx.saved_tensors
    dx = dw = None
    if ctx.needs_input_grad[0]:
        dx = torch.ops.fastconv.conv2d_dgrad(dy, w, list(x.shape), *ctx.geometry)
    if ctx.needs_input_grad[1]:
        dw = torch.ops.fastconv.conv2d_wgrad(x, dy, list(w.shape), *ctx.geometry)
    return dx, dw, None, None, None, None


def _dgrad_setup(ctx, inputs, output):
    dy, w, x_shape, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(dy, w)
    ctx.geometry = (stride, padding, dilation, groups)


def _dgrad_backward(ctx, g):
    # <dgrad(dy, w), g> = <dy, fprop(g, w)> = <w, wgrad(g, dy)>
    dy, w = ctx.saved_tensors
    ddy = dw = None
    if ctx.needs_input_grad[0]:
        ddy = torch.ops.fastconv.conv2d_fprop(g, w, *ctx.geometry)
    if ctx.needs_input_grad[1]:
        dw = torch.ops.fastconv.conv2d_wgrad(g, dy, list(w.shape), *ctx.geometry)
    return ddy, dw, None, None, None, None, None


def _wgrad_setup(ctx, inputs, output):
    x, dy, w_shape, stride, padding, dilation, groups = inputs
    ctx.save_for_backward(x, dy)
    ctx.geometry = (stride, padding, dilation, groups)


def _wgrad_backward(ctx, g):
    # <wgrad(x, dy), g> = <dy, fprop(x, g)> = <x, dgrad(dy, g)>
    x, dy = ctx.saved_tensors
    dx = ddy = None
    if ctx.needs_input_grad[0]:
        dx = torch.ops.fastconv.conv2d_dgrad(dy, g, list(x.shape), *ctx.geometry)
    if ctx.needs_input_grad[1]:
        ddy = torch.ops.fastconv.conv2d_fprop(x, g, *ctx.geometry)
    return dx, ddy, None, None, None, None, None


conv2d_fprop.register_autograd(_conv_backward, setup_context=_conv_setup)
conv2d_dgrad.register_autograd(_dgrad_backward, setup_context=_dgrad_setup)
conv2d_wgrad.register_autograd(_wgrad_backward, setup_context=_wgrad_setup)


# --------------------------------------------------------------------------------------------
# max pooling

@torch.library.custom_op("fastconv::max_pool2d_fprop", mutates_args=(), device_types=DEVICES)
def max_pool2d_fprop(x: Tensor, kernel_size: Sequence[int], stride: Sequence[int],
                     padding: Sequence[int]) -> tuple[Tensor, Tensor]:
    return _kernels.max_pool2d_fprop(x, kernel_size, stride, padding)


@max_pool2d_fprop.register_fake
def _(x, kernel_size, stride, padding):
    p, q = pool_out_hw(x.shape, kernel_size, stride, padding)
    cl = br.is_channels_last(x)
    n, c = x.shape[:2]
    return br.empty_nchw(x, n, c, p, q, cl), br.empty_nchw(x, n, c, p, q, cl, dtype=torch.int64)


@torch.library.custom_op("fastconv::max_pool2d_bprop", mutates_args=(), device_types=DEVICES)
def max_pool2d_bprop(dy: Tensor, indices: Tensor, x_shape: Sequence[int], kernel_size: Sequence[int],
                     stride: Sequence[int], padding: Sequence[int]) -> Tensor:
    return _kernels.max_pool2d_bprop(dy, indices, x_shape, kernel_size, stride, padding)


@max_pool2d_bprop.register_fake
def _(dy, indices, x_shape, kernel_size, stride, padding):
    n, c, h, w = x_shape
    return br.empty_nchw(dy, n, c, h, w, br.is_channels_last(dy))


def _pool_setup(ctx, inputs, output):
    x, kernel_size, stride, padding = inputs
    y, indices = output
    ctx.mark_non_differentiable(indices)
    ctx.save_for_backward(indices)
    ctx.geometry = (list(x.shape), kernel_size, stride, padding)


def _pool_backward(ctx, dy, _dindices):
    (indices,) = ctx.saved_tensors
    return torch.ops.fastconv.max_pool2d_bprop(dy, indices, *ctx.geometry), None, None, None


def _pool_bprop_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _pool_bprop_backward(ctx, g):
    # bprop scatters dy to the chosen positions, so its adjoint gathers g from them.
    (indices,) = ctx.saved_tensors
    ddy = g.flatten(2).gather(2, indices.flatten(2)).view(indices.shape)
    return ddy, None, None, None, None, None


max_pool2d_fprop.register_autograd(_pool_backward, setup_context=_pool_setup)
max_pool2d_bprop.register_autograd(_pool_bprop_backward, setup_context=_pool_bprop_setup)


# --------------------------------------------------------------------------------------------
# dense (torch layout: y = x @ w.T + b, w (out, in), x (M, in))

@torch.library.custom_op("fastconv::dense_fprop", mutates_args=(), device_types=DEVICES)
def dense_fprop(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    return _kernels.dense_fprop(x, w, b)


@dense_fprop.register_fake
def _(x, w, b):
    return x.new_empty((x.shape[0], w.shape[0]))


@torch.library.custom_op("fastconv::dense_bprop", mutates_args=(), device_types=DEVICES)
def dense_bprop(dy: Tensor, x: Tensor, w: Tensor, need_dx: bool) -> tuple[Tensor, Tensor, Tensor]:
    """-> (dx, dw, db); dx is an empty (0, in) tensor when need_dx is False."""
    return _kernels.dense_bprop(dy, x, w, need_dx)


@dense_bprop.register_fake
def _(dy, x, w, need_dx):
    dx = x.new_empty(tuple(x.shape)) if need_dx else x.new_empty((0, x.shape[1]))
    return dx, w.new_empty(tuple(w.shape)), w.new_empty((w.shape[0],))


def _dense_setup(ctx, inputs, output):
    x, w, b = inputs
    ctx.save_for_backward(x, w)
    ctx.has_bias = b is not None


def _dense_backward(ctx, dy):
    x, w = ctx.saved_tensors
    need_dx = ctx.needs_input_grad[0]
    dx, dw, db = torch.ops.fastconv.dense_bprop(dy, x, w, need_dx)
    return (dx if need_dx else None, dw if ctx.needs_input_grad[1] else None,
            db if ctx.has_bias and ctx.needs_input_grad[2] else None)


def _dense_bprop_setup(ctx, inputs, output):
    dy, x, w, need_dx = inputs
    ctx.save_for_backward(dy, x, w)
    ctx.need_dx = need_dx


def _dense_bprop_backward(ctx, gdx, gdw, gdb):
    # dx = dy @ w, dw = dy.T @ x, db = dy.sum(0); every adjoint is a dense_fprop.
    dy, x, w = ctx.saved_tensors
    fprop = torch.ops.fastconv.dense_fprop
    ddy = dx = dw = None
    if ctx.needs_input_grad[0]:
        ddy = fprop(x, gdw, gdb)
        if ctx.need_dx:
            ddy = ddy + fprop(gdx, w, None)
    if ctx.needs_input_grad[1]:
        dx = fprop(dy, gdw.t(), None)
    if ctx.needs_input_grad[2] and ctx.need_dx:
        dw = fprop(dy.t(), gdx.t(), None)
    return ddy, dx, dw, None


dense_fprop.register_autograd(_dense_backward, setup_context=_dense_setup)
dense_bprop.register_autograd(_dense_bprop_backward, setup_context=_dense_bprop_setup)


OPS = (conv2d_fprop, conv2d_dgrad, conv2d_wgrad, max_pool2d_fprop, max_pool2d_bprop, dense_fprop,
       dense_bprop)
