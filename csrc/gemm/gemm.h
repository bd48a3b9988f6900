// gemm.h — every GEMM kernel we keep (the Dense layer's, and the main loops the convolutions share).
//   gemm/gemm_mainloop_simt.h  CUDA-core main loop: register-prefetched, double-buffered shared memory,
//                              scalar or 16-byte loads; behind every GEMM-shaped SIMT kernel
//   gemm/gemm_simt.h           gemm_bias_act on that main loop, all four transpose combinations, fp32/fp64
//   gemm/split_k_reduce.h      fixed-order sum of split-k partials (deterministic, no atomics)
//   gemm/gemm_tensor_op_sm80.h sm_80+ main loop (mma.sync + ldmatrix + cp.async multi-stage) and
//                              gemm_tensor_op on it; tf32, f16, bf16 operands, fp32 accumulation
//   gemm/gemm_wgmma_sm90.h     sm_90a warp-specialized wgmma + TMA GEMM, bf16/f16; not included here:
//                              only the sm_90a build (csrc/launch/kernels_sm90a.cu) and the emulator compile it
#pragma once
#include "gemm_simt.h"
#include "split_k_reduce.h"
#include "gemm_tensor_op_sm80.h"
