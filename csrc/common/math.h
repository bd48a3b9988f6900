// math.h — precision-generic wrappers (float and double) over the CUDA math library, so templated
// kernels call fc::exp(x) and get expf for float and exp for double on nvcc, NVRTC and the emulator.
#pragma once
#include "platform.h"

namespace fc {

FC_DEVICE float exp(float x) { return ::expf(x); }
FC_DEVICE double exp(double x) { return ::exp(x); }
FC_DEVICE float log(float x) { return ::logf(x); }
FC_DEVICE double log(double x) { return ::log(x); }
FC_DEVICE float sqrt(float x) { return ::sqrtf(x); }
FC_DEVICE double sqrt(double x) { return ::sqrt(x); }
FC_DEVICE float tanh(float x) { return ::tanhf(x); }
FC_DEVICE double tanh(double x) { return ::tanh(x); }
FC_DEVICE float abs(float x) { return ::fabsf(x); }
FC_DEVICE double abs(double x) { return ::fabs(x); }

template <class T> FC_DEVICE bool is_nan(T x) { return x != x; }

// The largest of a and b where NaN wins (NumPy's np.maximum), unlike fmaxf which drops NaN.
template <class T> FC_DEVICE T max_nan(T a, T b) { return (a != a || a > b) ? a : (b != b ? b : (a >= b ? a : b)); }

template <class T> FC_DEVICE T lowest();
template <> FC_DEVICE float lowest<float>() { return -__int_as_float(0x7f800000); }    // -inf
template <> FC_DEVICE double lowest<double>() { return -__longlong_as_double(0x7ff0000000000000LL); }

}  // namespace fc
