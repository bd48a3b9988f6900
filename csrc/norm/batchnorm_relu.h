// batchnorm_relu.h — batch normalization followed by ReLU (channels last, x seen as (M, C)), forward
// beside backward. The statistics and formulas are norm/batchnorm.h's (and the reference's,
// fastconv/backends/reference/fused.py composes batchnorm + relu):
//   train fprop: mean, invstd by ops/reduce.h's two column passes (two-pass variance: a one-pass
//                sum/sum-of-squares would change the numbers and cancel badly), then one pass
//                batchnorm_relu_apply_kernel: y = relu((x - mean) * (gamma * invstd) + beta).
//                3 reads of x and 1 write of y, against 4 reads and 2 writes unfused (no separate ReLU).
//   infer fprop: batchnorm_relu_infer_kernel: y = relu(x * scale + (beta - mean * scale)), one pass.
//   bprop:       g = dy where y passed ReLU (!(y <= 0)), else 0 (the mask read from the fused output y);
//                batchnorm_relu_dparams_partial: dbeta = sum(g) and dgamma = sum(g * xhat) in one pass
//                (unfused: a ReLU pass writing g, then two column passes); column_finalize adds the
//                splits in order; batchnorm_relu_dx_kernel: dx = (gamma*invstd) * (g - (dbeta + xhat*dgamma)/M).
// Deterministic: fixed-order column sums (split count chosen from the shape), no atomics.
// Elementwise kernels with per-channel parameters + a two-output column reduction.
// Checked by: python -m pytest tests/kernels/test_fused_kernels.py -q -k batchnorm_relu
#pragma once
#include "../common/index.h"
#include "../common/math.h"
#include "../ops/reduce.h"

namespace fc {

template <class T>
FC_DEVICE T relu_value(T v) { return (v > T(0) || v != v) ? v : T(0); }   // NaN passes, as activation.h

template <class T>
FC_DEVICE T relu_masked(T dy, T y) { return y <= T(0) ? T(0) : dy; }       // relu_bprop from the output

template <class T>
__global__ void batchnorm_relu_apply_kernel(const T* __restrict__ x, const T* __restrict__ mean,
                                            const T* __restrict__ invstd, const T* __restrict__ gamma,
                                            const T* __restrict__ beta, T* __restrict__ y, int64_t n, int C) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) {
    const int c = int(i % C);
    y[i] = relu_value((x[i] - mean[c]) * (gamma[c] * invstd[c]) + beta[c]);
  }
}

template <class T>
__global__ void batchnorm_relu_infer_kernel(const T* __restrict__ x, const T* __restrict__ gamma,
                                            const T* __restrict__ beta, const T* __restrict__ mean,
                                            const T* __restrict__ var, T eps, T* __restrict__ y, int64_t n, int C) {
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) {
    const int c = int(i % C);
    const T scale = gamma[c] / fc::sqrt(var[c] + eps);
    y[i] = relu_value(x[i] * scale + (beta[c] - mean[c] * scale));
  }
}

// grid (ceil(C / 32), splits), block (32, 8): as column_reduce_partial, two sums at once.
// dbeta_partial, dgamma_partial: (splits, C).
template <class T>
__global__ void __launch_bounds__(256)
batchnorm_relu_dparams_partial(const T* __restrict__ dy, const T* __restrict__ y, const T* __restrict__ x,
                               const T* __restrict__ mean, const T* __restrict__ invstd, int64_t rows, int C,
                               int64_t rows_per_split, T* __restrict__ dbeta_partial, T* __restrict__ dgamma_partial) {
  __shared__ T sums[2][8][33];
  const int c = int(blockIdx.x) * 32 + int(threadIdx.x);
  const int64_t begin = int64_t(blockIdx.y) * rows_per_split;
  const int64_t end = begin + rows_per_split < rows ? begin + rows_per_split : rows;
  T sb = T(0), sg = T(0);
  if (c < C) {
    const T mu = mean[c], is = invstd[c];
    for (int64_t r = begin + threadIdx.y; r < end; r += 8) {
      const int64_t i = r * C + c;
      const T g = relu_masked(dy[i], y[i]);
      sb += g;
      sg += g * ((x[i] - mu) * is);
    }
  }
  sums[0][threadIdx.y][threadIdx.x] = sb;
  sums[1][threadIdx.y][threadIdx.x] = sg;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    T b = sums[0][0][threadIdx.x], g = sums[1][0][threadIdx.x];
    for (int r = 1; r < 8; ++r) {
      b += sums[0][r][threadIdx.x];
      g += sums[1][r][threadIdx.x];
    }
    dbeta_partial[int64_t(blockIdx.y) * C + c] = b;
    dgamma_partial[int64_t(blockIdx.y) * C + c] = g;
  }
}

template <class T>
__global__ void batchnorm_relu_dx_kernel(const T* __restrict__ dy, const T* __restrict__ y, const T* __restrict__ x,
                                         const T* __restrict__ gamma, const T* __restrict__ mean,
                                         const T* __restrict__ invstd, const T* __restrict__ dgamma,
                                         const T* __restrict__ dbeta, T* __restrict__ dx, int64_t n, int C) {
  const T m = T(n / C);
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) {
    const int c = int(i % C);
    const T xhat = (x[i] - mean[c]) * invstd[c];
    dx[i] = (gamma[c] * invstd[c]) * (relu_masked(dy[i], y[i]) - (dbeta[c] + xhat * dgamma[c]) / m);
  }
}

}  // namespace fc
