// arch/sm90/primitives.h — the Hopper (sm_90a) asynchronous primitives behind our own device functions:
// inline PTX on the GPU (__CUDA_ARCH__ >= 900, built for sm_90a), the PTX ISA semantics in the CPU
// emulator (csrc/emu). Kernel source is identical for both.
//
//   shared_address(p)                        shared-window address of p (cvta.to.shared)
//   mbarrier_init / arrive / arrive_expect_tx / expect_tx / complete_tx / try_wait_parity / wait_parity
//   fence_mbarrier_init(), fence_proxy_async_shared()
//   tma_load_{2,3,4,5}d(dst, &map, c0, .., bar)   cp.async.bulk.tensor.Nd ... mbarrier::complete_tx::bytes
//   make_smem_desc(addr, swizzle, lbo, sbo)  the 64-bit wgmma shared-memory matrix descriptor
//   wgmma_fence / wgmma_commit / wgmma_wait<N>, setmaxnreg_inc<N> / setmaxnreg_dec<N>
//   wgmma_m64nNk16<N, In, TransA, TransB>(d, desc_a, desc_b, scale_d)   D(64xN, f32) (+)= A(64x16) * B(16xN),
//                                            A and B in shared memory, K-major (Trans 0) or MN-major
//                                            (Trans 1: PTX imm-trans-a / imm-trans-b), In = __nv_bfloat16 or
//                                            __half; N = 64, 128, 256 on the GPU (any multiple of 8 emulated)
//
// PTX ISA sections (8.x numbering shifts between versions; titles do not): "Parallel Synchronization
// and Communication Instructions: mbarrier", "Data Movement: cp.async.bulk.tensor", "Tensor Copy
// Swizzling Modes", "Asynchronous Warpgroup Level Matrix Multiply-Accumulate Instructions" with
// "Matrix Descriptor Format", "Shared Memory Matrix Layout" and "Register Fragments: m64nNk16".
//
// Emulator model (see csrc/emu/README.md "Hopper"):
// - mbarrier: phase, pending arrivals and transaction bytes kept by the runtime beside the object;
//   try_wait blocks the thread until its phase completes, or reports a deadlock.
// - TMA: the copy (with zero fill outside the tensor and the swizzle) runs when no thread of the block
//   can run, then completes its bytes on the mbarrier; a read that did not wait sees the old bytes.
// - wgmma: mma_async records the operation; wait_group N (a warp collective) performs every group but
//   the newest N, reading shared memory then, so a stage released too early gives wrong results.
//   Each warp computes its own 16 rows (warp w % 4 of the warpgroup owns rows 16(w%4)..+15), which is
//   exactly what the instruction gives it. Products exact in double, one rounding to float.
#pragma once

#include "../../common/platform.h"

