// reduce.h — deterministic reductions (fixed summation order, no atomics) for the bias gradient,
// batch-norm statistics and the losses.
//   column_reduce_partial: partial[split, c] = sum over rows [split*rps, (split+1)*rps) of f(row, c)
//       for a row-major (rows, cols) matrix, with f chosen by `mode`:
//         kColSum      a[row, c]                                   (bias gradient, batch-norm sum of x, dbeta)
//         kColSqDev    (a[row, c] - mean[c])^2                     (batch-norm variance, two-pass)
//         kColDotXhat  a[row, c] * (b[row, c] - mean[c]) * invstd[c]  (batch-norm dgamma = sum dy * xhat)
//       then column_finalize adds the splits in order and applies `final`:
//         kFinalSum: out = s;  kFinalMean: out = s / rows;  kFinalInvStd: out = 1 / sqrt(s / rows + eps)
//   reduce_to_scalar: out[0] = (sum_i f(i)) / divisor in one block, f = a[i] or (a[i] - b[i])^2.
// Column reductions: a 32-column x 8-row block per (column tile, split); the split count
// is chosen from the shape alone, so a shape always sums in the same order.
// Checked by: python -m pytest tests/kernels -q -k "reduce or batchnorm or bias"
#pragma once
#include "../common/index.h"
#include "../common/math.h"

namespace fc {

enum ColumnReduceMode : int { kColSum = 0, kColSqDev = 1, kColDotXhat = 2 };
enum ColumnFinal : int { kFinalSum = 0, kFinalMean = 1, kFinalInvStd = 2 };

// grid (ceil(cols / 32), splits), block (32, 8). Unused pointer arguments may alias `a`.
template <class T>
__global__ void __launch_bounds__(256)
column_reduce_partial(int mode, const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ mean,
                      const T* __restrict__ invstd, int64_t rows, int cols, int64_t rows_per_split,
                      T* __restrict__ partial) {
  __shared__ T tile[8][33];
  const int c = int(blockIdx.x) * 32 + int(threadIdx.x);
  const int64_t begin = int64_t(blockIdx.y) * rows_per_split;
  const int64_t end = begin + rows_per_split < rows ? begin + rows_per_split : rows;
  T acc = T(0);
  if (c < cols) {
    const T mu = mode == kColSum ? T(0) : mean[c];
    const T is = mode == kColDotXhat ? invstd[c] : T(0);
    for (int64_t r = begin + threadIdx.y; r < end; r += 8) {
      const int64_t i = r * cols + c;
      T v = a[i];
      if (mode == kColSqDev) {
        v -= mu;
        v *= v;
      } else if (mode == kColDotXhat) {
        v *= (b[i] - mu) * is;
      }
      acc += v;
    }
  }
  tile[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    T sum = tile[0][threadIdx.x];
    for (int y = 1; y < 8; ++y) sum += tile[y][threadIdx.x];
    partial[int64_t(blockIdx.y) * cols + c] = sum;
  }
}

// One thread per column: out[c] = final(sum_{s < splits} partial[s, c]).
template <class T>
__global__ void column_finalize(const T* __restrict__ partial, int splits, int cols, int final_op, int64_t rows,
                                T eps, T* __restrict__ out) {
  const int c = int(global_thread_index());
  if (c >= cols) return;
  T s = partial[c];
  for (int i = 1; i < splits; ++i) s += partial[int64_t(i) * cols + c];
  if (final_op == kFinalMean) s = s / T(rows);
  else if (final_op == kFinalInvStd) s = T(1) / fc::sqrt(s / T(rows) + eps);
  out[c] = s;
}

enum ScalarReduceMode : int { kScalarSum = 0, kScalarSqDiff = 1 };

// One block of 256 threads: out[0] = (sum_i f(i)) / divisor. Strided per-thread sums, then a fixed tree.
template <class T>
__global__ void __launch_bounds__(256)
reduce_to_scalar(int mode, const T* __restrict__ a, const T* __restrict__ b, int64_t n, T divisor,
                 T* __restrict__ out) {
  __shared__ T partial[256];
  T acc = T(0);
  for (int64_t i = threadIdx.x; i < n; i += 256) {
    T v = a[i];
    if (mode == kScalarSqDiff) {
      v -= b[i];
      v *= v;
    }
    acc += v;
  }
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = 128; stride > 0; stride >>= 1) {
    if (int(threadIdx.x) < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[0] = partial[0] / divisor;
}

}  // namespace fc
