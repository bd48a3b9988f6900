// selftest/sm90.cuh — kernels that exercise one sm90 primitive each, for tests/emu/test_emu_wgmma.py:
// the wgmma fragment layout and descriptor addressing, mbarrier phases, and the TMA box copy.
#pragma once

#include "../common/platform.h"
#include "../arch/sm90/primitives.h"

namespace fc_sm90_selftest {

// The host lays out a shared-memory image (the bytes where the ISA says A and B live) and the
// descriptor fields; every warpgroup of the block runs one wgmma m64nNk16 on it and writes each
// thread's N/2 accumulators to out[thread][j]. c_init seeds the accumulators (scale_d = 1 adds).
// TransA / TransB: the operand is MN-major (imm-trans-a / imm-trans-b).
template <int N, class In, int TransA = 0, int TransB = 0>
__global__ void wgmma_from_image(const uint8_t* image, int image_bytes, int a_offset, int b_offset, int swizzle,
                                 int a_lbo, int a_sbo, int b_lbo, int b_sbo, const float* c_init, int scale_d,
                                 float* out) {
#if defined(FC_SM90A_AVAILABLE)
  FC_DYNAMIC_SHARED(uint8_t, smem_raw);
  const uint32_t raw = fc::sm90::shared_address(smem_raw);
  uint8_t* smem = smem_raw + ((1024 - (raw & 1023)) & 1023);
  const uint32_t base = fc::sm90::shared_address(smem);
  for (int i = threadIdx.x; i < image_bytes; i += blockDim.x) smem[i] = image[i];
  fc::sm90::fence_proxy_async_shared();   // generic-proxy writes read by wgmma (async proxy)
  __syncthreads();
  float acc[N / 2];
#pragma unroll
  for (int j = 0; j < N / 2; ++j) acc[j] = c_init[threadIdx.x * (N / 2) + j];
  const uint64_t da = fc::sm90::make_smem_desc(base + a_offset, swizzle, a_lbo, a_sbo);
  const uint64_t db = fc::sm90::make_smem_desc(base + b_offset, swizzle, b_lbo, b_sbo);
  fc::sm90::wgmma_fence();
  fc::sm90::wgmma_m64nNk16<N, In, TransA, TransB>(acc, da, db, scale_d);
  fc::sm90::wgmma_commit();
  fc::sm90::wgmma_wait<0>();
  fc::sm90::wgmma_fence_operands(acc);
#pragma unroll
  for (int j = 0; j < N / 2; ++j) out[threadIdx.x * (N / 2) + j] = acc[j];
#endif
}

// Zeroes 8 KB of shared memory with generic stores, fenced for the async proxy when `fence`, then every
// warpgroup runs one wgmma m64n64k16 on the zeros (A at +0, or +1024 in lane odd_lane; B at +4096).
FC_DEVICE void wgmma_on_zeros(uint8_t* smem, int odd_lane, bool fence, float* out) {
#if defined(FC_SM90A_AVAILABLE)
  const uint32_t base = fc::sm90::shared_address(smem);
  for (int i = threadIdx.x; i < 8192; i += blockDim.x) smem[i] = 0;
  if (fence) fc::sm90::fence_proxy_async_shared();   // generic-proxy writes that wgmma (async proxy) reads
  __syncthreads();
  float acc[32] = {};
  const int lane = threadIdx.x % 32;
  const uint64_t da = fc::sm90::make_smem_desc(base + (lane == odd_lane ? 1024 : 0), 0, 128, 256);
  const uint64_t db = fc::sm90::make_smem_desc(base + 4096, 0, 128, 256);
  fc::sm90::wgmma_fence();
  fc::sm90::wgmma_m64nNk16<64, __nv_bfloat16>(acc, da, db, 1);
  fc::sm90::wgmma_commit();
  fc::sm90::wgmma_wait<0>();
  out[threadIdx.x] = acc[0];
#endif
}

// Misuse: lane `odd_lane` passes another A descriptor than the rest of its warp (the emulator reports
// it; undefined on the GPU). odd_lane < 0: every lane agrees, the product of zeros is zero.
__global__ void wgmma_lane_mismatch(int odd_lane, float* out) {
  FC_DYNAMIC_SHARED(uint8_t, smem);
  wgmma_on_zeros(smem, odd_lane, true, out);
}

// Misuse, for the emulator only (never launched on a GPU, where wgmma may read stale bytes): no
// fence.proxy.async between the generic stores and the wgmma that reads them. The emulator reports it.
__global__ void wgmma_without_proxy_fence(float* out) {
  FC_DYNAMIC_SHARED(uint8_t, smem);
  wgmma_on_zeros(smem, -1, false, out);
}

// Two phases of one mbarrier (count 1) with 4 threads; events go to log[1 + ticket] in the order they
// happen (log[0] is the ticket counter):
//   thread 0: arrive.expect_tx(64) (event 1)      thread 1: complete_tx(32) (2)
//   thread 2: complete_tx(second_bytes) (3)        thread 3: wait.parity(0) (5)
// before which thread 3 did try_wait.parity(1) on the fresh barrier (event 4: the phase "before"
// phase 0 counts as complete).
// Then every thread waits for phase 0 and a barrier, and the same happens again with events + 10 and thread 3
// waiting for parity 1 (15). With second_bytes != 32 a phase never completes: a reported deadlock.
__global__ void mbarrier_phases(int* log, int second_bytes) {
#if defined(FC_SM90_AVAILABLE)
  __shared__ __align__(8) uint64_t bar;
  const int t = threadIdx.x;
  if (t == 0) {
    fc::sm90::mbarrier_init(&bar, 1);
    fc::sm90::fence_mbarrier_init();
  }
  __syncthreads();
  if (t == 3 && fc::sm90::mbarrier_try_wait_parity(&bar, 1)) log[1 + atomicAdd(&log[0], 1)] = 4;
  __syncthreads();
  for (int round = 0; round < 2; ++round) {
    const int e = 10 * round;
    if (t == 0) {
      log[1 + atomicAdd(&log[0], 1)] = e + 1;
      fc::sm90::mbarrier_arrive_expect_tx(&bar, 64);
    } else if (t == 1) {
      log[1 + atomicAdd(&log[0], 1)] = e + 2;
      fc::sm90::mbarrier_complete_tx(&bar, 32);
    } else if (t == 2) {
      log[1 + atomicAdd(&log[0], 1)] = e + 3;
      fc::sm90::mbarrier_complete_tx(&bar, second_bytes);
    } else if (t == 3) {
      fc::sm90::mbarrier_wait_parity(&bar, round & 1);
      log[1 + atomicAdd(&log[0], 1)] = e + 5;
    }
    fc::sm90::mbarrier_wait_parity(&bar, round & 1);
    __syncthreads();   // nobody starts the next phase's transactions before everyone saw this one complete
  }
#endif
}

// Thread 0 copies one box at (c0, c1) of the tensor that `map` describes (kernel parameter 0) into
// 1024-aligned shared memory with TMA; every thread waits on the mbarrier and the block writes the box's
// shared-memory bytes to out. wait == 0 (misuse) reads the bytes before the wait (what the copy has not
// written yet) but still waits before the block ends: a CTA must not exit with a bulk copy into its
// shared memory in flight.
__global__ void tma_box(const uint16_t* tensor, const __grid_constant__ fc::sm90::TensorMap map, int c0, int c1,
                        int box_bytes, int wait, uint8_t* out) {
#if defined(FC_SM90_AVAILABLE)
  __shared__ __align__(8) uint64_t bar;
  FC_DYNAMIC_SHARED(uint8_t, smem_raw);
  const uint32_t raw = fc::sm90::shared_address(smem_raw);
  uint8_t* smem = smem_raw + ((1024 - (raw & 1023)) & 1023);
  if (threadIdx.x == 0) {
    fc::sm90::mbarrier_init(&bar, 1);
    fc::sm90::fence_mbarrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    fc::sm90::mbarrier_arrive_expect_tx(&bar, box_bytes);
    fc::sm90::tma_load_2d(smem, &map, c0, c1, &bar);
  }
  if (wait) fc::sm90::mbarrier_wait_parity(&bar, 0);
  for (int i = threadIdx.x; i < box_bytes; i += blockDim.x) out[i] = smem[i];
  if (!wait) fc::sm90::mbarrier_wait_parity(&bar, 0);
  (void)tensor;
#endif
}

// One box of a rank-3..5 tiled map (element strides, zero fill) into shared memory, then copied out.
template <int Rank>
__global__ void tma_box_nd(const uint16_t* tensor, const __grid_constant__ fc::sm90::TensorMap map, int c0, int c1,
                           int c2, int c3, int c4, int box_bytes, int wait, uint8_t* out) {
#if defined(FC_SM90_AVAILABLE)
  __shared__ __align__(8) uint64_t bar;
  FC_DYNAMIC_SHARED(uint8_t, smem_raw);
  const uint32_t raw = fc::sm90::shared_address(smem_raw);
  uint8_t* smem = smem_raw + ((1024 - (raw & 1023)) & 1023);
  if (threadIdx.x == 0) {
    fc::sm90::mbarrier_init(&bar, 1);
    fc::sm90::fence_mbarrier_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    fc::sm90::mbarrier_arrive_expect_tx(&bar, box_bytes);
    if constexpr (Rank == 3) fc::sm90::tma_load_3d(smem, &map, c0, c1, c2, &bar);
    if constexpr (Rank == 4) fc::sm90::tma_load_4d(smem, &map, c0, c1, c2, c3, &bar);
    if constexpr (Rank == 5) fc::sm90::tma_load_5d(smem, &map, c0, c1, c2, c3, c4, &bar);
  }
  if (wait) fc::sm90::mbarrier_wait_parity(&bar, 0);
  for (int i = threadIdx.x; i < box_bytes; i += blockDim.x) out[i] = smem[i];
  if (!wait) fc::sm90::mbarrier_wait_parity(&bar, 0);
  (void)tensor, (void)c3, (void)c4;
#endif
}

}  // namespace fc_sm90_selftest
