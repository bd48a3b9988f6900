"""KernelOps: the reference API (fastconv/backends/reference) implemented by launching the csrc/ kernels: a
Launcher (launcher.py) with the plan functions of each op's file bound as its methods, so the jit (CuPy +
NVRTC), native (fastconv._C) and emulated (fastconv._emu) backends run the very same plans. Kernel names
are C++ template-ids (``fc::conv2d_fprop_implicit_gemm<fc::TileSmall, 4, int, float>``): every backend
registers or compiles kernels under the same strings, so one name means one instantiation everywhere.
"""
from __future__ import annotations

import inspect

from . import activation, conv2d, dropout, gemm, images, loss, norm, optim, pool
from .cast import cast_kernel_names
from .common import ARGMAX_CTYPES, CTYPES, gemm_configs
from .conv2d import fused_kernel_names
from .images import NORMALIZE_KERNELS
from .launcher import Launcher
from .tensor_op import tensor_op_kernel_names


def all_kernel_names() -> list[str]:
    """Every kernel instantiation the plans below can launch: the native build's registry
    (csrc/launch/kernel_list.inc, written by scripts/gen_kernel_list.py) holds exactly these."""
    names = []
    for tile, vec, index, t in gemm_configs():
        for op in ("fprop", "dgrad", "wgrad", "dgrad_strided"):
            names.append(f"fc::conv2d_{op}_implicit_gemm<fc::{tile}, {vec}, {index}, {t}>")
        for ta in ("false", "true"):
            for tb in ("false", "true"):
                names.append(f"fc::gemm_bias_act<fc::{tile}, {vec}, {index}, {t}, {ta}, {tb}>")
    names += fused_kernel_names()
    for t in CTYPES.values():
        for op in ("fprop", "dgrad", "wgrad"):
            names.append(f"fc::conv2d_{op}_depthwise<{t}>")
        for a in ARGMAX_CTYPES.values():
            names += [f"fc::max_pool2d_fprop<{t}, {a}>", f"fc::max_pool2d_bprop<{t}, {a}>"]
        for k in ("split_k_reduce", "avg_pool2d_fprop", "avg_pool2d_bprop", "global_avg_pool_fprop",
                  "global_avg_pool_bprop", "column_reduce_partial", "column_finalize", "reduce_to_scalar",
                  "activation_fprop_kernel", "activation_bprop_kernel", "softmax_fprop_strided",
                  "softmax_bprop_strided", "dropout_mask_kernel", "multiply_kernel", "batchnorm_apply_kernel",
                  "batchnorm_infer_kernel", "batchnorm_dx_kernel", "mse_bprop_kernel", "sgd_update_multi",
                  "adam_update_multi"):
            names.append(f"fc::{k}<{t}>")
        vecs = (1, 4) if t == "float" else (1,)   # loss.py launch_rows: vector_width() is 4 for float32 only
        names += [f"fc::softmax_{op}_rows<{t}, {v}>" for op in ("fprop", "bprop") for v in vecs]
        for lt in ("int64_t", t):
            for k in ("softmax_xent_fprop_rows", "softmax_xent_bprop_rows", "cross_entropy_fprop_rows"):
                names += [f"fc::{k}<{t}, {lt}, {v}>" for v in vecs]
            names.append(f"fc::cross_entropy_bprop_kernel<{t}, {lt}>")
    names.append("fc::set_step_scalars<double>")
    names += cast_kernel_names()
    names += list(NORMALIZE_KERNELS.values())
    return names + tensor_op_kernel_names()   # sm_80+ (setup.py builds sm_80 and newer only)


class KernelOps(Launcher):
    """The reference API implemented by launching the csrc/ kernels: KernelOps(xp, launch, ptr, ...) takes
    Launcher's fields; each method is the plan function of the same name, called with this launcher.
    conv2d_* and dense_* take precision= ('tf32' / 'bf16' / 'fp16' route to the tensor-core plans)."""
    conv2d_fprop, conv2d_dgrad, conv2d_wgrad = conv2d.conv2d_fprop, conv2d.conv2d_dgrad, conv2d.conv2d_wgrad
    conv2d_fprop_tensor_op, conv2d_dgrad_tensor_op = conv2d.conv2d_fprop_tensor_op, conv2d.conv2d_dgrad_tensor_op
    conv2d_wgrad_tensor_op = conv2d.conv2d_wgrad_tensor_op
    conv2d_fprop_tensor_core, conv2d_dgrad_tensor_core = conv2d.conv2d_fprop_tensor_core, conv2d.conv2d_dgrad_tensor_core
    conv2d_bias_relu_maxpool_fprop, relu_maxpool_bprop = conv2d.conv2d_bias_relu_maxpool_fprop, conv2d.relu_maxpool_bprop
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
             "batchnorm_relu_fprop_infer", "batchnorm_relu_bprop")   # reference/fused.py, csrc/fused/
REFERENCE_API += FUSED_API
