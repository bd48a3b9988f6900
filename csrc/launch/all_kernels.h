// all_kernels.h — every fastconv device kernel, for the three builds that compile them all:
// the native launchers (csrc/launch/*.cu), the jit backend (NVRTC through CuPy, which instantiates
// the kernels it needs by name: fastconv/backends/jit.py, as fastconv/backends/plans/ choose them) and
// the compile checks (tests/kernels).
#pragma once
#include "../common/platform.h"
#include "../conv/conv2d_fprop.h"
#include "../conv/conv2d_dgrad.h"
#include "../conv/conv2d_wgrad.h"
#include "../conv/conv2d_depthwise.h"
#include "../gemm/gemm.h"
#include "../gemm/split_k_reduce.h"
#include "../pool/max_pool2d.h"
#include "../pool/avg_pool2d.h"
#include "../ops/elementwise.h"
#include "../ops/softmax.h"
#include "../ops/reduce.h"
#include "../ops/batchnorm.h"
#include "../ops/optimizer.h"
#include "../ops/cast.h"
#include "../ops/normalize.h"
#include "../fused/conv2d_bias_relu_maxpool.h"
#include "../fused/conv2d_bias_relu_maxpool3x3.h"
#include "../fused/batchnorm_relu.h"
#include "../tensor_core/tensor_core.h"
