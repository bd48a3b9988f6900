// softmax.h — softmax along an axis and the losses, each forward beside its backward.
// A tensor is seen as (outer, D, inner) with the softmax axis of length D and stride `inner`.
//   softmax_fprop_kernel: y = exp(x - max) / sum exp(x - max)            (one thread per (outer, inner) line)
//   softmax_bprop_kernel: dx = y * (dy - sum(dy * y))
//   softmax_xent_fprop_kernel: per row of logits (N, C): shifted = x - max, lse = log(sum exp(shifted)),
//        logp = shifted - lse, probs = exp(logp), nll[row] = -logp[label] (ids) or -sum(y * logp) (one-hot);
//        the mean over rows is reduce_to_scalar (reduce.h), deterministic.
//   softmax_xent_bprop_kernel: dlogits = (probs * sum(y_row) - y) * T(dloss / N)
//   cross_entropy_fprop_kernel / _bprop_kernel: Keras' categorical cross-entropy on probabilities clipped to
//        [lo, hi] = [T(eps), T(1 - eps)] (both rounded on the host from double, as NumPy does).
//   mse_bprop_kernel: (pred - target) * T(2 * dloss / size)
// Labels (Label template): int64_t class ids (N,) or one-hot / probability rows (N, C) of type T.
// dloss is read from device memory (a 0-d array) and scaled in double, as the reference does.
// Versions: 1. one thread per line/row (loss rows are short: C classes).
// Checked by: python -m pytest tests/kernels -q -k "softmax or entropy or mse"
#pragma once
#include "../common/index.h"
#include "../common/math.h"

namespace fc {

template <class T>
__global__ void softmax_fprop_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t outer, int64_t D, int64_t inner) {
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
__global__ void softmax_bprop_kernel(const T* __restrict__ dy, const T* __restrict__ y, T* __restrict__ dx,
                                     int64_t outer, int64_t D, int64_t inner) {
  for (int64_t line = global_thread_index(); line < outer * inner; line += global_thread_count()) {
    const int64_t base = (line / inner) * D * inner + line % inner;
    T dot = T(0);
    for (int64_t d = 0; d < D; ++d) dot += dy[base + d * inner] * y[base + d * inner];
    for (int64_t d = 0; d < D; ++d) dx[base + d * inner] = y[base + d * inner] * (dy[base + d * inner] - dot);
  }
}

// Label access: a one-hot / probability weight for (row, class).
template <class T>
FC_DEVICE T label_weight(const int64_t* labels, int64_t row, int c, int /*C*/) { return labels[row] == c ? T(1) : T(0); }
template <class T>
FC_DEVICE T label_weight(const T* labels, int64_t row, int c, int C) { return labels[row * C + c]; }

template <class T>
FC_DEVICE T label_row_sum(const int64_t*, int64_t, int) { return T(1); }
template <class T>
FC_DEVICE T label_row_sum(const T* labels, int64_t row, int C) {
  T s = T(0);
  for (int c = 0; c < C; ++c) s += labels[row * C + c];
  return s;
}

template <class T, class Label>
__global__ void softmax_xent_fprop_kernel(const T* __restrict__ logits, const Label* __restrict__ labels, int64_t N,
                                          int C, T* __restrict__ probs, T* __restrict__ nll) {
  for (int64_t row = global_thread_index(); row < N; row += global_thread_count()) {
    const T* x = logits + row * C;
    T* pr = probs + row * C;
    T mx = x[0];
    for (int c = 1; c < C; ++c) mx = max_nan(mx, x[c]);
    T sum = T(0);
    for (int c = 0; c < C; ++c) sum += fc::exp(x[c] - mx);
    const T lse = fc::log(sum);
    T loss = T(0);
    for (int c = 0; c < C; ++c) {
      const T logp = (x[c] - mx) - lse;
      pr[c] = fc::exp(logp);
      const T wgt = label_weight<T>(labels, row, c, C);
      if (wgt != T(0)) loss -= wgt * logp;
    }
    nll[row] = loss;
  }
}

template <class T, class Label>
__global__ void softmax_xent_bprop_kernel(const T* __restrict__ probs, const Label* __restrict__ labels,
                                          const T* __restrict__ dloss, int64_t N, int C, T* __restrict__ dlogits) {
  const T scale = static_cast<T>(static_cast<double>(dloss[0]) / static_cast<double>(N));
  for (int64_t i = global_thread_index(); i < N * C; i += global_thread_count()) {
    const int64_t row = i / C;
    const int c = int(i % C);
    const T y = label_weight<T>(labels, row, c, C);
    dlogits[i] = (probs[i] * label_row_sum<T>(labels, row, C) - y) * scale;
  }
}

template <class T, class Label>
__global__ void cross_entropy_fprop_kernel(const T* __restrict__ probs, const Label* __restrict__ labels, int64_t N,
                                           int C, T lo, T hi, T* __restrict__ nll) {
  for (int64_t row = global_thread_index(); row < N; row += global_thread_count()) {
    T loss = T(0);
    for (int c = 0; c < C; ++c) {
      T p = probs[row * C + c];
      p = p < lo ? lo : (p > hi ? hi : p);
      loss += label_weight<T>(labels, row, c, C) * fc::log(p);
    }
    nll[row] = -loss;
  }
}

template <class T, class Label>
__global__ void cross_entropy_bprop_kernel(const T* __restrict__ probs, const Label* __restrict__ labels,
                                           const T* __restrict__ dloss, int64_t N, int C, T lo, T hi,
                                           T* __restrict__ dprobs) {
  const T scale = static_cast<T>(static_cast<double>(dloss[0]) / static_cast<double>(N));
  for (int64_t i = global_thread_index(); i < N * C; i += global_thread_count()) {
    const T p = probs[i];
    const bool inside = p >= lo && p <= hi;   // the clip has zero gradient outside
    const T pc = p < lo ? lo : (p > hi ? hi : p);
    dprobs[i] = inside ? -label_weight<T>(labels, i / C, int(i % C), C) / pc * scale : T(0);
  }
}

template <class T>
__global__ void mse_bprop_kernel(const T* __restrict__ pred, const T* __restrict__ target, const T* __restrict__ dloss,
                                 int64_t n, T* __restrict__ dpred) {
  const T scale = static_cast<T>(2.0 * static_cast<double>(dloss[0]) / static_cast<double>(n));
  for (int64_t i = global_thread_index(); i < n; i += global_thread_count()) dpred[i] = (pred[i] - target[i]) * scale;
}

}  // namespace fc
