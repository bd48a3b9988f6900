// gemm_tensor_op_sm80.h — the sm_80+ tensor-core GEMM main loop (warp-level mma.sync) and the dense GEMM
// built on it:
//     C[m, n] = epilogue( sum_k A[m, k] * B[k, n] )      A: M x K row-major, B: K x N row-major
// with fp32 accumulation, for three operand types (Traits::Element):
//     float          -> tf32 mma (m16n8k8); each operand rounded once with cvt.rna.tf32.f32
//     __half         -> f16 mma (m16n8k16), fragments loaded with ldmatrix
//     __nv_bfloat16  -> bf16 mma (m16n8k16), fragments loaded with ldmatrix
// The output is float or the operand type (Out); bias (float, per column) and the activation come from
// the shared epilogue stage (csrc/epilogue/bias_act.h).
//
// Structure (one CTA computes a BM x BN tile; each warp a WM x WN sub-tile of it):
//   * global -> shared by cp.async (kVec elements = 4, 8 or 16 bytes per copy) into a kStages-deep
//     ring of shared-memory stages: kStages - 1 k-slices are in flight while one is multiplied;
//     one cp.async.wait_group + one __syncthreads per k-slice.
//   * out-of-range vectors (partial tiles in M, N or K) are zero-filled by cp.async with src-size 0,
//     so the main loop never branches on the problem size. The host guarantees that the contiguous
//     extents (K of A, N of B) are multiples of kVec and the pointers kVec-element aligned, so a vector is
//     either wholly inside or wholly outside the operand.
//   * shared tiles: A as [BM][BK + pad] (k contiguous), B as [BK][BN + pad] (n contiguous). The pads
//     make the fragment reads conflict-free (derivation at kPadA/kPadB below).
//   * fragments: f16/bf16 A by ldmatrix.x4, B by ldmatrix.x4.trans (two n8 blocks at once); tf32 by
//     32-bit shared loads in the mma layout (ldmatrix moves b16 pairs only), then cvt.rna.
//   * epilogue: every lane hands its accumulators c0..c3 to the epilogue functor: epi(m, n, value);
//     the kernels here store through csrc/epilogue/bias_residual_act.h (bias, residual, activation, cast).
//   * either operand may instead be contiguous along k-for-B / m-for-A ("column-major", template flags
//     of the main loop): conv2d_wgrad_tensor_op's x^T and conv2d_dgrad_tensor_op's filter.
//
// mma.sync + ldmatrix + cp.async multi-stage, padded shared memory.
// (the sm_90a GEMM, wgmma + TMA, is gemm/gemm_wgmma_sm90.h)
// Checked by: python -m pytest tests/kernels/test_tensor_core.py -q   (emulator vs NumPy; nvcc/NVRTC
//             builds for sm_80 and sm_90a; SASS: python scripts/sass_report.py)
#pragma once
#include "../arch/sm80/cp_async.h"
#include "../common/index.h"
#include "../arch/sm80/mma.h"
#include "../epilogue/bias_residual_act.h"

namespace fc {

// Compile-time shape of a tensor-core kernel: block tile BM x BN x BK, warp tile WM x WN, pipeline depth.
template <class Element_, int BM_, int BN_, int BK_, int WM_, int WN_, int kStages_>
struct TensorOpTraits {
  using Element = Element_;
  static constexpr int BM = BM_, BN = BN_, BK = BK_, WM = WM_, WN = WN_, kStages = kStages_;
  static constexpr bool kTf32 = sizeof(Element) == 4;
  static constexpr int kInstM = 16, kInstN = 8, kInstK = kTf32 ? 8 : 16;   // one mma.sync
  static constexpr int kWarpsM = BM / WM, kWarpsN = BN / WN;
  static constexpr int kThreads = 32 * kWarpsM * kWarpsN;
  static constexpr int kMmaM = WM / kInstM, kMmaN = WN / kInstN;         // mma tiles per warp
  // Padding, in elements, of each shared row:
  //  tf32: lane (g, t) reads A[g][t] and B[t][g]. A rows of BK + 4 floats: word g*(BK+4) + t, which for
  //        BK % 8 == 0 is 4g + t (mod 8·4) over distinct banks; B rows of BN + 8 floats: t*(BN+8) + g,
  //        BN % 16 == 0 puts the four t rows 8 banks apart. Conflict-free, both.
  //  f16/bf16: ldmatrix reads 8 rows of 16 bytes per matrix; rows (BK + 8) * 2 bytes apart start in
  //        8 distinct 16-byte bank groups when (BK + 8) / 8 is odd, i.e. BK % 16 == 0 (same for BN).
  static constexpr int kPadA = kTf32 ? 4 : 8, kPadB = 8;
  static constexpr int kLdA = BK + kPadA, kLdB = BN + kPadB;
  static constexpr int kStageElemsA = BM * kLdA, kStageElemsB = BK * kLdB;
  static constexpr int kSmemBytes = kStages * (kStageElemsA + kStageElemsB) * int(sizeof(Element));