namespace fc {
namespace sm90 {

// The tensor map, passed by value as a `const __grid_constant__` kernel parameter. On the GPU its 128
// bytes come from cuTensorMapEncodeTiled (driver); in the emulator from
// fastconv/backends/plans/tensor_map.py, which writes EmuTensorMap into the same bytes.
struct alignas(64) TensorMap {
  unsigned long long opaque[16];
};

// Swizzle modes as CUtensorMapSwizzle numbers them (the wgmma descriptor numbers them differently).
enum TmaSwizzle : uint32_t { kTmaSwizzleNone = 0, kTmaSwizzle32B = 1, kTmaSwizzle64B = 2, kTmaSwizzle128B = 3 };
// The descriptor's 2-bit "swizzle mode" field (bits 62-63).
enum DescSwizzle : uint32_t { kDescInterleave = 0, kDescSwizzle128B = 1, kDescSwizzle64B = 2, kDescSwizzle32B = 3 };

// What the emulated TMA reads from a TensorMap: a tiled map of rank 1..5 (cuTensorMapEncodeTiled's
// fields; fastconv/backends/plans/tensor_map.py EMU_TENSOR_MAP_DTYPE mirrors the offsets).
struct EmuTensorMap {
  uint32_t magic;            // kEmuTensorMapMagic
  int32_t param_index;       // the kernel parameter (a pointer) that carries the global tensor
  uint32_t elem_bytes;       // 1, 2, 4 or 8
  uint32_t swizzle;          // TmaSwizzle
  uint32_t rank;             // 1..5
  uint16_t box[5];           // boxDim: elements traversed per dimension, box[0] innermost (<= 256)
  uint8_t elem_strides[5];   // elementStrides: traversal stride per dimension (1..8; [0] must be 1)
  uint64_t dims[5];          // globalDim: elements; dims[0] innermost
  uint64_t strides[4];       // globalStrides: bytes between consecutive indices of dims 1..rank-1 (x16)
  uint64_t base_offset;      // bytes from the parameter's pointer to element (0, ..., 0)
};
constexpr uint32_t kEmuTensorMapMagic = 0x4d544346u;  // "FCTM"

#if defined(FC_TARGET_EMULATOR)
static_assert(sizeof(EmuTensorMap) <= sizeof(TensorMap), "EmuTensorMap must fit in the 128-byte tensor map");
static_assert(offsetof(EmuTensorMap, box) == 20 && offsetof(EmuTensorMap, elem_strides) == 30 &&
                  offsetof(EmuTensorMap, dims) == 40 && offsetof(EmuTensorMap, strides) == 80 &&
                  offsetof(EmuTensorMap, base_offset) == 112,
              "EmuTensorMap's offsets are mirrored by EMU_TENSOR_MAP_DTYPE in fastconv/backends/plans/hopper.py");
namespace emu {

inline uint32_t swizzle_bytes_of_desc(uint32_t mode) {
  return mode == kDescSwizzle128B ? 128u : mode == kDescSwizzle64B ? 64u : mode == kDescSwizzle32B ? 32u : 0u;
}
inline uint32_t swizzle_bytes_of_tma(uint32_t mode) {
  return mode == kTmaSwizzle128B ? 128u : mode == kTmaSwizzle64B ? 64u : mode == kTmaSwizzle32B ? 32u : 0u;
}
// "Tensor Copy Swizzling Modes": within each span of 8 * W bytes (W = swizzle width), the 16-byte
// chunk index (address bits 4..) is XORed with the row index (address bits 7..) modulo W / 16; the
// pattern is a function of the shared-window address (CUTLASS Swizzle<log2(W/16), 4, 3>).
inline uint32_t swizzle_address(uint32_t addr, uint32_t width) {
  if (width == 0) return addr;
  const uint32_t mask = width / 16 - 1;
  return addr ^ (((addr >> 7) & mask) << 4);
}

// ---- mbarrier ----
struct MBarWait {
  const ::fc_emu::MBarrierState* s;
  uint32_t parity;
};
inline bool mbar_phase_done(const void* c) {
  const MBarWait& w = *static_cast<const MBarWait*>(c);
  return (w.s->phase & 1u) != w.parity;
}
inline void mbar_describe(const void* c, char* buf, size_t n) {
  const MBarWait& w = *static_cast<const MBarWait*>(c);
  std::snprintf(buf, n, "waiting for the phase of parity %u; the current phase (%u completed) still misses %u of %u "
                "arrivals and %lld transaction bytes", w.parity, w.s->phase, w.s->pending, w.s->expected,
                static_cast<long long>(w.s->tx));
}
inline void mbar_arrive(::fc_emu::MBarrierState& s, const char* what, ::fc_emu::Site site) {
  if (s.pending == 0) ::fc_emu::fail("%s at %s:%u: more arrivals than the mbarrier's count", what, site.file, site.line);
  --s.pending;
  ::fc_emu::mbarrier_maybe_complete(s);
}
inline void mbar_add_tx(::fc_emu::MBarrierState& s, int64_t bytes, const char* what) {
  s.tx += bytes;
  if (s.tx > (1 << 20) - 1 || s.tx < -((1 << 20) - 1))
    ::fc_emu::fail("%s: the mbarrier's transaction count %lld left the range +-(2^20 - 1)", what, static_cast<long long>(s.tx));
}

// ---- TMA ----
// "Data Movement: cp.async.bulk.tensor" (tile mode) with the map of cuTensorMapEncodeTiled (CUDA driver
// API, "Tensor Map Object Management"): the box at coordinates c (signed, innermost first) traverses
// box[i] elements of dimension i taking every elem_strides[i]-th, so ceil(box[i] / elem_strides[i])
// land in shared memory per dimension (nvFuser's "TMA Support in NVFuser" notes call that the tile: box
// (6, 4) with strides (1, 3) gives a (6, 2) tile), packed innermost first. Elements whose coordinate is negative
// or >= dims[i] in any dimension are zero (OOB fill NONE) and still count towards the transaction bytes.
struct TmaJob {
  char* dst;
  const char* src;          // element (0, ..., 0) of the global tensor
  EmuTensorMap map;
  int c[5];
  void* bar;
  uint32_t dst_offset;      // shared-window address of dst (for the swizzle)
};
inline uint32_t tma_count(const EmuTensorMap& m, uint32_t i) {
  return i < m.rank ? (m.box[i] + m.elem_strides[i] - 1u) / m.elem_strides[i] : 1u;
}
inline uint32_t tma_box_bytes(const EmuTensorMap& m) {
  uint32_t n = m.elem_bytes;
  for (uint32_t i = 0; i < 5; ++i) n *= tma_count(m, i);
  return n;
}
inline void tma_run(const void* ctx) {
  const TmaJob& j = *static_cast<const TmaJob*>(ctx);
  const EmuTensorMap& m = j.map;
  const uint32_t width = swizzle_bytes_of_tma(m.swizzle);
  uint32_t lin = j.dst_offset;
  for (uint32_t y4 = 0; y4 < tma_count(m, 4); ++y4)
    for (uint32_t y3 = 0; y3 < tma_count(m, 3); ++y3)
      for (uint32_t y2 = 0; y2 < tma_count(m, 2); ++y2)
        for (uint32_t y1 = 0; y1 < tma_count(m, 1); ++y1) {
          const uint32_t y[5] = {0, y1, y2, y3, y4};
          bool row_in = true;
          int64_t row_src = 0;
          for (uint32_t i = 1; i < m.rank; ++i) {
            const int64_t g = static_cast<int64_t>(j.c[i]) + static_cast<int64_t>(y[i]) * m.elem_strides[i];
            row_in = row_in && g >= 0 && g < static_cast<int64_t>(m.dims[i]);
            row_src += g * static_cast<int64_t>(m.strides[i - 1]);
          }
          for (uint32_t x = 0; x < m.box[0]; ++x, lin += m.elem_bytes) {
            const int64_t gx = static_cast<int64_t>(j.c[0]) + x;
            char* d = j.dst + (swizzle_address(lin, width) - j.dst_offset);
            if (!row_in || gx < 0 || gx >= static_cast<int64_t>(m.dims[0]))
              std::memset(d, 0, m.elem_bytes);
            else
              std::memcpy(d, j.src + row_src + gx * m.elem_bytes, m.elem_bytes);
            ::fc_emu::async_proxy_wrote(static_cast<uint32_t>(d - j.dst) + j.dst_offset, m.elem_bytes);
          }
        }
  ::fc_emu::MBarrierState* s = ::fc_emu::mbarrier_lookup(j.bar);
  if (!s) ::fc_emu::fail("the mbarrier it completes on is no longer initialised");
  mbar_add_tx(*s, -static_cast<int64_t>(tma_box_bytes(m)), "cp.async.bulk.tensor complete_tx");
  ::fc_emu::mbarrier_maybe_complete(*s);
}

// Checks the map against the instruction and queues the copy (it runs when no thread of the block can run).
inline void tma_issue(void* smem_dst, const TensorMap* map, const int* c, uint32_t rank, uint64_t* bar,
                      ::fc_emu::Site site) {
  static const char* const names[6] = {"", "cp.async.bulk.tensor.1d", "cp.async.bulk.tensor.2d",
                                       "cp.async.bulk.tensor.3d", "cp.async.bulk.tensor.4d", "cp.async.bulk.tensor.5d"};
  const char* what = names[rank];
  TmaJob job;
  std::memcpy(&job.map, map, sizeof job.map);
  const EmuTensorMap& m = job.map;
  if (m.magic != kEmuTensorMapMagic)
    ::fc_emu::fail("%s at %s:%u: the tensor map was not made by the emulator's encoder (magic 0x%08x)", what,
                   site.file, site.line, m.magic);
  if (m.rank != rank)
    ::fc_emu::fail("%s at %s:%u: the tensor map has rank %u; the instruction's dimension must match it", what,
                   site.file, site.line, m.rank);
  for (uint32_t i = 0; i < rank; ++i)
    if (m.elem_strides[i] < 1 || m.elem_strides[i] > 8 || m.box[i] < 1 || m.box[i] > 256 || (i == 0 && m.elem_strides[0] != 1))
      ::fc_emu::fail("%s at %s:%u: dimension %u has box %u and element stride %u; the emulator takes boxes in [1, 256], "
                     "strides in [1, 8] and an innermost stride of 1", what, site.file, site.line, i, m.box[i],
                     m.elem_strides[i]);
  const uint32_t width = swizzle_bytes_of_tma(m.swizzle), row_bytes = m.box[0] * m.elem_bytes;
  if (width && row_bytes != width)
    ::fc_emu::fail("%s at %s:%u: the box's inner extent is %u bytes; with a %u-byte swizzle the emulator needs it equal "
                   "to the swizzle width", what, site.file, site.line, row_bytes, width);
  job.dst = static_cast<char*>(smem_dst);
  job.dst_offset = ::fc_emu::shared_offset(smem_dst, what, site);
  const uint32_t align = width ? 8 * width : 128;   // 128 B, and the swizzle pattern's period when swizzled
  if (job.dst_offset % align)
    ::fc_emu::fail("%s at %s:%u: shared destination offset %u is not %u-byte aligned", what, site.file, site.line,
                   job.dst_offset, align);
  const uint32_t bytes = tma_box_bytes(m);
  ::fc_emu::shared_pointer(job.dst_offset, bytes, what, site);
  job.src = static_cast<const char*>(::fc_emu::kernel_pointer_param(m.param_index, what, site)) + m.base_offset;
  for (uint32_t i = 0; i < 5; ++i) job.c[i] = i < rank ? c[i] : 0;
  job.bar = bar;
  ::fc_emu::mbarrier_state(bar, what, site);
  if (::fc_emu::poison_async()) ::fc_emu::poison_fill(smem_dst, bytes);
  ::fc_emu::defer_async(&tma_run, &job, sizeof job, what, site);
}

// ---- wgmma ----
enum WgmmaInput : int { kWgF16 = 0, kWgBf16 = 1 };
struct WgmmaOp {
  uint64_t desc_a, desc_b;
  float* d;
  int n, input, scale_d, trans_a, trans_b;
};
struct WgmmaLane {
  WgmmaOp ops[64];
  size_t count;
  unsigned warp_in_group;
};

// Byte address of element (row, k) (row: M or N) of an operand described by desc ("Shared Memory Matrix
// Layout", canonical layouts; the same forms as CUTLASS's make_gmma_desc comments, cute/atom/
// mma_traits_sm90_gmma.hpp, in units of T = 16 bytes of elements).
// K-major (trans 0). Interleave (no swizzle): 8x16-byte core matrices, LBO apart along K and SBO apart
// along M/N. Swizzled (width W): rows W bytes apart, 8-row groups SBO apart, the swizzle applied to the
// address; LBO is unused while the K extent (32 bytes) fits in W.
// MN-major (trans 1, imm-trans-a/b). Interleave: core matrices of 8 K-rows x 16 bytes (8 M/N elements),
// SBO apart along M/N and LBO apart along K, ((T,1,m),(8,k)):((1,T,SBO),(T,LBO)). Swizzled (width W):
// along M/N W bytes contiguous, then the next W-byte atom LBO apart; along K rows W bytes apart, 8-row
// groups SBO apart, ((T,W/16,m),(8,k)):((1,T,LBO),(W/16*T,SBO)) -- the roles of LBO and SBO swap.
inline uint32_t desc_address(uint64_t desc, int row, int k, int elem_bytes, bool mn_major = false) {
  const uint32_t start = static_cast<uint32_t>(desc & 0x3fff) << 4;
  const uint32_t lbo = static_cast<uint32_t>((desc >> 16) & 0x3fff) << 4;
  const uint32_t sbo = static_cast<uint32_t>((desc >> 32) & 0x3fff) << 4;
  const uint32_t width = swizzle_bytes_of_desc(static_cast<uint32_t>(desc >> 62));
  if (mn_major) {
    const uint32_t rb = static_cast<uint32_t>(row * elem_bytes), ku = static_cast<uint32_t>(k);
    if (width == 0) return start + (rb / 16) * sbo + (ku / 8) * lbo + (ku % 8) * 16 + rb % 16;
    return swizzle_address(start + (rb / width) * lbo + (ku / 8) * sbo + (ku % 8) * width + rb % width, width);
  }
  const uint32_t kb = static_cast<uint32_t>(k * elem_bytes);
  if (width == 0) return start + (row / 8) * sbo + (kb / 16) * lbo + (row % 8) * 16 + kb % 16;
  return swizzle_address(start + (row / 8) * sbo + (row % 8) * width + kb, width);
}

inline double wg_load(uint64_t desc, int row, int k, int input, bool mn_major, ::fc_emu::Site site) {
  const uint32_t a = desc_address(desc, row, k, 2, mn_major);
  uint16_t bits;
  std::memcpy(&bits, ::fc_emu::shared_pointer(a, 2, "wgmma.mma_async operand", site), 2);
  ::fc_emu::async_proxy_check(a, 2, "wgmma.mma_async operand", site);
  return input == kWgF16 ? ::fc_emu::f16_bits_to_float(bits) : ::fc_emu::bf16_bits_to_float(bits);
}

inline void resolve_wgmma_wait(void* const lanes[32], unsigned participants) {
  if (participants != 0xffffffffu)
    ::fc_emu::fail("wgmma.wait_group needs all 32 lanes of the warp; lanes 0x%08x took part", participants);
  const WgmmaLane& l0 = *static_cast<const WgmmaLane*>(lanes[0]);
  for (int l = 1; l < 32; ++l)
    if (static_cast<const WgmmaLane*>(lanes[l])->count != l0.count)
      ::fc_emu::fail("lanes of the warp have different numbers of wgmma.mma_async in flight (%zu and %zu)", l0.count,
                     static_cast<const WgmmaLane*>(lanes[l])->count);
  const ::fc_emu::Site site{"wgmma.mma_async", 0};
  for (size_t i = 0; i < l0.count; ++i) {
    const WgmmaOp& op = l0.ops[i];
    for (int l = 1; l < 32; ++l) {
      const WgmmaOp& o = static_cast<const WgmmaLane*>(lanes[l])->ops[i];
      if (o.desc_a != op.desc_a || o.desc_b != op.desc_b || o.n != op.n || o.input != op.input || o.scale_d != op.scale_d ||
          o.trans_a != op.trans_a || o.trans_b != op.trans_b)
        ::fc_emu::fail("the lanes of a warp passed different descriptors, shapes, transposes or scale-d to one wgmma.mma_async "
                       "(lane 0: a=0x%llx b=0x%llx; lane %d: a=0x%llx b=0x%llx)",
                       static_cast<unsigned long long>(op.desc_a), static_cast<unsigned long long>(op.desc_b), l,
                       static_cast<unsigned long long>(o.desc_a), static_cast<unsigned long long>(o.desc_b));
    }
    const int N = op.n, row0 = 16 * static_cast<int>(l0.warp_in_group);
    double A[16][16];
    for (int r = 0; r < 16; ++r)
      for (int k = 0; k < 16; ++k) A[r][k] = wg_load(op.desc_a, row0 + r, k, op.input, op.trans_a, site);
    double B[256][16];
    for (int n = 0; n < N; ++n)
      for (int k = 0; k < 16; ++k) B[n][k] = wg_load(op.desc_b, n, k, op.input, op.trans_b, site);
    // Accumulator fragment (m64nNk16, f32): d[i] of lane (g = lane/4, t = lane%4) in warp w holds
    // row 16w + g + 8 * ((i % 4) / 2), column 8 * (i / 4) + 2t + (i % 2).
    for (int l = 0; l < 32; ++l) {
      float* d = static_cast<const WgmmaLane*>(lanes[l])->ops[i].d;
      const int g = l >> 2, t = l & 3;
      for (int j = 0; j < N / 2; ++j) {
        const int r = g + 8 * ((j % 4) / 2), c = 8 * (j / 4) + 2 * t + (j % 2);
        double acc = op.scale_d ? static_cast<double>(d[j]) : 0.0;
        for (int k = 0; k < 16; ++k) acc += A[r][k] * B[c][k];
        d[j] = static_cast<float>(acc);
      }
    }
  }
}

inline unsigned linear_thread() { return (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x; }

}  // namespace emu
#endif  // FC_TARGET_EMULATOR

// mbarrier with transaction counts and TMA: sm_90. wgmma (and setmaxnreg): only the arch-specific
// sm_90a target (nvcc and NVRTC define __CUDA_ARCH_FEAT_SM90_ALL there); a plain sm_90 build gets
// empty bodies, and the kernels that need wgmma trap (the plans never launch them there).
#if defined(FC_TARGET_EMULATOR) || (defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900)
#  define FC_SM90_AVAILABLE 1
#endif
#if defined(FC_TARGET_EMULATOR) || defined(__CUDA_ARCH_FEAT_SM90_ALL)
#  define FC_SM90A_AVAILABLE 1
#endif
// FC_SITE_PARAM for a function without other parameters.
#if defined(FC_TARGET_EMULATOR)
#  define FC_SM90_SITE_ONLY ::fc_emu::Site fc_site = ::fc_emu::Site::here()
#else
#  define FC_SM90_SITE_ONLY
#endif

FC_DEVICE uint32_t shared_address(const void* p FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  return ::fc_emu::shared_offset(p, "shared_address", fc_site);
#else
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
#endif
}

// ---- mbarrier ---------------------------------------------------------------------------------------
FC_DEVICE void mbarrier_init(uint64_t* bar, uint32_t count FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  ::fc_emu::mbarrier_init_state(bar, count, fc_site);
#elif defined(FC_SM90_AVAILABLE)
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)), "r"(count) : "memory");
#endif
}

