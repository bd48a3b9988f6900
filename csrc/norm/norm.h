// norm.h — every normalization kernel we keep, channels last (x seen as (M, C)), forward beside backward.
//   norm/batchnorm.h       batch normalization: elementwise kernels + deterministic column sums (ops/reduce.h)
//   norm/batchnorm_relu.h  batch normalization + ReLU in one pass each way (fewer reads and writes than unfused)
// The uint8 image normalization of the input pipeline is a cast, in ops/normalize.h.
#pragma once
#include "batchnorm.h"
#include "batchnorm_relu.h"
