// conv2d_wgrad_wgmma_sm90.h — the sm_90a conv2d wgrad: dw[r, s, c, k] = sum over (n, p, q) of
// x[n, p*sh - ph + r*dh, q*sw - pw + s*dw, c] * dy[n, p, q, k], x NHWC and dy (N, P, Q, K) bf16 or fp16,
// fp32 accumulation, dw Keras RSCK fp32 (or fp32 split partials summed by split_k_reduce).
//
//   GEMM view, one per tap (r, s): M = C channels, N = K filters, reduced over the N*P*Q output pixels in
//     k-tiles of 64 pixels: the fprop's pixel box (csrc/conv/conv2d_fprop_wgmma_sm90.h) with TQ*TP*TN = 64.
//   Activation tile: two boxes of the 4-D map over x = (C, W, H, N): 64 channels x TQ*sw x TP*sh x TN with
//     element strides (1, sw, sh, 1) at the tap's origin (c0, q0*sw - pw + s*dw, p0*sh - ph + r*dh, n0), so
//     padding is zero fill. Each lands as 64 pixel rows of 128 bytes (64 channels): pixels, the reduction
//     dimension, are the outer one, so A (channels x pixels) is MN-major, 128B-swizzled.
//   Output-gradient tile: two boxes of the 4-D map over dy = (K, Q, P, N): 64 filters x TQ x TP x TN at
//     (k0, q0, p0, n0), the same pixel rows: B (filters x pixels), MN-major.
//   MN-major canonical layout (PTX ISA "Shared Memory Matrix Layout", "Matrix Descriptor Format"; CUTLASS
//     make_gmma_desc<Major::MN>, B128: ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO))): 64 elements contiguous along
//     M/N, the next 64 LBO apart (the second box, 8 KiB); 8 pixel rows of 128 bytes, the next 8 SBO = 1024
//     apart. A k16 step is 16 pixel rows = 2048 bytes, a multiple of the 1024-byte swizzle period.
//   Split-k: grid (K tiles, C tiles x R*S taps, splits); split z reduces the contiguous pixel tiles
//     [z * tiles_per_split, (z + 1) * tiles_per_split) in order and writes its partial to its slice of
//     the workspace (splits, R*S*C, K), which split_k_reduce sums in split order: bitwise deterministic.
//   Pipeline: warpgroup 0 is the TMA producer (one thread, 4 boxes per k-tile on a `full` mbarrier),
//     warpgroups 1, 2 the consumers (channels 0..63 and 64..127, m64n128k16, 4 k16 steps per stage, the
//     stage released on `empty` once the next k-tile's wgmmas are issued), 4 stages of 32 KiB. Where the
//     tile's channels end by 64 (C = 64, or a last tile of <= 64) the second box is not loaded and
//     warpgroup 2 issues no wgmma.
// Limits (conv2d_wgrad_sm90_can_implement in fastconv/backends/plans/conv2d_wgrad_sm90.py): groups 1,
// C % 8 == 0 and K % 8 == 0 (TMA strides are multiples of 16 bytes), x and dy 16-byte aligned, strides
// <= 8 (TMA element strides), sm_90a. Any padding and dilation.
// Versions: 1. this (not yet timed on a GPU).
// Checks: python -m pytest tests/kernels/test_conv2d_wgrad_sm90.py (emulator; -m gpu on an H100/H200),
// python scripts/sass_report_hopper.py (HGMMA, UTMALDG, registers, spills).
#pragma once

#include "../common/platform.h"
#include "../common/index.h"
#include "../common/problem.h"
#include "../arch/sm90/primitives.h"
#include "conv2d_fprop_wgmma_sm90.h"

