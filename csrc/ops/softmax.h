// softmax.h — softmax along an axis and the losses built on it, each forward beside its backward.
// A row is D values (the softmax axis, or the C classes of a (N, C) loss input); x, y, dy are rows.
//   softmax_fprop: y = exp(x - max) / sum exp(x - max)
//   softmax_bprop: dx = y * (dy - sum(dy * y))
//   softmax_xent_fprop (logits (N, C)): shifted = x - max, lse = log(sum exp(shifted)), logp = shifted - lse,
//        probs = exp(logp), nll[row] = -logp[label] (ids) or -sum(y * logp) over the classes with y != 0
//        (one-hot / soft rows); the mean over rows is reduce_to_scalar (reduce.h), deterministic.
//   softmax_xent_bprop: dlogits = (probs * sum(y_row) - y) * T(dloss / N)
//   cross_entropy_fprop / _bprop: Keras' categorical cross-entropy on probabilities clipped to
//        [lo, hi] = [T(eps), T(1 - eps)] (both rounded on the host from double, as NumPy does).
//   mse_bprop: (pred - target) * T(2 * dloss / size)
// Labels (Label template): int64_t class ids (N,) or one-hot / probability rows (N, C) of type T.
// dloss is read from device memory (a 0-d array) and scaled in double, as the reference does.
// NaN and Inf as in the NumPy reference: the max propagates NaN (max_nan), so a NaN makes its row NaN;
// a +inf makes its row NaN (inf - inf), and so does a row of -inf. One exception, kept from version 1:
// softmax_xent_fprop skips zero label weights, so a masked (-inf) logit adds nothing where the
// reference's 0 * -inf gives NaN (class ids and one-hot rows then agree).
//
// Versions:
//   1. one thread per row (to 2026-12): a warp's load touched 32 rows, 32 cache lines for 128 useful
//      bytes, on each of three passes (issue 13, item 7).
//   2. the *_rows kernels (now): blockDim.x = tpr threads per row, blockDim.y rows per block. tpr is a
//      power of two chosen on the host from D and V (plans/loss.py launch_rows): part of a warp for rows
//      of at most 32 loads, a warp up to 8 loads per lane, several warps (up to a block) for longer
//      rows. Thread t reads vectors t, t + tpr, ... of V elements, so a warp's load is consecutive
//      16-byte (V = 4) or 4-byte (V = 1) pieces; V = 4 needs D % 4 == 0 and 16-byte aligned arrays
//      (checked on the host). Max and sums: each thread over its vectors in order, a butterfly of
//      __shfl_xor_sync in the warp, then the row's warps in warp order through shared memory. So the
//      order depends on (D, V, tpr) only, never on scheduling, and every thread of a row ends with the
//      same bits (a + b == b + a; the max may differ in a zero's sign or a NaN's payload, which
//      changes no result). The passes re-read the row from L1/L2 (a warp's row of 1000 floats
//      is 4 KB): device memory sees each input read once (benchmarks/NOTES.md, a prediction).
//   softmax_*_strided: the softmax axis is not the last (inner > 1): one thread per (outer, inner)
//      line; consecutive threads hold consecutive inner positions, so their loads are coalesced.
//   cross_entropy_bprop and mse_bprop are elementwise (no row reduction): grid-stride loops, which
//      are coalesced as they are.
// Checked by: python -m pytest tests/kernels/test_softmax_rows.py tests/kernels/test_softmax_rows_build.py
//             python -m pytest tests/kernels/test_emulated_kernels.py -q -k "softmax or entropy or mse"
#pragma once
#include "../common/index.h"
#include "../common/math.h"

