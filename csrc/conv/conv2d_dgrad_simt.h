// conv2d_dgrad_simt.h — the activation gradient of conv2d (the transposed convolution of dy):
//     dx[n, h, w, g*Cg + c] = sum_{r, s, j < Kg} dy[n, p, q, g*Kg + j] * w[r, s, c, g*Kg + j]
//         over the taps with h + pt - r*dh = p*sh and w + pl - s*dw = q*sw, 0 <= p < P, 0 <= q < Q
// as an implicit GEMM per group: M = N*H*W rows (n, h, w), N = Cg columns (c), K = R*S*Kg (r, s, j).
// Input rows/cols no window reads (stride leftovers) and taps that land between strides get 0.
// Versions: 1. conv2d_dgrad_implicit_gemm ("analytic": every tap is visited and the ones that miss
//              the stride grid read zero; wasteful by sh*sw for strided convs, exact for all),
//              kVec = 4 along j when K, Kg are multiples of 4 (16-byte dy and w loads).
//           2. conv2d_dgrad_strided_implicit_gemm, for stride > 1: one launch over the sh*sw stride phases
//              (grid.z = groups * phases; conv2d_dgrad_phase.h), each a dense GEMM over its own taps,
//              so no K slice is spent on taps that miss the stride grid.
// Checked by: python -m pytest tests/kernels -q -k dgrad
#pragma once
#include "conv2d_dgrad_phase.h"
#include "conv2d_fprop_simt.h"

namespace fc {

// A[m, kk] = dy[n, p, q, g*Kg + j]: m = (n, h, w), kk = (r, s, j); contiguous along kk (j).
template <class T, class Index>
struct Conv2dDgradOutputGradGather {
  const T* dy;
  Conv2dProblem pb;
  Index M;
  int group;

  struct Row {
    Index base;   // offset of dy[n, 0, 0, g*Kg]
    int hp, wp;   // h + pad_top, w + pad_left
    bool valid;
  };

  FC_DEVICE Row row(Index m) const {
    Row r;
    r.valid = m < M;
    if (!r.valid) m = 0;
    const int w = int(m % pb.W);
    const Index t = m / pb.W;
    const int h = int(t % pb.H);
    const Index n = t / pb.H;
    r.hp = h + pb.pad_h;
    r.wp = w + pb.pad_w;
    r.base = ((n * Index(pb.P)) * Index(pb.Q)) * Index(pb.K) + Index(group) * pb.Kg();
    return r;
  }

  template <int V>
  FC_DEVICE void load(const Row& r, Index kk, T (&out)[V]) const {
    const int kg = pb.Kg();
    const int j = int(kk % kg);
    const int rs = int(kk / kg);
    const int ph = r.hp - (rs / pb.S) * pb.dilation_h;
    const int pw = r.wp - (rs % pb.S) * pb.dilation_w;
    bool ok = r.valid && ph >= 0 && pw >= 0 && ph % pb.stride_h == 0 && pw % pb.stride_w == 0;
    const int p = ph / pb.stride_h, q = pw / pb.stride_w;
    ok = ok && p < pb.P && q < pb.Q;
    if (ok) {
      load_vec<V>(dy + r.base + (Index(p) * pb.Q + q) * Index(pb.K) + j, out);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) out[i] = T(0);
    }
  }
};

// B[kk, c] = w[r, s, c, g*Kg + j]: rows are c (the GEMM's n), kk = (r, s, j); contiguous along kk (j).
template <class T, class Index>
struct Conv2dDgradFilterGather {
  const T* w;
  int K, Kg, Cg, group;

  struct Row {
    int c;
    bool valid;
  };

  FC_DEVICE Row row(Index c) const { return Row{int(c), c < Cg}; }

  template <int V>
  FC_DEVICE void load(const Row& r, Index kk, T (&out)[V]) const {
    if (r.valid) {
      const int j = int(kk % Kg);
      const int rs = int(kk / Kg);
      load_vec<V>(w + (Index(rs) * Cg + r.c) * Index(K) + Index(group) * Kg + j, out);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) out[i] = T(0);
    }
  }
};

// grid (ceil(N*H*W / BM), ceil(Cg / BN), groups) or those tiles on grid.x (fc::block_tile), block Tile::kThreads.
template <class Tile, int kVec, class Index, class T>
__global__ void __launch_bounds__(Tile::kThreads, 1)
conv2d_dgrad_implicit_gemm(Conv2dProblem pb, const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx) {
  const Index M = Index(pb.N) * pb.H * pb.W;
  const int Cg = pb.Cg(), Kg = pb.Kg();
  const BlockTile tile = block_tile(ceil_div<int64_t>(M, Tile::BM), ceil_div<int64_t>(Cg, Tile::BN));
  const int group = int(tile.z);
  Conv2dDgradOutputGradGather<T, Index> ga{dy, pb, M, group};
  Conv2dDgradFilterGather<T, Index> gb{w, pb.K, Kg, Cg, group};
  Conv2dOutputStore<T, Index> out{dx, pb.C, Cg, group, BiasActEpilogue<T>{nullptr, 0, kActIdentity, T(0)}};
  const Index k_total = Index(pb.R) * pb.S * Kg;
  gemm_mainloop<Tile, kVec, T, Index, true, true>(ga, gb, M, Index(Cg), Index(0), k_total,
                                                  Index(tile.x) * Tile::BM, Index(tile.y) * Tile::BN, out);
}

