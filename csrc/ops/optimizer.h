// optimizer.h — SGD (momentum, Nesterov, L2 weight decay) and Adam (decoupled weight decay) updates
// of every parameter in ONE launch: a table of (param, grad, slots, size) entries in device memory,
// each tensor cut into `chunk`-element pieces, one block per piece (the block finds its tensor by
// binary search over first_chunk). One launch instead of one per tensor: a ResNet-50 has 161
// parameter tensors, ~3 us of launch overhead each.
// Arithmetic and its order are the reference's (fastconv/optimizers.py). The scalars that change from
// step to step (lr under a schedule, Adam's bias correction) are read from a StepScalars buffer in
// device memory, written by the host before each step, so a CUDA graph that captured the launch
// replays it with the current step's values; they are rounded to T here from double, as NumPy rounds
// its weak Python scalars. The table stays resident too (rebuilt only when an address changes).
//   SGD:  g = grad + wd * p (if wd);  no momentum: p = p - lr * g
//         v = v * mom;  v = v - lr * g;  p = p + (nesterov ? mom * v - lr * g : v)
//   Adam: m = m + c1 * (g - m);  v = v + c2 * (g * g - v);  p = p - decay * p (if decay);
//         p = p - step * m / (sqrt(v) + eps),  c1 = 1 - b1, c2 = 1 - b2, step = lr sqrt(1 - b2^t) / (1 - b1^t)
//         (step stays double: np.sqrt makes it a float64 scalar, so NumPy evaluates that term in float64)
// Versions: 1. grid-stride within a chunk, scalar accesses. 2. per-step scalars from device memory
//   (StepScalars) and a resident table, so the update can be captured in a CUDA graph.
// Checked by: python -m pytest tests/kernels -q -k optimizer
#pragma once
#include "../common/index.h"
#include "../common/math.h"

namespace fc {

// 48 bytes; mirrored in Python (fastconv/backends/plans: common.py MULTI_TENSOR_WORDS, optim.py
// multi_tensor_table). The kernels take the table as int64 words (6 per entry) so every build, the
// emulator's included, passes a plain array.
template <class T>
struct MultiTensorEntry {
  T* param;
  const T* grad;
  T* slot0;            // SGD: velocity (unused without momentum); Adam: m
  T* slot1;            // Adam: v
  int64_t size;
  int64_t first_chunk; // index of this tensor's first chunk among all chunks of the launch
};
static_assert(sizeof(MultiTensorEntry<float>) == 6 * sizeof(int64_t), "mirrored in Python as 6 int64 words");

// This step's scalars, in double as the host computes them (fastconv/optimizers.py step_scalars);
// mirrored in Python as STEP_SCALARS (fastconv/backends/plans/optim.py). Kernels take it as a
// plain double array, like the table.
struct StepScalars {
  double lr;          // this step's learning rate (the schedule's value for step t)
  double adam_step;   // Adam: lr sqrt(1 - b2^t) / (1 - b1^t)
  double adam_decay;  // Adam: lr * weight_decay (decoupled decay)
};
static_assert(sizeof(StepScalars) == 3 * sizeof(double), "mirrored in Python as 3 float64 words");

// Writes a step's scalars into the buffer the updates read: one thread, in stream order, so the host
// sets them before a step or a graph replay with no host-to-device copy (a pageable copy may block
// the host until the GPU catches up; a launch never does).
// A template (instantiated for double only) like every other kernel, so that each launch shard that
// includes this header holds a weak instantiation rather than a second strong definition.
template <class W>
__global__ void set_step_scalars(W* __restrict__ step_scalars, W lr, W adam_step, W adam_decay) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    StepScalars* s = reinterpret_cast<StepScalars*>(step_scalars);
    s->lr = lr;
    s->adam_step = adam_step;
    s->adam_decay = adam_decay;
  }
}

template <class T>
FC_DEVICE int find_tensor(const MultiTensorEntry<T>* table, int num_tensors, int64_t chunk_id) {
  int lo = 0, hi = num_tensors - 1;
  while (lo < hi) {   // last entry with first_chunk <= chunk_id
    const int mid = (lo + hi + 1) / 2;
    if (table[mid].first_chunk <= chunk_id) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

template <class T>
__global__ void sgd_update_multi(const int64_t* __restrict__ table_words, int num_tensors, int64_t chunk,
                                 const double* __restrict__ step_scalars, T momentum, int nesterov, T weight_decay) {
  const MultiTensorEntry<T>* table = reinterpret_cast<const MultiTensorEntry<T>*>(table_words);
  const T lr = static_cast<T>(reinterpret_cast<const StepScalars*>(step_scalars)->lr);
  const int t = find_tensor(table, num_tensors, int64_t(blockIdx.x));
  const MultiTensorEntry<T> e = table[t];
  const int64_t begin = (int64_t(blockIdx.x) - e.first_chunk) * chunk;
  const int64_t end = begin + chunk < e.size ? begin + chunk : e.size;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    T g = e.grad[i];
    T p = e.param[i];
    if (weight_decay != T(0)) g = g + weight_decay * p;
    if (momentum == T(0)) {
      e.param[i] = p - lr * g;
      continue;
    }
    T v = e.slot0[i] * momentum;
    v = v - lr * g;
    e.slot0[i] = v;
    e.param[i] = p + (nesterov ? momentum * v - lr * g : v);
  }
}

template <class T>
__global__ void adam_update_multi(const int64_t* __restrict__ table_words, int num_tensors, int64_t chunk,
                                  const double* __restrict__ step_scalars, T c1, T c2, T eps) {
  const MultiTensorEntry<T>* table = reinterpret_cast<const MultiTensorEntry<T>*>(table_words);
  const StepScalars* s = reinterpret_cast<const StepScalars*>(step_scalars);
  const double step = s->adam_step;
  const T decay = static_cast<T>(s->adam_decay);
  const int t = find_tensor(table, num_tensors, int64_t(blockIdx.x));
  const MultiTensorEntry<T> e = table[t];
  const int64_t begin = (int64_t(blockIdx.x) - e.first_chunk) * chunk;
  const int64_t end = begin + chunk < e.size ? begin + chunk : e.size;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const T g = e.grad[i];
    T m = e.slot0[i];
    T v = e.slot1[i];
    m = m + c1 * (g - m);
    v = v + c2 * (g * g - v);
    e.slot0[i] = m;
    e.slot1[i] = v;
    T p = e.param[i];
    if (decay != T(0)) p = p - decay * p;
    // step is a float64 NumPy scalar in the reference, so this one product and quotient run in double.
    e.param[i] = static_cast<T>(static_cast<double>(p) - step * static_cast<double>(m) /
                                                          static_cast<double>(fc::sqrt(v) + eps));
  }
}

}  // namespace fc
