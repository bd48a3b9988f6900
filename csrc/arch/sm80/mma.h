// mma.h — tensor-core primitives behind our own device functions: warp-level mma.sync, ldmatrix
// and the float -> tf32 conversion. On the GPU each body is the inline PTX; in the emulator it
// implements the PTX ISA's fragment layouts exactly, gathering all 32 lanes as one warp collective.
//
//   fc::mma_m16n8k8_tf32(d, a, b, c)    D(16x8,f32) = A(16x8,tf32,row) * B(8x8,tf32,col) + C
//   fc::mma_m16n8k16_f16(d, a, b, c)    D(16x8,f32) = A(16x16,f16,row) * B(16x8,f16,col) + C
//   fc::mma_m16n8k16_bf16(d, a, b, c)   same with bf16 inputs
//   fc::ldmatrix_x{1,2,4}[_trans](r, row_address)   8x8 b16 matrices from shared memory
//   fc::float_to_tf32(x)                cvt.rna.tf32.f32: round to nearest, ties away from zero
//
// Fragment layouts (PTX ISA, "Warp Level Matrix Multiply-Accumulate Instructions": §9.7.13.4.7
// "Matrix Fragments for mma.m16n8k8" and §9.7.13.4.8 "Matrix Fragments for mma.m16n8k16 with
// floating point type" in PTX ISA 8.x; numbers shift between versions, titles do not). With
// g = laneid >> 2 (groupID) and t = laneid % 4 (threadID_in_group):
//   m16n8k8 .tf32  A a0..a3 (one .b32 each): row g + 8*(i%2),          col t + 4*(i/2)
//                  B b0..b1:                 row t + 4*i,               col g
//   m16n8k16 .f16/.bf16  A a0..a7 (two per .f16x2/.b32 register, a0 in the low half of reg 0):
//                                            row g + 8*((i/2)%2),       col 2t + (i%2) + 8*(i/4)
//                  B b0..b3 (two per reg):   row 2t + (i%2) + 8*(i/2),  col g
//   C/D (both, f32) c0..c3:                  row g + 8*(i/2),           col 2t + (i%2)
// Numerics in the emulator: products are exact in double and summed in double with C, then
// rounded once to float; the tensor cores' internal accumulation order and truncation are not
// modelled, so compare with a tolerance unless the inputs are small integers. For .tf32 the
// hardware ignores the low 13 mantissa bits of A and B; the emulator truncates them likewise
// (convert with float_to_tf32 first to get round-to-nearest).
#pragma once

#include "../../common/platform.h"

