// conv2d_bias_relu_maxpool_tensor_op_sm80.h — conv2d + bias + ReLU + 2x2/2 'valid' max-pool on tensor
// cores (mma.sync, f16 or bf16 operands, fp32 accumulation), the fused forward of
// conv2d_bias_relu_maxpool.h on the main loop of conv2d_fprop_tensor_op_sm80.h:
//     z[n, p, q, k]   = convert<Out>(relu(conv2d(x, w)[n, p, q, k] + bias[k]))   (fp32 until the cast)
//     y[n, pp, qq, k] = max_{t < 4} z[n, 2pp + t/2, 2qq + t%2, k]
//     argmax          = the first t reaching the max (uint8; max_pool2d.h's tie/NaN rules)
// The cast comes before the max, as in the unfused chain (conv -> relu -> max_pool2d in the output
// type): two fp32 values that round to one bf16 tie, and the first tap wins. The backward is
// relu_maxpool2x2_bprop (conv2d_bias_relu_maxpool.h) on y and argmax, as for the fp32 kernel.
//
// Row order. An mma.sync accumulator fragment gives lane (g, t) rows g and g + 8 of each 16-row tile
// (../shared/FACTS.md, C/D layout), so the GEMM rows are ordered in groups of 32 = 8 windows x 4 taps:
//     m = 32 * (win / 8) + 8 * tap + win % 8
// and lane g's rows g, g + 8 (tile i) and g + 16, g + 24 (tile i + 1) are taps 0..3 of window
// 8 * (m / 32) + g. The epilogue pools in registers (no shared memory, no exchange between lanes),
// and meets the taps in order 0..3 because the main loop hands over tile i before tile i + 1.
// M = 32 * ceil(windows / 8); rows of windows past the last are zero-filled and never stored.
// 3x3/2 pools are not fused here: overlapping windows share conv outputs between warps, so they need
// the conv tile staged through shared memory, which the pipeline stages hold (see the plan's note).
// conv2d_bias_relu_maxpool2x2_tensor_op: Tile64 (a warp's 32 rows are one group), kVec 8.
// Checked by: python -m pytest tests/kernels/test_fused_tensor_op.py -q
#pragma once
#include "conv2d_fprop_tensor_op_sm80.h"

namespace fc {

// A[m, kk] of the conv GEMM with rows in the pool-window order above; loads are conv2d_fprop_tensor_op's.
template <class T>
struct Conv2dPoolWindowTensorOpGather {
  Conv2dFpropTensorOpActivationGather<T> conv;   // conv.M = N * P * Q
  int PP, QQ, windows;
  using Row = typename Conv2dFpropTensorOpActivationGather<T>::Row;

  FC_DEVICE Row row(int m) const {
    const int win = (m >> 5) * 8 + (m & 7), tap = (m >> 3) & 3;
    if (win >= windows) return conv.row(conv.M);   // an invalid row: zero-filled
    const int qq = win % QQ, t = win / QQ;
    const int pp = t % PP, n = t / PP;
    const Conv2dProblem& pb = conv.pb;
    return conv.row((n * pb.P + 2 * pp + (tap >> 1)) * pb.Q + 2 * qq + (tap & 1));
  }

  FC_DEVICE const T* ptr(const Row& r, int k, int k0, bool& ok) const { return conv.ptr(r, k, k0, ok); }
};

// The pooling epilogue: epi(m, n, acc) arrives per lane with i (16-row tile) outermost, so a window's
// taps 0, 1 (tile i) and 2, 3 (tile i + 1) come in order; the running max per column lives in this
// functor's registers (`mutable`: the main loop takes the epilogue by const reference). The tap
// (m / 8) % 4 and the column slot (n / 8) % kMmaN * 2 + n % 2 fold to constants after unrolling only
// when nvcc proves m0, n0 and the warp offsets multiples of 32; it did in some spellings and not in
// others (nvcc 13: the whole functor in local memory), so best/arg are indexed by the unrolled s only.
template <class Traits, class Out>
struct MaxPool2x2TensorOpEpilogue {
  static_assert(Traits::WM % 32 == 0, "a warp's rows hold whole groups of 8 windows x 4 taps");
  static_assert((Traits::kMmaN & (Traits::kMmaN - 1)) == 0, "kMmaN is a power of two (slot = n / 8 % kMmaN)");
  static constexpr int kSlots = 2 * Traits::kMmaN;   // the columns 2t, 2t + 1 of each n8 tile
  Out* y;
  uint8_t* argmax;
  const float* bias;
  int has_bias, K, windows;
  mutable float best[kSlots];
  mutable int arg[kSlots];

  FC_DEVICE void operator()(int m, int n, float acc) const {
    const int tap = (m >> 3) & 3;
    const int slot = ((n >> 3) & (Traits::kMmaN - 1)) * 2 + (n & 1);
    float v = acc;
    if (has_bias) v += bias[n];
    // the cast before the max (ties as the unfused chain sees them); exact back to float
    const float z = static_cast<float>(convert_output<float, Out>(activation_fprop<float>(kActRelu, v, 0.f)));
    const int win = (m >> 5) * 8 + (m & 7);
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      if (s != slot) continue;
      // max_pool2d.h's rule: first tap taken, later ones only when strictly greater; NaN wins.
      if (tap == 0 || z > best[s] || (is_nan(z) && !is_nan(best[s]))) {
        best[s] = z;
        arg[s] = tap;
      }
      if (tap == 3 && win < windows) {
        const int64_t o = int64_t(win) * K + n;
        y[o] = convert_output<float, Out>(best[s]);
        argmax[o] = static_cast<uint8_t>(arg[s]);
      }
    }
  }
};

// grid (ceil(M / BM), ceil(K / BN)) with M = 32 * ceil(N*PP*QQ / 8), or those tiles on grid.x (fc::block_tile);
// block Traits::kThreads. y, argmax: (N, P/2, Q/2, K); bias (float) read only when has_bias.
// Host checks as conv2d_fprop_tensor_op's (C, K multiples of kVec, 16-byte aligned x and w, groups == 1,
// offsets below 2^31) (fastconv/backends/plans/conv2d.py conv2d_bias_relu_maxpool_tensor_op).
template <class Traits, int kVec, class Out>
__global__ void __launch_bounds__(Traits::kThreads, 1)
conv2d_bias_relu_maxpool2x2_tensor_op(Conv2dProblem pb, const typename Traits::Element* __restrict__ x,
                                      const typename Traits::Element* __restrict__ w,
                                      const float* __restrict__ bias, int has_bias, Out* __restrict__ y,
                                      uint8_t* __restrict__ argmax) {
  using T = typename Traits::Element;
  const int PP = pb.P / 2, QQ = pb.Q / 2;
  const int windows = pb.N * PP * QQ;
  const int M = 32 * ceil_div(windows, 8);
  const int k_total = pb.R * pb.S * pb.C;
  Conv2dPoolWindowTensorOpGather<T> ga{Conv2dFpropTensorOpActivationGather<T>{x, pb, pb.N * pb.P * pb.Q}, PP, QQ,
                                       windows};
  RowMajorBGather<T> gb{w, pb.K, k_total, pb.K};
  MaxPool2x2TensorOpEpilogue<Traits, Out> out{y, argmax, bias, has_bias, pb.K, windows};
  const BlockTile tile = block_tile(ceil_div(M, Traits::BM), ceil_div(pb.K, Traits::BN));
  gemm_tensor_op_mainloop<Traits, kVec>(ga, gb, M, pb.K, k_total, int(tile.x) * Traits::BM, int(tile.y) * Traits::BN,
                                        out);
}

}  // namespace fc
