"""NumPy reference backend: the exact, always-available oracle every CUDA kernel is checked against.

Pure functions of NumPy arrays (float32 or float64, computed and returned in the input dtype).
Layouts: activations NHWC, conv filters (R, S, C/groups, K), dense weights (in, out). Padding
arrives resolved as ((top, bottom), (left, right)) from fastconv.shapes.resolve_padding.
"""
from .activation import (leaky_relu_bprop, leaky_relu_fprop, relu_bprop, relu_fprop, sigmoid_bprop,
                         sigmoid_fprop, softmax_bprop, softmax_fprop, tanh_bprop, tanh_fprop)
from .batchnorm import batchnorm_bprop, batchnorm_fprop_infer, batchnorm_fprop_train
from .conv import conv2d_dgrad, conv2d_fprop, conv2d_wgrad, im2col
from .dense import dense_bprop, dense_fprop
from .fused import (batchnorm_relu_bprop, batchnorm_relu_fprop_infer, batchnorm_relu_fprop_train,
                    conv2d_bias_relu_maxpool_fprop, relu_maxpool_bprop)
from .dropout import dropout_bprop, dropout_fprop, dropout_mask, hash32
from .loss import (cross_entropy_bprop, cross_entropy_fprop, mse_bprop, mse_fprop,
                   softmax_cross_entropy_bprop, softmax_cross_entropy_fprop)
from .rounding import round_bf16, round_fp16, round_operand, round_tf32  # noqa: F401  (policy rounding)
from .pool import (avg_pool2d_bprop, avg_pool2d_fprop, global_avg_pool_bprop, global_avg_pool_fprop,
                   max_pool2d_bprop, max_pool2d_fprop)

__all__ = ["conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "im2col",
           "max_pool2d_fprop", "max_pool2d_bprop", "avg_pool2d_fprop", "avg_pool2d_bprop",
           "global_avg_pool_fprop", "global_avg_pool_bprop", "dense_fprop", "dense_bprop",
           "relu_fprop", "relu_bprop", "leaky_relu_fprop", "leaky_relu_bprop", "sigmoid_fprop", "sigmoid_bprop",
           "tanh_fprop", "tanh_bprop", "softmax_fprop", "softmax_bprop",
           "dropout_mask", "dropout_fprop", "dropout_bprop", "hash32",
           "batchnorm_fprop_train", "batchnorm_fprop_infer", "batchnorm_bprop",
           "softmax_cross_entropy_fprop", "softmax_cross_entropy_bprop", "cross_entropy_fprop",
           "cross_entropy_bprop", "mse_fprop", "mse_bprop",
           "conv2d_bias_relu_maxpool_fprop", "relu_maxpool_bprop", "batchnorm_relu_fprop_train",
           "batchnorm_relu_fprop_infer", "batchnorm_relu_bprop"]   # ops; round_* are helpers, not ops