#if defined(FC_TARGET_EMULATOR)
namespace fc {
namespace emu_detail {

enum MmaInput { kTf32, kF16, kBf16 };

struct MmaLane {
  const uint32_t* a;
  const uint32_t* b;
  const float* c;
  float* d;
};

inline double mma_input(uint32_t reg, int half, MmaInput kind) {
  if (kind == kTf32) return ::fc_emu::bit_cast<float>(reg & 0xffffe000u);
  const uint16_t bits = static_cast<uint16_t>(reg >> (16 * half));
  return kind == kF16 ? ::fc_emu::f16_bits_to_float(bits) : ::fc_emu::bf16_bits_to_float(bits);
}

template <int KIND>
void resolve_mma(void* const lanes[32], unsigned participants) {
  if (participants != 0xffffffffu)
    ::fc_emu::fail("mma.sync needs all 32 lanes of the warp; lanes 0x%08x took part", participants);
  constexpr MmaInput kind = static_cast<MmaInput>(KIND);
  constexpr int K = kind == kTf32 ? 8 : 16;
  double A[16][K], B[K][8], C[16][8];
  for (int lane = 0; lane < 32; ++lane) {                  // gather every fragment before any D is written
    const MmaLane& op = *static_cast<const MmaLane*>(lanes[lane]);
    const int g = lane >> 2, t = lane & 3;
    if (kind == kTf32) {
      for (int i = 0; i < 4; ++i) A[g + 8 * (i % 2)][t + 4 * (i / 2)] = mma_input(op.a[i], 0, kind);
      for (int i = 0; i < 2; ++i) B[t + 4 * i][g] = mma_input(op.b[i], 0, kind);
    } else {
      for (int i = 0; i < 8; ++i) A[g + 8 * ((i / 2) % 2)][2 * t + (i % 2) + 8 * (i / 4)] = mma_input(op.a[i / 2], i % 2, kind);
      for (int i = 0; i < 4; ++i) B[2 * t + (i % 2) + 8 * (i / 2)][g] = mma_input(op.b[i / 2], i % 2, kind);
    }
    for (int i = 0; i < 4; ++i) C[g + 8 * (i / 2)][2 * t + (i % 2)] = op.c[i];
  }
  for (int lane = 0; lane < 32; ++lane) {
    const MmaLane& op = *static_cast<const MmaLane*>(lanes[lane]);
    const int g = lane >> 2, t = lane & 3;
    for (int i = 0; i < 4; ++i) {
      const int row = g + 8 * (i / 2), col = 2 * t + (i % 2);
      double acc = C[row][col];
      for (int k = 0; k < K; ++k) acc += A[row][k] * B[k][col];
      op.d[i] = static_cast<float>(acc);
    }
  }
}

template <int KIND>
inline void mma(float* d, const uint32_t* a, const uint32_t* b, const float* c, const char* name, ::fc_emu::Site site) {
  MmaLane me{a, b, c, d};
  ::fc_emu::warp_collective(0xffffffffu, &resolve_mma<KIND>, name, &me, site);
}

// ldmatrix (PTX ISA §9.7.13.4.15 "Warp-level matrix load instruction: ldmatrix" in PTX ISA 8.x):
// lanes 8j..8j+7 give the addresses of rows 0..7 of matrix j (each row 8 contiguous b16 = 16
// bytes, 16-byte aligned, in shared memory); lane l receives in register j the two elements
// M_j[l/4][2(l%4)] (low half) and M_j[l/4][2(l%4)+1]; with .trans M_j[2(l%4)][l/4] and M_j[2(l%4)+1][l/4].
struct LdmatrixLane {
  const void* row;
  uint32_t* r;
};

template <int N, bool TRANS>
void resolve_ldmatrix(void* const lanes[32], unsigned participants) {
  if (participants != 0xffffffffu)
    ::fc_emu::fail("ldmatrix needs all 32 lanes of the warp; lanes 0x%08x took part", participants);
  uint16_t M[N][8][8];
  for (int j = 0; j < N; ++j)
    for (int row = 0; row < 8; ++row)
      std::memcpy(M[j][row], static_cast<const LdmatrixLane*>(lanes[8 * j + row])->row, 16);
  for (int lane = 0; lane < 32; ++lane) {
    const LdmatrixLane& op = *static_cast<const LdmatrixLane*>(lanes[lane]);
    const int g = lane >> 2, t = lane & 3;
    for (int j = 0; j < N; ++j) {
      const uint16_t lo = TRANS ? M[j][2 * t][g] : M[j][g][2 * t];
      const uint16_t hi = TRANS ? M[j][2 * t + 1][g] : M[j][g][2 * t + 1];
      op.r[j] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
    }
  }
}

template <int N, bool TRANS>
inline void ldmatrix(uint32_t* r, const void* row, const char* name, ::fc_emu::Site site) {
  const unsigned lane = ((threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x) & 31u;
  if (lane < 8u * N) {                                     // only these lanes' addresses are used
    if (reinterpret_cast<uintptr_t>(row) % 16)
      ::fc_emu::fail("%s at %s:%u: row address %p of lane %u is not 16-byte aligned", name, site.file, site.line, row, lane);
    ::fc_emu::check_shared(row, 16, name, site);
  }
  LdmatrixLane me{row, r};
  ::fc_emu::warp_collective(0xffffffffu, &resolve_ldmatrix<N, TRANS>, name, &me, site);
}

// cvt.rna.tf32.f32 (PTX ISA "cvt", §9.7.9.21 in PTX ISA 8.x): keep the top 19 bits (sign, 8-bit
// exponent, 10-bit mantissa), rounding to nearest with ties away from zero; the result is a .b32
// whose low 13 bits are zero. Adding half an ulp to the magnitude bits and truncating does exactly
// that (a carry into the exponent gives the next binade or infinity). NaN -> canonical NaN.
inline uint32_t tf32_round_bits(float x) {
  const uint32_t u = ::fc_emu::bit_cast<uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffffffu;
  return (u + 0x1000u) & 0xffffe000u;
}

}  // namespace emu_detail
}  // namespace fc
#endif  // FC_TARGET_EMULATOR

namespace fc {

// d[4] = A * B + c[4]; a[4], b[2]: tf32 values in .b32 registers (see float_to_tf32). d may be c.
FC_DEVICE void mma_m16n8k8_tf32(float* d, const uint32_t* a, const uint32_t* b, const float* c FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  emu_detail::mma<emu_detail::kTf32>(d, a, b, c, "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32", fc_site);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

// d[4] = A * B + c[4]; a[4], b[2]: pairs of f16 packed in .b32 (element 2k in the low half).
FC_DEVICE void mma_m16n8k16_f16(float* d, const uint32_t* a, const uint32_t* b, const float* c FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  emu_detail::mma<emu_detail::kF16>(d, a, b, c, "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32", fc_site);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

// d[4] = A * B + c[4]; a[4], b[2]: pairs of bf16 packed in .b32 (element 2k in the low half).
FC_DEVICE void mma_m16n8k16_bf16(float* d, const uint32_t* a, const uint32_t* b, const float* c FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  emu_detail::mma<emu_detail::kBf16>(d, a, b, c, "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32", fc_site);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%11,%12,%13};\n"
      : "=f"(d[0]), "=f"(d[1]), "=f"(d[2]), "=f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "f"(c[0]), "f"(c[1]), "f"(c[2]), "f"(c[3]));
#endif
}

// Each lane passes the shared-memory address of one row (lanes 8j..8j+7: rows of matrix j; the
// addresses of lanes >= 8*N are ignored); r[j] receives this lane's pair of matrix j.
FC_DEVICE void ldmatrix_x1(uint32_t* r, const void* row FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  emu_detail::ldmatrix<1, false>(r, row, "ldmatrix.sync.aligned.m8n8.x1.shared.b16", fc_site);
#else
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(addr));
#endif
}
FC_DEVICE void ldmatrix_x2(uint32_t* r, const void* row FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  emu_detail::ldmatrix<2, false>(r, row, "ldmatrix.sync.aligned.m8n8.x2.shared.b16", fc_site);
#else
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
#endif
}
FC_DEVICE void ldmatrix_x4(uint32_t* r, const void* row FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  emu_detail::ldmatrix<4, false>(r, row, "ldmatrix.sync.aligned.m8n8.x4.shared.b16", fc_site);
#else
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
#endif
}
FC_DEVICE void ldmatrix_x1_trans(uint32_t* r, const void* row FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  emu_detail::ldmatrix<1, true>(r, row, "ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16", fc_site);
#else
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n" : "=r"(r[0]) : "r"(addr));
#endif
}
FC_DEVICE void ldmatrix_x2_trans(uint32_t* r, const void* row FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  emu_detail::ldmatrix<2, true>(r, row, "ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16", fc_site);
#else
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0,%1}, [%2];\n" : "=r"(r[0]), "=r"(r[1]) : "r"(addr));
#endif
}
FC_DEVICE void ldmatrix_x4_trans(uint32_t* r, const void* row FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  emu_detail::ldmatrix<4, true>(r, row, "ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16", fc_site);
#else
  const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(row));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
#endif
}

// float -> tf32 (in a .b32 register, low 13 bits zero), rounded to nearest, ties away from zero.
FC_DEVICE uint32_t float_to_tf32(float x) {
#if defined(FC_TARGET_EMULATOR)
  return emu_detail::tf32_round_bits(x);
#else
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
#endif
}

}  // namespace fc