namespace fc {

template <int STAGES_>
struct WgradWgmmaTile {
  static constexpr int BM = 128, BN = 128, BK = 64, STAGES = STAGES_;   // channels, filters, pixels
  static constexpr int kBox = 64;                 // channels or filters per box: one 128-byte swizzle row
  static constexpr int kThreads = 384;            // producer + 2 consumer warpgroups
  static constexpr int kBoxBytes = kBox * BK * 2;
  static constexpr int kXBytes = BM * BK * 2, kDyBytes = BN * BK * 2, kStageBytes = kXBytes + kDyBytes;
  static constexpr int kSharedBytes = STAGES * kStageBytes + 1024;   // + slack to align to 1024
  static_assert(kBox * 2 == 128 && BM == 2 * kBox && BN == 2 * kBox, "two 128-byte-row boxes per operand");
  static_assert(BK % 16 == 0 && (16 * 128) % 1024 == 0, "k16 steps start on the swizzle period");
  static_assert(kSharedBytes <= 227 * 1024, "shared memory of one block");
};

// The consumers' main loop: A = this warpgroup's 64-channel box, B = both filter boxes, both MN-major.
// reads false: the warpgroup's channels are all past C (C <= 64 in this tile), so it skips the wgmmas (half
// the tile's tensor work for ResNet's 64-channel layers) and only passes the stages on.
template <class Tile, class In>
FC_DEVICE void wgrad_wgmma_mainloop(uint32_t smem_addr, uint64_t* full, uint64_t* empty, int half, bool reads,
                                    int k_tiles, float (&acc)[Tile::BN / 2]) {
#if defined(FC_SM90A_AVAILABLE)
  constexpr int BN = Tile::BN, BK = Tile::BK, STAGES = Tile::STAGES;
#pragma unroll
  for (int j = 0; j < BN / 2; ++j) acc[j] = 0.f;
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int s = kt % STAGES;
    sm90::mbarrier_wait_parity(&full[s], (kt / STAGES) & 1);
    if (!reads) {
      sm90::mbarrier_arrive(&empty[s]);
      continue;
    }
    const uint32_t a_addr = smem_addr + s * Tile::kStageBytes + half * Tile::kBoxBytes;
    const uint32_t b_addr = smem_addr + s * Tile::kStageBytes + Tile::kXBytes;
    sm90::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {    // k16 steps: 16 pixel rows of 128 bytes
      const uint64_t da = sm90::make_smem_desc(a_addr + kk * 2048, sm90::kDescSwizzle128B, Tile::kBoxBytes, 1024);
      const uint64_t db = sm90::make_smem_desc(b_addr + kk * 2048, sm90::kDescSwizzle128B, Tile::kBoxBytes, 1024);
      sm90::wgmma_m64nNk16<BN, In, 1, 1>(acc, da, db, 1);
    }
    sm90::wgmma_commit();
    sm90::wgmma_wait<1>();                    // the previous k-tile's wgmmas are done: release its stage
    sm90::wgmma_fence_operands(acc);
    if (kt > 0) sm90::mbarrier_arrive(&empty[(kt - 1) % STAGES]);
  }
  sm90::wgmma_wait<0>();
  sm90::wgmma_fence_operands(acc);
#else
  (void)smem_addr, (void)full, (void)empty, (void)half, (void)reads, (void)k_tiles, (void)acc;
#endif
}

