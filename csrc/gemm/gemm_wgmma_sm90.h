// gemm_wgmma_sm90.h — the sm_90a GEMM: C(M,N) = act(A(M,K) · B(K,N) + bias), A and B bf16 or fp16,
// fp32 accumulation, C fp32 or the input type. B is read as Bt (N,K) row-major, so that both operands
// are K-major in shared memory (the layout every wgmma input type accepts without transposition).
//
// Structure (warp specialization, one CTA per BM x BN output tile; BM 128 here, see WgmmaTile for 64):
//   warpgroup 0  producer: one thread issues the TMA copies of A (128 x 64) and Bt (BN x 64) per
//                k-tile into a STAGES-deep ring, each completing on the stage's `full` mbarrier.
//   warpgroups 1, 2  consumers: each waits for `full`, issues 4 wgmma m64nBNk16 on its 64 rows, and
//                after the next k-tile's wgmmas are committed waits for this one's (wait_group 1) and
//                arrives on the stage's `empty` mbarrier, which the producer waits for before reuse.
// Tile 128 x BN x 64, BN = 128 or 256: a 64-element bf16 row is exactly one 128-byte swizzle atom, so
// TMA writes and wgmma reads the conflict-free 128B-swizzled layout with no padding. BN = 128: two
// consumer warpgroups of m64n128 hold 64 fp32 accumulators per thread (no spills under the 168-register
// cap of 384 threads), 2 * 128 * 128 * 64 FLOP per 32 KiB stage; 4 stages (128 KiB) keep ~3 k-tiles of
// loads in flight. BN = 256 (large N): m64n256, 128 accumulators per thread (setmaxnreg gives the
// consumers 232 registers), 1.33x the FLOP per byte of shared-memory fill (48 KiB stages, 4 = 192 KiB);
// see benchmarks/NOTES.md for why the bytes per FLOP matter on an H100 (L2 bandwidth).
// Partial tiles: TMA zero-fills rows/columns outside the tensors; the epilogue stores only in-bounds
// elements. The TMA needs the row strides to be multiples of 16 bytes (K % 8 == 0 for 2-byte types);
// the host plan checks that.
#pragma once

#include "../common/platform.h"
#include "../common/index.h"
#include "../epilogue/bias_act.h"
#include "../arch/sm90/primitives.h"

