// gemm_mainloop_simt.h — the fp32/fp64 CUDA-core GEMM main loop behind every GEMM-shaped kernel:
// conv2d fprop/dgrad/wgrad (implicit GEMM: the operands are gathered from NHWC tensors on the fly)
// and the dense GEMM (plain row-major matrices).
//
//   C[m, n] = sum_k A[m, k] * B[k, n]      for m in [0, M), n in [0, N), k in [k_begin, k_end)
//
// A block computes a BM x BN tile of C. Per BK-slice of k it copies A (BM x BK) and B (BK x BN)
// into shared memory, both stored k-major (As[k][m], Bs[k][n]) so the inner product reads
// contiguous TM- and TN-vectors; each thread accumulates a TM x TN register block. Shared memory is
// double-buffered and the next slice is loaded into registers while the current one is multiplied:
// one __syncthreads per slice.
//
// Operands are described by *gathers* (see conv/*.h, gemm/gemm_simt.h): `row(i)` precomputes what a row
// of the operand needs (base offsets, validity; computed once per thread), `load<V>(row, k, out)`
// returns V elements, zero where the operand is padding or out of bounds. An operand is either
// contiguous along k (kContigK: A of fprop, vector loads run along k) or along its rows (A of wgrad,
// B of fprop: vector loads run along m or n). The epilogue functor receives each finished value.
//
// Register-prefetched double-buffered smem, scalar or 16-byte global loads (kVec).
// Checked by: python -m pytest tests/kernels -q (emulator vs the NumPy reference, nvcc/NVRTC builds).
#pragma once
#include "../common/index.h"

namespace fc {

// Compile-time tile shape of a GEMM-shaped kernel. Every launcher picks one of these.
template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct GemmTile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int kThreadsM = BM / TM, kThreadsN = BN / TN;
  static constexpr int kThreads = kThreadsM * kThreadsN;

  static_assert(BM % TM == 0 && BN % TN == 0, "the thread grid must tile the block tile exactly");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "register fragments are read from shared memory as 4-vectors");
  static_assert(BK % 4 == 0, "a 16-byte load along k must not straddle two k-slices");
  static_assert(BM % 4 == 0 && BN % 4 == 0, "a 16-byte load along m/n must not straddle two tiles");
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps, at most 1024 threads");
  static_assert(kThreads * 4 <= BM * BK + BN * BK, "more threads than tile elements to load");
};

// GEMM-shaped kernels declare __launch_bounds__(Tile::kThreads, 1): without the minimum-blocks
// argument ptxas (CUDA 13.0, sm_90a) capped three of them at 48-64 registers and spilled 4-20 bytes
// (scripts/resource_report.py); with it none spills. The tiles the launchers choose
// from (csrc/launch/*.cu, fastconv/backends/plans/common.py TILES).
// 32x32 with 64 threads: small problems (few output rows or channels) still fill the GPU.
// 128x128 with 8x8 per thread: 64 FMAs per 16 shared-memory loads of fragments per k; the classic
// CUDA-core SGEMM balance. 64x64 sits between them.
using TileSmall = GemmTile<32, 32, 8, 4, 4>;
using TileMedium = GemmTile<64, 64, 8, 4, 4>;
using TileLarge = GemmTile<128, 128, 8, 8, 8>;

// Copies one operand slice (kRows x BK) from global memory to registers, then to shared memory.
// Row `i` of an operand seen as (rows x K), for plain GEMMs and for the conv operands that are
// plain strided matrices (filters in fprop, output gradients in wgrad): element (i, k) at p[i * ld + k] (kContigK) or p[k * ld + i].
template <class T, class Index, bool kContigK>
struct MatrixGather {
  const T* p;
  Index ld, rows;

  struct Row {
    Index i;
    bool valid;
  };

  FC_DEVICE Row row(Index i) const { return Row{i, i < rows}; }