// x, dy: the global tensors the maps describe (parameters 0 and 1, for the emulator). out: dw (R, S, C, K)
// when gridDim.z is 1, else the fp32 workspace (splits, R*S*C, K). tiles_per_split: pixel tiles per split.
template <class Tile, class In>
__global__ void __launch_bounds__(Tile::kThreads, 1)
conv2d_wgrad_wgmma_sm90(const In* __restrict__ x, const In* __restrict__ dy, const __grid_constant__ sm90::TensorMap map_x,
                        const __grid_constant__ sm90::TensorMap map_dy, float* __restrict__ out, const Conv2dProblem pb,
                        const ConvPixelTile pt, int tiles_per_split) {
#if defined(FC_SM90A_AVAILABLE)
  constexpr int BM = Tile::BM, BN = Tile::BN, STAGES = Tile::STAGES;
  __shared__ __align__(8) uint64_t full[STAGES], empty[STAGES];
  FC_DYNAMIC_SHARED(unsigned char, smem_raw);
  unsigned char* smem = stage_ring_setup(smem_raw, full, empty, STAGES, 256);
  const uint32_t smem_addr = sm90::shared_address(smem);

  const int tid = static_cast<int>(threadIdx.x), wg = tid / 128;
  const int c_tiles = ceil_div(pb.C, BM), taps = pb.R * pb.S;
  const BlockTile tile = block_tile(ceil_div(pb.K, BN), c_tiles * taps);
  const int k0 = static_cast<int>(tile.x) * BN, c0 = static_cast<int>(tile.y % c_tiles) * BM;
  const int tap = static_cast<int>(tile.y / c_tiles), r = tap / pb.S, s = tap % pb.S;
  const int q_tiles = ceil_div(pb.Q, pt.tq), p_tiles = ceil_div(pb.P, pt.tp);
  const int pixel_tiles = q_tiles * p_tiles * ceil_div(pb.N, pt.tn);
  const int first = static_cast<int>(tile.z) * tiles_per_split;
  const int k_tiles = max(0, min(pixel_tiles - first, tiles_per_split));
  const bool x_hi = c0 + Tile::kBox < pb.C;   // the second channel box holds channels (else it is not loaded)

  __syncthreads();   // the ring's barriers are set

  if (wg == 0) {
    if (tid == 0) {
      const int w_off = s * pb.dilation_w - pb.pad_w, h_off = r * pb.dilation_h - pb.pad_h;
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int st = kt % STAGES, round = kt / STAGES, m = first + kt;   // pixel tile m, q fastest
        const int q0 = (m % q_tiles) * pt.tq, p0 = (m / q_tiles % p_tiles) * pt.tp, n0 = m / (q_tiles * p_tiles) * pt.tn;
        sm90::mbarrier_wait_parity(&empty[st], (round & 1) ^ 1);   // round 0 passes at once
        unsigned char* stage = smem + st * Tile::kStageBytes;
        sm90::mbarrier_arrive_expect_tx(&full[st], Tile::kStageBytes - (x_hi ? 0 : Tile::kBoxBytes));
        const int w0 = q0 * pb.stride_w + w_off, h0 = p0 * pb.stride_h + h_off;
        sm90::tma_load_4d(stage, &map_x, c0, w0, h0, n0, &full[st]);
        if (x_hi) sm90::tma_load_4d(stage + Tile::kBoxBytes, &map_x, c0 + Tile::kBox, w0, h0, n0, &full[st]);
        sm90::tma_load_4d(stage + Tile::kXBytes, &map_dy, k0, q0, p0, n0, &full[st]);
        sm90::tma_load_4d(stage + Tile::kXBytes + Tile::kBoxBytes, &map_dy, k0 + Tile::kBox, q0, p0, n0, &full[st]);
      }
    }
  } else {
    float acc[BN / 2];
    wgrad_wgmma_mainloop<Tile, In>(smem_addr, full, empty, wg - 1, wg == 1 || x_hi, k_tiles, acc);
    // Accumulator fragment: d[j] of lane (g, t) in warp w is channel 16w + g + 8((j%4)/2) of this half,
    // filter 8(j/4) + 2t + j%2. Rows past C and columns past K are not stored. The pair (j, j+1) is two
    // adjacent filters, stored as one 8-byte vector (K % 8 == 0: both in range and 8-byte aligned), so a
    // warp's store fills whole 32-byte sectors (the scalar stores filled half: emulated counters).
    const int lane = tid & 31, warp = (tid / 32) & 3, g = lane >> 2, t = lane & 3;
    const int64_t slice = static_cast<int64_t>(taps) * pb.C * pb.K;
    float* dst = out + static_cast<int64_t>(tile.z) * slice + static_cast<int64_t>(tap) * pb.C * pb.K;
#pragma unroll
    for (int j = 0; j < BN / 2; j += 2) {
      const int c = c0 + (wg - 1) * 64 + warp * 16 + g + 8 * ((j % 4) / 2);
      const int k = k0 + 8 * (j / 4) + 2 * t;
      const float pair[2] = {acc[j], acc[j + 1]};
      if (c < pb.C && k < pb.K) store_vec<2>(dst + static_cast<int64_t>(c) * pb.K + k, pair);
    }
  }
#else
  // Built for a target without wgmma (anything but sm_90a): the host plan never launches it there.
  (void)x, (void)dy, (void)map_x, (void)map_dy, (void)out, (void)pb, (void)pt, (void)tiles_per_split;
  __trap();
#endif
}

}  // namespace fc