namespace fc {

struct RowSum {
  template <class T> FC_DEVICE T operator()(T a, T b) const { return a + b; }
};
struct RowMax {
  template <class T> FC_DEVICE T operator()(T a, T b) const { return max_nan(a, b); }
};

// v combined over the blockDim.x threads of the caller's row; each of them gets the same value.
// Every thread of the block calls it (rows past the end too): it holds shuffles and barriers.
// scratch: __shared__ T[32], one slot per warp of a block of up to 1024 threads.
template <class T, class Op>
FC_DEVICE T row_reduce(T v, Op op, T* scratch) {
  const int tpr = int(blockDim.x);
  const int width = tpr < 32 ? tpr : 32;
  for (int lane_mask = width / 2; lane_mask > 0; lane_mask >>= 1)
    v = op(v, __shfl_xor_sync(0xffffffffu, v, lane_mask, width));
  if (tpr > 32) {   // the same branch for the whole block: a row is whole warps
    const int warp = int(threadIdx.y * blockDim.x + threadIdx.x) / 32;
    __syncthreads();   // the previous reduction has read scratch
    if (threadIdx.x % 32 == 0) scratch[warp] = v;
    __syncthreads();
    const int first = int(threadIdx.y) * (tpr / 32);
    v = scratch[first];
    for (int w = 1; w < tpr / 32; ++w) v = op(v, scratch[first + w]);
  }
  return v;
}

// The first two passes of softmax and of softmax + cross-entropy: the row's max, then the sum of
// exp(x - max), each combined over every thread of the row. Called by every thread of the block.
template <int V, class T>
FC_DEVICE void row_max_sumexp(const T* xr, int64_t end, T* scratch, T& mx, T& sum) {
  mx = lowest<T>();
  for (int64_t i = int64_t(threadIdx.x) * V; i < end; i += int64_t(blockDim.x) * V) {
    T v[V];
    load_vec<V>(xr + i, v);
#pragma unroll
    for (int k = 0; k < V; ++k) mx = max_nan(mx, v[k]);
  }
  mx = row_reduce(mx, RowMax(), scratch);
  sum = T(0);
  for (int64_t i = int64_t(threadIdx.x) * V; i < end; i += int64_t(blockDim.x) * V) {
    T v[V];
    load_vec<V>(xr + i, v);
#pragma unroll
    for (int k = 0; k < V; ++k) sum += fc::exp(v[k] - mx);
  }
  sum = row_reduce(sum, RowSum(), scratch);
}

// The row loop of the *_rows kernels is grid-stride over groups of blockDim.y rows, the same
// iterations for every thread of the block: a thread whose row is past the end gets end == 0 (no
// elements) and still takes part in row_reduce. Thread x of a row reads the V-vectors at
// i = x * V, (x + blockDim.x) * V, ... < end.
template <class T, int V>
__global__ void softmax_fprop_rows(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t D) {
  __shared__ T scratch[32];
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < rows; first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t row = first + threadIdx.y, end = row < rows ? D : 0;
    const T* xr = x + row * D;
    T mx, sum;
    row_max_sumexp<V>(xr, end, scratch, mx, sum);
    for (int64_t i = int64_t(threadIdx.x) * V; i < end; i += int64_t(blockDim.x) * V) {
      T v[V];
      load_vec<V>(xr + i, v);
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = fc::exp(v[k] - mx) / sum;
      store_vec<V>(y + row * D + i, v);
    }
  }
}

template <class T, int V>
__global__ void softmax_bprop_rows(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx,
                                   int64_t rows, int64_t D) {
  __shared__ T scratch[32];
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < rows; first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t row = first + threadIdx.y, end = row < rows ? D : 0;
    const int64_t base = row * D;
    T dot = T(0);
    for (int64_t i = int64_t(threadIdx.x) * V; i < end; i += int64_t(blockDim.x) * V) {
      T g[V], p[V];
      load_vec<V>(dy + base + i, g);
      load_vec<V>(y + base + i, p);
#pragma unroll
      for (int k = 0; k < V; ++k) dot += g[k] * p[k];
    }
    dot = row_reduce(dot, RowSum(), scratch);
    for (int64_t i = int64_t(threadIdx.x) * V; i < end; i += int64_t(blockDim.x) * V) {
      T g[V], p[V];
      load_vec<V>(dy + base + i, g);
      load_vec<V>(y + base + i, p);
#pragma unroll
      for (int k = 0; k < V; ++k) g[k] = p[k] * (g[k] - dot);
      store_vec<V>(dx + base + i, g);
    }
  }
}

