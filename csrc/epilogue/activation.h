// activation.h — the elementwise activations, forward beside backward, written once and used by
// both the fused GEMM/conv epilogue (bias_act.h) and the standalone ops (csrc/ops/elementwise.h).
//
// NaN and tie rules follow the NumPy reference (fastconv/backends/reference/activation.py):
//   relu(x)       = x > 0 ? x : 0, NaN propagates          relu'(x)  = x <= 0 ? 0 : 1  (NaN x passes dy)
//   leaky(x)      = x > 0 ? x : alpha * x                   leaky'(x) = x > 0 ? 1 : alpha
//   sigmoid(x)    = x >= 0 ? 1 / (1 + e) : e / (1 + e), e = exp(-|x|)    backward from y: dy * y * (1 - y)
//   tanh(x)                                                 backward from y: dy * (1 - y * y)
#pragma once
#include "../common/math.h"

namespace fc {

// Values match fastconv/backends/plans/common.py ACTIVATIONS.
enum ActivationKind : int { kActIdentity = 0, kActRelu = 1, kActLeakyRelu = 2, kActSigmoid = 3, kActTanh = 4 };

template <class T>
FC_DEVICE T activation_fprop(int act, T x, T alpha) {
  switch (act) {
    case kActRelu: return (x > T(0) || x != x) ? x : T(0);
    case kActLeakyRelu: return x > T(0) ? x : x * alpha;
    case kActSigmoid: {
      const T e = fc::exp(-fc::abs(x));
      return (x >= T(0) ? T(1) : e) / (T(1) + e);
    }
    case kActTanh: return fc::tanh(x);
    default: return x;
  }
}

// `saved` is x for relu/leaky_relu and the forward output y for sigmoid/tanh.
template <class T>
FC_DEVICE T activation_bprop(int act, T dy, T saved, T alpha) {
  switch (act) {
    case kActRelu: return saved <= T(0) ? T(0) : dy;
    case kActLeakyRelu: return saved > T(0) ? dy : dy * alpha;
    case kActSigmoid: return dy * saved * (T(1) - saved);
    case kActTanh: return dy * (T(1) - saved * saved);
    default: return dy;
  }
}

}  // namespace fc
