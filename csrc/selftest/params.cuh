// params.cuh — selftest: how launch() passes arguments: a parameter struct by value, every scalar
// type, vector-type pointers and a vector by value, and one array passed to two parameters.
#pragma once

#include "../common/platform.h"

namespace fc_selftest {

// The kind of trivially copyable parameter struct our kernels take (passed from Python as bytes
// or a NumPy structured scalar of exactly sizeof(AxpyParams) = 16 bytes).
struct AxpyParams {
  float alpha;
  int n;
  long long stride;
};

__global__ void axpy_params(AxpyParams p, const float* x, float* y) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < p.n) y[i * p.stride] += p.alpha * x[i * p.stride];
}

// Echoes every scalar parameter type into out_i / out_f.
__global__ void scalar_types(int8_t a, uint8_t b, int16_t c, uint16_t d, int e, unsigned f, long long g,
                             unsigned long long h, float fl, double db, bool k, __half hf, __nv_bfloat16 bf,
                             long long* out_i, double* out_f) {
  if (threadIdx.x != 0) return;
  out_i[0] = a;
  out_i[1] = b;
  out_i[2] = c;
  out_i[3] = d;
  out_i[4] = e;
  out_i[5] = f;
  out_i[6] = g;
  out_i[7] = static_cast<long long>(h);
  out_i[8] = k;
  out_f[0] = fl;
  out_f[1] = db;
  out_f[2] = __half2float(hf);
  out_f[3] = __bfloat162float(bf);
}

// out[i] = in[i].xy + bias.xy and out[n4 + i] = in[i].zw + bias.zw, through float4*/float2*.
__global__ void vector_pointers(const float4* in, float2* out, float4 bias, int n4) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n4) return;
  const float4 v = in[i];
  out[i] = make_float2(v.x + bias.x, v.y + bias.y);
  out[n4 + i] = make_float2(v.z + bias.z, v.w + bias.w);
}

// y = s * x; called with the same array as x and y it scales in place, as on the GPU.
__global__ void in_place_scale(const float* x, float* y, float s, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = s * x[i];
}

}  // namespace fc_selftest