// Makes the inits visible to the async proxy (TMA) and the rest of the cluster.
FC_DEVICE void fence_mbarrier_init() {
#if defined(FC_SM90_AVAILABLE) && !defined(FC_TARGET_EMULATOR)
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}

// Orders this thread's generic-proxy shared-memory writes before later async-proxy (TMA, wgmma)
// accesses. The emulator makes every generic store so far visible to its async-proxy view, whose reads
// (wgmma operands) fail on bytes no fence covered.
FC_DEVICE void fence_proxy_async_shared() {
#if defined(FC_TARGET_EMULATOR)
  ::fc_emu::async_proxy_fence();
#elif defined(FC_SM90_AVAILABLE)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

FC_DEVICE uint64_t mbarrier_arrive(uint64_t* bar FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  ::fc_emu::MBarrierState& s = ::fc_emu::mbarrier_state(bar, "mbarrier.arrive", fc_site);
  const uint64_t token = s.phase;
  emu::mbar_arrive(s, "mbarrier.arrive", fc_site);
  return token;
#elif defined(FC_SM90_AVAILABLE)
  uint64_t state;
  asm volatile("mbarrier.arrive.shared::cta.b64 %0, [%1];\n" : "=l"(state) : "r"(shared_address(bar)) : "memory");
  return state;
#else
  return 0;
#endif
}

// expect_tx(bytes) then arrive, atomically.
FC_DEVICE uint64_t mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  ::fc_emu::MBarrierState& s = ::fc_emu::mbarrier_state(bar, "mbarrier.arrive.expect_tx", fc_site);
  const uint64_t token = s.phase;
  emu::mbar_add_tx(s, bytes, "mbarrier.arrive.expect_tx");
  emu::mbar_arrive(s, "mbarrier.arrive.expect_tx", fc_site);
  return token;
#elif defined(FC_SM90_AVAILABLE)
  uint64_t state;
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 %0, [%1], %2;\n"
               : "=l"(state) : "r"(shared_address(bar)), "r"(bytes) : "memory");
  return state;