namespace fc {

// BM_ = 128: two consumer warpgroups of 64 rows each; BM_ = 64: one (256 threads), twice the CTAs for
// problems whose 128-row tiles would leave SMs idle (the conv's plan: conv2d_sm90.py choose_tile). The
// trailing default keeps the spelling WgmmaTile<BN, STAGES> of the 128-row tiles.
template <int BN_, int STAGES_, int BM_ = 128>
struct WgmmaTile {
  static constexpr int BM = BM_, BN = BN_, BK = 64, STAGES = STAGES_;
  static constexpr int kConsumers = BM / 64;                 // consumer warpgroups, 64 rows each
  static constexpr int kThreads = 128 * (1 + kConsumers);    // + the producer warpgroup
  static constexpr int kABytes = BM * BK * 2, kBBytes = BN * BK * 2;
  static constexpr int kStageBytes = kABytes + kBBytes;
  static constexpr int kSharedBytes = STAGES * kStageBytes + 1024;   // + slack to align to 1024
  // BM 128 x BN 256 needs 128 accumulators per consumer thread: setmaxnreg moves registers from the
  // producer (40) to the consumers (232); 128 * 40 + 256 * 232 = 64512 of the SM's 65536. BN <= 128 fits
  // the 168 per thread that 384 threads get anyway, and 256 threads (BM 64) get 255 each.
  static constexpr bool kRebalance = BN > 128 && kConsumers == 2;
  static constexpr int kProducerRegs = kRebalance ? 40 : 0, kConsumerRegs = kRebalance ? 232 : 0;
  static_assert(BM == 64 || BM == 128, "one or two consumer warpgroups of m64 wgmma");
  static_assert(BK * 2 == 128, "one k-tile row is one 128-byte swizzle atom");
  static_assert(kSharedBytes <= 227 * 1024, "shared memory of one block");
};

// The stage ring every warp-specialized wgmma kernel starts with: the dynamic shared memory moved up to the
// 128-byte swizzle's 1024-byte period (descriptors carry no base offset; the tiles' shared bytes have the slack),
// and, by thread 0, the barriers: full[s] completes on the producer's arrive.expect_tx, empty[s] on the arrives of
// `consumer_threads`. The caller syncs the block before anyone waits on them.
FC_DEVICE unsigned char* stage_ring_setup(unsigned char* smem_raw, uint64_t* full, uint64_t* empty, int stages,
                                          int consumer_threads) {
#if defined(FC_SM90A_AVAILABLE)
  if (threadIdx.x == 0) {
    for (int s = 0; s < stages; ++s) {
      sm90::mbarrier_init(&full[s], 1);
      sm90::mbarrier_init(&empty[s], consumer_threads);
    }
    sm90::fence_mbarrier_init();
  }
  const uint32_t raw_addr = sm90::shared_address(smem_raw);
  return smem_raw + ((1024 - (raw_addr & 1023)) & 1023);
#else
  (void)full, (void)empty, (void)stages, (void)consumer_threads;
  return smem_raw;
#endif
}

// The consumer warpgroups' main loop, shared by every wgmma kernel whose stages hold A (BM x 64) then
// B (BN x 64), both K-major and 128B-swizzled: wait for `full`, issue 4 wgmma m64nBNk16 on this
// warpgroup's 64 rows (half 0: rows 0..63, half 1: 64..127), and release the previous stage on `empty`
// once its wgmmas are done (wait_group 1). acc: the m64nBNk16 fp32 fragment, zeroed here.
template <class Tile, class In>
FC_DEVICE void wgmma_mainloop(uint32_t smem_addr, uint64_t* full, uint64_t* empty, int half, int k_tiles,
                              float (&acc)[Tile::BN / 2]) {
#if defined(FC_SM90A_AVAILABLE)
  constexpr int BN = Tile::BN, BK = Tile::BK, STAGES = Tile::STAGES;
#pragma unroll
  for (int j = 0; j < BN / 2; ++j) acc[j] = 0.f;
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int s = kt % STAGES;
    sm90::mbarrier_wait_parity(&full[s], (kt / STAGES) & 1);
    const uint32_t a_addr = smem_addr + s * Tile::kStageBytes + half * 64 * 128, b_addr = smem_addr + s * Tile::kStageBytes + Tile::kABytes;
    sm90::wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < BK / 16; ++kk) {    // k16 steps: +32 bytes inside the swizzled 128-byte rows
      const uint64_t da = sm90::make_smem_desc(a_addr + kk * 32, sm90::kDescSwizzle128B, 16, 1024);
      const uint64_t db = sm90::make_smem_desc(b_addr + kk * 32, sm90::kDescSwizzle128B, 16, 1024);
      sm90::wgmma_m64nNk16<BN, In>(acc, da, db, 1);
    }
    sm90::wgmma_commit();
    sm90::wgmma_wait<1>();                    // the previous k-tile's wgmmas are done: release its stage
    sm90::wgmma_fence_operands(acc);
    if (kt > 0) sm90::mbarrier_arrive(&empty[(kt - 1) % STAGES]);
  }
  sm90::wgmma_wait<0>();
  sm90::wgmma_fence_operands(acc);
#else
  (void)smem_addr, (void)full, (void)empty, (void)half, (void)k_tiles, (void)acc;
#endif
}

template <class Tile, class In, class Out>
FC_DEVICE void consume(uint32_t smem_addr, uint64_t* full, uint64_t* empty, int half, int m0,
                       int n0, int k_tiles, Out* __restrict__ c, int M, int N, const float* __restrict__ bias,
                       int has_bias, int act, float alpha);

