// batchnorm.h — batch normalization with channels last (x seen as (M, C), statistics over M rows).
//   train fprop: mean = sum(x) / M;  invstd = 1 / sqrt(sum((x - mean)^2) / M + eps)   (two-pass variance,
//                both column sums by column_reduce_partial + column_finalize in ops/reduce.h), then
//                batchnorm_apply_kernel: y = (x - mean) * (gamma * invstd) + beta
//   infer fprop: batchnorm_infer_kernel: scale = gamma / sqrt(var + eps); y = x * scale + (beta - mean * scale)
//   bprop:       dbeta = sum(dy), dgamma = sum(dy * xhat) (ops/reduce.h), then batchnorm_dx_kernel:
//                dx = (gamma * invstd) * (dy - (dbeta + xhat * dgamma) / M),  xhat = (x - mean) * invstd
// The formulas and their evaluation order are the reference's (fastconv/backends/reference/batchnorm.py).
// Elementwise kernels with per-channel parameters; deterministic column reductions.
// Checked by: python -m pytest tests/kernels -q -k batchnorm
#pragma once
#include "../common/index.h"
#include "../common/math.h"
#include "../ops/reduce.h"

namespace fc {

template <class T>
__global__ void batchnorm_apply_kernel(const T* __restrict__ x, const T* __restrict__ mean, const T* __restrict__ invstd,
                                       const T* __restrict__ gamma, const T* __restrict__ beta, T* __restrict__ y,
                                       int64_t n, int C) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) {
    const int c = int(i % C);
    y[i] = (x[i] - mean[c]) * (gamma[c] * invstd[c]) + beta[c];
  }
}

template <class T>
__global__ void batchnorm_infer_kernel(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                                       const T* __restrict__ mean, const T* __restrict__ var, T eps, T* __restrict__ y,
                                       int64_t n, int C) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) {
    const int c = int(i % C);
    const T scale = gamma[c] / fc::sqrt(var[c] + eps);
    y[i] = x[i] * scale + (beta[c] - mean[c] * scale);
  }
}

template <class T>
__global__ void batchnorm_dx_kernel(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ gamma,
                                    const T* __restrict__ mean, const T* __restrict__ invstd,
                                    const T* __restrict__ dgamma, const T* __restrict__ dbeta, T* __restrict__ dx,
                                    int64_t n, int C) {
  const T m = T(n / C);
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) {
    const int c = int(i % C);
    const T xhat = (x[i] - mean[c]) * invstd[c];
    dx[i] = (gamma[c] * invstd[c]) * (dy[i] - (dbeta[c] + xhat * dgamma[c]) / m);
  }
}

}  // namespace fc