#else
  return 0;
#endif
}

FC_DEVICE void mbarrier_expect_tx(uint64_t* bar, uint32_t bytes FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  emu::mbar_add_tx(::fc_emu::mbarrier_state(bar, "mbarrier.expect_tx", fc_site), bytes, "mbarrier.expect_tx");
#elif defined(FC_SM90_AVAILABLE)
  asm volatile("mbarrier.expect_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)), "r"(bytes) : "memory");
#endif
}

FC_DEVICE void mbarrier_complete_tx(uint64_t* bar, uint32_t bytes FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  ::fc_emu::MBarrierState& s = ::fc_emu::mbarrier_state(bar, "mbarrier.complete_tx", fc_site);
  emu::mbar_add_tx(s, -static_cast<int64_t>(bytes), "mbarrier.complete_tx");
  ::fc_emu::mbarrier_maybe_complete(s);
#elif defined(FC_SM90_AVAILABLE)
  asm volatile("mbarrier.complete_tx.relaxed.cta.shared::cta.b64 [%0], %1;\n" ::"r"(shared_address(bar)), "r"(bytes) : "memory");
#endif
}

// True once the phase of parity `parity` has completed (the current phase has the other parity).
// The emulator blocks until then (a GPU may return false after a time limit; callers loop).
FC_DEVICE bool mbarrier_try_wait_parity(uint64_t* bar, uint32_t parity FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  const emu::MBarWait w{&::fc_emu::mbarrier_state(bar, "mbarrier.try_wait.parity", fc_site), parity & 1u};
  ::fc_emu::wait_until(&emu::mbar_phase_done, &emu::mbar_describe, &w, "mbarrier.try_wait.parity", fc_site);
  return true;
#elif defined(FC_SM90_AVAILABLE)
  uint32_t done;
  asm volatile(
      "{\n .reg .pred p;\n mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n selp.u32 %0, 1, 0, p;\n}\n"
      : "=r"(done) : "r"(shared_address(bar)), "r"(parity) : "memory");
  return done != 0;
#else
  return true;
#endif
}

FC_DEVICE void mbarrier_wait_parity(uint64_t* bar, uint32_t parity FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  mbarrier_try_wait_parity(bar, parity, fc_site);
#else
  while (!mbarrier_try_wait_parity(bar, parity)) {
  }
#endif
}

// ---- TMA: one box from global to shared memory, completing its bytes on bar --------------------------
// c0 is the innermost coordinate (elements). Elements outside the tensor are zero-filled and still count
// towards the transaction bytes (the whole box); with element strides the box holds ceil(box / stride)
// elements per dimension (see emu::TmaJob).
FC_DEVICE void tma_load_2d(void* smem_dst, const TensorMap* map, int c0, int c1, uint64_t* bar FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  const int c[2] = {c0, c1};
  emu::tma_issue(smem_dst, map, c, 2, bar, fc_site);
#elif defined(FC_SM90_AVAILABLE)
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n"
      ::"r"(shared_address(smem_dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(shared_address(bar))
      : "memory");
#endif
}
FC_DEVICE void tma_load_3d(void* smem_dst, const TensorMap* map, int c0, int c1, int c2, uint64_t* bar FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  const int c[3] = {c0, c1, c2};
  emu::tma_issue(smem_dst, map, c, 3, bar, fc_site);
#elif defined(FC_SM90_AVAILABLE)
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n"
      ::"r"(shared_address(smem_dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2),
        "r"(shared_address(bar))
      : "memory");
#endif
}
FC_DEVICE void tma_load_4d(void* smem_dst, const TensorMap* map, int c0, int c1, int c2, int c3,
                           uint64_t* bar FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  const int c[4] = {c0, c1, c2, c3};
  emu::tma_issue(smem_dst, map, c, 4, bar, fc_site);
#elif defined(FC_SM90_AVAILABLE)
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5}], [%6];\n"
      ::"r"(shared_address(smem_dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3),
        "r"(shared_address(bar))
      : "memory");
#endif
}
FC_DEVICE void tma_load_5d(void* smem_dst, const TensorMap* map, int c0, int c1, int c2, int c3, int c4,
                           uint64_t* bar FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  const int c[5] = {c0, c1, c2, c3, c4};
  emu::tma_issue(smem_dst, map, c, 5, bar, fc_site);
#elif defined(FC_SM90_AVAILABLE)
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, %5, %6}], "
      "[%7];\n"
      ::"r"(shared_address(smem_dst)), "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(c3),
        "r"(c4), "r"(shared_address(bar))
      : "memory");
