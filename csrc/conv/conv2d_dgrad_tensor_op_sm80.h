// conv2d_dgrad_tensor_op_sm80.h — the activation gradient of conv2d on tensor cores, as an implicit GEMM on
// the tensor-core main loop (gemm_tensor_op_sm80.h):
//     dx[n, h, w, c] = epilogue( sum_{r, s, k} dy[n, p, q, k] * w[r, s, c, k] )
//         over the taps with h + pt - r*dh = p*sh and w + pl - s*dw = q*sw, 0 <= p < P, 0 <= q < Q
// M = N*H*W rows (n, h, w), N = C columns, K = R*S*K (r, s, k): dx = dy * w^T. Every stride, padding
// and dilation, with the tap rules of the CUDA-core dgrad (conv/conv2d_dgrad_simt.h): a tap that lands
// between strides or outside dy reads zero (cp.async src-size 0). groups == 1 only.
// Both operands are contiguous along the GEMM's K (dy and w along k), so the filter runs through the
// main loop as a column-major B (its stage n-major, fragments by plain ldmatrix). The host requires
// K % kVec == 0, C % kVec == 0 and 16-byte aligned dy and w; otherwise it falls back
// (fastconv/backends/plans/conv2d.py conv2d_dgrad_tensor_op).
// Versions: 1. "analytic" like the CUDA-core dgrad: every (r, s) tap is visited, those that miss the
//              stride grid are zero-filled (wasteful by sh*sw for strided convs; exact for all).
//           2. conv2d_dgrad_strided_tensor_op: for stride > 1, one launch over the sh*sw stride phases
//              (grid.z; conv/conv2d_dgrad_phase.h), each a dense implicit GEMM over its own taps only,
//              so no K-loop slice is spent on taps that miss the stride grid.
// Checked by: python -m pytest tests/kernels/test_tensor_core.py -q -k dgrad
#pragma once
#include "../common/problem.h"
#include "conv2d_dgrad_phase.h"
#include "../gemm/gemm_tensor_op_sm80.h"

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

// grid (ceil(N*H*W / BM), ceil(C / BN)) or those tiles on grid.x (fc::block_tile), block Traits::kThreads.
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
  const BlockTile tile = block_tile(ceil_div(M, Traits::BM), ceil_div(pb.C, Traits::BN));
  gemm_tensor_op_mainloop<Traits, kVec, false, true>(ga, gb, M, pb.C, k_total, int(tile.x) * Traits::BM,
                                                     int(tile.y) * Traits::BN, out);
}

// ---- version 2: one stride phase per grid.z ----------------------------------------------------------
// A[m, kk] = dy[n, p, q, k] with m = (n, i, j) over the phase's dx pixels (h = ph + sh*i, w = pw + sw*j)
// and kk = (tr, ts, k) over the phase's taps: p = i + base_h - tr*pstep_h (conv2d_dgrad_phase.h).
template <class T>
struct Conv2dDgradStridedTensorOpOutputGradGather {
  const T* dy;
  Conv2dProblem pb;
  Conv2dDgradPhase ph;
  int M;

  struct Row {
    const T* base;   // &dy[n, 0, 0, 0]
    int p0, q0;      // dy coordinates of the row's first tap
    bool valid;
  };

  FC_DEVICE Row row(int m) const {
    Row r;
    r.valid = m < M;
    const int mm = r.valid ? m : 0;
    const int j = mm % ph.w.size, ni = mm / ph.w.size;
    const int i = ni % ph.h.size, n = ni / ph.h.size;
    r.p0 = i + ph.h.base;
    r.q0 = j + ph.w.base;
    r.base = dy + int64_t(n) * pb.P * pb.Q * pb.K;
    return r;
  }

  FC_DEVICE const T* ptr(const Row& r, int kcol, int k0, bool& ok) const {
    const int kk = kcol + k0;
    const int k = kk % pb.K, rs = kk / pb.K;
    const int tr = rs / ph.w.taps, ts = rs - tr * ph.w.taps;
    const int p = r.p0 - tr * ph.h.pstep, q = r.q0 - ts * ph.w.pstep;
    ok = r.valid && rs < ph.taps() && p >= 0 && q >= 0 && p < pb.P && q < pb.Q;
    return ok ? r.base + (int64_t(p) * pb.Q + q) * pb.K + k : dy;
  }
};