  static_assert(sizeof(Element) == 4 || sizeof(Element) == 2, "float (tf32), __half or __nv_bfloat16");
  static_assert(BM % WM == 0 && BN % WN == 0, "warp tiles tile the block tile");
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile: whole m16 tiles and pairs of n8 tiles (ldmatrix.x4.trans)");
  static_assert(BK % 16 == 0, "BK: whole mma k-steps, and conflict-free padded rows (see kPadA)");
  static_assert(BN % 16 == 0, "BN: conflict-free padded rows (see kPadB)");
  static_assert(kThreads >= 32 && kThreads <= 512, "1 to 16 warps");
  static_assert(kStages >= 2, "at least double buffering");
  static_assert((kLdA * sizeof(Element)) % 16 == 0 && (kLdB * sizeof(Element)) % 16 == 0,
                "shared rows start 16-byte aligned (cp.async 16 B destinations, ldmatrix rows)");
  static_assert(kSmemBytes <= 48 * 1024, "static shared memory is limited to 48 KiB");
};

// The instantiated shapes. 64 x 64 CTA, four 32 x 32 warps, three stages: 32 fp32 accumulators per
// thread; a k-slice is 64 bytes of each row for every type (BK = 16 floats or 32 halves).
// (Not tuned yet: no GPU measurements behind these numbers; see the autotuning item in the report.)
using TensorOpTf32Tile64 = TensorOpTraits<float, 64, 64, 16, 32, 32, 3>;
using TensorOpF16Tile64 = TensorOpTraits<__half, 64, 64, 32, 32, 32, 3>;
using TensorOpBf16Tile64 = TensorOpTraits<__nv_bfloat16, 64, 64, 32, 32, 32, 3>;
// 128 x 128 CTA, eight 64 x 32 warps, two stages (three do not fit 48 KiB of static shared memory).
using TensorOpF16Tile128 = TensorOpTraits<__half, 128, 128, 32, 64, 32, 2>;
using TensorOpBf16Tile128 = TensorOpTraits<__nv_bfloat16, 128, 128, 32, 64, 32, 2>;

namespace tensor_op_detail {

template <class T>
struct IsBf16 {
  static constexpr bool value = false;
};
template <>
struct IsBf16<__nv_bfloat16> {
  static constexpr bool value = true;
};

// One mma on fragments held in .b32 registers, accumulating into d.
template <class Element>
FC_DEVICE void mma(float* d, const uint32_t* a, const uint32_t* b) {
  if constexpr (sizeof(Element) == 4) {
    mma_m16n8k8_tf32(d, a, b, d);
  } else if constexpr (IsBf16<Element>::value) {
    mma_m16n8k16_bf16(d, a, b, d);
  } else {
    mma_m16n8k16_f16(d, a, b, d);
  }
}

}  // namespace tensor_op_detail

// Copies one kRows x kCols slice of an operand (kCols contiguous) into a shared stage, kVec elements
// per cp.async. `Gather` maps (row, column) of the slice to a global address: row(i) precomputes a
// row's state once per thread; ptr(row, col, &ok) returns the address and whether it lies inside.
template <class T, int kRows, int kCols, int kLd, int kThreads, int kVec, class Gather>
struct AsyncTileLoader {
  static constexpr int kVecsPerRow = kCols / kVec;
  static constexpr int kVecs = kRows * kVecsPerRow;
  static constexpr int kSlots = (kVecs + kThreads - 1) / kThreads;
  static constexpr bool kEven = kVecs % kThreads == 0;
  static_assert(kCols % kVec == 0, "vectors tile a row of the slice");

  typename Gather::Row row[kSlots];
  int col[kSlots];

  FC_DEVICE bool active(int s) const { return kEven || int(threadIdx.x) + s * kThreads < kVecs; }

