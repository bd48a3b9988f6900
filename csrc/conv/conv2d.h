// conv2d.h — every conv2d kernel we keep, NHWC activations and Keras (R, S, C, K) filters, the
// CUDA-core ladder first. Each file says what it computes and the command that checks it.
//   fprop  conv/conv2d_fprop_simt.h           implicit GEMM on the CUDA-core main loop (gemm/gemm_mainloop_simt.h),
//                                             every stride/padding/dilation/group count, fp32 and fp64
//          conv/conv2d_depthwise_simt.h       direct kernels for groups == C (fprop, dgrad, wgrad)
//          conv/conv2d_fprop_tensor_op_sm80.h mma.sync implicit GEMM (tf32, f16, bf16), groups == 1,
//                                             on the sm_80 main loop of gemm/gemm_tensor_op_sm80.h
//          conv/conv2d_fprop_wgmma_sm90.h     sm_90a: wgmma fed by TMA (a 4-D NHWC box per filter tap), on the
//                                             warp-specialized main loop of gemm/gemm_wgmma_sm90.h (f16, bf16);
//                                             also the stride-1 dgrad (fprop of dy with the filter turned 180 deg,
//                                             fastconv/backends/plans/conv2d_dgrad_sm90.py)
//   dgrad  conv/conv2d_dgrad_simt.h           "analytic" (every tap) and stride-phase (conv/conv2d_dgrad_phase.h)
//          conv/conv2d_dgrad_tensor_op_sm80.h the same two on tensor cores
//   wgrad  conv/conv2d_wgrad_simt.h           split-k implicit GEMM, reduced by gemm/split_k_reduce.h
//          conv/conv2d_wgrad_tensor_op_sm80.h the same on tensor cores
//   fused  conv/conv2d_bias_relu_maxpool.h    conv + bias + ReLU + 2x2/2 max-pool in one kernel, and its bprop
//          conv/conv2d_bias_relu_maxpool3x3.h the same for the 3x3/2 stem pool (smem-staged conv patch)
//          conv/conv2d_bias_relu_maxpool_tensor_op_sm80.h  the 2x2/2 forward on tensor cores (f16, bf16)
// Which one runs is the plan's choice (fastconv/backends/plans/); the instantiations are listed in
// csrc/launch/kernel_list.inc. sm_90a kernels are included only by the sm_90a build (csrc/launch/kernels_sm90a.cu).
#pragma once
#include "conv2d_fprop_simt.h"
#include "conv2d_dgrad_simt.h"
#include "conv2d_wgrad_simt.h"
#include "conv2d_depthwise_simt.h"
#include "conv2d_fprop_tensor_op_sm80.h"
#include "conv2d_dgrad_tensor_op_sm80.h"
#include "conv2d_wgrad_tensor_op_sm80.h"
#include "conv2d_bias_relu_maxpool.h"
#include "conv2d_bias_relu_maxpool3x3.h"
#include "conv2d_bias_relu_maxpool_tensor_op_sm80.h"