// a, bt: the global tensors the maps describe (the GPU reads them only through the maps; the emulator
// finds them through these parameters, 0 and 1). c: (M, N) row-major.
template <class Tile, class In, class Out>
__global__ void __launch_bounds__(Tile::kThreads, 1)
gemm_wgmma(const In* __restrict__ a, const In* __restrict__ bt, const __grid_constant__ sm90::TensorMap map_a,
           const __grid_constant__ sm90::TensorMap map_b, Out* __restrict__ c, int M, int N, int K,
           const float* __restrict__ bias, int has_bias, int act, float alpha) {
#if defined(FC_SM90A_AVAILABLE)
  constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, STAGES = Tile::STAGES;
  __shared__ __align__(8) uint64_t full[STAGES], empty[STAGES];
  FC_DYNAMIC_SHARED(unsigned char, smem_raw);
  unsigned char* smem = stage_ring_setup(smem_raw, full, empty, STAGES, 128 * Tile::kConsumers);
  const uint32_t smem_addr = sm90::shared_address(smem);

  const int tid = static_cast<int>(threadIdx.x), wg = tid / 128;
  // grid (ceil(N / BN), ceil(M / BM)) or those tiles on grid.x (fc::block_tile)
  const BlockTile tile = block_tile(ceil_div(N, BN), ceil_div(M, BM));
  const int m0 = static_cast<int>(tile.y) * BM, n0 = static_cast<int>(tile.x) * BN;
  const int k_tiles = (K + BK - 1) / BK;

  __syncthreads();   // the ring's barriers are set

  if (wg == 0) {
    if constexpr (Tile::kProducerRegs > 0) sm90::setmaxnreg_dec<Tile::kProducerRegs>();
    if (tid == 0) {
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int s = kt % STAGES, round = kt / STAGES;
        sm90::mbarrier_wait_parity(&empty[s], (round & 1) ^ 1);   // round 0 passes at once
        unsigned char* stage = smem + s * Tile::kStageBytes;
        sm90::mbarrier_arrive_expect_tx(&full[s], Tile::kStageBytes);
        sm90::tma_load_2d(stage, &map_a, kt * BK, m0, &full[s]);
        sm90::tma_load_2d(stage + Tile::kABytes, &map_b, kt * BK, n0, &full[s]);
      }
    }
  } else {
    if constexpr (Tile::kConsumerRegs > 0) sm90::setmaxnreg_inc<Tile::kConsumerRegs>();
    consume<Tile, In, Out>(smem_addr, full, empty, wg - 1, m0, n0, k_tiles, c, M, N, bias, has_bias, act, alpha);
  }
#else
  // Built for a target without wgmma (anything but sm_90a): the host plan never launches it there.
  (void)a, (void)bt, (void)map_a, (void)map_b, (void)c, (void)M, (void)N, (void)K, (void)bias, (void)has_bias, (void)act,
      (void)alpha;
  __trap();
#endif
}

// The consumer warpgroups' main loop and epilogue: warpgroup 1 (half 0) computes rows 0..63 of the
// tile, warpgroup 2 (half 1) rows 64..127.
template <class Tile, class In, class Out>
FC_DEVICE void consume(uint32_t smem_addr, uint64_t* full, uint64_t* empty, int half, int m0,
                       int n0, int k_tiles, Out* __restrict__ c, int M, int N, const float* __restrict__ bias,
                       int has_bias, int act, float alpha) {
#if defined(FC_SM90A_AVAILABLE)
  constexpr int BN = Tile::BN;
  const int tid = static_cast<int>(threadIdx.x);
  float acc[BN / 2];
  wgmma_mainloop<Tile, In>(smem_addr, full, empty, half, k_tiles, acc);

  // Epilogue from the accumulator fragment: d[j] is row 16w + g + 8((j%4)/2), column 8(j/4) + 2t + j%2.
  // Scalar stores: a warp's store covers 8 rows x 16 of 32 bytes per sector for fp32 out (50% sector
  // efficiency, benchmarks/counters/emulated.json), 8 of 32 for 16-bit out (25%). Kept until a GPU can
  // measure the fix: pairs (j, j+1) as one 8-byte store lift fp32 to 100%; 16-bit outputs need the tile
  // staged through shared memory (a TMA store) for full sectors.
  const BiasActEpilogue<float, Out> ep{bias, has_bias, act, alpha};
  const int lane = tid & 31, warp = (tid / 32) & 3, g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int j = 0; j < BN / 2; ++j) {
    const int row = m0 + half * 64 + warp * 16 + g + 8 * ((j % 4) / 2);
    const int col = n0 + 8 * (j / 4) + 2 * t + (j % 2);
    if (row < M && col < N) c[static_cast<int64_t>(row) * N + col] = ep(acc[j], col);
  }
#endif
}

}  // namespace fc