// Softmax over an axis that is not the last: (outer, D, inner) with the axis' stride `inner`.
template <class T>
__global__ void softmax_fprop_strided(const T* __restrict__ x, T* __restrict__ y, int64_t outer, int64_t D,
                                      int64_t inner) {
  for (int64_t line = global_thread_index(); line < outer * inner; line += global_thread_count()) {
    const int64_t base = (line / inner) * D * inner + line % inner;
    T mx = x[base];
    for (int64_t d = 1; d < D; ++d) mx = max_nan(mx, x[base + d * inner]);
    T sum = T(0);
    for (int64_t d = 0; d < D; ++d) {
      const T e = fc::exp(x[base + d * inner] - mx);
      y[base + d * inner] = e;
      sum += e;
    }
    for (int64_t d = 0; d < D; ++d) y[base + d * inner] = y[base + d * inner] / sum;
  }
}

template <class T>
__global__ void softmax_bprop_strided(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx,
                                      int64_t outer, int64_t D, int64_t inner) {
  for (int64_t line = global_thread_index(); line < outer * inner; line += global_thread_count()) {
    const int64_t base = (line / inner) * D * inner + line % inner;
    T dot = T(0);
    for (int64_t d = 0; d < D; ++d) dot += dy[base + d * inner] * y[base + d * inner];
    for (int64_t d = 0; d < D; ++d) dx[base + d * inner] = y[base + d * inner] * (dy[base + d * inner] - dot);
  }
}

// The label weights of classes c .. c + V - 1 of a row: one-hot from a class id, or the row's values.
template <int V, class T>
FC_DEVICE void label_weights(const int64_t* labels, int64_t row, int64_t c, int64_t /*C*/, T (&w)[V]) {
  const int64_t id = labels[row];
#pragma unroll
  for (int k = 0; k < V; ++k) w[k] = id == c + k ? T(1) : T(0);
}
template <int V, class T>
FC_DEVICE void label_weights(const T* labels, int64_t row, int64_t c, int64_t C, T (&w)[V]) {
  load_vec<V>(labels + row * C + c, w);
}

// sum(y_row): 1 for a class id; a row reduction (every thread of the block calls it) for label rows.
template <int V, class T>
FC_DEVICE T label_row_sum(const int64_t*, int64_t, int64_t, int64_t, T*) { return T(1); }
template <int V, class T>
FC_DEVICE T label_row_sum(const T* labels, int64_t row, int64_t end, int64_t C, T* scratch) {
  T s = T(0);
  for (int64_t i = int64_t(threadIdx.x) * V; i < end; i += int64_t(blockDim.x) * V) {
    T w[V];
    load_vec<V>(labels + row * C + i, w);
#pragma unroll
    for (int k = 0; k < V; ++k) s += w[k];
  }
  return row_reduce(s, RowSum(), scratch);
}

template <class T, class Label, int V>
__global__ void softmax_xent_fprop_rows(const T* __restrict__ logits, const Label* __restrict__ labels, int64_t N,
                                        int64_t C, T* __restrict__ probs, T* __restrict__ nll) {
  __shared__ T scratch[32];
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < N; first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t row = first + threadIdx.y, end = row < N ? C : 0;
    const T* xr = logits + row * C;
    T mx, sum;
    row_max_sumexp<V>(xr, end, scratch, mx, sum);
    const T lse = fc::log(sum);
    T loss = T(0);
    for (int64_t i = int64_t(threadIdx.x) * V; i < end; i += int64_t(blockDim.x) * V) {
      T v[V], w[V];
      load_vec<V>(xr + i, v);
      label_weights<V>(labels, row, i, C, w);
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const T logp = (v[k] - mx) - lse;
        v[k] = fc::exp(logp);
        if (w[k] != T(0)) loss -= w[k] * logp;   // a zero weight adds nothing, even beside a -inf logit
      }
      store_vec<V>(probs + row * C + i, v);
    }
    loss = row_reduce(loss, RowSum(), scratch);
    if (row < N && threadIdx.x == 0) nll[row] = loss;
  }
}

