// math.cuh — selftest: the math and bit intrinsics kernels use, vector types and __ldg, compiled by
// all three compilers and checked against NumPy (tests/emu/test_emu_math.py).
#pragma once

#include "../common/platform.h"

namespace fc_selftest {

constexpr int kMathOutputs = 12;
constexpr int kIntOutputs = 6;

__global__ void math_intrinsics(const float* __restrict__ x, float* __restrict__ out, int* __restrict__ iout, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float v = __ldg(&x[i]);
  const float a = fabsf(v) + 1.0f;
  float* o = out + static_cast<size_t>(i) * kMathOutputs;
  o[0] = __expf(v);
  o[1] = expf(v);
  o[2] = logf(a);
  o[3] = __logf(a);
  o[4] = fmaxf(v, 0.5f);
  o[5] = fminf(v, 0.5f);
  o[6] = sqrtf(a);
  o[7] = rsqrtf(a);
  o[8] = __fdividef(v, 3.0f);
  o[9] = fmaf(v, v, 1.0f);
  o[10] = tanhf(v);
  o[11] = __uint_as_float(__float_as_uint(v) ^ 0x80000000u);   // negation through the bits
  int* io = iout + static_cast<size_t>(i) * kIntOutputs;
  io[0] = __float2int_rn(v * 4.0f);                             // ties to even
  io[1] = max(static_cast<int>(v), -1);
  io[2] = min(static_cast<int>(v), 1);
  io[3] = __popc(__float_as_uint(v));
  const float4 q = make_float4(v, 2.0f * v, 3.0f * v, 4.0f * v);
  const int2 p = make_int2(static_cast<int>(q.y), static_cast<int>(q.w));
  io[4] = p.x + p.y;
  io[5] = __float2int_rz(v * 4.0f);
}

}  // namespace fc_selftest
