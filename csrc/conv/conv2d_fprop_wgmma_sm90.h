// conv2d_fprop_wgmma_sm90.h — the sm_90a conv2d fprop: y = act(conv2d(x, w) + bias) as an implicit GEMM on
// wgmma fed by TMA, x NHWC and w KRSC (the plan transposes the Keras RSCK filter once), bf16 or fp16
// operands, fp32 accumulation, y (N, P, Q, K) fp32 or the operand type; with a residual shaped as y (a
// ResNet block's skip connection): y = act(conv2d(x, w) + bias + residual).
//
//   GEMM view: M = N*P*Q output pixels, N = K filters, K = R*S*C (one k-tile = 64 channels of one tap).
//   Activation tile: a box of the 4-D tensor map over x = (C, W, H, N) (innermost first): 64 channels x
//     TQ output columns x TP output rows x TN images, TQ * TP * TN = BM (the plan picks the shape that
//     covers P x Q x N with the fewest tiles). Element strides (1, stride_w, stride_h, 1) make the box
//     take every stride-th pixel; its origin for tap (r, s) is (c0, q0*stride_w - pad_w + s*dilation_w,
//     p0*stride_h - pad_h + r*dilation_h, n0), so padding is TMA's zero fill of negative and
//     past-the-end coordinates and no thread computes an address. Row i of the BM x 64 tile is
//     pixel (n0 + i / (TQ*TP), p0 + i / TQ % TP, q0 + i % TQ): the GEMM's A operand, K-major.
//   Filter tile: a box of the 3-D map over w = (C, R*S, K): 64 channels x 1 tap x BN filters, the B
//     operand, K-major. C beyond the last channel is zero-filled in both operands.
//   Pipeline, stages and consumers: the sm_90a GEMM's (csrc/gemm/gemm_wgmma_sm90.h: WgmmaTile, producer
//     warpgroup issuing both boxes per k-tile on a `full` mbarrier, BM / 64 consumer warpgroups running
//     wgmma_mainloop, consumer h on rows 64h..64h+63); tiles 128x128, 128x256 (setmaxnreg), and 64x128 and
//     64x64 (one consumer warpgroup: twice the CTAs where 128-row tiles leave SMs idle; 64x64 for K <= 64).
//     The plan picks one (conv2d_sm90.py choose_tile) or takes `fastconv tune`'s.
//   Epilogue: a separate stage from the accumulator fragment: bias + residual + activation + cast
//     (BiasResidualActEpilogue), rows outside P x Q x N and columns beyond K not stored. Output pixel
//     (n, p, q) goes to y's (n, off_h + stride_h*p, off_w + stride_w*q) of (N, h, w, K) (ConvOutputView):
//     the identity for fprop; one stride phase of dx for the strided dgrad (plans/conv2d_dgrad_sm90.py).
// Limits (checked by conv2d_fprop_sm90_can_implement in fastconv/backends/plans/conv2d_sm90.py): groups 1,
// C % 8 == 0 (TMA strides are multiples of 16 bytes), x and w 16-byte aligned, strides <= 8 (TMA element
// strides), sm_90a. Any padding and dilation.
// Versions: 1. this (TMA tiled boxes per tap, fp32 accumulators, scalar epilogue stores; not yet timed on a GPU).
// Checks: python -m pytest tests/kernels/test_conv2d_fprop_sm90.py (emulator; -m gpu on an H100/H200),
// python scripts/sass_report_hopper.py (HGMMA, UTMALDG, registers, spills). Timing: benchmarks/gpu_check.sh.
#pragma once

#include "../common/platform.h"
#include "../common/index.h"
#include "../common/problem.h"
#include "../epilogue/bias_residual_act.h"
#include "../gemm/gemm_wgmma_sm90.h"

