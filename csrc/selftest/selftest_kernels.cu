// selftest_kernels.cu — the emulator's test kernels built for the GPU, as a compile check of the
// device sources, platform.h and the wrappers (mma.h, cp_async.h) under nvcc:
//   nvcc -std=c++17 -Icsrc -c csrc/selftest/selftest_kernels.cu -o /tmp/selftest.o \
//        -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a
// (run by tests/emu/test_emu_compile.py). Each FC_EMU_KERNEL line of selftest_table.inc takes the
// kernel's address in host code, which makes nvcc instantiate and compile the kernel.
#include "../common/platform.h"

#define FC_SELFTEST_CONCAT_(a, b) a##b
#define FC_SELFTEST_CONCAT(a, b) FC_SELFTEST_CONCAT_(a, b)
#define FC_EMU_KERNEL(name, fn) \
  __attribute__((unused)) static const void* FC_SELFTEST_CONCAT(fc_selftest_kernel_, __COUNTER__) = reinterpret_cast<const void*>(fn);

#include "selftest_table.inc"
