// tensor_core.h — every sm_80+ tensor-core kernel (mma.sync, ldmatrix, cp.async), for the builds that
// compile them all: the emulator (csrc/emu/kernel_table.inc), the compile checks and the SASS report
// (tests/kernels/test_tensor_core*.py, scripts/sass_report.py). The instantiations are listed in
// kernel_list.inc and mirrored by fastconv/backends/plans/tensor_op.py tensor_op_kernel_names().
#pragma once
#include "../common/platform.h"
#include "gemm_tensor_op.h"
#include "conv2d_fprop_tensor_op.h"
#include "conv2d_dgrad_tensor_op.h"
#include "conv2d_wgrad_tensor_op.h"
