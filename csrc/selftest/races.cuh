// races.cuh — selftest kernels that are wrong on purpose: races, divergent barriers and warp
// collectives, out-of-bounds accesses, device asserts. tests/emu/test_emu_scheduling.py and
// test_emu_memory.py check that the emulator reports each one (and that the correct twins pass).
#pragma once

#include "../common/platform.h"

namespace fc_selftest {

// out[i] = in[i-1] (out[0] = in[0]) through shared memory. Without the barrier a thread reads its
// neighbour's slot before the neighbour wrote it in reverse order (forward order happens to work).
template <bool kBarrier>
__global__ void neighbor_shift(const float* in, float* out) {
  __shared__ float s[1024];
  const unsigned t = threadIdx.x, i = blockIdx.x * blockDim.x + t;
  s[t] = in[i];
  if (kBarrier) __syncthreads();
  out[i] = s[t == 0 ? 0 : t - 1];
}

// Thread `written` (if any) stores 1 in slot 0 of a static and the dynamic shared array; then every
// thread reads its own slot: the others were never written and must read the emulator's poison
// (NaN). (A static __shared__ array that no code ever writes is folded to zeros by g++.)
__global__ void read_uninitialized_shared(float* out_static, float* out_dynamic, int written) {
  __shared__ float mostly_unwritten[64];
  FC_DYNAMIC_SHARED(float, dyn);
  if (static_cast<int>(threadIdx.x) == written) {
    mostly_unwritten[0] = 1.0f;
    dyn[0] = 1.0f;
  }
  __syncthreads();
  out_static[threadIdx.x] = mostly_unwritten[threadIdx.x];
  out_dynamic[threadIdx.x] = dyn[threadIdx.x];
}

// __syncthreads_count/_and/_or over pred[] of one block.
__global__ void barrier_reductions(const int* pred, int* out) {
  const int p = pred[threadIdx.x];
  const int c = __syncthreads_count(p);
  const int a = __syncthreads_and(p);
  const int o = __syncthreads_or(p);
  if (threadIdx.x == 0) {
    out[0] = c;
    out[1] = a;
    out[2] = o;
  }
}

// Two halves of the block wait at different barriers.
__global__ void barrier_divergent_sites(float* out) {
  if (threadIdx.x < 16) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.0f;
}

// Threads past n leave before the barrier the others wait at.
__global__ void barrier_after_early_exit(float* out, int n) {
  if (static_cast<int>(threadIdx.x) >= n) return;
  out[threadIdx.x] = 1.0f;
  __syncthreads();
  out[threadIdx.x] += 1.0f;
}

// Half the warp calls a full-mask shuffle, the other half never does.
__global__ void shfl_lanes_diverge(const float* in, float* out) {
  float v = in[threadIdx.x];
  if (threadIdx.x % 32 < 16) v = __shfl_sync(0xffffffffu, v, 0);
  out[threadIdx.x] = v;
}

// Lanes pass different masks to the same intrinsic.
__global__ void shfl_mask_mismatch(const float* in, float* out) {
  const unsigned mask = threadIdx.x % 32 == 5 ? 0x0000ffffu : 0xffffffffu;
  out[threadIdx.x] = __shfl_down_sync(mask, in[threadIdx.x], 1);
}

// A lane calls a collective with a mask that leaves itself out.
__global__ void shfl_mask_without_caller(const float* in, float* out) {
  out[threadIdx.x] = __shfl_xor_sync(0xfffffffeu, in[threadIdx.x], 1);
}

// out[index] = value from one thread: out of bounds when index is outside the array.
__global__ void write_at(float* out, long long index, float value) {
  if (threadIdx.x == 0 && blockIdx.x == 0) out[index] = value;
}

// out[0] = in[index]: an out-of-bounds read returns the guard pattern (NaN).
__global__ void read_at(const float* in, float* out, long long index) {
  if (threadIdx.x == 0 && blockIdx.x == 0) out[0] = in[index];
}

// Writes dynamic shared memory at a given float index (outside shared_bytes: reported).
__global__ void write_dynamic_shared_at(int index) {
  FC_DYNAMIC_SHARED(float, dyn);
  if (threadIdx.x == 0) dyn[index] = 1.0f;
}

__global__ void device_assert(const int* values) { assert(values[threadIdx.x] >= 0); }

// More local memory than an emulated thread's stack (256 KiB): reported as a stack overflow.
__global__ void stack_hog(float* out, int n) {
  volatile float big[80 * 1024];
  for (int i = 0; i < n; ++i) big[i] = static_cast<float>(i);
  out[threadIdx.x] = big[n / 2];
}

__global__ void integer_divide(const int* num, const int* den, int* out) {
  out[threadIdx.x] = num[threadIdx.x] / den[threadIdx.x];
}

}  // namespace fc_selftest
