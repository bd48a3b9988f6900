// cp_async.cuh — selftest: cp.async copies with zero-fill, group accounting, and the reads before
// a wait that poison_async=True turns into NaN (tests/emu/test_emu_cp_async.py).
#pragma once

#include "../common/platform.h"
#include "../arch/sm80/cp_async.h"

namespace fc_selftest {

// Thread t of a block copies BYTES of src into shared memory (only src_bytes[i] real, the rest
// zero-filled), waits, and after a barrier writes its neighbour's chunk to dst.
template <int BYTES, bool CG>
__global__ void cp_async_copy(const float* src, const int* src_bytes, float* dst) {
  constexpr int E = BYTES / 4;
  __shared__ __align__(16) float buf[256 * 4];
  const unsigned t = threadIdx.x;
  const size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + t;
  if constexpr (CG) fc::cp_async_cg16(&buf[t * E], &src[i * E], src_bytes[i]);
  else fc::cp_async_ca<BYTES>(&buf[t * E], &src[i * E], src_bytes[i]);
  fc::cp_async_commit();
  fc::cp_async_wait_group<0>();
  __syncthreads();
  const unsigned nb = (t + 1) % blockDim.x;
  for (int e = 0; e < E; ++e) dst[(static_cast<size_t>(blockIdx.x) * blockDim.x + nb) * E + e] = buf[nb * E + e];
}

// buf[t] = -1, then cp.async buf[t] <- src[i]; with wait == 0 the thread reads buf[t] before any
// wait: the old -1 in the default mode, NaN with poison_async, src[i] only when it waits.
__global__ void cp_async_stale_read(const float* src, float* dst, int wait) {
  __shared__ __align__(16) float buf[256];
  const unsigned t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  buf[t] = -1.0f;
  __syncthreads();
  fc::cp_async_ca<4>(&buf[t], &src[i]);
  fc::cp_async_commit();
  if (wait) fc::cp_async_wait_group<0>();
  __syncthreads();
  dst[i] = buf[t];
}

// Double-buffered: out[t] = sum_c src[c*CHUNK + (t+1)%CHUNK], chunk c+1 in flight while chunk c is
// read; wait_group<1> must complete exactly the older group. One block of CHUNK threads.
template <int CHUNK>
__global__ void cp_async_pipeline(const float* src, float* out, int nchunks) {
  __shared__ __align__(16) float stage[2][CHUNK];
  const unsigned t = threadIdx.x;
  fc::cp_async_ca<4>(&stage[0][t], &src[t]);
  fc::cp_async_commit();
  float acc = 0.0f;
  for (int c = 0; c < nchunks; ++c) {
    if (c + 1 < nchunks) fc::cp_async_ca<4>(&stage[(c + 1) % 2][t], &src[static_cast<size_t>(c + 1) * CHUNK + t]);
    fc::cp_async_commit();  // possibly empty: keeps one group per iteration
    fc::cp_async_wait_group<1>();
    __syncthreads();
    acc += stage[c % 2][(t + 1) % CHUNK];
    __syncthreads();
  }
  out[t] = acc;
}

// A 16-byte cp.async to a shared address that is only 4-byte aligned: reported.
__global__ void cp_async_misaligned(const float* src, float* dst) {
  __shared__ __align__(16) float buf[8];
  fc::cp_async_ca<16>(&buf[1], src);
  fc::cp_async_wait_all();
  dst[threadIdx.x] = buf[1];
}

}  // namespace fc_selftest
