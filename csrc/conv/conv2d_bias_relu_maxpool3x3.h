// conv2d_bias_relu_maxpool3x3.h — conv2d + bias + ReLU + 3x3 stride-2 max-pool (the ResNet stem's
// pool; pool padding 'valid', 'same' or explicit) as one kernel, and a backward for any max-pool
// geometry (pool backward + ReLU mask + bias gradient in one pass). NHWC.
//
//   fprop:  z[n, p, q, k] = conv2d(x, w)[n, p, q, k] + b[k]                (conv2d_fprop_simt.h's GEMM)
//           y[n, pp, qq, k] = max over the window's real taps (r, s) < (3, 3) of
//                             relu(z[n, 2pp - pt + r, 2qq - pl + s, k])
//           argmax = r*3 + s of the chosen tap (uint8; max_pool2d.h's tie / NaN / padding rules).
//           z and relu(z) are never written to memory.
//   bprop:  dz[n, p, q, k] = sum over the windows covering (p, q) that selected it and whose pooled
//           y passed ReLU (!(y <= 0)) of dy[window], gathered in max_pool2d_bprop's tap order;
//           db[k] = sum of dz[..., k]. Every dz element is written once by one thread: no atomics.
//
// Why a shared-memory conv tile and not "GEMM rows = window taps" (the 2x2 kernel's trick):
// 3x3/2 windows overlap (each interior conv output is read by up to 4 windows), so taps-as-rows
// recomputes every conv output 9/4 = 2.25x on average (M = 9 * windows instead of ~4 * windows).
// Here a block's GEMM rows are the conv outputs of one (2TP+1) x (2TQ+1) patch — the halo of its
// TP x TQ pooled windows; the epilogue parks relu(z + b) in shared memory and, after one barrier,
// the block pools there. The cost is the patch's halo row/column plus the unused rows of the BM
// tile: BM / (4 * TP * TQ) = 32/16 = 2.0x for TileSmall (3 x 9 patch) and 64/40 = 1.6x for
// TileMedium (5 x 11 patch), against 2.25x. TileLarge is not used: a 128 x 128 fp32 patch (64 KiB)
// exceeds the 48 KiB of static shared memory. (Unmeasured: no GPU this session.)
// conv2d_bias_relu_maxpool3x3s2_fprop: the shared CUDA-core main loop + smem pooling.
// relu_maxpool_bprop: gather per conv output, one (32-channel x 8-row) block per split.
// Checked by: python -m pytest tests/kernels/test_fused_kernels.py -q -k 3x3  (emulator vs reference)
#pragma once
#include "../common/problem.h"
#include "../common/math.h"
#include "conv2d_fprop_simt.h"
#include "../epilogue/activation.h"
#include "../gemm/gemm_mainloop_simt.h"
#include "../pool/max_pool2d.h"

namespace fc {

// Pooled windows per block (TP x TQ) for a GEMM tile: the (2TP+1) x (2TQ+1) conv patch fits BM rows.
template <class Tile> struct MaxPool3x3s2Patch;
template <> struct MaxPool3x3s2Patch<TileSmall> { static constexpr int TP = 1, TQ = 4; };
template <> struct MaxPool3x3s2Patch<TileMedium> { static constexpr int TP = 2, TQ = 5; };

template <class Tile>
struct MaxPool3x3s2Traits {
  static constexpr int TP = MaxPool3x3s2Patch<Tile>::TP, TQ = MaxPool3x3s2Patch<Tile>::TQ;
  static constexpr int kRows = 2 * TP + 1, kCols = 2 * TQ + 1;   // the conv patch
  static_assert(kRows * kCols <= Tile::BM, "the conv patch must fit the GEMM tile's rows");
};

// A[m, kk] of the conv GEMM with row m = block * BM + i, i = patch row * kCols + patch column; the
// block index enumerates (n, patch row tile, patch column tile). Rows outside the conv output (the
// pool's padding, the last partial patch, i >= kRows * kCols) load zeros and are never pooled.
template <class Tile, class T, class Index>
struct Conv2dPoolPatchGather {
  using Traits = MaxPool3x3s2Traits<Tile>;
  Conv2dFpropActivationGather<T, Index> conv;
  Pool2dProblem pool;    // over the conv output: H = P, W = Q, C = K; P, Q = pooled sizes
  int tiles_p, tiles_q;
  using Row = typename Conv2dFpropActivationGather<T, Index>::Row;

