// cast.h — float32 operands to the compute formats of the precision policy (fastconv/precision.py),
// one pass each, one thread per element (grid-stride loop, 64-bit indices):
//   cast_fp32_kernel<__half>:         y = __float2half_rn(x)      nearest even, |x| >= 65520 -> inf
//   cast_fp32_kernel<__nv_bfloat16>:  y = __float2bfloat16_rn(x)  nearest even
//   round_tf32_kernel<float>:         y = float_to_tf32(x)        cvt.rna: 10 mantissa bits, ties away
// The tensor-core plans multiply these (weights stay float32 masters, cast at each use); the CUDA-core
// fallbacks widen them back, so every path sees the same operand values. The oracle is
// fastconv/backends/reference/rounding.py. Templates (one instantiation each), so that the header can
// be included by every translation unit of the native build. Scalar grid-stride loops
// (memory-bound: one read, one narrower write; the CuPy expression it replaces made ~6 passes for bf16).
// Checked by: python -m pytest tests/test_precision.py -q -k cast
#pragma once
#include "../common/index.h"
#include "../arch/sm80/mma.h"

namespace fc {

FC_DEVICE __half narrow_fp32(float x, const __half*) { return __float2half_rn(x); }
FC_DEVICE __nv_bfloat16 narrow_fp32(float x, const __nv_bfloat16*) { return __float2bfloat16_rn(x); }

template <class T>
__global__ void cast_fp32_kernel(const float* __restrict__ x, T* __restrict__ y, int64_t n) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) y[i] = narrow_fp32(x[i], y);
}

template <class T>
__global__ void round_tf32_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count())
    y[i] = __uint_as_float(float_to_tf32(x[i]));
}

}  // namespace fc
