// all_kernels.h — every fastconv device kernel, for the three builds that compile them all:
// the native launchers (csrc/launch/*.cu), the jit backend (NVRTC through CuPy, which instantiates
// the kernels it needs by name: fastconv/backends/jit.py, as fastconv/backends/plans/ choose them) and
// the compile checks (tests/kernels).
#pragma once
#include "../common/platform.h"
#include "../conv/conv2d.h"
#include "../gemm/gemm.h"
#include "../pool/pool2d.h"
#include "../norm/norm.h"
#include "../ops/elementwise.h"
#include "../ops/softmax.h"
#include "../ops/reduce.h"
#include "../ops/optimizer.h"
#include "../ops/cast.h"
#include "../ops/normalize.h"
