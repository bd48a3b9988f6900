// registry.h — the native build's table of kernel instantiations and its one checked launch path.
//
// Every instantiation the launch plans can choose (the kernel table, fastconv/backends/kernel_table.py) is
// registered by one generated line in kernel_list.inc, under its C++ template-id: the same string
// the jit backend hands NVRTC and the emulator registers. fastconv._C.launch(name, grid, block,
// args, shared_bytes, stream) finds the entry, converts and checks every argument against the
// kernel's parameter types (bind/fastconv_c.cpp), and launch_kernel checks the launch
// configuration and every CUDA call. The tile/vector/index choice is made once, in the plans, and
// tested in the emulator; this file only makes the native launch safe.
// The sm_90a kernels (csrc/gemm/gemm_wgmma_sm90.h: wgmma, TMA) have machine code only in the sm_90a binary of their
// shard (kernels_sm90a.cu); for any other target their body traps. Their entries say so (needs_sm90a),
// has_device_code asks the CUDA runtime which binary it picked for the current device (through the
// probe kernel of sm90a_probe.cuh), and launch_kernel refuses them with a clear error where it is not
// the sm_90a one, instead of launching a trap.
// Plain C++ (no CUDA types in the interface), so the g++-compiled binding can include it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fc {
namespace launch {

enum class ParamKind : int { kPointer = 0, kSigned = 1, kUnsigned = 2, kFloat = 3, kStruct = 4, kTensorMap = 5 };
// kTensorMap: fc::sm90::TensorMap, the 128-byte (64-byte aligned) CUtensorMap of a TMA kernel, passed by
// value as a __grid_constant__ parameter; from Python: the 128 bytes cuTensorMapEncodeTiled wrote.
constexpr int kTensorMapBytes = 128;

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
  bool needs_sm90a = false;   // machine code only for sm_90a: launchable only where has_device_code
};

void register_kernel(KernelInfo info);
const KernelInfo* find_kernel(const std::string& name);
std::vector<std::string> kernel_names();

// The sm_90a shard registers its probe kernel: a __global__ function built from the same fatbinary
// as the wgmma kernels whose static shared memory is `marker_bytes` in its sm_90a binary and 0 in
// every other (so cudaFuncGetAttributes tells which binary the runtime loads for a device, no launch).
void register_sm90a_probe(const void* fn, int marker_bytes);
// Whether the current device runs sm_90a machine code of this build (false: no probe registered, a
// device that is not compute capability 9.0, or a build without the sm_90a gencode). Cached per device.
bool sm90a_code_on_current_device();
// Whether `kernel` has real machine code for the current device (not the trapping stand-in).
bool has_device_code(const KernelInfo& kernel);

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
