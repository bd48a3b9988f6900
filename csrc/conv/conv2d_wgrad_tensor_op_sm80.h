// conv2d_wgrad_tensor_op_sm80.h — the filter gradient of conv2d on tensor cores, as an implicit GEMM on the
// tensor-core main loop (gemm_tensor_op_sm80.h):
//     dw[r, s, c, k] = sum_{n, p, q} x[n, p*sh - pt + r*dh, q*sw - pl + s*dw, c] * dy[n, p, q, k]
// M = R*S*C rows (r, s, c), N = K columns, GEMM K = N*P*Q (n, p, q): dw = x^T * dy, fp32 out.
// x^T is contiguous along the GEMM's m (c), so A runs column-major through the main loop (its
// stage k-major, fragments by ldmatrix.trans); dy is B, row-major. groups == 1 only.
// The reduction (N*P*Q) is usually far longer than dw is large, so it is split: blockIdx.z = split,
// each split writes its fp32 partial sums to workspace[split], and split_k_reduce
// (gemm/split_k_reduce.h) adds them in ascending split order: deterministic, no atomics. The splits
// are chosen from the shape alone (plans/tensor_op.py), so a shape always sums in the same order.
// With splits == 1 the kernel writes dw directly.
// The host requires C % kVec == 0, K % kVec == 0 and 16-byte aligned x and dy; otherwise it falls back.
// conv2d_wgrad_tensor_op: mma.sync + ldmatrix.trans + cp.async pipeline, split-k.
// Checked by: python -m pytest tests/kernels/test_tensor_core.py -q -k wgrad
#pragma once
#include "../common/problem.h"
#include "../gemm/gemm_tensor_op_sm80.h"

namespace fc {

// Column-major A: A[rsc, npq] = x[n, h, w, c], gathered with rows npq (the reduction, this split's
// [k_begin, k_end)) and columns rsc = (r, s, c); zero where the tap falls in the padding.
template <class T>
struct Conv2dWgradTensorOpActivationGather {
  const T* x;
  Conv2dProblem pb;
  int k_begin, k_end;

  struct Row {
    int npq;   // relative to the slice origin
  };

  FC_DEVICE Row row(int kk) const { return Row{kk}; }

  FC_DEVICE const T* ptr(const Row& r, int rsc, int k0, bool& ok) const {
    const int npq = k_begin + r.npq + k0;
    const int c = rsc % pb.C, rs = rsc / pb.C;
    const int q = npq % pb.Q, np = npq / pb.Q;
    const int p = np % pb.P, n = np / pb.P;
    const int h = p * pb.stride_h - pb.pad_h + (rs / pb.S) * pb.dilation_h;
    const int w = q * pb.stride_w - pb.pad_w + (rs % pb.S) * pb.dilation_w;
    ok = npq < k_end && rs < pb.R * pb.S && h >= 0 && h < pb.H && w >= 0 && w < pb.W;
    return ok ? x + ((int64_t(n) * pb.H + h) * pb.W + w) * pb.C + c : x;
  }
};

// grid (ceil(R*S*C / BM), ceil(K / BN), splits) or those tiles on grid.x (fc::block_tile), block
// Traits::kThreads. k_per_split: a multiple of
// Traits::BK; out: dw (splits == 1) or the fp32 workspace (splits, R*S*C, K).
template <class Traits, int kVec>
__global__ void __launch_bounds__(Traits::kThreads, 1)
conv2d_wgrad_tensor_op(Conv2dProblem pb, const typename Traits::Element* __restrict__ x,
                       const typename Traits::Element* __restrict__ dy, float* __restrict__ out, int k_per_split) {
  using T = typename Traits::Element;
  const int rows = pb.R * pb.S * pb.C;
  const int k_total = pb.N * pb.P * pb.Q;
  const BlockTile tile = block_tile(ceil_div(rows, Traits::BM), ceil_div(pb.K, Traits::BN));
  const int split = int(tile.z);
  const int k_begin = split * k_per_split;
  const int k_end = k_total - k_begin < k_per_split ? k_total : k_begin + k_per_split;
  Conv2dWgradTensorOpActivationGather<T> ga{x, pb, k_begin, k_end};
  // B[npq, k] = dy[npq, k] for this split's rows
  RowMajorBGather<T> gb{dy + int64_t(k_begin) * pb.K, pb.K, k_end - k_begin, pb.K};
  TensorOpStore<float> store{out + int64_t(split) * rows * pb.K, pb.K,
                             BiasResidualActEpilogue<float>{nullptr, 0, nullptr, 0, kActIdentity, 0.f}};
  gemm_tensor_op_mainloop<Traits, kVec, true>(ga, gb, rows, pb.K, k_end - k_begin, int(tile.x) * Traits::BM,
                                              int(tile.y) * Traits::BN, store);
}

}  // namespace fc