namespace fc {

// The activation tile's shape in output pixels (TQ x TP x TN = BM rows); the same numbers the plan
// wrote into map_x's box.
struct ConvPixelTile {
  int tq, tp, tn;
};

// Where output pixel (n, p, q) lands: y is (N, h, w, K), the pixel at (n, off_h + stride_h*p, off_w + stride_w*q).
struct ConvOutputView {
  int h, w, stride_h, stride_w, off_h, off_w;
};

template <class Tile, class Out>
FC_DEVICE void conv2d_fprop_sm90_epilogue(const float (&acc)[Tile::BN / 2], const Conv2dProblem& pb, ConvPixelTile pt,
                                          ConvOutputView ov, int q0, int p0, int n0, int k0, int half,
                                          Out* __restrict__ y, const BiasResidualActEpilogue<Out>& ep);

// x, w: the global tensors the maps describe (the GPU reads them only through the maps; the emulator
// finds them through these parameters, 0 and 1). y: (N, h, w, K) of the output view ov (ConvOutputView); bias (float) read
// only when has_bias, residual (Out, shaped as y) only when has_residual.
template <class Tile, class In, class Out>
__global__ void __launch_bounds__(Tile::kThreads, 1)
conv2d_fprop_wgmma_sm90(const In* __restrict__ x, const In* __restrict__ w, const __grid_constant__ sm90::TensorMap map_x,
                        const __grid_constant__ sm90::TensorMap map_w, Out* __restrict__ y, const Conv2dProblem pb,
                        const ConvPixelTile pt, const ConvOutputView ov, const float* __restrict__ bias, int has_bias,
                        int act, float alpha, const Out* __restrict__ residual, int has_residual) {
#if defined(FC_SM90A_AVAILABLE)
  constexpr int BN = Tile::BN, BK = Tile::BK, STAGES = Tile::STAGES;
  __shared__ __align__(8) uint64_t full[STAGES], empty[STAGES];
  FC_DYNAMIC_SHARED(unsigned char, smem_raw);
  unsigned char* smem = stage_ring_setup(smem_raw, full, empty, STAGES, 128 * Tile::kConsumers);
  const uint32_t smem_addr = sm90::shared_address(smem);

  const int tid = static_cast<int>(threadIdx.x), wg = tid / 128;
  // grid (ceil(K / BN), pixel tiles), the pixel tiles q fastest, or all tiles on grid.x (fc::block_tile)
  const int q_tiles = ceil_div(pb.Q, pt.tq), p_tiles = ceil_div(pb.P, pt.tp);
  const BlockTile tile = block_tile(ceil_div(pb.K, BN), q_tiles * p_tiles * ceil_div(pb.N, pt.tn));
  const int m_tile = static_cast<int>(tile.y);
  const int q0 = (m_tile % q_tiles) * pt.tq, p0 = (m_tile / q_tiles % p_tiles) * pt.tp;
  const int n0 = m_tile / (q_tiles * p_tiles) * pt.tn, k0 = static_cast<int>(tile.x) * BN;
  const int c_tiles = ceil_div(pb.C, BK), k_tiles = pb.R * pb.S * c_tiles;

  __syncthreads();   // the ring's barriers are set

  if (wg == 0) {
    if constexpr (Tile::kProducerRegs > 0) sm90::setmaxnreg_dec<Tile::kProducerRegs>();
    if (tid == 0) {
      const int w_base = q0 * pb.stride_w - pb.pad_w, h_base = p0 * pb.stride_h - pb.pad_h;
      int c = 0, tap = 0, r = 0, s = 0;          // k-tile kt = (tap, c / BK), channels fastest
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int st = kt % STAGES, round = kt / STAGES;
        sm90::mbarrier_wait_parity(&empty[st], (round & 1) ^ 1);   // round 0 passes at once
        unsigned char* stage = smem + st * Tile::kStageBytes;
        sm90::mbarrier_arrive_expect_tx(&full[st], Tile::kStageBytes);
        sm90::tma_load_4d(stage, &map_x, c, w_base + s * pb.dilation_w, h_base + r * pb.dilation_h, n0, &full[st]);
        sm90::tma_load_3d(stage + Tile::kABytes, &map_w, c, tap, k0, &full[st]);
        if ((c += BK) >= pb.C) {
          c = 0, ++tap;
          if (++s == pb.S) s = 0, ++r;
        }
      }
    }
  } else {
    if constexpr (Tile::kConsumerRegs > 0) sm90::setmaxnreg_inc<Tile::kConsumerRegs>();
    float acc[BN / 2];
    wgmma_mainloop<Tile, In>(smem_addr, full, empty, wg - 1, k_tiles, acc);
    const BiasResidualActEpilogue<Out> ep{bias, has_bias, residual, has_residual, act, alpha};
    conv2d_fprop_sm90_epilogue<Tile, Out>(acc, pb, pt, ov, q0, p0, n0, k0, wg - 1, y, ep);
  }
#else
  // Built for a target without wgmma (anything but sm_90a): the host plan never launches it there.
  (void)x, (void)w, (void)map_x, (void)map_w, (void)y, (void)pb, (void)pt, (void)ov, (void)bias, (void)has_bias,
      (void)act, (void)alpha, (void)residual, (void)has_residual;
  __trap();
#endif
}

// Accumulator fragment (m64nNk16): d[j] of lane (g, t) in warp w of the warpgroup is row 16w + g +
// 8((j%4)/2), column 8(j/4) + 2t + j%2, so each thread holds two rows: their output offsets once, then
// every column.
template <class Tile, class Out>
FC_DEVICE void conv2d_fprop_sm90_epilogue(const float (&acc)[Tile::BN / 2], const Conv2dProblem& pb, ConvPixelTile pt,
                                          ConvOutputView ov, int q0, int p0, int n0, int k0, int half,
                                          Out* __restrict__ y, const BiasResidualActEpilogue<Out>& ep) {
  const int tid = static_cast<int>(threadIdx.x), lane = tid & 31, warp = (tid / 32) & 3, g = lane >> 2, t = lane & 3;
  int64_t out_row[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int i = half * 64 + warp * 16 + g + 8 * h;
    const int q = q0 + i % pt.tq, p = p0 + i / pt.tq % pt.tp, n = n0 + i / (pt.tq * pt.tp);
    const int64_t oh = ov.off_h + ov.stride_h * p, ow = ov.off_w + ov.stride_w * q;
    out_row[h] = q < pb.Q && p < pb.P && n < pb.N ? ((static_cast<int64_t>(n) * ov.h + oh) * ov.w + ow) * pb.K
                                                  : int64_t{-1};
  }
  // Scalar stores, as in gemm_wgmma_sm90.h's epilogue (50% of each sector for fp32 out, 25% for 16-bit);
  // the same fix applies once a GPU can measure it.
#pragma unroll
  for (int j = 0; j < Tile::BN / 2; ++j) {
    const int64_t row = out_row[(j % 4) / 2];
    const int col = k0 + 8 * (j / 4) + 2 * t + (j % 2);
    if (row >= 0 && col < pb.K) y[row + col] = ep(acc[j], row + col, col);
  }
}

}  // namespace fc
