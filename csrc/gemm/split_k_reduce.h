// split_k_reduce.h — sums the partial results of a split-k GEMM (or split reduction) in a fixed
// order, so the result is deterministic (no atomics):
//     out[i] = sum_{s < splits} partial[s * count + i]      (s ascending)
// Used by conv2d_wgrad (its reduction runs over N*P*Q, far longer than its output is wide) and the
// depthwise wgrad. One thread per output element, coalesced across threads.
// Checked by: python -m pytest tests/kernels -q -k wgrad
#pragma once
#include "../common/index.h"

namespace fc {

template <class T>
__global__ void split_k_reduce(const T* __restrict__ partial, T* __restrict__ out, int splits, int64_t count) {
  for (int64_t i = global_thread_index(); i < count; i += global_thread_count()) {
    T sum = partial[i];
    for (int s = 1; s < splits; ++s) sum += partial[static_cast<int64_t>(s) * count + i];
    out[i] = sum;
  }
}

}  // namespace fc
