// elementwise.h — activations forward/backward, the dropout mask and products, one thread per element
// (grid-stride loop, 64-bit indices).
//   activation_fprop_kernel: y = act(x)              (act: epilogue/activation.h, the rules written once)
//   activation_bprop_kernel: dx = act'(dy, saved)    (saved = x for relu/leaky_relu, y for sigmoid/tanh)
//   dropout_mask_kernel:     mask[i] = hash32(seed, *offset + i) >= threshold ? scale : 0, where
//        hash32(seed, c) = upper 32 bits of splitmix64(splitmix64(seed) ^ c) — bit-identical to
//        fastconv/backends/reference/dropout.py (threshold and scale are computed by the host as there).
//        The offset is read from device memory (the Dropout layer's counter, advanced on the device
//        after each draw), so a CUDA graph replay draws the next mask, not the captured one.
//   multiply_kernel:         out = a * b (dropout forward and backward).
// Scalar grid-stride loops (memory-bound; the loads are coalesced).
// Checked by: python -m pytest tests/kernels -q -k "activation or dropout"
#pragma once
#include "../common/index.h"
#include "../epilogue/activation.h"

namespace fc {

template <class T>
__global__ void activation_fprop_kernel(int act, const T* __restrict__ x, T* __restrict__ y, int64_t n, T alpha) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) y[i] = activation_fprop<T>(act, x[i], alpha);
}

template <class T>
__global__ void activation_bprop_kernel(int act, const T* __restrict__ dy, const T* __restrict__ saved,
                                        T* __restrict__ dx, int64_t n, T alpha) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count())
    dx[i] = activation_bprop<T>(act, dy[i], saved[i], alpha);
}

FC_HOST_DEVICE uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ULL;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

FC_HOST_DEVICE uint32_t dropout_hash32(uint64_t key, uint64_t counter) {
  return static_cast<uint32_t>(splitmix64(key ^ counter) >> 32);
}

template <class T>
__global__ void dropout_mask_kernel(T* __restrict__ mask, int64_t n, uint64_t seed, const int64_t* __restrict__ offset_ptr,
                                    uint32_t threshold, T scale) {
  const uint64_t key = splitmix64(seed);
  const uint64_t offset = static_cast<uint64_t>(*offset_ptr);
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count())
    mask[i] = dropout_hash32(key, offset + static_cast<uint64_t>(i)) >= threshold ? scale : T(0);
}

template <class T>
__global__ void multiply_kernel(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ out, int64_t n) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) out[i] = a[i] * b[i];
}

}  // namespace fc