template <class T, class Label, int V>
__global__ void softmax_xent_bprop_rows(const T* __restrict__ probs, const Label* __restrict__ labels,
                                        const T* __restrict__ dloss, int64_t N, int64_t C, T* __restrict__ dlogits) {
  __shared__ T scratch[32];
  const T scale = static_cast<T>(static_cast<double>(dloss[0]) / static_cast<double>(N));
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < N; first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t row = first + threadIdx.y, end = row < N ? C : 0;
    const T total = label_row_sum<V>(labels, row, end, C, scratch);
    for (int64_t i = int64_t(threadIdx.x) * V; i < end; i += int64_t(blockDim.x) * V) {
      T p[V], w[V];
      load_vec<V>(probs + row * C + i, p);
      label_weights<V>(labels, row, i, C, w);
#pragma unroll
      for (int k = 0; k < V; ++k) p[k] = (p[k] * total - w[k]) * scale;
      store_vec<V>(dlogits + row * C + i, p);
    }
  }
}

template <class T, class Label, int V>
__global__ void cross_entropy_fprop_rows(const T* __restrict__ probs, const Label* __restrict__ labels, int64_t N,
                                         int64_t C, T lo, T hi, T* __restrict__ nll) {
  __shared__ T scratch[32];
  for (int64_t first = int64_t(blockIdx.x) * blockDim.y; first < N; first += int64_t(gridDim.x) * blockDim.y) {
    const int64_t row = first + threadIdx.y, end = row < N ? C : 0;
    T loss = T(0);
    for (int64_t i = int64_t(threadIdx.x) * V; i < end; i += int64_t(blockDim.x) * V) {
      T p[V], w[V];
      load_vec<V>(probs + row * C + i, p);
      label_weights<V>(labels, row, i, C, w);
#pragma unroll
      for (int k = 0; k < V; ++k) {   // every class, zero weights too: a NaN probability makes the row NaN
        const T pc = p[k] < lo ? lo : (p[k] > hi ? hi : p[k]);
        loss += w[k] * fc::log(pc);
      }
    }
    loss = row_reduce(loss, RowSum(), scratch);
    if (row < N && threadIdx.x == 0) nll[row] = -loss;
  }
}

// Label access for the elementwise kernels: the one-hot / probability weight of (row, class c).
template <class T>
FC_DEVICE T label_weight(const int64_t* labels, int64_t row, int64_t c, int64_t /*C*/) {
  return labels[row] == c ? T(1) : T(0);
}
template <class T>
FC_DEVICE T label_weight(const T* labels, int64_t row, int64_t c, int64_t C) { return labels[row * C + c]; }

template <class T, class Label>
__global__ void cross_entropy_bprop_kernel(const T* __restrict__ probs, const Label* __restrict__ labels,
                                           const T* __restrict__ dloss, int64_t N, int C, T lo, T hi,
                                           T* __restrict__ dprobs) {
  const T scale = static_cast<T>(static_cast<double>(dloss[0]) / static_cast<double>(N));
  for (int64_t i = global_thread_index(); i < N * C; i += global_thread_count()) {
    const T p = probs[i];
    const bool inside = p >= lo && p <= hi;   // the clip has zero gradient outside
    const T pc = p < lo ? lo : (p > hi ? hi : p);
    dprobs[i] = inside ? -label_weight<T>(labels, i / C, i % C, C) / pc * scale : T(0);
  }
}

template <class T>
__global__ void mse_bprop_kernel(const T* __restrict__ pred, const T* __restrict__ target, const T* __restrict__ dloss,
                                 int64_t n, T* __restrict__ dpred) {
  const T scale = static_cast<T>(2.0 * static_cast<double>(dloss[0]) / static_cast<double>(n));
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) dpred[i] = (pred[i] - target[i]) * scale;
}

}  // namespace fc
