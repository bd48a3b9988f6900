// conv2d_fprop_tensor_op_sm80.h — forward convolution on tensor cores, as an implicit GEMM on the
// tensor-core main loop (gemm_tensor_op_sm80.h):
//     y[n, p, q, k] = epilogue( sum_{r, s, c} x[n, p*sh - pt + r*dh, q*sw - pl + s*dw, c] * w[r, s, c, k] )
// NHWC activations, Keras filters (R, S, C, K); M = N*P*Q rows (n, p, q), N = K columns,
// K = R*S*C (r, s, c). Every stride, padding and dilation; groups == 1 only (grouped convolutions
// take the CUDA-core kernel, conv/conv2d_fprop_simt.h).
// The activation gather reads kVec channels per cp.async: the host requires C % kVec == 0 (so a
// vector never straddles two filter taps) and K % kVec == 0 (filter rows), 16-byte aligned x and w;
// otherwise it falls back to the CUDA-core kernel
// (fastconv/backends/plans/conv2d.py conv2d_fprop_tensor_op).
// Padding taps and rows beyond N*P*Q are zero-filled by cp.async (src-size 0).
// conv2d_fprop_tensor_op: mma.sync + ldmatrix + cp.async pipeline, fused bias + residual + activation.
// Checked by: python -m pytest tests/kernels/test_tensor_core.py -q -k conv
#pragma once
#include "../common/problem.h"
#include "../gemm/gemm_tensor_op_sm80.h"

namespace fc {

// A[m, kk] = x[n, h, w, c] with m = (n, p, q), kk = (r, s, c).
template <class T>
struct Conv2dFpropTensorOpActivationGather {
  const T* x;
  Conv2dProblem pb;
  int M;

  struct Row {
    const T* base;   // &x[n, 0, 0, 0]
    int h0, w0;      // input position of tap (0, 0)
    bool valid;
  };

  FC_DEVICE Row row(int m) const {
    Row r;
    r.valid = m < M;
    const int mm = r.valid ? m : 0;
    const int q = mm % pb.Q, pq = mm / pb.Q;
    const int p = pq % pb.P, n = pq / pb.P;
    r.h0 = p * pb.stride_h - pb.pad_h;
    r.w0 = q * pb.stride_w - pb.pad_w;
    r.base = x + int64_t(n) * pb.H * pb.W * pb.C;
    return r;
  }

  FC_DEVICE const T* ptr(const Row& r, int k, int k0, bool& ok) const {
    const int kk = k + k0;
    const int c = kk % pb.C, rs = kk / pb.C;
    const int h = r.h0 + (rs / pb.S) * pb.dilation_h;
    const int w = r.w0 + (rs % pb.S) * pb.dilation_w;
    ok = r.valid && rs < pb.R * pb.S && h >= 0 && h < pb.H && w >= 0 && w < pb.W;
    return ok ? r.base + (int64_t(h) * pb.W + w) * pb.C + c : x;
  }
};

// grid (ceil(N*P*Q / BM), ceil(K / BN)), block Traits::kThreads; bias (float) read only when has_bias,
// residual (Out, shaped as y) only when has_residual.
template <class Traits, int kVec, class Out>
__global__ void __launch_bounds__(Traits::kThreads, 1)
conv2d_fprop_tensor_op(Conv2dProblem pb, const typename Traits::Element* __restrict__ x,
                       const typename Traits::Element* __restrict__ w, Out* __restrict__ y,
                       const float* __restrict__ bias, int has_bias, int act, float alpha,
                       const Out* __restrict__ residual, int has_residual) {
  using T = typename Traits::Element;
  const int M = pb.N * pb.P * pb.Q;
  const int k_total = pb.R * pb.S * pb.C;
  Conv2dFpropTensorOpActivationGather<T> ga{x, pb, M};
  RowMajorBGather<T> gb{w, pb.K, k_total, pb.K};
  TensorOpStore<Out> out{y, pb.K, BiasResidualActEpilogue<Out>{bias, has_bias, residual, has_residual, act, alpha}};
  const BlockTile tile = block_tile(ceil_div(M, Traits::BM), ceil_div(pb.K, Traits::BN));
  gemm_tensor_op_mainloop<Traits, kVec>(ga, gb, M, pb.K, k_total, int(tile.x) * Traits::BM, int(tile.y) * Traits::BN,
                                        out);
}

}  // namespace fc
