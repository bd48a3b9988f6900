// conv2d_dgrad_phase.h — the stride-phase decomposition of conv2d dgrad, shared by the CUDA-core
// (conv2d_dgrad_simt.h) and tensor-core (conv/conv2d_dgrad_tensor_op_sm80.h) strided kernels.
// dx pixel h takes tap r when (h + pad - r*dil) is a multiple of the stride (then p = that / stride).
// Split dx's rows by phase ph = h mod stride, h = ph + stride*i: tap r serves phase ph iff
//     r*dil == ph + pad (mod stride),
// whose solutions are empty or r = r0 + t*tstep with tstep = stride / gcd(stride, dil), r0 < tstep.
// For those taps p = i + base - t*pstep, base = (ph + pad - r0*dil) / stride (exact, may be < 0),
// pstep = dil / gcd(stride, dil). So each phase is a dense implicit GEMM over its taps only; the
// only masking left is p, q outside dy (the border). A phase with no tap is a GEMM with K = 0: its
// dx pixels get 0. Checked by: python -m pytest tests/kernels -q -k strided
#pragma once
#include "../common/problem.h"

namespace fc {

// One axis (rows or columns) of one phase.
struct Conv2dDgradPhaseAxis {
  int x0;      // the phase's first dx coordinate (ph); its coordinates are x0 + stride*i
  int size;    // how many: ceil((X - x0) / stride), 0 when x0 >= X
  int t0;      // first tap r0
  int tstep;   // tap step
  int taps;    // number of taps (0: the phase is all zeros)
  int base;    // dy coordinate of (i = 0, t = 0)
  int pstep;   // dy coordinate decrement per tap

  FC_HOST_DEVICE static Conv2dDgradPhaseAxis make(int x0, int X, int R, int stride, int pad, int dil) {
    Conv2dDgradPhaseAxis a;
    a.x0 = x0;
    a.size = x0 < X ? (X - x0 + stride - 1) / stride : 0;
    int g = stride, d = dil;   // gcd(stride, dil)
    while (d) {
      const int t = g % d;
      g = d;
      d = t;
    }
    a.tstep = stride / g;
    a.pstep = dil / g;
    a.t0 = -1;
    for (int r = 0; r < a.tstep; ++r)
      if ((x0 + pad - r * dil) % stride == 0) {   // C's % of a negative multiple is 0 too
        a.t0 = r;
        break;
      }
    a.taps = (a.t0 >= 0 && a.t0 < R) ? (R - a.t0 + a.tstep - 1) / a.tstep : 0;
    a.base = a.t0 >= 0 ? (x0 + pad - a.t0 * dil) / stride : 0;
    if (a.taps == 0) a.t0 = 0;
    return a;
  }
};

// Phase z of stride_h * stride_w (row-major over (ph, pw)).
struct Conv2dDgradPhase {
  Conv2dDgradPhaseAxis h, w;

  FC_HOST_DEVICE static Conv2dDgradPhase make(const Conv2dProblem& pb, int z) {
    return Conv2dDgradPhase{
        Conv2dDgradPhaseAxis::make(z / pb.stride_w, pb.H, pb.R, pb.stride_h, pb.pad_h, pb.dilation_h),
        Conv2dDgradPhaseAxis::make(z % pb.stride_w, pb.W, pb.S, pb.stride_w, pb.pad_w, pb.dilation_w)};
  }
  FC_HOST_DEVICE int taps() const { return h.taps * w.taps; }
};

}  // namespace fc