  FC_DEVICE Row row(Index m) const {
    const Index b = m / Tile::BM;
    const int i = int(m % Tile::BM);
    const int tq = int(b % tiles_q);
    const Index t = b / tiles_q;
    const int tp = int(t % tiles_p);
    const Index n = t / tiles_p;
    const int p = 2 * Traits::TP * tp - pool.pad_h + i / Traits::kCols;
    const int q = 2 * Traits::TQ * tq - pool.pad_w + i % Traits::kCols;
    Row r;
    r.valid = i < Traits::kRows * Traits::kCols && n < pool.N && p >= 0 && p < pool.H && q >= 0 && q < pool.W;
    const Conv2dProblem& pb = conv.pb;
    r.h0 = p * pb.stride_h - pb.pad_h;
    r.w0 = q * pb.stride_w - pb.pad_w;
    r.base = r.valid ? ((n * Index(pb.H)) * Index(pb.W)) * Index(pb.C) + Index(conv.group) * pb.Cg() : Index(0);
    return r;
  }

  template <int V>
  FC_DEVICE void load(const Row& r, Index kk, T (&out)[V]) const { conv.template load<V>(r, kk, out); }
};

// Parks relu(acc + b) of the block's tile in shared memory (rows m - m0, columns n - n0).
template <class Tile, class T, class Index>
struct BiasReluToSmem {
  T (*patch)[Tile::BN + 1];
  const T* bias;
  int has_bias, col0;
  Index m0, n0;

