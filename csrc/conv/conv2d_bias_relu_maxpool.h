// conv2d_bias_relu_maxpool.h — conv2d + bias + ReLU + 2x2/2 'valid' max-pool as one kernel, and the
// matching backward pass (max-pool backward + ReLU mask + bias gradient) as one kernel. NHWC.
//
//   fprop:  z[n, p, q, k] = conv2d(x, w)[n, p, q, k] + b[k]              (conv2d_fprop_simt.h's GEMM)
//           y[n, pp, qq, k] = max_{t < 4} relu(z[n, 2pp + t/2, 2qq + t%2, k])
//           argmax[n, pp, qq, k] = the first t reaching the max (uint8, max_pool2d.h's tie/NaN rules)
//           PP = P/2, QQ = Q/2 (a 'valid' pool drops the last conv row/column when P/Q is odd; the
//           dropped rows/columns are never computed). z and relu(z) are never written to memory.
//   bprop:  dz[n, p, q, k] = (argmax == tap(p, q) && !(y <= 0)) ? dy[n, p/2, q/2, k] : 0
//           (the ReLU mask is recovered from the pooled value: the selected element passed ReLU
//           <=> y > 0 (or NaN); unselected elements get zero anyway), zeros in the dropped row/col;
//           db[k] = sum of dz[..., k], a fixed-order (deterministic, atomic-free) reduction in the
//           same pass; dgrad/wgrad then run on dz (conv2d_dgrad_simt.h, conv2d_wgrad_simt.h).
//
// Tiling of the fprop: the GEMM row index m enumerates pool windows with the 4 taps fastest,
//     m = ((n * PP + pp) * QQ + qq) * 4 + t,     conv output (p, q) = (2pp + t/2, 2qq + t%2),
// so M = N*PP*QQ*4, and since BM and every thread's TM rows start at multiples of 4 (TM % 4 == 0),
// a thread's register block holds whole windows: the epilogue reduces each window in registers
// (no shared memory, no extra barrier) and each CTA covers whole windows; a partial last tile has
// whole invalid windows only (M is a multiple of 4).
// conv2d_bias_relu_maxpool2x2_fprop: the shared CUDA-core main loop + a pooling epilogue.
// relu_maxpool2x2_bprop: one (32-channel x 8-window-row) block per (channel tile, split).
// 3x3/2 (overlapping windows): conv2d_bias_relu_maxpool3x3.h, a smem-staged conv patch.
// Checked by: python -m pytest tests/kernels/test_fused_kernels.py -q  (emulator vs NumPy reference)
#pragma once
#include "../common/problem.h"
#include "../common/math.h"
#include "conv2d_fprop_simt.h"
#include "../epilogue/activation.h"
#include "../gemm/gemm_mainloop_simt.h"

namespace fc {

// A[m, kk] of the conv GEMM with rows in pool-window order (see above); loads are conv2d_fprop's.
template <class T, class Index>
struct Conv2dPoolWindowGather {
  Conv2dFpropActivationGather<T, Index> conv;   // its M is N*PP*QQ*4 here (only r.valid uses it)
  int PP, QQ;
  using Row = typename Conv2dFpropActivationGather<T, Index>::Row;

  FC_DEVICE Row row(Index m) const {
    Row r;
    r.valid = m < conv.M;
    if (!r.valid) m = 0;
    const int t = int(m & 3);
    Index win = m >> 2;
    const int qq = int(win % QQ);
    win /= QQ;
    const int pp = int(win % PP);
    const Index n = win / PP;
    const Conv2dProblem& pb = conv.pb;
    r.h0 = (2 * pp + (t >> 1)) * pb.stride_h - pb.pad_h;
    r.w0 = (2 * qq + (t & 1)) * pb.stride_w - pb.pad_w;
    r.base = ((n * Index(pb.H)) * Index(pb.W)) * Index(pb.C) + Index(conv.group) * pb.Cg();
    return r;
  }

  template <int V>
  FC_DEVICE void load(const Row& r, Index kk, T (&out)[V]) const { conv.template load<V>(r, kk, out); }
};

// The pooling epilogue. gemm_mainloop hands each thread's values over in order (i ascending, then
// j): i % 4 is the tap, so the window's running max per column j lives in this functor's registers
// (`mutable`: the main loop takes the epilogue by const reference) and is stored at tap 3.
// tap = m & 3 and j = n & (TN - 1) fold to constants after unrolling (m0, n0 and the thread's
// offsets are multiples of 4 and TN), so best/arg stay in registers (no stack frame: test_compile).
template <class Tile, class T, class Index>
struct MaxPool2x2Epilogue {
  static_assert(Tile::TM % 4 == 0, "a thread's rows must hold whole 2x2 windows");
  static_assert((Tile::TN & (Tile::TN - 1)) == 0, "TN is a power of two (j = n & (TN - 1))");
  T* y;
  uint8_t* argmax;
  const T* bias;
  int has_bias, ld, group_cols, group;
  mutable T best[Tile::TN];
  mutable int arg[Tile::TN];

