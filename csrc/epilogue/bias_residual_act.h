// bias_residual_act.h — the epilogue stage with a residual input (a ResNet block's skip connection):
//     out[m, n] = convert<Out>(act(acc + bias[n] + residual[m, n]))
// The residual has the output's type and layout (read at the very offset the output is written),
// so the block's `add` and its activation cost no extra pass over memory. The final cast is the
// output conversion of bias_act.h (static_cast: round to nearest even for __half / __nv_bfloat16).
// Per element, stored straight from registers (used by the tensor-core kernels, gemm/gemm_tensor_op_sm80.h).
// Checked by: python -m pytest tests/kernels/test_tensor_core.py -q -k residual
#pragma once
#include "bias_act.h"

namespace fc {

template <class Out>
struct BiasResidualActEpilogue {
  const float* bias;      // per output column; read only when has_bias
  int has_bias;
  const Out* residual;    // same shape and offsets as the output; read only when has_residual
  int has_residual;       // (flags, not null pointers: the emulator passes every pointer as an array)
  int act;                // ActivationKind
  float alpha;            // leaky_relu slope

  FC_DEVICE Out operator()(float acc, int64_t offset, int64_t column) const {
    float v = acc;
    if (has_bias) v += bias[column];
    if (has_residual) v += static_cast<float>(residual[offset]);
    return convert_output<float, Out>(activation_fprop<float>(act, v, alpha));
  }
};

}  // namespace fc