  template <int V>
  FC_DEVICE void load(const Row& r, Index k, T (&out)[V]) const {
    if (r.valid) {
      load_vec<V>(kContigK ? p + r.i * ld + k : p + k * ld + r.i, out);
    } else {
#pragma unroll
      for (int i = 0; i < V; ++i) out[i] = T(0);
    }
  }
};

// Where column c of a k-major shared tile row is stored: its 16-byte vectors swapped in pairs in the
// upper half of every 16 (g ^ bit 3 of g). A thread reads TN / (16 / sizeof(T)) vectors of B's row
// at vector 2 tn, 2 tn + 1 when it holds two (TileLarge's 8 floats, the double tiles' 4 doubles):
// lanes tn and tn + 4 of a 16-byte phase then hit the same banks (2-way conflicts on every B
// fragment read, benchmarks/counters/emulated.json); swapped, the phase's 8 vectors cover all 32
// banks. Reads of one aligned group of 8 vectors (the other tiles) stay conflict-free: a permutation.
template <class T>
FC_DEVICE int swizzled_col(int c) {
  constexpr int kElems = 16 / int(sizeof(T));
  const int g = c / kElems;
  return (g ^ ((g >> 3) & 1)) * kElems + c % kElems;
}

template <class T, class Index, int kRows, int BK, int kThreads, int kVec, bool kContigK, class Gather>
struct TileLoader {
  static constexpr int kVecs = kRows * BK / kVec;                   // vectors per slice
  static constexpr int kSlots = (kVecs + kThreads - 1) / kThreads;  // per thread
  static constexpr bool kEven = kVecs % kThreads == 0;
  static_assert(kRows % kVec == 0 && BK % kVec == 0, "vectors tile the slice");

  typename Gather::Row row[kSlots];
  int k_off[kSlots];
  int r_off[kSlots];
  T buf[kSlots][kVec];

  FC_DEVICE bool active(int s) const { return kEven || (int(threadIdx.x) + s * kThreads) < kVecs; }

  FC_DEVICE void init(const Gather& g, Index row0) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int e = int(threadIdx.x) + s * kThreads;
      if (kContigK) {
        r_off[s] = e / (BK / kVec);
        k_off[s] = (e % (BK / kVec)) * kVec;
      } else {
        k_off[s] = e / (kRows / kVec);
        r_off[s] = (e % (kRows / kVec)) * kVec;
      }
      row[s] = g.row(row0 + r_off[s]);
    }
  }

  // k_limit: first k that must read as zero (end of the problem or of this split-k slice).
  FC_DEVICE void load(const Gather& g, Index k0, Index k_limit) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const Index k = k0 + k_off[s];
      if (active(s) && k < k_limit) {
        g.template load<kVec>(row[s], k, buf[s]);
      } else {
#pragma unroll
        for (int i = 0; i < kVec; ++i) buf[s][i] = T(0);
      }
    }
  }

  template <int kLd>
  FC_DEVICE void store(T* smem) const {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      if (!active(s)) continue;
      if (kContigK) {
#pragma unroll
        for (int i = 0; i < kVec; ++i) smem[(k_off[s] + i) * kLd + swizzled_col<T>(r_off[s])] = buf[s][i];
      } else {   // kVec elements never straddle a 16-byte vector: the swizzle moves them whole
        store_vec<kVec>(smem + k_off[s] * kLd + swizzled_col<T>(r_off[s]), buf[s]);
      }
    }
  }
};

// The main loop, run by every thread of a block; ends by handing each valid C element to `epi`
// as epi(m, n, value). m0/n0: the block's tile origin; [k_begin, k_end): its k range.
template <class Tile, int kVec, class T, class Index, bool kContigKA, bool kContigKB,
          class GatherA, class GatherB, class Epilogue>
