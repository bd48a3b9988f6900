// normalize.h — uint8 NHWC images (what the input pipeline ships to the device: a quarter of float32's
// bytes) to the normalised float32 or bf16 the first conv reads, one thread per element (grid-stride
// loop, 64-bit indices), channel c = i % channels:
//   normalize_uint8_kernel<float>:          y = __fadd_rn(__fmul_rn((float)x, scale[c]), bias[c])
//   normalize_uint8_kernel<__nv_bfloat16>:  the same float32 value, rounded to bf16 (nearest even)
// scale = 1 / (255 std) and bias = -mean / std are float32, computed once by the host. The explicit _rn
// intrinsics keep the product and the sum separately rounded (never contracted into an FMA), as the
// oracle fastconv/data/images/normalize.py computes them, so the float32 output matches it bit for bit.
// Scalar grid-stride loop (memory-bound: 1 byte read, 4 or 2 written per element).
// Checked by: python -m pytest tests/data/test_data_images_normalize.py -q
#pragma once
#include "../common/index.h"
#include "../arch/sm80/mma.h"

namespace fc {

FC_DEVICE float normalized_as(float v, const float*) { return v; }
FC_DEVICE __nv_bfloat16 normalized_as(float v, const __nv_bfloat16*) { return __float2bfloat16_rn(v); }

template <class T>
__global__ void normalize_uint8_kernel(const uint8_t* __restrict__ x, const float* __restrict__ scale,
                                       const float* __restrict__ bias, T* __restrict__ y, int64_t n, int channels) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) {
    const int c = static_cast<int>(i % channels);
    y[i] = normalized_as(__fadd_rn(__fmul_rn(static_cast<float>(x[i]), scale[c]), bias[c]), y);
  }
}

}  // namespace fc
