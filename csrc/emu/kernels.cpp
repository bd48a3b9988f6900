// kernels.cpp — the translation unit that compiles every registered kernel with g++ against the
// emulator and registers it (kernel_table.inc). Kept apart from bind.cpp so that pybind11 never sees
// the device vocabulary and the two compile in parallel.
#include "../common/platform.h"
#include "registry.h"

#include "kernel_table.inc"
