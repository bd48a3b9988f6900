// atomics.cuh — selftest: every atomic the kernels use, on global and shared memory.
#pragma once

#include "../common/platform.h"

namespace fc_selftest {

// hist[keys[i]]++ (global int), fsum/dsum += vals[i] (float/double), usum += keys[i] (ull),
// imax/imin = max/min(vals as int), cas_max = max via an atomicCAS loop, shared_hist in shared
// memory copied to out_shared_hist (one block).
__global__ void atomics(const int* keys, const float* vals, int n, int* hist, float* fsum, double* dsum,
                        unsigned long long* usum, int* imax, int* imin, int* cas_max, unsigned* ucount,
                        int* out_shared_hist, int nbins) {
  __shared__ int shared_hist[64];
  for (int b = threadIdx.x; b < nbins; b += blockDim.x) shared_hist[b] = 0;
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int k = keys[i];
    const float v = vals[i];
    atomicAdd(&hist[k], 1);
    atomicAdd(fsum, v);
    atomicAdd(dsum, static_cast<double>(v));
    atomicAdd(usum, static_cast<unsigned long long>(k));
    atomicMax(imax, static_cast<int>(v));
    atomicMin(imin, static_cast<int>(v));
    int old = *cas_max, assumed;
    do {
      assumed = old;
      old = atomicCAS(cas_max, assumed, max(assumed, static_cast<int>(v)));
    } while (old != assumed);
    atomicInc(ucount, 0xffffffffu);
    atomicAdd(&shared_hist[k], 1);
  }
  __syncthreads();
  for (int b = threadIdx.x; b < nbins; b += blockDim.x) atomicAdd(&out_shared_hist[b], shared_hist[b]);
}

// olds[i] = atomicExch(slot, i): the olds and the final slot are a permutation of {init, 0..n-1}.
__global__ void atomic_exchange(int* slot, int* olds, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) olds[i] = atomicExch(slot, i);
}

}  // namespace fc_selftest