#endif
}

// ---- wgmma ----------------------------------------------------------------------------------------------
// Shared-memory matrix descriptor: start address, leading and stride byte offsets (all >> 4, 14 bits),
// base offset 0 (operands aligned to the swizzle period), swizzle mode in bits 62-63.
FC_HOST_DEVICE uint64_t make_smem_desc(uint32_t smem_addr, uint32_t swizzle, uint32_t lbo_bytes, uint32_t sbo_bytes) {
  return static_cast<uint64_t>((smem_addr & 0x3ffff) >> 4) | static_cast<uint64_t>((lbo_bytes & 0x3ffff) >> 4) << 16 |
         static_cast<uint64_t>((sbo_bytes & 0x3ffff) >> 4) << 32 | static_cast<uint64_t>(swizzle & 3) << 62;
}

FC_DEVICE void wgmma_fence() {
#if defined(FC_SM90A_AVAILABLE) && !defined(FC_TARGET_EMULATOR)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}

FC_DEVICE void wgmma_commit() {
#if defined(FC_TARGET_EMULATOR)
  ::fc_emu::async_commit();
#elif defined(FC_SM90A_AVAILABLE)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}

// Waits until at most N committed groups are pending. The accumulators of the finished groups may be
// read afterwards; on the GPU the compiler must also see them as written (see wgmma_fence_operands).
template <int N>
FC_DEVICE void wgmma_wait(FC_SM90_SITE_ONLY) {
#if defined(FC_TARGET_EMULATOR)
  emu::WgmmaLane me;
  me.count = ::fc_emu::async_pop_groups(static_cast<unsigned>(N), me.ops, 64, sizeof(emu::WgmmaOp));
  me.warp_in_group = (emu::linear_thread() / 32) % 4;
  ::fc_emu::warp_collective(0xffffffffu, &emu::resolve_wgmma_wait, "wgmma.wait_group.sync.aligned", &me, fc_site);
#elif defined(FC_SM90A_AVAILABLE)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}

// Tells nvcc that the accumulator registers may change here (they are written asynchronously).
template <int R>
FC_DEVICE void wgmma_fence_operands(float (&d)[R]) {
#if !defined(FC_TARGET_EMULATOR)
#  pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
#else
  (void)d;
#endif
}

template <class In>
struct WgmmaType;
template <>
struct WgmmaType<__nv_bfloat16> {
  static constexpr int kEmu = 1;
};
template <>
struct WgmmaType<__half> {
  static constexpr int kEmu = 0;
};

// D(64xN, f32) = A(64x16) * B(16xN) + (scale_d ? D : 0); A and B in shared memory through their
// descriptors, K-major, or MN-major where TransA / TransB is 1 (imm-trans-a / imm-trans-b, which PTX
// allows for .f16/.bf16 only); d holds this thread's N/2 accumulators (fragment layout above).
template <int N, class In, int TransA = 0, int TransB = 0>
struct Wgmma;

#if defined(FC_TARGET_EMULATOR)
template <int N, class In, int TransA, int TransB>
struct Wgmma {
  static_assert(N % 8 == 0 && N >= 8 && N <= 256, "wgmma m64nNk16: N is a multiple of 8 in [8, 256]");
  static_assert((TransA == 0 || TransA == 1) && (TransB == 0 || TransB == 1), "imm-trans-a/b are 0 or 1");
  static void run(float* d, uint64_t desc_a, uint64_t desc_b, int scale_d) {
    for (uint64_t desc : {desc_a, desc_b})
      if ((desc >> 49) & 7)   // only for swizzled operands whose pattern does not start at the period
        ::fc_emu::fail("wgmma.mma_async: descriptor 0x%llx sets the matrix base offset (bits 49-51), which the "
                       "emulator does not model; align the operand to its swizzle period instead",
                       static_cast<unsigned long long>(desc));
    const emu::WgmmaOp op{desc_a, desc_b, d, N, WgmmaType<In>::kEmu, scale_d != 0, TransA, TransB};
    ::fc_emu::async_push(&op, sizeof op);
  }
};
#else
// The register lists are spelled out per N (PTX needs one operand per accumulator).
#  define FC_WG_R8(i) "+f"(d[i + 0]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#  define FC_WG_R32(i) FC_WG_R8(i), FC_WG_R8(i + 8), FC_WG_R8(i + 16), FC_WG_R8(i + 24)
template <class In, int TransA, int TransB>
struct Wgmma<64, In, TransA, TransB> {
  FC_DEVICE static void run(float* d, uint64_t desc_a, uint64_t desc_b, int scale_d) {
#  if defined(FC_SM90A_AVAILABLE)
    if constexpr (WgmmaType<In>::kEmu == 1) {
      asm volatile(
          "{\n .reg .pred p;\n setp.ne.b32 p, %34, 0;\n"
          "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
          "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "
          "%32, %33, p, 1, 1, %35, %36;\n}\n"
          : FC_WG_R32(0) : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(TransA), "n"(TransB));
    } else {
      asm volatile(
          "{\n .reg .pred p;\n setp.ne.b32 p, %34, 0;\n"
          "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 "
          "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}, "
          "%32, %33, p, 1, 1, %35, %36;\n}\n"
          : FC_WG_R32(0) : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(TransA), "n"(TransB));
    }
#  endif
  }
};
#  define FC_WG_N128_REGS                                                                                    \
  "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31," \
  "%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
template <class In, int TransA, int TransB>
struct Wgmma<128, In, TransA, TransB> {
  FC_DEVICE static void run(float* d, uint64_t desc_a, uint64_t desc_b, int scale_d) {
#  if defined(FC_SM90A_AVAILABLE)
    if constexpr (WgmmaType<In>::kEmu == 1) {
      asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %66, 0;\n"
                   "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 " FC_WG_N128_REGS ", %64, %65, p, 1, 1, %67, %68;\n}\n"
                   : FC_WG_R32(0), FC_WG_R32(32) : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(TransA), "n"(TransB));
    } else {
      asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %66, 0;\n"
                   "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 " FC_WG_N128_REGS ", %64, %65, p, 1, 1, %67, %68;\n}\n"
                   : FC_WG_R32(0), FC_WG_R32(32) : "l"(desc_a), "l"(desc_b), "r"(scale_d), "n"(TransA), "n"(TransB));
    }
#  endif
  }
};
#  define FC_WG_N256_REGS "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,%121,%122,%123,%124,%125,%126,%127}"
template <class In, int TransA, int TransB>
struct Wgmma<256, In, TransA, TransB> {
  FC_DEVICE static void run(float* d, uint64_t desc_a, uint64_t desc_b, int scale_d) {
#  if defined(FC_SM90A_AVAILABLE)
    if constexpr (WgmmaType<In>::kEmu == 1) {
      asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %130, 0;\n"
                   "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " FC_WG_N256_REGS ", %128, %129, p, 1, 1, %131, %132;\n}\n"
                   : FC_WG_R32(0), FC_WG_R32(32), FC_WG_R32(64), FC_WG_R32(96) : "l"(desc_a), "l"(desc_b), "r"(scale_d),
                     "n"(TransA), "n"(TransB));
    } else {
      asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %130, 0;\n"
                   "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 " FC_WG_N256_REGS ", %128, %129, p, 1, 1, %131, %132;\n}\n"
                   : FC_WG_R32(0), FC_WG_R32(32), FC_WG_R32(64), FC_WG_R32(96) : "l"(desc_a), "l"(desc_b), "r"(scale_d),
                     "n"(TransA), "n"(TransB));
    }
#  endif
  }
};
#  undef FC_WG_N256_REGS
#  undef FC_WG_N128_REGS
#  undef FC_WG_R32
#  undef FC_WG_R8
#endif

// setmaxnreg (sm_90a): a warpgroup-wide hint that moves registers between warpgroups; needs a register
// cap at kernel entry (__launch_bounds__(threads, 1)). No effect in the emulator, which has no registers.
template <int N>
FC_DEVICE void setmaxnreg_inc() {
  static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg takes a multiple of 8 in [24, 256]");
#if defined(FC_SM90A_AVAILABLE) && !defined(FC_TARGET_EMULATOR)
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N>
FC_DEVICE void setmaxnreg_dec() {
  static_assert(N % 8 == 0 && N >= 24 && N <= 256, "setmaxnreg takes a multiple of 8 in [24, 256]");
#if defined(FC_SM90A_AVAILABLE) && !defined(FC_TARGET_EMULATOR)
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}

template <int N, class In, int TransA = 0, int TransB = 0>
FC_DEVICE void wgmma_m64nNk16(float* d, uint64_t desc_a, uint64_t desc_b, int scale_d) {
  Wgmma<N, In, TransA, TransB>::run(d, desc_a, desc_b, scale_d);
}

}  // namespace sm90
}  // namespace fc
