// conv2d_dgrad.h — the activation gradient of conv2d (the transposed convolution of dy):
//     dx[n, h, w, g*Cg + c] = sum_{r, s, j < Kg} dy[n, p, q, g*Kg + j] * w[r, s, c, g*Kg + j]
//         over the taps with h + pt - r*dh = p*sh and w + pl - s*dw = q*sw, 0 <= p < P, 0 <= q < Q
// as an implicit GEMM per group: M = N*H*W rows (n, h, w), N = Cg columns (c), K = R*S*Kg (r, s, j).
// Input rows/cols no window reads (stride leftovers) and taps that land between strides get 0.
// Versions: 1. conv2d_dgrad_implicit_gemm ("analytic": every tap is visited and the ones that miss
//              the stride grid read zero; wasteful by sh*sw for strided convs, exact for all),
//              kVec = 4 along j when K, Kg are multiples of 4 (16-byte dy and w loads).
// Checked by: python -m pytest tests/kernels -q -k dgrad
#pragma once
#include "conv2d_fprop.h"

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

// grid (ceil(N*H*W / BM), ceil(Cg / BN), groups), block Tile::kThreads.
template <class Tile, int kVec, class Index, class T>
__global__ void __launch_bounds__(Tile::kThreads, 1)
conv2d_dgrad_implicit_gemm(Conv2dProblem pb, const T* __restrict__ dy, const T* __restrict__ w, T* __restrict__ dx) {
  const int group = int(blockIdx.z);
  const Index M = Index(pb.N) * pb.H * pb.W;
  const int Cg = pb.Cg(), Kg = pb.Kg();
  Conv2dDgradOutputGradGather<T, Index> ga{dy, pb, M, group};
  Conv2dDgradFilterGather<T, Index> gb{w, pb.K, Kg, Cg, group};
  Conv2dOutputStore<T, Index> out{dx, pb.C, Cg, group, BiasActEpilogue<T>{nullptr, 0, kActIdentity, T(0)}};
  const Index k_total = Index(pb.R) * pb.S * Kg;
  gemm_mainloop<Tile, kVec, T, Index, true, true>(ga, gb, M, Index(Cg), Index(0), k_total,
                                                  Index(blockIdx.x) * Tile::BM, Index(blockIdx.y) * Tile::BN, out);
}

}  // namespace fc
