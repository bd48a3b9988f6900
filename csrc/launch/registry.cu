// registry.cu — storage of the kernel table and the checked launch (see registry.h).
#include <cuda_runtime.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

#include "../common/checks.h"
#include "registry.h"

namespace fc {
namespace launch {

static std::map<std::string, KernelInfo>& table() {
  static std::map<std::string, KernelInfo> t;
  return t;
}

void register_kernel(KernelInfo info) { table()[info.name] = std::move(info); }

const KernelInfo* find_kernel(const std::string& name) {
  auto it = table().find(name);
  return it == table().end() ? nullptr : &it->second;
}

std::vector<std::string> kernel_names() {
  std::vector<std::string> out;
  for (const auto& kv : table()) out.push_back(kv.first);
  return out;
}

namespace {
struct Sm90aProbe {
  const void* fn = nullptr;
  int marker_bytes = 0;
  std::mutex mutex;
  std::map<int, bool> by_device;   // device ordinal -> runs the sm_90a binary
};
Sm90aProbe& probe() {
  static Sm90aProbe p;
  return p;
}
}  // namespace

void register_sm90a_probe(const void* fn, int marker_bytes) {
  probe().fn = fn;
  probe().marker_bytes = marker_bytes;
}

bool sm90a_code_on_current_device() {
  Sm90aProbe& p = probe();
  if (p.fn == nullptr) return false;   // this build has no sm_90a shard
  int device = 0;
  FC_CUDA_CHECK(cudaGetDevice(&device), "looking for sm_90a code: no current CUDA device");
  std::lock_guard<std::mutex> lock(p.mutex);
  auto it = p.by_device.find(device);
  if (it != p.by_device.end()) return it->second;
  int major = 0, minor = 0;
  FC_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "compute capability");
  FC_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device), "compute capability");
  bool yes = false;
  if (major == 9 && minor == 0) {   // sm_90a machine code runs on compute capability 9.0 only
    cudaFuncAttributes attr{};
    // Loads the probe's module for this device: the runtime picks the sm_90a binary when the build has one,
    // else JIT-compiles the compute_90 PTX (no wgmma there) or fails (no usable image).
    const cudaError_t err = cudaFuncGetAttributes(&attr, p.fn);
    if (err == cudaSuccess) {
      yes = attr.sharedSizeBytes >= size_t(p.marker_bytes);
    } else {
      cudaGetLastError();   // no image for this device: no sm_90a code; do not leave the error behind
    }
  }
  p.by_device[device] = yes;
  return yes;
}

bool has_device_code(const KernelInfo& k) { return !k.needs_sm90a || sm90a_code_on_current_device(); }

void launch_kernel(const KernelInfo& k, const unsigned grid[3], const unsigned block[3], void** args,
                   size_t shared_bytes, uintptr_t stream) {
  int device = 0;
  FC_CUDA_CHECK(cudaGetDevice(&device), "launching ", k.name, ": no current CUDA device");
  int max_threads = 0, max_grid_x = 0, max_grid_y = 0, max_grid_z = 0, max_smem = 0;
  FC_CUDA_CHECK(cudaDeviceGetAttribute(&max_threads, cudaDevAttrMaxThreadsPerBlock, device), k.name);
  FC_CUDA_CHECK(cudaDeviceGetAttribute(&max_grid_x, cudaDevAttrMaxGridDimX, device), k.name);
  FC_CUDA_CHECK(cudaDeviceGetAttribute(&max_grid_y, cudaDevAttrMaxGridDimY, device), k.name);
  FC_CUDA_CHECK(cudaDeviceGetAttribute(&max_grid_z, cudaDevAttrMaxGridDimZ, device), k.name);
  FC_CUDA_CHECK(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), k.name);
  const unsigned long long threads = 1ULL * block[0] * block[1] * block[2];
  FC_CHECK(threads >= 1 && threads <= static_cast<unsigned long long>(max_threads), k.name, ": block (", block[0], ", ",
           block[1], ", ", block[2], ") has ", threads, " threads; the device allows 1..", max_threads);
  FC_CHECK(grid[0] >= 1 && grid[1] >= 1 && grid[2] >= 1, k.name, ": grid (", grid[0], ", ", grid[1], ", ", grid[2],
           ") has an empty dimension");
  FC_CHECK(grid[0] <= unsigned(max_grid_x) && grid[1] <= unsigned(max_grid_y) && grid[2] <= unsigned(max_grid_z),
           k.name, ": grid (", grid[0], ", ", grid[1], ", ", grid[2], ") exceeds the device's (", max_grid_x, ", ",
           max_grid_y, ", ", max_grid_z, ")");
  FC_CHECK(shared_bytes <= size_t(max_smem), k.name, ": ", shared_bytes,
           " bytes of dynamic shared memory requested; the device allows ", max_smem);
  if (k.needs_sm90a && !sm90a_code_on_current_device()) {
    int major = 0, minor = 0;
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device);
    FC_CHECK(false, k.name, ": this kernel (wgmma/TMA) has machine code only for sm_90a, and fastconv._C holds "
             "none for device ", device, " (compute capability ", major, ".", minor, "); its stand-in would trap. "
             "Build with FASTCONV_CUDA_ARCHS including sm_90a and run on a compute capability 9.0 GPU, or let "
             "the plan fall back (gemm_wgmma does)");
  }
  if (shared_bytes > 48 * 1024) {   // above 48 KB a block must opt in
    cudaFuncAttributes attr{};
    FC_CUDA_CHECK(cudaFuncGetAttributes(&attr, k.fn), k.name, ": reading its attributes");
    FC_CHECK(attr.sharedSizeBytes + shared_bytes <= size_t(max_smem), k.name, ": ", shared_bytes,
             " bytes of dynamic shared memory plus ", attr.sharedSizeBytes, " static exceed the device's ", max_smem);
    FC_CUDA_CHECK(cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize, int(shared_bytes)), k.name,
                  ": raising the dynamic shared-memory limit");
  }
  cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
  FC_CUDA_CHECK(cudaLaunchKernel(k.fn, dim3(grid[0], grid[1], grid[2]), dim3(block[0], block[1], block[2]), args,
                                 shared_bytes, s),
                "launching ", k.name);
  FC_CUDA_CHECK(cudaGetLastError(), "after launching ", k.name);
  static const bool sync = [] {
    const char* v = std::getenv("FASTCONV_SYNC");
    return v != nullptr && v[0] == '1';
  }();
  if (sync) FC_CUDA_CHECK(cudaStreamSynchronize(s), "running ", k.name, " (FASTCONV_SYNC=1)");
}

int cuda_runtime_version() {
  int v = 0;
  FC_CUDA_CHECK(cudaRuntimeGetVersion(&v), "cudaRuntimeGetVersion");
  return v;
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();   // no driver / no device: report 0, do not leave a sticky error
    return 0;
  }
  return n;
}

}  // namespace launch
}  // namespace fc