// Column-major B over the phase's taps: B[kk, c] = w[t0_h + tr*tstep_h, t0_w + ts*tstep_w, c, k].
template <class T>
struct Conv2dDgradStridedTensorOpFilterGather {
  const T* w;
  Conv2dProblem pb;
  Conv2dDgradPhase ph;

  struct Row {
    const T* base;   // &w[0, 0, c, 0]
    bool valid;
  };

  FC_DEVICE Row row(int c) const { return Row{w + int64_t(c < pb.C ? c : 0) * pb.K, c < pb.C}; }

  FC_DEVICE const T* ptr(const Row& r, int kcol, int k0, bool& ok) const {
    const int kk = kcol + k0;
    const int k = kk % pb.K, rs = kk / pb.K;
    const int tr = rs / ph.w.taps, ts = rs - tr * ph.w.taps;
    ok = r.valid && rs < ph.taps();
    const int rr = ph.h.t0 + tr * ph.h.tstep, ss = ph.w.t0 + ts * ph.w.tstep;
    return ok ? r.base + (int64_t(rr) * pb.S + ss) * pb.C * pb.K + k : w;
  }
};

// The phase's row m -> dx[n, ph + sh*i, pw + sw*j, c].
template <class Out>
struct Conv2dDgradStridedTensorOpStore {
  Out* dx;
  Conv2dProblem pb;
  Conv2dDgradPhase ph;
  BiasResidualActEpilogue<Out> stage;
  FC_DEVICE void operator()(int m, int c, float acc) const {
    const int j = m % ph.w.size, ni = m / ph.w.size;
    const int i = ni % ph.h.size, n = ni / ph.h.size;
    const int64_t offset =
        ((int64_t(n) * pb.H + ph.h.x0 + pb.stride_h * i) * pb.W + ph.w.x0 + pb.stride_w * j) * pb.C + c;
    dx[offset] = stage(acc, offset, c);
  }
};

// grid (ceil(N * ceil(H/sh) * ceil(W/sw) / BM), ceil(C / BN), sh*sw) or those tiles on grid.x (fc::block_tile),
// block Traits::kThreads. Phase 0
// is the largest; the CTAs past a smaller phase's rows leave at once. A phase with no tap runs a
// zero-length K loop and so writes zeros.
template <class Traits, int kVec, class Out>
__global__ void __launch_bounds__(Traits::kThreads, 1)
conv2d_dgrad_strided_tensor_op(Conv2dProblem pb, const typename Traits::Element* __restrict__ dy,
                               const typename Traits::Element* __restrict__ w, Out* __restrict__ dx) {
  using T = typename Traits::Element;
  const int rows0 = pb.N * ceil_div(pb.H, pb.stride_h) * ceil_div(pb.W, pb.stride_w);   // phase 0
  const BlockTile tile = block_tile(ceil_div(rows0, Traits::BM), ceil_div(pb.C, Traits::BN));
  const Conv2dDgradPhase ph = Conv2dDgradPhase::make(pb, int(tile.z));
  const int M = pb.N * ph.h.size * ph.w.size;
  const int m0 = int(tile.x) * Traits::BM;
  if (m0 >= M) return;   // uniform over the CTA: before any barrier
  Conv2dDgradStridedTensorOpOutputGradGather<T> ga{dy, pb, ph, M};
  Conv2dDgradStridedTensorOpFilterGather<T> gb{w, pb, ph};
  Conv2dDgradStridedTensorOpStore<Out> out{dx, pb, ph,
                                           BiasResidualActEpilogue<Out>{nullptr, 0, nullptr, 0, kActIdentity, 0.f}};
  gemm_tensor_op_mainloop<Traits, kVec, false, true>(ga, gb, M, pb.C, ph.taps() * pb.K, m0,
                                                     int(tile.y) * Traits::BN, out);
}

}  // namespace fc