  // rows are taken from row0 (the CTA's m or the slice's k origin, see the caller)
  FC_DEVICE void init(const Gather& g, int row0, int col0) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      const int e = int(threadIdx.x) + s * kThreads;
      col[s] = (e % kVecsPerRow) * kVec + col0;
      row[s] = g.row(row0 + e / kVecsPerRow);
    }
  }

  // Issues the copies of the slice whose first column (A: k, B: n) or row is at `offset`.
  FC_DEVICE void issue(const Gather& g, int offset, T* stage) const {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      if (!active(s)) continue;
      const int e = int(threadIdx.x) + s * kThreads;
      bool ok;
      const T* src = g.ptr(row[s], col[s], offset, ok);
      cp_async_ca<kVec * int(sizeof(T))>(stage + (e / kVecsPerRow) * kLd + (e % kVecsPerRow) * kVec, src,
                                         ok ? kVec * int(sizeof(T)) : 0);
    }
  }
};

// A of a dense GEMM: A[m, k] = p[m * ld + k], rows m, slices advance along k.
template <class T>
struct RowMajorAGather {
  const T* p;
  int ld, rows, cols;
  struct Row {
    const T* base;
    bool valid;
  };
  FC_DEVICE Row row(int m) const { return Row{p + int64_t(m < rows ? m : 0) * ld, m < rows}; }
  FC_DEVICE const T* ptr(const Row& r, int k, int k0, bool& ok) const {
    ok = r.valid && k + k0 < cols;
    return ok ? r.base + k + k0 : p;   // src-size 0 reads nothing; p keeps the address valid
  }
};

// B of a dense GEMM (and of conv fprop: the filter seen as (R*S*C) x K): B[k, n] = p[k * ld + n].
// Slices advance along k, so here the *rows* move: row(kk) is re-evaluated per slice via k0.
template <class T>
struct RowMajorBGather {
  const T* p;
  int ld, rows, cols;   // rows = K (the reduction), cols = N
  struct Row {
    int k;
  };
  FC_DEVICE Row row(int kk) const { return Row{kk}; }
  FC_DEVICE const T* ptr(const Row& r, int n, int k0, bool& ok) const {
    const int k = r.k + k0;
    ok = k < rows && n < cols;
    return ok ? p + int64_t(k) * ld + n : p;
  }
};

// The main loop, run by every thread of the CTA; ends by handing each valid C element to `epi` as
// epi(m, n, value). ga: A (M x K), gb: B (K x N); m0, n0: the CTA's tile origin.
// kAColumnMajor: A is contiguous along m, not k (wgrad's activation, x^T). Its gather then works like
// B's (rows k, moving per slice; columns m), its stage is [BK][BM + pad] and the f16/bf16 fragments
// come from ldmatrix.trans, as B's do; the padding argument of kPadB applies unchanged (BM % 16 == 0).
// kBColumnMajor: B is contiguous along k, not n (dgrad's filter, w^T), the mirror image: its gather works
// like A's (rows n, columns k moving per slice), its stage is [BN][BK + kPadA] and its fragments come from
// plain ldmatrix (tf32: 32-bit loads), conflict-free by kPadA's argument.
template <class Traits, int kVec, bool kAColumnMajor = false, bool kBColumnMajor = false, class GatherA, class GatherB,
          class Epilogue>
