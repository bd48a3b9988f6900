"""Fused ops, composed from the reference ops they replace: the oracle of
csrc/conv/conv2d_bias_relu_maxpool*.h and csrc/norm/batchnorm_relu.h.

conv2d_bias_relu_maxpool_fprop is max_pool2d(relu(conv2d(x, w) + b)) (any pool geometry); its
backward is split where the kernels split it: relu_maxpool_bprop turns the pooled gradient into the
conv output gradient dz (max-pool backward + ReLU mask) and the bias gradient; dgrad/wgrad then run
on dz as for a plain conv. The ReLU mask is read from the pooled output y: the element a window
selected passed ReLU exactly when y > 0 (or NaN), and every unselected element gets 0 anyway, so
relu_bprop(dy, y) before the routing equals relu_bprop after it for every finite dy.

batchnorm_relu_* is relu(batchnorm(x)); its backward is batchnorm_bprop(relu_bprop(dy, y)), the mask
read from the fused output y (y > 0 exactly where the normalized value was > 0, or NaN).
"""
from __future__ import annotations

from .activation import relu_bprop, relu_fprop
from .batchnorm import batchnorm_bprop, batchnorm_fprop_infer, batchnorm_fprop_train
from .conv import conv2d_fprop
from .pool import max_pool2d_bprop, max_pool2d_fprop

VALID = ((0, 0), (0, 0))


def conv2d_bias_relu_maxpool_fprop(x, w, b, stride=(1, 1), padding=VALID, dilation=(1, 1), groups=1, pool=(2, 2),
                                   pool_stride=(2, 2), pool_padding=VALID, precision=None):
    """-> (y, argmax): the pooled output and the pool's window offsets (what the backward needs). precision:
    conv2d_fprop's operand rounding (fp32 sums, bias and pool)."""
    z = conv2d_fprop(x, w, stride, padding, dilation, groups, precision)
    if b is not None:
        z += b
    return max_pool2d_fprop(relu_fprop(z), pool, pool_stride, pool_padding)


def relu_maxpool_bprop(dy, argmax, y, conv_shape, pool=(2, 2), pool_stride=(2, 2), pool_padding=VALID):
    """-> (dz, db): the gradient of the conv output (bias included) and of the bias."""
    dz = max_pool2d_bprop(relu_bprop(dy, y), argmax, tuple(conv_shape), pool, pool_stride, pool_padding)
    return dz, dz.sum(axis=(0, 1, 2))



def batchnorm_relu_fprop_train(x, gamma, beta, eps):
    """-> (y, mean, invstd), as batchnorm_fprop_train."""
    z, mean, invstd = batchnorm_fprop_train(x, gamma, beta, eps)
    return relu_fprop(z), mean, invstd


def batchnorm_relu_fprop_infer(x, gamma, beta, mean, var, eps):
    return relu_fprop(batchnorm_fprop_infer(x, gamma, beta, mean, var, eps))


def batchnorm_relu_bprop(dy, y, x, gamma, mean, invstd):
    """-> (dx, dgamma, dbeta)."""
    return batchnorm_bprop(relu_bprop(dy, y), x, gamma, mean, invstd)
