// conv2d_dgrad_tensor_op.h — the activation gradient of conv2d on tensor cores, as an implicit GEMM on
// the tensor-core main loop (gemm_tensor_op.h):
//     dx[n, h, w, c] = epilogue( sum_{r, s, k} dy[n, p, q, k] * w[r, s, c, k] )
//         over the taps with h + pt - r*dh = p*sh and w + pl - s*dw = q*sw, 0 <= p < P, 0 <= q < Q
// M = N*H*W rows (n, h, w), N = C columns, K = R*S*K (r, s, k): dx = dy * w^T. Every stride, padding
// and dilation, with the tap rules of the CUDA-core dgrad (conv/conv2d_dgrad.h): a tap that lands
// between strides or outside dy reads zero (cp.async src-size 0). groups == 1 only.
// Both operands are contiguous along the GEMM's K (dy and w along k), so the filter runs through the
// main loop as a column-major B (its stage n-major, fragments by plain ldmatrix). The host requires
// K % kVec == 0, C % kVec == 0 and 16-byte aligned dy and w; otherwise it falls back
// (fastconv/backends/plans/tensor_op.py conv2d_dgrad_tensor_op).
// Versions: 1. "analytic" like the CUDA-core dgrad: every (r, s) tap is visited, those that miss the
//              stride grid are zero-filled (wasteful by sh*sw for strided convs; exact for all).
// Checked by: python -m pytest tests/kernels/test_tensor_core.py -q -k dgrad
#pragma once
#include "../common/problem.h"
#include "gemm_tensor_op.h"

namespace fc {

// A[m, kk] = dy[n, p, q, k] with m = (n, h, w), kk = (r, s, k); zero where the tap misses.
template <class T>
struct Conv2dDgradTensorOpOutputGradGather {
  const T* dy;
  Conv2dProblem pb;
  int M;

  struct Row {
    const T* base;   // &dy[n, 0, 0, 0]
    int hp, wp;      // h + pad_top, w + pad_left
    bool valid;
  };

  FC_DEVICE Row row(int m) const {
    Row r;
    r.valid = m < M;
    const int mm = r.valid ? m : 0;
    const int w = mm % pb.W, nh = mm / pb.W;
    const int h = nh % pb.H, n = nh / pb.H;
    r.hp = h + pb.pad_h;
    r.wp = w + pb.pad_w;
    r.base = dy + int64_t(n) * pb.P * pb.Q * pb.K;
    return r;
  }

  FC_DEVICE const T* ptr(const Row& r, int kcol, int k0, bool& ok) const {
    const int kk = kcol + k0;
    const int k = kk % pb.K, rs = kk / pb.K;
    const int ph = r.hp - (rs / pb.S) * pb.dilation_h;
    const int pw = r.wp - (rs % pb.S) * pb.dilation_w;
    ok = r.valid && rs < pb.R * pb.S && ph >= 0 && pw >= 0 && ph % pb.stride_h == 0 && pw % pb.stride_w == 0;
    const int p = ph / pb.stride_h, q = pw / pb.stride_w;
    ok = ok && p < pb.P && q < pb.Q;
    return ok ? r.base + (int64_t(p) * pb.Q + q) * pb.K + k : dy;
  }
};

// Column-major B: B[kk, c] = w[r, s, c, k] with kk = (r, s, k), gathered with rows c and columns kk.
template <class T>
struct Conv2dDgradTensorOpFilterGather {
  const T* w;
  Conv2dProblem pb;

  struct Row {
    const T* base;   // &w[0, 0, c, 0]
    bool valid;
  };

  FC_DEVICE Row row(int c) const { return Row{w + int64_t(c < pb.C ? c : 0) * pb.K, c < pb.C}; }

  FC_DEVICE const T* ptr(const Row& r, int kcol, int k0, bool& ok) const {
    const int kk = kcol + k0;
    const int k = kk % pb.K, rs = kk / pb.K;
    ok = r.valid && rs < pb.R * pb.S;
    return ok ? r.base + int64_t(rs) * pb.C * pb.K + k : w;
  }
};

// grid (ceil(N*H*W / BM), ceil(C / BN)), block Traits::kThreads.
template <class Traits, int kVec, class Out>
__global__ void __launch_bounds__(Traits::kThreads, 1)
conv2d_dgrad_tensor_op(Conv2dProblem pb, const typename Traits::Element* __restrict__ dy,
                       const typename Traits::Element* __restrict__ w, Out* __restrict__ dx) {
  using T = typename Traits::Element;
  const int M = pb.N * pb.H * pb.W;
  const int k_total = pb.R * pb.S * pb.K;
  Conv2dDgradTensorOpOutputGradGather<T> ga{dy, pb, M};
  Conv2dDgradTensorOpFilterGather<T> gb{w, pb};
  TensorOpStore<Out> out{dx, pb.C, BiasResidualActEpilogue<Out>{nullptr, 0, nullptr, 0, kActIdentity, 0.f}};
  gemm_tensor_op_mainloop<Traits, kVec, false, true>(ga, gb, M, pb.C, k_total, int(blockIdx.x) * Traits::BM,
                                                     int(blockIdx.y) * Traits::BN, out);
}

}  // namespace fc
