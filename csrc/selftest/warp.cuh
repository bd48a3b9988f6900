// warp.cuh — selftest: warp shuffles (every variant, with width), votes and a block reduction.
// tests/emu/test_emu_warp.py computes the expected values from the CUDA semantics in NumPy.
#pragma once

#include "../common/platform.h"

namespace fc_selftest {

constexpr unsigned kFullMask = 0xffffffffu;

// Per thread i (lane = i % 32): down[i] after a shfl_down tree sum over `width` lanes, xr[i] after a
// shfl_xor butterfly sum, up[i] the inclusive prefix sum by shfl_up, idx[i] = the value of lane
// src_lane[i] (mod width) of its segment.
__global__ void warp_shuffles(const float* in, const int* src_lane, int width, float* down, float* xr, float* up, float* idx) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
  const float v = in[i];
  float d = v, x = v, u = v;
  for (int off = width / 2; off > 0; off /= 2) d += __shfl_down_sync(kFullMask, d, off, width);
  for (int off = width / 2; off > 0; off /= 2) x += __shfl_xor_sync(kFullMask, x, off, width);
  for (int off = 1; off < width; off *= 2) {
    const float o = __shfl_up_sync(kFullMask, u, off, width);
    if (static_cast<int>(lane % width) >= off) u += o;
  }
  down[i] = d;
  xr[i] = x;
  up[i] = u;
  idx[i] = __shfl_sync(kFullMask, v, src_lane[i], width);
}

// 8-byte shuffles: out_d[i] = in_d[lane 31 - lane], out_l[i] = in_l[lane ^ 7].
__global__ void warp_shuffle_64bit(const double* in_d, const long long* in_l, double* out_d, long long* out_l) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
  out_d[i] = __shfl_sync(kFullMask, in_d[i], 31 - static_cast<int>(lane));
  out_l[i] = __shfl_xor_sync(kFullMask, in_l[i], 7);
}

// Votes with the full mask (lanes missing from a partial last warp do not take part), a ballot of
// the even lanes only, and __activemask().
__global__ void warp_votes(const int* pred, unsigned* ballot, int* any, int* all, unsigned* ballot_even, unsigned* active) {
  const unsigned i = blockIdx.x * blockDim.x + threadIdx.x, lane = threadIdx.x % 32;
  const int p = pred[i];
  active[i] = __activemask();
  ballot[i] = __ballot_sync(kFullMask, p);
  any[i] = __any_sync(kFullMask, p);
  all[i] = __all_sync(kFullMask, p);
  ballot_even[i] = lane % 2 == 0 ? __ballot_sync(0x55555555u, p) : 0u;
  __syncwarp();
}

// *sum += sum(in[0:n]), *count += n: grid-stride loads, a shfl_xor warp sum, per-warp partials in
// shared memory, the first warp reduces them, one atomicAdd per block. Block size: a multiple of 32.
__global__ void warp_reduce_sum(const float* in, int n, float* sum, int* count) {
  __shared__ float partial[32];
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  float acc = 0.0f;
  int mine = 0;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    acc += in[i];
    ++mine;
  }
  for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(kFullMask, acc, off);
  const int warp_count = __reduce_add_sync(kFullMask, mine);
  if (lane == 0) {
    partial[warp] = acc;
    atomicAdd(count, warp_count);
  }
  __syncthreads();
  if (warp == 0) {
    float p = lane < nwarps ? partial[lane] : 0.0f;
    for (int off = 16; off > 0; off /= 2) p += __shfl_down_sync(kFullMask, p, off);
    if (lane == 0) atomicAdd(sum, p);
  }
}

}  // namespace fc_selftest