// ---- version 2: one stride phase (and group) per grid.z -----------------------------------------------
// A[m, kk] = dy[n, p, q, g*Kg + j] with m = (n, i, j) over the phase's dx pixels and kk = (tr, ts, j) over
// its taps: p = i + base_h - tr*pstep_h, q = j + base_w - ts*pstep_w (conv2d_dgrad_phase.h).
template <class T, class Index>
struct Conv2dDgradStridedOutputGradGather {
  const T* dy;
  Conv2dProblem pb;
  Conv2dDgradPhase ph;
  Index M;
  int group;

  struct Row {
    Index base;   // offset of dy[n, 0, 0, g*Kg]
    int p0, q0;   // dy coordinates of the row's first tap
    bool valid;
  };

  FC_DEVICE Row row(Index m) const {
    Row r;
    r.valid = m < M;
    if (!r.valid) m = 0;
    const int j = int(m % ph.w.size);
    const Index t = m / ph.w.size;
    const int i = int(t % ph.h.size);
    const Index n = t / ph.h.size;
    r.p0 = i + ph.h.base;
    r.q0 = j + ph.w.base;
    r.base = ((n * Index(pb.P)) * Index(pb.Q)) * Index(pb.K) + Index(group) * pb.Kg();
    return r;
  }

  template <int V>
  FC_DEVICE void load(const Row& r, Index kk, T (&out)[V]) const {
    const int kg = pb.Kg();
    const int j = int(kk % kg);
    const int rs = int(kk / kg);
    const int tr = rs / ph.w.taps, ts = rs - tr * ph.w.taps;
    const int p = r.p0 - tr * ph.h.pstep, q = r.q0 - ts * ph.w.pstep;
    if (r.valid && p >= 0 && q >= 0 && p < pb.P && q < pb.Q) {
      load_vec<V>(dy + r.base + (Index(p) * pb.Q + q) * Index(pb.K) + j, out);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) out[i] = T(0);
    }
  }
};

// B[kk, c] = w[t0_h + tr*tstep_h, t0_w + ts*tstep_w, c, g*Kg + j] over the phase's taps.
template <class T, class Index>
struct Conv2dDgradStridedFilterGather {
  const T* w;
  Conv2dProblem pb;
  Conv2dDgradPhase ph;
  int group;

  struct Row {
    int c;
    bool valid;
  };

  FC_DEVICE Row row(Index c) const { return Row{int(c), c < pb.Cg()}; }

  template <int V>
  FC_DEVICE void load(const Row& r, Index kk, T (&out)[V]) const {
    if (r.valid) {
      const int kg = pb.Kg();
      const int j = int(kk % kg);
      const int rs = int(kk / kg);
      const int tr = rs / ph.w.taps, ts = rs - tr * ph.w.taps;
      const int rr = ph.h.t0 + tr * ph.h.tstep, ss = ph.w.t0 + ts * ph.w.tstep;
      load_vec<V>(w + ((Index(rr) * pb.S + ss) * pb.Cg() + r.c) * Index(pb.K) + Index(group) * kg + j, out);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) out[i] = T(0);
    }
  }
};

// The phase's row m -> dx[n, ph + sh*i, pw + sw*j, g*Cg + c].
template <class T, class Index>
struct Conv2dDgradStridedStore {
  T* dx;
  Conv2dProblem pb;
  Conv2dDgradPhase ph;
  int group;

  FC_DEVICE void operator()(Index m, Index c, T acc) const {
    const int j = int(m % ph.w.size);
    const Index t = m / ph.w.size;
    const int i = int(t % ph.h.size);
    const Index n = t / ph.h.size;
    const Index pixel = (n * pb.H + ph.h.x0 + pb.stride_h * i) * Index(pb.W) + ph.w.x0 + pb.stride_w * j;
    dx[pixel * pb.C + group * pb.Cg() + int(c)] = acc;
  }
};

// grid (ceil(N * ceil(H/sh) * ceil(W/sw) / BM), ceil(Cg / BN), groups * sh*sw) or those tiles on grid.x
// (fc::block_tile), block Tile::kThreads.
// Phase 0 is the largest; CTAs past a smaller phase's rows leave at once (uniformly, before any
// barrier). A phase with no tap runs an empty K range and so writes zeros.
template <class Tile, int kVec, class Index, class T>
__global__ void __launch_bounds__(Tile::kThreads, 1)
conv2d_dgrad_strided_implicit_gemm(Conv2dProblem pb, const T* __restrict__ dy, const T* __restrict__ w,
                                   T* __restrict__ dx) {
  const int phases = pb.stride_h * pb.stride_w;
  const int64_t rows0 = int64_t(pb.N) * ceil_div(pb.H, pb.stride_h) * ceil_div(pb.W, pb.stride_w);   // phase 0
  const BlockTile tile = block_tile(ceil_div<int64_t>(rows0, Tile::BM), ceil_div<int64_t>(pb.Cg(), Tile::BN));
  const int group = int(tile.z) / phases;
  const Conv2dDgradPhase ph = Conv2dDgradPhase::make(pb, int(tile.z) % phases);
  const Index M = Index(pb.N) * ph.h.size * ph.w.size;
  const Index m0 = Index(tile.x) * Tile::BM;
  if (m0 >= M) return;
  Conv2dDgradStridedOutputGradGather<T, Index> ga{dy, pb, ph, M, group};
  Conv2dDgradStridedFilterGather<T, Index> gb{w, pb, ph, group};
  Conv2dDgradStridedStore<T, Index> out{dx, pb, ph, group};
  const Index k_total = Index(ph.taps()) * pb.Kg();
  gemm_mainloop<Tile, kVec, T, Index, true, true>(ga, gb, M, Index(pb.Cg()), Index(0), k_total, m0,
                                                  Index(tile.y) * Tile::BN, out);
}

}  // namespace fc