  FC_DEVICE void operator()(Index m, Index n, T acc) const {
    const int tap = int(m & 3);
    const int j = int(n & (Tile::TN - 1));
    const int col = group * group_cols + int(n);
    T v = acc;
    if (has_bias) v += bias[col];
    v = activation_fprop<T>(kActRelu, v, T(0));
    // max_pool2d.h's rule: first tap taken, later ones only when strictly greater; NaN wins.
    if (tap == 0 || v > best[j] || (is_nan(v) && !is_nan(best[j]))) {
      best[j] = v;
      arg[j] = tap;
    }
    if (tap == 3) {
      const Index o = (m >> 2) * Index(ld) + col;
      y[o] = best[j];
      argmax[o] = static_cast<uint8_t>(arg[j]);
    }
  }
};

// grid (ceil(N*PP*QQ*4 / BM), ceil(Kg / BN), groups) or those tiles on grid.x (fc::block_tile), block Tile::kThreads.
// y, argmax: (N, P/2, Q/2, K). bias is read only when has_bias.
template <class Tile, int kVec, class Index, class T>
__global__ void __launch_bounds__(Tile::kThreads, 1)
conv2d_bias_relu_maxpool2x2_fprop(Conv2dProblem pb, const T* __restrict__ x, const T* __restrict__ w,
                                  const T* __restrict__ bias, int has_bias, T* __restrict__ y,
                                  uint8_t* __restrict__ argmax) {
  const int PP = pb.P / 2, QQ = pb.Q / 2;
  const Index M = Index(pb.N) * PP * QQ * 4;
  const int Kg = pb.Kg();
  const BlockTile tile = block_tile(ceil_div<int64_t>(M, Tile::BM), ceil_div<int64_t>(Kg, Tile::BN));
  const int group = int(tile.z);
  Conv2dPoolWindowGather<T, Index> ga{Conv2dFpropActivationGather<T, Index>{x, pb, M, group}, PP, QQ};
  MatrixGather<T, Index, false> gb{w + Index(group) * Kg, Index(pb.K), Index(Kg)};   // as conv2d_fprop
  MaxPool2x2Epilogue<Tile, T, Index> out{y, argmax, bias, has_bias, pb.K, Kg, group};
  const Index k_total = Index(pb.R) * pb.S * pb.Cg();
  gemm_mainloop<Tile, kVec, T, Index, true, false>(ga, gb, M, Index(Kg), Index(0), k_total,
                                                   Index(tile.x) * Tile::BM, Index(tile.y) * Tile::BN, out);
}

// grid (ceil(K / 32), splits), block (32, 8). dy, argmax, y: (N, P/2, Q/2, K); dz: (N, P, Q, K).
// Block (kt, s) owns channels kt*32 .. +31 and windows [s * windows_per_split, +windows_per_split);
// thread (c, r) walks its windows with stride 8, writes their 2x2 taps (and the dropped odd
// row/column next to them: zeros) and sums the passed gradient; the 8 row sums are then added in
// order. db_partial: (splits, K), summed in split order by column_finalize (ops/reduce.h) when
// splits > 1. Every element of dz is written exactly once (no atomics; deterministic).
template <class T>
__global__ void __launch_bounds__(256)
relu_maxpool2x2_bprop(int N, int P, int Q, int K, const T* __restrict__ dy, const uint8_t* __restrict__ argmax,
                      const T* __restrict__ y, T* __restrict__ dz, T* __restrict__ db_partial,
                      int64_t windows_per_split) {
  __shared__ T rows[8][33];
  const int PP = P / 2, QQ = Q / 2;
  const int c = int(blockIdx.x) * 32 + int(threadIdx.x);
  const int64_t windows = int64_t(N) * PP * QQ;
  const int64_t begin = int64_t(blockIdx.y) * windows_per_split;
  const int64_t end = begin + windows_per_split < windows ? begin + windows_per_split : windows;
  T acc = T(0);
  if (c < K) {
    for (int64_t win = begin + threadIdx.y; win < end; win += 8) {
      const int qq = int(win % QQ);
      const int64_t t = win / QQ;
      const int pp = int(t % PP);
      const int64_t n = t / PP;
      const int64_t o = win * K + c;
      const T g = dy[o];
      const int sel = int(argmax[o]);
      const bool pass = !(y[o] <= T(0));   // relu_bprop's mask, read from the pooled value
      if (pass && sel < 4) acc += g;
      const int last_p = (2 * pp + 2 == P - 1) ? 3 : 2;   // the dropped odd row joins the last window
      const int last_q = (2 * qq + 2 == Q - 1) ? 3 : 2;
      for (int r = 0; r < last_p; ++r) {
        for (int s = 0; s < last_q; ++s) {
          const bool hit = r < 2 && s < 2 && pass && sel == r * 2 + s;
          dz[((n * P + 2 * pp + r) * Q + 2 * qq + s) * K + c] = hit ? g : T(0);
        }
      }
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
