// tensor_core.cuh — selftest: the mma.sync and ldmatrix wrappers of csrc/arch/sm80/mma.h.
// The *_fragments / *_probe kernels pass registers through raw, so tests/emu/test_emu_tensor_core.py
// can check every lane's elements against the PTX ISA layout written out independently in Python;
// hgemm_ldmatrix_mma and tf32_gemm_mma use the wrappers the way a kernel does.
#pragma once

#include "../common/platform.h"
#include "../arch/sm80/mma.h"

namespace fc_selftest {

enum MmaKind { kMmaTf32, kMmaF16, kMmaBf16 };

// One warp per block; block w computes d[w] = mma(a[w], b[w], c[w]) on raw lane-major registers:
// a[w][lane][0..3], b[w][lane][0..1], c[w][lane][0..3], d[w][lane][0..3].
template <int KIND>
__global__ void mma_fragments(const uint32_t* a, const uint32_t* b, const float* c, float* d) {
  const size_t base = static_cast<size_t>(blockIdx.x) * 32 + threadIdx.x;
  uint32_t ra[4], rb[2];
  float rc[4], rd[4];
  for (int i = 0; i < 4; ++i) {
    ra[i] = a[base * 4 + i];
    rc[i] = c[base * 4 + i];
  }
  for (int i = 0; i < 2; ++i) rb[i] = b[base * 2 + i];
  if (KIND == kMmaTf32) fc::mma_m16n8k8_tf32(rd, ra, rb, rc);
  else if (KIND == kMmaF16) fc::mma_m16n8k16_f16(rd, ra, rb, rc);
  else fc::mma_m16n8k16_bf16(rd, ra, rb, rc);
  for (int i = 0; i < 4; ++i) d[base * 4 + i] = rd[i];
}

// One warp: copies NUM 8x8 b16 matrices src[NUM][8][8] into shared memory (rows padded to 32
// bytes), lane l passes the address of row l%8 of matrix (l/8)%NUM, out[l][j] = register j.
template <int NUM, bool TRANS>
__global__ void ldmatrix_probe(const uint16_t* src, uint32_t* out) {
  __shared__ __align__(16) uint16_t tile[4][8][16];
  const unsigned lane = threadIdx.x;
  for (unsigned e = lane; e < NUM * 64u; e += 32) tile[e / 64][(e / 8) % 8][e % 8] = src[e];
  __syncwarp();
  uint32_t r[4] = {0, 0, 0, 0};
  const uint16_t* row = &tile[(lane / 8) % NUM][lane % 8][0];
  if (NUM == 1) TRANS ? fc::ldmatrix_x1_trans(r, row) : fc::ldmatrix_x1(r, row);
  if (NUM == 2) TRANS ? fc::ldmatrix_x2_trans(r, row) : fc::ldmatrix_x2(r, row);
  if (NUM == 4) TRANS ? fc::ldmatrix_x4_trans(r, row) : fc::ldmatrix_x4(r, row);
  for (int j = 0; j < NUM; ++j) out[lane * NUM + j] = r[j];
}

// One warp: D(16x8, f32) = A(16x16, f16, row-major) @ B(16x8, f16, row-major [k][n]) with the
// fragments loaded by ldmatrix.x4 (A) and ldmatrix.x2.trans (B, stored k-major) from shared memory.
__global__ void hgemm_ldmatrix_mma(const __half* A, const __half* B, float* D) {
  __shared__ __align__(16) __half As[16][16 + 8];  // 48-byte rows: every row address 16-byte aligned
  __shared__ __align__(16) __half Bs[16][8 + 8];
  const unsigned lane = threadIdx.x;
  for (unsigned e = lane; e < 256; e += 32) As[e / 16][e % 16] = A[e];
  for (unsigned e = lane; e < 128; e += 32) Bs[e / 8][e % 8] = B[e];
  __syncwarp();
  uint32_t a[4], b[2];
  float c[4] = {0.0f, 0.0f, 0.0f, 0.0f}, d[4];
  // x4: lanes 0-15 give rows 0-15 of columns 0-7 (matrices 0, 1 = a0a1, a2a3), lanes 16-31 rows
  // 0-15 of columns 8-15 (matrices 2, 3 = a4a5, a6a7).
  fc::ldmatrix_x4(a, &As[lane % 16][(lane / 16) * 8]);
  // x2.trans: lanes 0-15 give rows k = 0-15; transposed, lane l gets B[2t..2t+1][g] (+8 for reg 1).
  fc::ldmatrix_x2_trans(b, &Bs[lane % 16][0]);
  fc::mma_m16n8k16_f16(d, a, b, c);
  const unsigned g = lane / 4, t = lane % 4;
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// One warp: D(16x8) = tf32(A)(16x8, row-major) @ tf32(B)(8x8, row-major [k][n]) + C, fragments
// gathered from global memory per the m16n8k8 layout, rounded with float_to_tf32.
__global__ void tf32_gemm_mma(const float* A, const float* B, const float* C, float* D) {
  const unsigned lane = threadIdx.x, g = lane / 4, t = lane % 4;
  uint32_t a[4], b[2];
  float c[4], d[4];
  for (int i = 0; i < 4; ++i) a[i] = fc::float_to_tf32(A[(g + 8 * (i % 2)) * 8 + t + 4 * (i / 2)]);
  for (int i = 0; i < 2; ++i) b[i] = fc::float_to_tf32(B[(t + 4 * i) * 8 + g]);
  for (int i = 0; i < 4; ++i) c[i] = C[(g + 8 * (i / 2)) * 8 + 2 * t + (i % 2)];
  fc::mma_m16n8k8_tf32(d, a, b, c);
  for (int i = 0; i < 4; ++i) D[(g + 8 * (i / 2)) * 8 + 2 * t + (i % 2)] = d[i];
}

}  // namespace fc_selftest
