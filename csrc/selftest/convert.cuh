// convert.cuh — selftest: half / bfloat16 / tf32 conversions, element by element, for the
// bit-exactness tests in tests/emu/test_emu_convert.py.
#pragma once

#include "../common/platform.h"
#include "../arch/sm80/mma.h"

namespace fc_selftest {

__global__ void half_bits_to_float(const uint16_t* bits, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __half2float(__ushort_as_half(bits[i]));
}

__global__ void float_to_half_bits(const float* in, uint16_t* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __half_as_ushort(__float2half(in[i]));
}

__global__ void bf16_bits_to_float(const uint16_t* bits, float* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __bfloat162float(__ushort_as_bfloat16(bits[i]));
}

__global__ void float_to_bf16_bits(const float* in, uint16_t* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = __bfloat16_as_ushort(__float2bfloat16(in[i]));
}

// Packs (in[2p], in[2p+1]) with __floats2half2_rn / __floats2bfloat162_rn (low half = first) and
// unpacks them again with __half22float2 / __bfloat1622float2.
__global__ void pack_pairs(const float* in, unsigned* h2, unsigned* b2, float* h2_back, float* b2_back, int npairs) {
  const int p = blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= npairs) return;
  const __half2 h = __floats2half2_rn(in[2 * p], in[2 * p + 1]);
  const __nv_bfloat162 b = __floats2bfloat162_rn(in[2 * p], in[2 * p + 1]);
  h2[p] = static_cast<unsigned>(__half_as_ushort(__low2half(h))) | (static_cast<unsigned>(__half_as_ushort(__high2half(h))) << 16);
  b2[p] = static_cast<unsigned>(__bfloat16_as_ushort(__low2bfloat16(b))) |
          (static_cast<unsigned>(__bfloat16_as_ushort(__high2bfloat16(b))) << 16);
  const float2 hf = __half22float2(h), bf = __bfloat1622float2(b);
  h2_back[2 * p] = hf.x;
  h2_back[2 * p + 1] = hf.y;
  b2_back[2 * p] = bf.x;
  b2_back[2 * p + 1] = bf.y;
}

// y = alpha * x + y on __half / __nv_bfloat16 arrays (NumPy float16 / uint16), computed in float.
__global__ void half_axpy(float alpha, const __half* x, __half* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __float2half(alpha * __half2float(x[i]) + __half2float(y[i]));
}

__global__ void bf16_axpy(float alpha, const __nv_bfloat16* x, __nv_bfloat16* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __float2bfloat16(alpha * __bfloat162float(x[i]) + __bfloat162float(y[i]));
}

__global__ void float_to_tf32(const float* in, uint32_t* out, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = fc::float_to_tf32(in[i]);
}

}  // namespace fc_selftest
