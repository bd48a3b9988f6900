// sm90a_probe.cuh — tells the registry whether the CUDA runtime loads this build's sm_90a machine code for
// the current device (registry.h: sm90a_code_on_current_device). Included by kernels_sm90a.cu only, so the
// probe comes from the same fatbinary (same gencodes) as the wgmma kernels it speaks for.
//
// Why a probe: the wgmma kernels exist for sm_90a only (__CUDA_ARCH_FEAT_SM90_ALL); built for sm_80 or
// JIT-compiled from compute_90 PTX their body traps. cudaFuncGetAttributes reports the binary the runtime
// picked for the device, and this kernel's static shared memory differs between them: kMarkerBytes in the
// sm_90a binary, 0 elsewhere. No launch, so it is safe during CUDA-graph capture.
#pragma once
#include "registry.h"

namespace fc {
namespace launch {

// 4 KiB: well above the 1 KiB an sm_90 binary may report as reserved shared memory (cuobjdump shows it).
constexpr int kSm90aProbeMarkerBytes = 4096;

__global__ void sm90a_probe(int* out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  __shared__ volatile int marker[kSm90aProbeMarkerBytes / 4];   // volatile: kept, so it shows in the attributes
  marker[threadIdx.x % (kSm90aProbeMarkerBytes / 4)] = 1;
  if (out != nullptr) *out = marker[0];
#else
  if (out != nullptr) *out = 0;
#endif
}

static const bool sm90a_probe_registered =
    (register_sm90a_probe(reinterpret_cast<const void*>(&sm90a_probe), kSm90aProbeMarkerBytes), true);

}  // namespace launch
}  // namespace fc