FC_DEVICE void gemm_mainloop(const GatherA& ga, const GatherB& gb, Index M, Index N, Index k_begin, Index k_end,
                             Index m0, Index n0, const Epilogue& epi) {
  constexpr int BM = Tile::BM, BN = Tile::BN, BK = Tile::BK, TM = Tile::TM, TN = Tile::TN;
  // Rows of the k-major shared tiles are padded by one 16-byte vector: the transposed stores of a
  // k-contiguous operand (As[k + i][m]) then fall in distinct banks (4-way conflicts without it).
  // For double that is 2 elements: a pitch of 4 put rows k and k + 4 in the same banks (2-way
  // conflicts on those stores, benchmarks/counters/emulated.json).
  constexpr int kLdA = BM + 16 / int(sizeof(T)), kLdB = BN + 16 / int(sizeof(T));
  constexpr int kSmemVec = 16 / int(sizeof(T));   // fragments read as 16-byte vectors
  static_assert(kVec * sizeof(T) <= 16, "global vector loads are at most 16 bytes");
  static_assert(TM % kSmemVec == 0 && TN % kSmemVec == 0, "fragments are whole 16-byte vectors");
  __shared__ __align__(16) T smem_a[2][BK * kLdA];
  __shared__ __align__(16) T smem_b[2][BK * kLdB];

  TileLoader<T, Index, BM, BK, Tile::kThreads, kVec, kContigKA, GatherA> load_a;
  TileLoader<T, Index, BN, BK, Tile::kThreads, kVec, kContigKB, GatherB> load_b;
  load_a.init(ga, m0);
  load_b.init(gb, n0);

  const int tn = int(threadIdx.x) % Tile::kThreadsN;
  const int tm = int(threadIdx.x) / Tile::kThreadsN;
  T acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = T(0);

  int stage = 0;
  if (k_begin < k_end) {
    load_a.load(ga, k_begin, k_end);
    load_b.load(gb, k_begin, k_end);
    load_a.template store<kLdA>(smem_a[0]);
    load_b.template store<kLdB>(smem_b[0]);
  }
  __syncthreads();

  for (Index k0 = k_begin; k0 < k_end; k0 += BK) {
    const bool has_next = k0 + BK < k_end;
    if (has_next) {   // global -> registers for the next slice, in flight during the FMAs below
      load_a.load(ga, k0 + BK, k_end);
      load_b.load(gb, k0 + BK, k_end);
    }
    const T* As = smem_a[stage];
    const T* Bs = smem_b[stage];
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      T a[TM], b[TN];
#pragma unroll
      for (int i = 0; i < TM; i += kSmemVec) {
        T v[kSmemVec];
        load_vec<kSmemVec>(As + k * kLdA + swizzled_col<T>(tm * TM + i), v);
#pragma unroll
        for (int u = 0; u < kSmemVec; ++u) a[i + u] = v[u];
      }
#pragma unroll
      for (int j = 0; j < TN; j += kSmemVec) {
        T v[kSmemVec];
        load_vec<kSmemVec>(Bs + k * kLdB + swizzled_col<T>(tn * TN + j), v);
#pragma unroll
        for (int u = 0; u < kSmemVec; ++u) b[j + u] = v[u];
      }
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
    }
    if (has_next) {   // the other buffer was last read before the previous barrier
      load_a.template store<kLdA>(smem_a[stage ^ 1]);
      load_b.template store<kLdB>(smem_b[stage ^ 1]);
    }
    __syncthreads();
    stage ^= 1;
  }

  // Epilogue stage: each thread hands its register block to the epilogue functor. Not vectorized: a
  // warp's stores of one (i, j) land TN elements apart, 25% sector efficiency (12% for TileLarge) in
  // benchmarks/counters/emulated.json; L2 merges the partial sectors before DRAM, and a vector
  // epilogue would have to change every functor (conv/*.h, gemm/gemm_simt.h, the fused conv-pool kernels).
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const Index m = m0 + tm * TM + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < TN; ++j) {
      const Index n = n0 + tn * TN + j;
      if (n < N) epi(m, n, acc[i][j]);
    }
  }
}

}  // namespace fc