  FC_DEVICE void operator()(Index m, Index n, T acc) const {
    T v = acc;
    if (has_bias) v += bias[col0 + int(n)];
    patch[int(m - m0)][int(n - n0)] = activation_fprop<T>(kActRelu, v, T(0));
  }
};

// grid (N * ceil(PP / TP) * ceil(QQ / TQ), ceil(Kg / BN), groups) or those tiles on grid.x (fc::block_tile),
// block Tile::kThreads.
// pool: the 3x3/2 pool over the conv output (H = P, W = Q, C = K, P/Q pooled, pad_h/pad_w top/left).
// y, argmax: (N, PP, QQ, K). bias is read only when has_bias.
template <class Tile, int kVec, class Index, class T>
__global__ void __launch_bounds__(Tile::kThreads, 1)
conv2d_bias_relu_maxpool3x3s2_fprop(Conv2dProblem pb, Pool2dProblem pool, const T* __restrict__ x,
                                    const T* __restrict__ w, const T* __restrict__ bias, int has_bias,
                                    T* __restrict__ y, uint8_t* __restrict__ argmax) {
  using Traits = MaxPool3x3s2Traits<Tile>;
  // +1: the pooling reads walk rows at a fixed column. The epilogue's stores stay 2-way conflicted
  // (benchmarks/counters/emulated.json): its lanes are TN = 4 columns apart, which gemm_mainloop's
  // thread-to-column mapping fixes, not this pitch.
  __shared__ T patch[Tile::BM][Tile::BN + 1];
  const int Kg = pb.Kg();
  const int tiles_p = (pool.P + Traits::TP - 1) / Traits::TP;
  const int tiles_q = (pool.Q + Traits::TQ - 1) / Traits::TQ;
  const int64_t patches = int64_t(pb.N) * tiles_p * tiles_q;
  const BlockTile tile = block_tile(patches, ceil_div<int64_t>(Kg, Tile::BN));
  const int group = int(tile.z);
  const Index M = Index(patches) * Tile::BM;
  const Index m0 = Index(tile.x) * Tile::BM, n0 = Index(tile.y) * Tile::BN;
  Conv2dPoolPatchGather<Tile, T, Index> ga{Conv2dFpropActivationGather<T, Index>{x, pb, M, group}, pool,
                                           tiles_p, tiles_q};
  MatrixGather<T, Index, false> gb{w + Index(group) * Kg, Index(pb.K), Index(Kg)};   // as conv2d_fprop
  BiasReluToSmem<Tile, T, Index> park{patch, bias, has_bias, group * Kg, m0, n0};
  const Index k_total = Index(pb.R) * pb.S * pb.Cg();
  gemm_mainloop<Tile, kVec, T, Index, true, false>(ga, gb, M, Index(Kg), Index(0), k_total, m0, n0, park);
  __syncthreads();

  // Pool the patch: thread e handles (window, column) pairs, column fastest (coalesced stores).
  const int tq = int(tile.x % tiles_q);
  const int tp = int(tile.x / tiles_q % tiles_p);
  const Index n = Index(tile.x / tiles_q / tiles_p);
  for (int e = int(threadIdx.x); e < Traits::TP * Traits::TQ * Tile::BN; e += Tile::kThreads) {
    const int j = e % Tile::BN, win = e / Tile::BN;
    const int wp = win / Traits::TQ, wq = win % Traits::TQ;
    const int pp = tp * Traits::TP + wp, qq = tq * Traits::TQ + wq;
    if (pp >= pool.P || qq >= pool.Q || int(n0) + j >= Kg) continue;
    T best = lowest<T>();
    int arg = 0;
    bool seen = false;
    for (int r = 0; r < 3; ++r) {
      const int p = 2 * pp - pool.pad_h + r;
      if (p < 0 || p >= pool.H) continue;
      for (int s = 0; s < 3; ++s) {
        const int q = 2 * qq - pool.pad_w + s;
        if (q < 0 || q >= pool.W) continue;
        const T v = patch[(2 * wp + r) * Traits::kCols + 2 * wq + s][j];
        if (!seen || v > best || (is_nan(v) && !is_nan(best))) {   // max_pool2d_fprop's rules
          best = v;
          arg = r * 3 + s;
        }
        seen = true;
      }
    }
    const Index o = ((n * pool.P + pp) * pool.Q + qq) * Index(pb.K) + group * Kg + int(n0) + j;
    y[o] = best;
    argmax[o] = static_cast<uint8_t>(arg);
  }
}

// grid (ceil(K / 32), splits), block (32, 8). pool: over the conv output (H = P, W = Q, C = K).
// dy, argmax, y: (N, pool.P, pool.Q, K); dz: (N, P, Q, K). Block (kt, s) owns channels kt*32 .. +31
// and conv positions [s * rows_per_split, +rows_per_split); thread (c, r) walks them with stride 8,
// gathers from the covering windows (max_pool2d_bprop's order) and sums its dz; the 8 row sums are
// then added in order. db_partial: (splits, K), summed in split order by column_finalize.
template <class T, class Arg>
__global__ void __launch_bounds__(256)
relu_maxpool_bprop(Pool2dProblem pool, const T* __restrict__ dy, const Arg* __restrict__ argmax,
                   const T* __restrict__ y, T* __restrict__ dz, T* __restrict__ db_partial, int64_t rows_per_split) {
  __shared__ T rows[8][33];
  const int c = int(blockIdx.x) * 32 + int(threadIdx.x);
  const int K = pool.C;
  const int64_t total = int64_t(pool.N) * pool.H * pool.W;
  const int64_t begin = int64_t(blockIdx.y) * rows_per_split;
  const int64_t end = begin + rows_per_split < total ? begin + rows_per_split : total;
  T acc = T(0);
  if (c < K) {
    for (int64_t e = begin + threadIdx.y; e < end; e += 8) {
      const int w = int(e % pool.W);
      const int64_t t = e / pool.W;
      const int h = int(t % pool.H);
      const int64_t n = t / pool.H;
      const WindowRange win = covering_windows(pool, h, w);
      T g = T(0);
      for (int p = win.p_hi; p >= win.p_lo; --p) {   // tap order ascending, as max_pool2d_bprop
        const int r = h + pool.pad_h - p * pool.stride_h;
        for (int q = win.q_hi; q >= win.q_lo; --q) {
          const int s = w + pool.pad_w - q * pool.stride_w;
          const int64_t o = ((n * pool.P + p) * pool.Q + q) * K + c;
          if (int(argmax[o]) == r * pool.S + s && !(y[o] <= T(0))) g += dy[o];   // relu mask from y
        }
      }
      dz[e * K + c] = g;
      acc += g;
    }
  }
  rows[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < K) {
    T s = rows[0][threadIdx.x];
    for (int r = 1; r < 8; ++r) s += rows[r][threadIdx.x];
    db_partial[int64_t(blockIdx.y) * K + c] = s;
  }
}

}  // namespace fc
