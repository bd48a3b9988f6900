// bias_act.h — the epilogue stage of every GEMM-shaped kernel (conv fprop/dgrad/wgrad, dense):
//     out[m, n] = convert<Out>(act(acc + bias[n]))
// The main loop hands each finished accumulator to an epilogue object; this one adds an optional
// per-column bias, applies an optional activation (activation.h) and casts to the output type.
// Fusing it saves one full read + write of the output per stage it replaces.
// Bias + activation + cast per element, stored straight from registers.
#pragma once
#include "activation.h"

namespace fc {

template <class Acc, class Out>
FC_DEVICE Out convert_output(Acc v) { return static_cast<Out>(v); }

template <class T, class Out = T>
struct BiasActEpilogue {
  const T* bias;   // per output column (the output channel); read only when has_bias
  int has_bias;    // (a flag, not a null pointer: the emulator passes every pointer as an array)
  int act;         // ActivationKind
  T alpha;         // leaky_relu slope

  FC_DEVICE Out operator()(T acc, int64_t column) const {
    T v = acc;
    if (has_bias) v += bias[column];
    return convert_output<T, Out>(activation_fprop<T>(act, v, alpha));
  }
};

}  // namespace fc
