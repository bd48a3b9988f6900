// sgemm_tiled.cuh — selftest: C[M,N] = A[M,K] @ B[K,N] (row-major float32) with shared-memory tiles
// and barriers; one TILE x TILE output tile per block of TILE x TILE threads, partial tiles masked.
// Checked against NumPy by tests/emu/test_emu_scheduling.py, including the missing-barrier variant.
#pragma once

#include "../common/platform.h"

namespace fc_selftest {

// kSecondBarrier = false drops the barrier that keeps fast threads from overwriting a tile that
// slower threads still read: a race the emulator's thread orders must expose.
template <int TILE, bool kSecondBarrier>
__global__ void __launch_bounds__(TILE * TILE)
sgemm_tiled(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C, int M, int N, int K) {
  // No padding: a warp reads Bs[k][tx] along a row (two 16-lane rows read the same words: a
  // broadcast) and stores Bs[ty][tx] over two whole rows; a +1 pad made that store 2-way conflicted
  // (tests/emu/test_emu_counters.py).
  __shared__ float As[TILE][TILE];
  __shared__ float Bs[TILE][TILE];
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += TILE) {
    As[ty][tx] = (row < M && k0 + tx < K) ? A[static_cast<size_t>(row) * K + k0 + tx] : 0.0f;
    Bs[ty][tx] = (k0 + ty < K && col < N) ? __ldg(&B[static_cast<size_t>(k0 + ty) * N + col]) : 0.0f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < TILE; ++k) acc = fmaf(As[ty][k], Bs[k][tx], acc);
    if (kSecondBarrier) __syncthreads();
  }
  if (row < M && col < N) C[static_cast<size_t>(row) * N + col] = acc;
}

// The same with both tiles in dynamic shared memory (launch with shared_bytes = 2*TILE*TILE*4).
template <int TILE>
__global__ void sgemm_dynamic_smem(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
                                   int M, int N, int K) {
  FC_DYNAMIC_SHARED(float, smem);
  float* As = smem;
  float* Bs = smem + TILE * TILE;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row = blockIdx.y * TILE + ty, col = blockIdx.x * TILE + tx;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += TILE) {
    As[ty * TILE + tx] = (row < M && k0 + tx < K) ? A[static_cast<size_t>(row) * K + k0 + tx] : 0.0f;
    Bs[ty * TILE + tx] = (k0 + ty < K && col < N) ? B[static_cast<size_t>(k0 + ty) * N + col] : 0.0f;
    __syncthreads();
    for (int k = 0; k < TILE; ++k) acc += As[ty * TILE + k] * Bs[k * TILE + tx];
    __syncthreads();
  }
  if (row < M && col < N) C[static_cast<size_t>(row) * N + col] = acc;
}

}  // namespace fc_selftest
