// avg_pool2d.h — average and global-average pooling on NHWC activations, forward beside backward.
//   avg fprop: y[n, p, q, c] = (sum of the window's real taps, in tap order) / divisor(p, q), where the
//              divisor is R*S (count_include_pad) or the number of real taps, at least 1 (a window
//              wholly in the padding averages to 0).
//   avg bprop: dx[n, h, w, c] = sum over the windows covering (h, w), in tap order, of dy / divisor
//              (a gather: deterministic, no atomics; bit-identical to the reference's tap loop).
//   global fprop: y[n, c] = sum_{h, w} x[n, h, w, c] / (H*W);  global bprop: dx = dy[n, c] / (H*W).
// One thread per output / input element, channel fastest.
// Checked by: python -m pytest tests/kernels -q -k avg_pool
#pragma once
#include "max_pool2d.h"

namespace fc {

FC_DEVICE int pool_divisor(const Pool2dProblem& pb, int p, int q, int count_include_pad) {
  if (count_include_pad) return pb.R * pb.S;
  const int h0 = p * pb.stride_h - pb.pad_h, w0 = q * pb.stride_w - pb.pad_w;
  const int rows = min(h0 + pb.R, pb.H) - max(h0, 0);
  const int cols = min(w0 + pb.S, pb.W) - max(w0, 0);
  const int count = (rows > 0 && cols > 0) ? rows * cols : 0;
  return count > 0 ? count : 1;
}

template <class T>
__global__ void avg_pool2d_fprop(Pool2dProblem pb, const T* __restrict__ x, T* __restrict__ y, int count_include_pad) {
  const int64_t total = int64_t(pb.N) * pb.P * pb.Q * pb.C;
  for (int64_t i = global_thread_index(); i < total; i += global_thread_count()) {
    const NhwcCoord o = nhwc_coord(i, pb.P, pb.Q, pb.C);
    const int64_t n = o.n;
    const int p = o.row, q = o.col, c = o.c;
    T sum = T(0);
    for (int r = 0; r < pb.R; ++r) {
      const int h = p * pb.stride_h - pb.pad_h + r;
      if (h < 0 || h >= pb.H) continue;
      for (int s = 0; s < pb.S; ++s) {
        const int w = q * pb.stride_w - pb.pad_w + s;
        if (w >= 0 && w < pb.W) sum += x[((n * pb.H + h) * pb.W + w) * pb.C + c];
      }
    }
    y[i] = sum / T(pool_divisor(pb, p, q, count_include_pad));
  }
}

template <class T>
__global__ void avg_pool2d_bprop(Pool2dProblem pb, const T* __restrict__ dy, T* __restrict__ dx, int count_include_pad) {
  const int64_t total = int64_t(pb.N) * pb.H * pb.W * pb.C;
  for (int64_t i = global_thread_index(); i < total; i += global_thread_count()) {
    const NhwcCoord e = nhwc_coord(i, pb.H, pb.W, pb.C);
    const int64_t n = e.n;
    const int h = e.row, w = e.col, c = e.c;
    const WindowRange win = covering_windows(pb, h, w);
    const int p_lo = win.p_lo, p_hi = win.p_hi, q_lo = win.q_lo, q_hi = win.q_hi;
    T acc = T(0);
    for (int p = p_hi; p >= p_lo; --p)
      for (int q = q_hi; q >= q_lo; --q)
        acc += dy[((n * pb.P + p) * pb.Q + q) * pb.C + c] / T(pool_divisor(pb, p, q, count_include_pad));
    dx[i] = acc;
  }
}

// One thread per (n, c); the H*W sum runs down one column of the (N, H*W, C) view.
template <class T>
__global__ void global_avg_pool_fprop(const T* __restrict__ x, T* __restrict__ y, int64_t N, int64_t HW, int C) {
  const int64_t total = N * C;
  for (int64_t i = global_thread_index(); i < total; i += global_thread_count()) {
    const int c = int(i % C);
    const int64_t n = i / C;
    const T* col = x + n * HW * C + c;
    T sum = T(0);
    for (int64_t j = 0; j < HW; ++j) sum += col[j * C];
    y[i] = sum / T(HW);
  }
}

template <class T>
__global__ void global_avg_pool_bprop(const T* __restrict__ dy, T* __restrict__ dx, int64_t N, int64_t HW, int C) {
  const int64_t total = N * HW * C;
  for (int64_t i = global_thread_index(); i < total; i += global_thread_count()) {
    const int c = int(i % C);
    const int64_t n = i / (HW * C);
    dx[i] = dy[n * C + c] / T(HW);
  }
}

}  // namespace fc
