// max_pool2d.h — max pooling on NHWC activations, forward beside backward.
//   fprop: y[n, p, q, c] = max over the window's real (non-padding) taps (r, s) of
//          x[n, p*sh - pt + r, q*sw - pl + s, c];  argmax[n, p, q, c] = r*S + s of the chosen tap.
//          Rules (the reference's, fastconv/backends/reference/pool.py): the first real tap is always
//          taken (even -inf); a later tap replaces it only when strictly greater, so ties keep the
//          first in row-major window order; a NaN replaces a non-NaN best and nothing replaces a NaN
//          best (first NaN wins); padding is never chosen; a window wholly in the padding gives -inf
//          and argmax 0. argmax is 1 byte (uint8) while R*S <= 255 (Arg = uint16/uint32 beyond).
//   bprop: dx[n, h, w, c] = sum over the windows (p, q) covering (h, w) whose argmax is the tap
//          (h + pt - p*sh, w + pl - q*sw) of dy[n, p, q, c]. Each input element *gathers* from the
//          windows that cover it, so there are no atomics and the result is deterministic; the
//          windows are visited in the reference's order (tap r*S + s ascending).
// One thread per output (fprop) / input (bprop) element, channel fastest (coalesced).
// Checked by: python -m pytest tests/kernels -q -k max_pool
#pragma once
#include "../common/index.h"
#include "../common/math.h"
#include "../common/problem.h"

namespace fc {

// The (n, row, col, channel) coordinates of linear index i into an NHWC tensor of rows x cols x C.
struct NhwcCoord {
  int64_t n;
  int row, col, c;
};

FC_DEVICE NhwcCoord nhwc_coord(int64_t i, int rows, int cols, int C) {
  NhwcCoord k;
  k.c = int(i % C);
  int64_t t = i / C;
  k.col = int(t % cols);
  t /= cols;
  k.row = int(t % rows);
  k.n = t / rows;
  return k;
}

// One thread per output, lanes along c then q: with C < 32 a warp's loads of one tap skip the
// stride_w - 1 pixels between windows (50% sector efficiency at 2x2/2 in
// benchmarks/counters/emulated.json); the next tap reads the skipped half, from L1. Kept: a
// shared-memory staged version would add a barrier per tile for bytes L1 already serves.
template <class T, class Arg>
__global__ void max_pool2d_fprop(Pool2dProblem pb, const T* __restrict__ x, T* __restrict__ y, Arg* __restrict__ argmax) {
  const int64_t total = int64_t(pb.N) * pb.P * pb.Q * pb.C;
  for (int64_t i = global_thread_index(); i < total; i += global_thread_count()) {
    const NhwcCoord o = nhwc_coord(i, pb.P, pb.Q, pb.C);
    const int64_t n = o.n;
    const int p = o.row, q = o.col, c = o.c;
    T best = lowest<T>();
    int arg = 0;
    bool seen = false;
    for (int r = 0; r < pb.R; ++r) {
      const int h = p * pb.stride_h - pb.pad_h + r;
      if (h < 0 || h >= pb.H) continue;
      for (int s = 0; s < pb.S; ++s) {
        const int w = q * pb.stride_w - pb.pad_w + s;
        if (w < 0 || w >= pb.W) continue;
        const T v = x[((n * pb.H + h) * pb.W + w) * pb.C + c];
        if (!seen || v > best || (is_nan(v) && !is_nan(best))) {
          best = v;
          arg = r * pb.S + s;
        }
        seen = true;
      }
    }
    y[i] = best;
    argmax[i] = static_cast<Arg>(arg);
  }
}

// First output index p whose window (rows p*stride - pad .. + R - 1) covers input row h.
FC_DEVICE int first_window(int h, int pad, int window, int stride) {
  const int lo = h + pad - window + 1;   // p*stride >= lo
  return lo <= 0 ? 0 : (lo + stride - 1) / stride;
}

// The output windows [p_lo, p_hi] x [q_lo, q_hi] whose taps cover input element (h, w).
struct WindowRange {
  int p_lo, p_hi, q_lo, q_hi;
};

FC_DEVICE WindowRange covering_windows(const Pool2dProblem& pb, int h, int w) {
  WindowRange r;
  r.p_lo = first_window(h, pb.pad_h, pb.R, pb.stride_h);
  r.p_hi = min((h + pb.pad_h) / pb.stride_h, pb.P - 1);
  r.q_lo = first_window(w, pb.pad_w, pb.S, pb.stride_w);
  r.q_hi = min((w + pb.pad_w) / pb.stride_w, pb.Q - 1);
  return r;
}

template <class T, class Arg>
__global__ void max_pool2d_bprop(Pool2dProblem pb, const T* __restrict__ dy, const Arg* __restrict__ argmax,
                                 T* __restrict__ dx) {
  const int64_t total = int64_t(pb.N) * pb.H * pb.W * pb.C;
  for (int64_t i = global_thread_index(); i < total; i += global_thread_count()) {
    const NhwcCoord e = nhwc_coord(i, pb.H, pb.W, pb.C);
    const int64_t n = e.n;
    const int h = e.row, w = e.col, c = e.c;
    const WindowRange win = covering_windows(pb, h, w);
    const int p_lo = win.p_lo, p_hi = win.p_hi, q_lo = win.q_lo, q_hi = win.q_hi;
    T acc = T(0);
    // Tap r = h + pt - p*sh grows as p falls: p descending, q descending is tap order ascending.
    for (int p = p_hi; p >= p_lo; --p) {
      const int r = h + pb.pad_h - p * pb.stride_h;
      for (int q = q_hi; q >= q_lo; --q) {
        const int s = w + pb.pad_w - q * pb.stride_w;
        const int64_t o = ((n * pb.P + p) * pb.Q + q) * pb.C + c;
        if (int(argmax[o]) == r * pb.S + s) acc += dy[o];
      }
    }
    dx[i] = acc;
  }
}

}  // namespace fc
