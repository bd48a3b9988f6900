// index.h — index arithmetic and vector access shared by every fastconv kernel.
//
// Index types: kernels whose tensors may exceed 2^31 elements are templated on `Index` (int32_t or
// int64_t); the host picks int32_t only when every tensor of the call has <= INT32_MAX elements
// (fastconv.shapes.needs_64bit_index in Python, fc::needs_64bit_index in the launchers).
// Memory-bound kernels simply use int64_t: the extra integer work hides behind the loads.
// Every product that forms an offset is computed in Index, one factor cast at a time, so that
// (n * H + h) * W never overflows in 32 bits before widening (pytorch #68418).
#pragma once
#include "platform.h"

namespace fc {

template <class I>
FC_HOST_DEVICE I ceil_div(I a, I b) { return (a + b - 1) / b; }

// A V-element vector of T with the alignment of its size, so that a load of Vec<float, 4> from a
// 16-byte aligned address compiles to one 16-byte load (LDG.E.128).
template <class T, int V>
struct __align__(sizeof(T) * V) Vec {
  T v[V];
};

#if defined(FASTCONV_EMULATOR)
// g++ splits a Vec copy whose elements are then used one by one into V scalar accesses, so the
// emulator's counters saw four 4-byte loads at 25% sector efficiency where the GPU issues one
// LDG.128 / LDS.128. A GCC vector type of the same size is copied in one access.
template <int kBytes>
struct EmuVec {
  typedef unsigned char type __attribute__((vector_size(kBytes)));
};
#endif

// Loads V consecutive elements; V > 1 requires p to be aligned to sizeof(T) * V (checked on the host).
template <int V, class T>
FC_DEVICE void load_vec(const T* p, T (&out)[V]) {
  if (V == 1) {
    out[0] = p[0];
  } else {
#if defined(FASTCONV_EMULATOR)
    Vec<T, V> v;   // one access of the whole vector (see EmuVec)
    const typename EmuVec<sizeof(v)>::type raw = *reinterpret_cast<const typename EmuVec<sizeof(v)>::type*>(p);
    __builtin_memcpy(&v, &raw, sizeof(v));
#else
    const Vec<T, V> v = *reinterpret_cast<const Vec<T, V>*>(p);
#endif
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = v.v[i];
  }
}

template <int V, class T>
FC_DEVICE void store_vec(T* p, const T (&in)[V]) {
  if (V == 1) {
    p[0] = in[0];
  } else {
    Vec<T, V> v;
#pragma unroll
    for (int i = 0; i < V; ++i) v.v[i] = in[i];
#if defined(FASTCONV_EMULATOR)
    typename EmuVec<sizeof(v)>::type raw;
    __builtin_memcpy(&raw, &v, sizeof(v));
    *reinterpret_cast<typename EmuVec<sizeof(v)>::type*>(p) = raw;
#else
    *reinterpret_cast<Vec<T, V>*>(p) = v;
#endif
  }
}

// Linear thread index over a 1-D grid, in 64 bits (grids of more than 2^31 threads are legal).
FC_DEVICE int64_t global_thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
FC_DEVICE int64_t global_thread_count() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// The tile of this block in a (tiles_x, tiles_y, tiles_z) grid of tiles. The plans launch that grid as it
// is, or, when tiles_y or tiles_z exceeds grid.y / grid.z's 65535, every tile on grid.x, x fastest (the
// same order); both decode here (fastconv/backends/plans/common.py tile_grid). One division per block.
struct BlockTile {
  int64_t x, y, z;
};
FC_DEVICE BlockTile block_tile(int64_t tiles_x, int64_t tiles_y) {
  if (int64_t(gridDim.x) == tiles_x) return {int64_t(blockIdx.x), int64_t(blockIdx.y), int64_t(blockIdx.z)};
  const int64_t linear = blockIdx.x;
  return {linear % tiles_x, linear / tiles_x % tiles_y, linear / tiles_x / tiles_y};
}

}  // namespace fc
