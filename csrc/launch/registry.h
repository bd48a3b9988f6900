// registry.h — the native build's table of kernel instantiations and its one checked launch path.
//
// Every instantiation the launch plans can choose (fastconv/backends/jit.py all_kernel_names) is
// registered by one generated line in kernel_list.inc, under its C++ template-id: the same string
// the jit backend hands NVRTC and the emulator registers. fastconv._C.launch(name, grid, block,
// args, shared_bytes, stream) finds the entry, converts and checks every argument against the
// kernel's parameter types (bind/fastconv_c.cpp), and launch_kernel checks the launch
// configuration and every CUDA call. The tile/vector/index choice is made once, in the plans, and
// tested in the emulator; this file only makes the native launch safe.
// Plain C++ (no CUDA types in the interface), so the g++-compiled binding can include it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fc {
namespace launch {

enum class ParamKind : int { kPointer = 0, kSigned = 1, kUnsigned = 2, kFloat = 3, kStruct = 4 };

struct ParamInfo {
  ParamKind kind;
  int size;                // bytes of the parameter (pointer: 8)
  int pointee_size;        // pointer: bytes of the element
  char pointee_kind;       // pointer: 'f' float, 'i' signed, 'u' unsigned (NumPy's typestr kind)
  bool pointee_const;      // pointer: the kernel only reads it
  std::string cpp;         // the C++ type, for messages
};

struct KernelInfo {
  std::string name;
  std::vector<ParamInfo> params;
  const void* fn;          // the __global__ function, for cudaLaunchKernel
  int operand_align;       // bytes the first two array arguments must be aligned to (16 for kVec = 4)
};

void register_kernel(KernelInfo info);
const KernelInfo* find_kernel(const std::string& name);
std::vector<std::string> kernel_names();

// Checks grid/block/shared-memory limits against the current device, launches on `stream`
// (a cudaStream_t as an integer; 0 = legacy default stream), then checks the launch error. With
// FASTCONV_SYNC=1 in the environment it also synchronizes and checks, so an asynchronous fault is
// reported at the kernel that caused it.
void launch_kernel(const KernelInfo& kernel, const unsigned grid[3], const unsigned block[3], void** args,
                   size_t shared_bytes, uintptr_t stream);

int cuda_runtime_version();
int device_count();

}  // namespace launch
}  // namespace fc
