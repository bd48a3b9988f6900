// conv2d_depthwise_simt.h — direct kernels for depthwise convolution (groups == C, so Cg == 1, with a
// channel multiplier Kg = K / C): an implicit GEMM would have a reduction of only R*S and a tile
// width of Kg (1 or 2), wasting almost all of a 32-wide tile.
//   fprop: y[n, p, q, k]  = epilogue( sum_{r, s} x[n, p*sh - pt + r*dh, q*sw - pl + s*dw, k / Kg] * w[r, s, 0, k] )
//   dgrad: dx[n, h, w, c] = sum_{r, s, j < Kg} dy[n, p, q, c*Kg + j] * w[r, s, 0, c*Kg + j]  (taps on the stride grid)
//   wgrad: dw[r, s, 0, k] = sum_{n, p, q} x[n, p*sh - pt + r*dh, q*sw - pl + s*dw, k / Kg] * dy[n, p, q, k]
// One thread per output element (fprop, dgrad; channel fastest, so a warp reads
// consecutive channels); wgrad: a 32-channel x 8-row block reduces a slice of the N*P*Q
// rows, partial sums per split, then split_k_reduce (deterministic). 64-bit indices.
// Checked by: python -m pytest tests/kernels -q -k depthwise
#pragma once
#include "../common/problem.h"
#include "../epilogue/bias_act.h"
#include "../gemm/split_k_reduce.h"

namespace fc {

template <class T>
__global__ void conv2d_fprop_depthwise(Conv2dProblem pb, const T* __restrict__ x, const T* __restrict__ w,
                                       T* __restrict__ y, const T* __restrict__ bias, int has_bias, int act,
                                       T alpha) {
  const int64_t total = int64_t(pb.N) * pb.P * pb.Q * pb.K;
  const int Kg = pb.Kg();
  const BiasActEpilogue<T> stage{bias, has_bias, act, alpha};
  for (int64_t i = global_thread_index(); i < total; i += global_thread_count()) {
    const int k = int(i % pb.K);
    int64_t t = i / pb.K;
    const int q = int(t % pb.Q);
    t /= pb.Q;
    const int p = int(t % pb.P);
    const int64_t n = t / pb.P;
    const int c = k / Kg;
    T acc = T(0);
    for (int r = 0; r < pb.R; ++r) {
      const int h = p * pb.stride_h - pb.pad_h + r * pb.dilation_h;
      if (h < 0 || h >= pb.H) continue;
      for (int s = 0; s < pb.S; ++s) {
        const int ww = q * pb.stride_w - pb.pad_w + s * pb.dilation_w;
        if (ww < 0 || ww >= pb.W) continue;
        acc += x[((n * pb.H + h) * pb.W + ww) * pb.C + c] * w[int64_t(r * pb.S + s) * pb.K + k];
      }
    }
    y[i] = stage(acc, k);
  }
}

template <class T>
__global__ void conv2d_dgrad_depthwise(Conv2dProblem pb, const T* __restrict__ dy, const T* __restrict__ w,
                                       T* __restrict__ dx) {
  const int64_t total = int64_t(pb.N) * pb.H * pb.W * pb.C;
  const int Kg = pb.Kg();
  for (int64_t i = global_thread_index(); i < total; i += global_thread_count()) {
    const int c = int(i % pb.C);
    int64_t t = i / pb.C;
    const int ww = int(t % pb.W);
    t /= pb.W;
    const int h = int(t % pb.H);
    const int64_t n = t / pb.H;
    T acc = T(0);
    for (int r = 0; r < pb.R; ++r) {
      const int ph = h + pb.pad_h - r * pb.dilation_h;
      if (ph < 0 || ph % pb.stride_h != 0 || ph / pb.stride_h >= pb.P) continue;
      const int p = ph / pb.stride_h;
      for (int s = 0; s < pb.S; ++s) {
        const int pw = ww + pb.pad_w - s * pb.dilation_w;
        if (pw < 0 || pw % pb.stride_w != 0 || pw / pb.stride_w >= pb.Q) continue;
        const int q = pw / pb.stride_w;
        const T* dyp = dy + ((n * pb.P + p) * pb.Q + q) * pb.K + int64_t(c) * Kg;
        const T* wp = w + int64_t(r * pb.S + s) * pb.K + int64_t(c) * Kg;
        for (int j = 0; j < Kg; ++j) acc += dyp[j] * wp[j];
      }
    }
    dx[i] = acc;
  }
}

// grid (ceil(K / 32), R*S, splits) or those tiles on grid.x (fc::block_tile), block (32, 8). Writes
// out[split][r*S + s][k] (the workspace, or dw itself when splits == 1); rows_per_split: how many of the
// N*P*Q rows each split reduces.
template <class T>
__global__ void __launch_bounds__(256)
conv2d_wgrad_depthwise(Conv2dProblem pb, const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ out,
                       int64_t rows_per_split) {
  __shared__ T partial[8][33];
  const BlockTile tile = block_tile(ceil_div(pb.K, 32), int64_t(pb.R) * pb.S);
  const int k = int(tile.x) * 32 + int(threadIdx.x);
  const int rs = int(tile.y);
  const int r = rs / pb.S, s = rs % pb.S;
  const int64_t rows = int64_t(pb.N) * pb.P * pb.Q;
  const int64_t begin = tile.z * rows_per_split;
  const int64_t end = begin + rows_per_split < rows ? begin + rows_per_split : rows;
  T acc = T(0);
  if (k < pb.K) {
    const int c = k / pb.Kg();
    for (int64_t m = begin + threadIdx.y; m < end; m += 8) {
      const int q = int(m % pb.Q);
      const int64_t t = m / pb.Q;
      const int p = int(t % pb.P);
      const int64_t n = t / pb.P;
      const int h = p * pb.stride_h - pb.pad_h + r * pb.dilation_h;
      const int ww = q * pb.stride_w - pb.pad_w + s * pb.dilation_w;
      if (h >= 0 && h < pb.H && ww >= 0 && ww < pb.W)
        acc += x[((n * pb.H + h) * pb.W + ww) * pb.C + c] * dy[m * pb.K + k];
    }
  }
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && k < pb.K) {
    T sum = partial[0][threadIdx.x];
    for (int y = 1; y < 8; ++y) sum += partial[y][threadIdx.x];
    out[(tile.z * pb.R * pb.S + rs) * pb.K + k] = sum;
  }
}

}  // namespace fc
