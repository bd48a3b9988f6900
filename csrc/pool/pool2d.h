// pool2d.h — every 2-D pooling kernel we keep, NHWC, forward beside backward, one thread per element.
//   pool/max_pool2d.h  max pooling with a 1-byte argmax (tie, NaN and padding rules written there)
//   pool/avg_pool2d.h  average (count_include_pad or not) and global-average pooling
// Pooling fused into a conv lives with the conv: conv/conv2d_bias_relu_maxpool*.h.
#pragma once
#include "max_pool2d.h"
#include "avg_pool2d.h"