FC_DEVICE void gemm_tensor_op_mainloop(const GatherA& ga, const GatherB& gb, int M, int N, int K, int m0, int n0,
                                       const Epilogue& epi) {
  using T = typename Traits::Element;
  constexpr int BM = Traits::BM, BN = Traits::BN, BK = Traits::BK, kStages = Traits::kStages;
  constexpr int kLdA = kAColumnMajor ? BM + Traits::kPadB : Traits::kLdA;
  constexpr int kLdB = kBColumnMajor ? BK + Traits::kPadA : Traits::kLdB;
  constexpr int kStageElemsA = kAColumnMajor ? BK * kLdA : Traits::kStageElemsA;
  constexpr int kStageElemsB = kBColumnMajor ? BN * kLdB : Traits::kStageElemsB;
  constexpr int kMmaM = Traits::kMmaM, kMmaN = Traits::kMmaN;
  static_assert(kVec * sizeof(T) == 4 || kVec * sizeof(T) == 8 || kVec * sizeof(T) == 16, "cp.async copies 4, 8 or 16 bytes");
  static_assert(!kAColumnMajor || (BM % 16 == 0 && (kLdA * sizeof(T)) % 16 == 0), "column-major A: padded rows as B's");
  static_assert(kStages * (kStageElemsA + kStageElemsB) * sizeof(T) <= 48 * 1024, "static shared memory: 48 KiB");
  __shared__ __align__(16) T smem_a[kStages][kStageElemsA];
  __shared__ __align__(16) T smem_b[kStages][kStageElemsB];

  // A: rows m, columns k (or, column-major, rows k and columns m); B: rows k, columns n
  AsyncTileLoader<T, kAColumnMajor ? BK : BM, kAColumnMajor ? BM : BK, kLdA, Traits::kThreads, kVec, GatherA> load_a;
  AsyncTileLoader<T, kBColumnMajor ? BN : BK, kBColumnMajor ? BK : BN, kLdB, Traits::kThreads, kVec, GatherB> load_b;
  if constexpr (kAColumnMajor) {
    load_a.init(ga, 0, m0);
  } else {
    load_a.init(ga, m0, 0);
  }
  if constexpr (kBColumnMajor) {
    load_b.init(gb, n0, 0);
  } else {
    load_b.init(gb, 0, n0);
  }

  const int lane = int(threadIdx.x) & 31, warp = int(threadIdx.x) >> 5;
  const int wm0 = (warp / Traits::kWarpsN) * Traits::WM, wn0 = (warp % Traits::kWarpsN) * Traits::WN;
  const int g = lane >> 2, t = lane & 3;

  float acc[kMmaM][kMmaN][4];
#pragma unroll
  for (int i = 0; i < kMmaM; ++i)
#pragma unroll
    for (int j = 0; j < kMmaN; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.f;

  const int k_tiles = (K + BK - 1) / BK;
  // Prologue: slices 0 .. kStages-2 in flight. Every thread commits a group per slot, even an empty
  // one, so that "wait until kStages-2 groups remain" always means "slice kt has landed".
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) {
      load_a.issue(ga, s * BK, smem_a[s]);
      load_b.issue(gb, s * BK, smem_b[s]);
    }
    cp_async_commit();
  }

  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait_group<kStages - 2>();   // this thread's copies of slice kt are done
    __syncthreads();                      // ... and everyone's; all warps are past slice kt - 1
    {   // refill the stage that slice kt - 1 used with slice kt + kStages - 1
      const int next = kt + kStages - 1;
      if (next < k_tiles) {
        load_a.issue(ga, next * BK, smem_a[next % kStages]);
        load_b.issue(gb, next * BK, smem_b[next % kStages]);
      }
      cp_async_commit();
    }
    const T* As = smem_a[kt % kStages];
    const T* Bs = smem_b[kt % kStages];
#pragma unroll
    for (int kk = 0; kk < BK; kk += Traits::kInstK) {
      uint32_t a[kMmaM][4], b[kMmaN][2];
      if constexpr (Traits::kTf32) {
        // A a_i = A[g + 8(i%2)][t + 4(i/2)], B b_i = B[t + 4i][g] (m16n8k8 .tf32 fragments)
#pragma unroll
        for (int i = 0; i < kMmaM; ++i)
#pragma unroll
          for (int r = 0; r < 4; ++r) {
            const int am = wm0 + i * 16 + g + 8 * (r % 2), ak = kk + t + 4 * (r / 2);
            a[i][r] = float_to_tf32(float(As[kAColumnMajor ? ak * kLdA + am : am * kLdA + ak]));
          }
#pragma unroll
        for (int j = 0; j < kMmaN; ++j)
#pragma unroll
          for (int r = 0; r < 2; ++r) {
            const int bk = kk + t + 4 * r, bn = wn0 + j * 8 + g;
            b[j][r] = float_to_tf32(float(Bs[kBColumnMajor ? bn * kLdB + bk : bk * kLdB + bn]));
          }
      } else {
        // A: matrices (rows 0-7 | 8-15) x (k 0-7 | 8-15); lane l addresses row l%16, k-half l/16.
        // Column-major A: .trans of the same four matrices, stored k-major; lane l addresses k row
        // (l%8) + 8(l/16), m half (l/8)%2, so matrix j = l/8 is (m half j%2, k half j/2) as above.
#pragma unroll
        for (int i = 0; i < kMmaM; ++i) {
          if constexpr (kAColumnMajor) {
            ldmatrix_x4_trans(a[i], As + (kk + (lane & 7) + 8 * (lane >> 4)) * kLdA + wm0 + i * 16 + 8 * ((lane >> 3) & 1));
          } else {
            ldmatrix_x4(a[i], As + (wm0 + i * 16 + (lane & 15)) * kLdA + kk + (lane >> 4) * 8);
          }
        }
        // B: .trans of (k 0-7 | 8-15) x (n block j | j+1); lane l addresses k row l%16, n block l/16.
        // Column-major B: the same four matrices stored n-major, plain ldmatrix; lane l addresses n row
        // l%8 of n block j + l/16, k half (l/8)%2.
#pragma unroll
        for (int j = 0; j < kMmaN; j += 2) {
          uint32_t r[4];
          if constexpr (kBColumnMajor) {
            ldmatrix_x4(r, Bs + (wn0 + (j + (lane >> 4)) * 8 + (lane & 7)) * kLdB + kk + 8 * ((lane >> 3) & 1));
          } else {
            ldmatrix_x4_trans(r, Bs + (kk + (lane & 15)) * kLdB + wn0 + (j + (lane >> 4)) * 8);
          }
          b[j][0] = r[0];
          b[j][1] = r[1];
          b[j + 1][0] = r[2];
          b[j + 1][1] = r[3];
        }
      }
#pragma unroll
      for (int i = 0; i < kMmaM; ++i)
#pragma unroll
        for (int j = 0; j < kMmaN; ++j) tensor_op_detail::mma<T>(acc[i][j], a[i], b[j]);
    }
  }
  cp_async_wait_group<0>();   // only empty groups remain; leave no copy in flight at exit

  // Epilogue stage: c_i of tile (i, j) is C[g + 8(c/2)][2t + c%2] within the 16 x 8 tile. Scalar
  // stores of the fragments: 4 lanes per row of 8 columns, 50% sector efficiency for float C (25%
  // for 16-bit C; benchmarks/counters/emulated.json). Staging C through shared memory for 16-byte
  // stores is the known fix, not done: it needs shared memory the pipeline stages hold.
