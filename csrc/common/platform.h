// platform.h — the one header every device source includes first.
//
// It selects among the three compilers that build csrc/:
//   nvcc       (__CUDACC__ and not __CUDACC_RTC__): the native extension fastconv._C
//   NVRTC      (__CUDACC_RTC__): the jit path through CuPy RawModule; no host standard headers
//   emulator   (FASTCONV_EMULATOR): g++ compiles the same kernels against csrc/emu/
// Device code is written in plain CUDA C++ (__global__, threadIdx, __shared__, __syncthreads, ...);
// anything that differs between the three lives here and nowhere else.
#pragma once

#if defined(FASTCONV_EMULATOR)
#  define FC_TARGET_EMULATOR 1
#elif defined(__CUDACC_RTC__)
#  define FC_TARGET_NVRTC 1
#elif defined(__CUDACC__)
#  define FC_TARGET_NVCC 1
#else
#  error "csrc/common/platform.h: compile with nvcc, NVRTC, or define FASTCONV_EMULATOR for g++"
#endif

// ---- fixed-width integers: NVRTC has no <cstdint> -------------------------------------------
#if defined(FC_TARGET_NVRTC)
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
#else
#  include <cstdint>
#endif
#if defined(FC_TARGET_NVCC)
#  include <cassert>   // device-side assert(); NVRTC has it built in, the emulator reports it (emu.h)
#endif

// ---- half and bfloat16 ----------------------------------------------------------------------
#if defined(FC_TARGET_EMULATOR)
#  include "../emu/emu.h"   // SIMT emulator: thread indices, barriers, warp intrinsics, __half, ...
#else
#  include <cuda_fp16.h>
#  include <cuda_bf16.h>
#endif

// Dynamic shared memory: `extern __shared__` cannot be expressed in the emulator, so kernels use
// FC_DYNAMIC_SHARED(T, name) to get a T* to the block's dynamic shared memory.
#if !defined(FC_TARGET_EMULATOR)
#  define FC_DYNAMIC_SHARED(T, name) \
     extern __shared__ __align__(16) unsigned char fc_dynamic_smem_[]; \
     T* name = reinterpret_cast<T*>(fc_dynamic_smem_)
#endif

#define FC_DEVICE __device__ __forceinline__
#define FC_HOST_DEVICE __host__ __device__ __forceinline__

// FC_SITE_PARAM: appended to the parameter list of our device wrappers (mma.h, cp_async.h). In the
// emulator it is a defaulted trailing parameter `fc_site` holding the caller's file and line, so
// errors name the line in the kernel; on the GPU it is nothing. Callers never pass it.
#if defined(FC_TARGET_EMULATOR)
#  define FC_SITE_PARAM , ::fc_emu::Site fc_site = ::fc_emu::Site::here()
#else
#  define FC_SITE_PARAM
#endif
