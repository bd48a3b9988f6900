// conv2d_wgrad_simt.h — the filter gradient of conv2d:
//     dw[r, s, c, g*Kg + j] = sum_{n, p, q} x[n, p*sh - pt + r*dh, q*sw - pl + s*dw, g*Cg + c] * dy[n, p, q, g*Kg + j]
// as an implicit GEMM per group: M = R*S*Cg rows (r, s, c), N = Kg columns, K = N*P*Q (n, p, q).
// The reduction (N*P*Q) is usually far longer than the output is large, so it is split: blockIdx.z
// = group * splits + split, each split writes its partial sums to workspace[split] and
// split_k_reduce (gemm/split_k_reduce.h) adds them in a fixed order: deterministic, no atomics.
// With splits == 1 the kernel writes dw directly.
// conv2d_wgrad_implicit_gemm: kVec = 4 along c (x) and j (dy) when C, Cg, K, Kg are
// multiples of 4, split-k chosen by the launcher from the shape alone (not the GPU),
// so a shape always sums in the same order.
// Checked by: python -m pytest tests/kernels -q -k wgrad
#pragma once
#include "../common/problem.h"
#include "../gemm/gemm_mainloop_simt.h"
#include "../gemm/split_k_reduce.h"

namespace fc {

// A[(r, s, c), m] = x[n, p*sh + r*dh - pt, q*sw + s*dw - pl, g*Cg + c]; contiguous along the rows (c).
template <class T, class Index>
struct Conv2dWgradActivationGather {
  const T* x;
  Conv2dProblem pb;
  int group;

  struct Row {
    int h_off, w_off;   // r*dh - pt, s*dw - pl
    int channel;        // g*Cg + c
    bool valid;
  };

  FC_DEVICE Row row(Index i) const {
    const int cg = pb.Cg();
    Row r;
    r.valid = i < Index(pb.R) * pb.S * cg;
    const int ii = r.valid ? int(i) : 0;
    const int c = ii % cg, rs = ii / cg;
    r.h_off = (rs / pb.S) * pb.dilation_h - pb.pad_h;
    r.w_off = (rs % pb.S) * pb.dilation_w - pb.pad_w;
    r.channel = group * cg + c;
    return r;
  }

  template <int V>
  FC_DEVICE void load(const Row& r, Index m, T (&out)[V]) const {
    const int q = int(m % pb.Q);
    const Index t = m / pb.Q;
    const int p = int(t % pb.P);
    const Index n = t / pb.P;
    const int h = p * pb.stride_h + r.h_off;
    const int w = q * pb.stride_w + r.w_off;
    if (r.valid && h >= 0 && h < pb.H && w >= 0 && w < pb.W) {
      load_vec<V>(x + ((n * pb.H + h) * Index(pb.W) + w) * Index(pb.C) + r.channel, out);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) out[i] = T(0);
    }
  }
};

template <class T, class Index>
struct Conv2dWgradStore {   // out[split][(r, s, c)][g*Kg + j]
  T* out;
  int K, Kg, group;
  Index split_offset;

  FC_DEVICE void operator()(Index i, Index j, T acc) const {
    out[split_offset + i * Index(K) + Index(group) * Kg + j] = acc;
  }
};

// grid (ceil(R*S*Cg / BM), ceil(Kg / BN), groups * splits) or those tiles on grid.x (fc::block_tile),
// block Tile::kThreads.
// k_per_split: a multiple of Tile::BK; out: dw (splits == 1) or the workspace (splits, R*S*Cg, K).
template <class Tile, int kVec, class Index, class T>
__global__ void __launch_bounds__(Tile::kThreads, 1)
conv2d_wgrad_implicit_gemm(Conv2dProblem pb, const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ out,
                           int splits, Index k_per_split) {
  const int Kg = pb.Kg();
  const Index rows = Index(pb.R) * pb.S * pb.Cg();
  const BlockTile tile = block_tile(ceil_div<int64_t>(rows, Tile::BM), ceil_div<int64_t>(Kg, Tile::BN));
  const int group = int(tile.z) / splits;
  const int split = int(tile.z) % splits;
  const Index k_total = Index(pb.N) * pb.P * pb.Q;
  const Index k_begin = Index(split) * k_per_split;
  const Index k_end = k_begin + k_per_split < k_total ? k_begin + k_per_split : k_total;
  Conv2dWgradActivationGather<T, Index> ga{x, pb, group};
  // B[m, j] = dy[m, g*Kg + j]: group g's columns of the (N*P*Q) x K output gradient
  MatrixGather<T, Index, false> gb{dy + Index(group) * Kg, Index(pb.K), Index(Kg)};
  Conv2dWgradStore<T, Index> store{out, pb.K, Kg, group, Index(split) * rows * Index(pb.K)};
  gemm_mainloop<Tile, kVec, T, Index, false, false>(ga, gb, rows, Index(Kg), k_begin, k_end,
                                                    Index(tile.x) * Tile::BM, Index(tile.y) * Tile::BN, store);
}

}  // namespace fc