#pragma unroll
  for (int i = 0; i < kMmaM; ++i)
#pragma unroll
    for (int j = 0; j < kMmaN; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int m = m0 + wm0 + i * 16 + g + 8 * (c / 2);
        const int n = n0 + wn0 + j * 8 + 2 * t + (c % 2);
        if (m < M && n < N) epi(m, n, acc[i][j][c]);
      }
}

// Kernels declare __launch_bounds__(Traits::kThreads, 1): without the minimum-blocks argument ptxas
// (CUDA 13.0, sm_90a) capped the 4-byte-copy and 128 x 128 kernels at 128 registers and spilled
// (scripts/sass_report.py: LDL/STL 1-2 each); with it none spills, on sm_80 or sm_90a.
// The store after the epilogue stage (csrc/epilogue/bias_residual_act.h): c[m * ldc + n], the residual
// read at the same offset.
template <class Out>
struct TensorOpStore {
  Out* c;
  int ldc;
  BiasResidualActEpilogue<Out> stage;
  FC_DEVICE void operator()(int m, int n, float acc) const {
    const int64_t offset = int64_t(m) * ldc + n;
    c[offset] = stage(acc, offset, n);
  }
};

// C = act(A * B + bias + residual). grid (ceil(M / BM), ceil(N / BN)) or those tiles on grid.x (fc::block_tile),
// block Traits::kThreads;
// residual (Out, laid out as C) read only when has_residual.
// Host checks (fastconv/backends/plans/gemm.py gemm_tensor_op): K, N, lda, ldb multiples of kVec,
// A and B kVec * sizeof(Element)-byte aligned, every offset below 2^31.
template <class Traits, int kVec, class Out>
__global__ void __launch_bounds__(Traits::kThreads, 1)
gemm_tensor_op(int M, int N, int K, const typename Traits::Element* __restrict__ A, int lda,
               const typename Traits::Element* __restrict__ B, int ldb, Out* __restrict__ C, int ldc,
               const float* __restrict__ bias, int has_bias, int act, float alpha, const Out* __restrict__ residual,
               int has_residual) {
  using T = typename Traits::Element;
  RowMajorAGather<T> ga{A, lda, M, K};
  RowMajorBGather<T> gb{B, ldb, K, N};
  TensorOpStore<Out> out{C, ldc, BiasResidualActEpilogue<Out>{bias, has_bias, residual, has_residual, act, alpha}};
  const BlockTile tile = block_tile(ceil_div(M, Traits::BM), ceil_div(N, Traits::BN));
  gemm_tensor_op_mainloop<Traits, kVec>(ga, gb, M, N, K, int(tile.x) * Traits::BM, int(tile.y) * Traits::BN, out);
}

}  // namespace fc
