"""KernelOps: the reference API (fastconv/backends/reference) implemented by launching the csrc/ kernels: a
Launcher (launcher.py) with the plan functions of each op's file bound as its methods, so the jit (CuPy +
NVRTC), native (fastconv._C) and emulated (fastconv._emu) backends run the very same plans. Kernel names
are C++ template-ids (``fc::conv2d_fprop_implicit_gemm<fc::TileSmall, 4, int, float>``): every backend
registers or compiles kernels under the same strings, so one name means one instantiation everywhere.
"""
from __future__ import annotations

import inspect

from .. import kernel_table
from . import activation, conv2d, dropout, gemm, images, loss, norm, optim, pool
from .launcher import Launcher


def all_kernel_names() -> list[str]:
    """Every kernel instantiation the plans can launch, sm_90a aside (gemm.py wgmma_kernel_names()):
    a view of fastconv/backends/kernel_table.py, from which the native registry's list
    (csrc/launch/kernel_list.inc, written by scripts/gen_kernel_list.py) is generated."""
    return kernel_table.kernel_names(("any", "sm80"))


class KernelOps(Launcher):
    """The reference API implemented by launching the csrc/ kernels: KernelOps(xp, launch, ptr, ...) takes
    Launcher's fields; each method is the plan function of the same name, called with this launcher.
    conv2d_* and dense_* take precision= ('tf32' / 'bf16' / 'fp16' route to the tensor-core plans)."""
    conv2d_fprop, conv2d_dgrad, conv2d_wgrad = conv2d.conv2d_fprop, conv2d.conv2d_dgrad, conv2d.conv2d_wgrad
    conv2d_fprop_tensor_op, conv2d_dgrad_tensor_op = conv2d.conv2d_fprop_tensor_op, conv2d.conv2d_dgrad_tensor_op
    conv2d_wgrad_tensor_op, conv2d_wgrad_tensor_core = conv2d.conv2d_wgrad_tensor_op, conv2d.conv2d_wgrad_tensor_core
    conv2d_fprop_tensor_core, conv2d_dgrad_tensor_core = conv2d.conv2d_fprop_tensor_core, conv2d.conv2d_dgrad_tensor_core
    conv2d_bias_relu_maxpool_fprop, relu_maxpool_bprop = conv2d.conv2d_bias_relu_maxpool_fprop, conv2d.relu_maxpool_bprop
    conv2d_bias_relu_maxpool_tensor_op = conv2d.conv2d_bias_relu_maxpool_tensor_op
    max_pool2d_fprop, max_pool2d_bprop = pool.max_pool2d_fprop, pool.max_pool2d_bprop
    avg_pool2d_fprop, avg_pool2d_bprop = pool.avg_pool2d_fprop, pool.avg_pool2d_bprop
    global_avg_pool_fprop, global_avg_pool_bprop = pool.global_avg_pool_fprop, pool.global_avg_pool_bprop
    gemm_tensor_op, gemm_wgmma, wgmma_applies = gemm.gemm_tensor_op, gemm.gemm_wgmma, gemm.wgmma_applies
    gemm, bias_grad, dense_fprop, dense_bprop = gemm.gemm, gemm.bias_grad, gemm.dense_fprop, gemm.dense_bprop   # last: it rebinds `gemm` in this class body
    relu_fprop, relu_bprop = activation.relu_fprop, activation.relu_bprop
    leaky_relu_fprop, leaky_relu_bprop = activation.leaky_relu_fprop, activation.leaky_relu_bprop
    sigmoid_fprop, sigmoid_bprop = activation.sigmoid_fprop, activation.sigmoid_bprop
    tanh_fprop, tanh_bprop = activation.tanh_fprop, activation.tanh_bprop
    dropout_mask, dropout_fprop, dropout_bprop = dropout.dropout_mask, dropout.dropout_fprop, dropout.dropout_bprop
    batchnorm_fprop_train, batchnorm_fprop_infer = norm.batchnorm_fprop_train, norm.batchnorm_fprop_infer
    batchnorm_bprop, batchnorm_relu_bprop = norm.batchnorm_bprop, norm.batchnorm_relu_bprop
    batchnorm_relu_fprop_train, batchnorm_relu_fprop_infer = norm.batchnorm_relu_fprop_train, norm.batchnorm_relu_fprop_infer
    softmax_fprop, softmax_bprop = loss.softmax_fprop, loss.softmax_bprop
    softmax_cross_entropy_fprop, softmax_cross_entropy_bprop = loss.softmax_cross_entropy_fprop, loss.softmax_cross_entropy_bprop
    cross_entropy_fprop, cross_entropy_bprop = loss.cross_entropy_fprop, loss.cross_entropy_bprop
    mse_fprop, mse_bprop = loss.mse_fprop, loss.mse_bprop
    step_scalars, set_step_scalars = optim.step_scalars, optim.set_step_scalars
    multi_tensor_table, upload_table = optim.multi_tensor_table, optim.upload_table
    sgd_update, adam_update = optim.sgd_update, optim.adam_update
    normalize_uint8 = images.normalize_uint8


# The op names the backend modules (jit, native, emulated) serve as module functions: the table above.
OPS = frozenset(name for name, value in vars(KernelOps).items() if inspect.isfunction(value))


REFERENCE_API = ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "max_pool2d_fprop", "max_pool2d_bprop",
                 "avg_pool2d_fprop", "avg_pool2d_bprop", "global_avg_pool_fprop", "global_avg_pool_bprop",
                 "dense_fprop", "dense_bprop", "relu_fprop", "relu_bprop", "leaky_relu_fprop", "leaky_relu_bprop",
                 "sigmoid_fprop", "sigmoid_bprop", "tanh_fprop", "tanh_bprop", "softmax_fprop", "softmax_bprop",
                 "dropout_mask", "dropout_fprop", "dropout_bprop", "batchnorm_fprop_train",
                 "batchnorm_fprop_infer", "batchnorm_bprop", "softmax_cross_entropy_fprop",
                 "softmax_cross_entropy_bprop", "cross_entropy_fprop", "cross_entropy_bprop", "mse_fprop",
                 "mse_bprop")
EXTRA_API = ("gemm", "bias_grad", "sgd_update", "adam_update")
FUSED_API = ("conv2d_bias_relu_maxpool_fprop", "relu_maxpool_bprop", "batchnorm_relu_fprop_train",
             "batchnorm_relu_fprop_infer", "batchnorm_relu_bprop")   # reference/fused.py, csrc/norm/batchnorm_relu.h
REFERENCE_API += FUSED_API
