// emu.h — the CUDA device vocabulary for g++: what csrc/common/platform.h includes when
// FASTCONV_EMULATOR is defined, so that the same device source that nvcc and NVRTC compile runs on
// the CPU SIMT emulator (csrc/emu/runtime.cpp). See csrc/emu/README.md for what is emulated.
//
// Model in one paragraph: every CUDA thread is a fiber; the blocks of a launch run one after another
// on one OS thread; inside a block the scheduler runs each ready thread until it blocks (barrier,
// warp collective) or exits, in forward, reverse or seeded-random order. threadIdx & co. are globals
// the scheduler sets before it resumes a thread. Because only one fiber runs at a time, atomics are
// plain read-modify-writes and there is no memory model to emulate.
#pragma once

#if !defined(FASTCONV_EMULATOR)
#  error "csrc/emu/emu.h is for the g++ emulator build (define FASTCONV_EMULATOR)"
#endif

#include <cassert>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <math.h>
#include <type_traits>

// ---- CUDA qualifiers --------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __managed__
#define __grid_constant__
#define __forceinline__ inline
// __noinline__ is not defined: libstdc++ spells __attribute__((__noinline__)) itself.
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
// Static shared memory is thread-local storage of the worker OS thread that runs all fibers of a
// launch: one instance for all threads of a block (they are fibers of that OS thread). Each
// declaration also declares a 64-byte pad and tells the runtime it was reached: the first thread of
// a block to reach it poisons that function's static shared memory (only what the launched kernel
// uses is poisoned), and the pad, which g++ lays out right after the array, is its guard (runtime.cpp,
// symbols.cpp). Dynamic shared memory: FC_DYNAMIC_SHARED below.
#define FC_EMU_SHARED_CAT_(a, b) a##b
#define FC_EMU_SHARED_CAT(a, b) FC_EMU_SHARED_CAT_(a, b)
#define FC_EMU_SHARED_(pad)                                                          \
  static thread_local __attribute__((used)) unsigned char pad[::fc_emu::kSharedPadBytes]; \
  ::fc_emu::shared_reached(pad);                                                        \
  static thread_local
#define __shared__ FC_EMU_SHARED_(FC_EMU_SHARED_CAT(fc_emu_shared_pad_, __COUNTER__))
// __restrict__ is understood by g++ as is.

namespace fc_emu {

// A source location, captured with default arguments at the call site of an intrinsic, so that
// errors name the line in the kernel (e.g. which __syncthreads() a thread waits at).
struct Site {
  const char* file;
  unsigned line;
  static Site here(const char* f = __builtin_FILE(), unsigned l = __builtin_LINE()) { return {f, l}; }
};

}  // namespace fc_emu

#include "vector_types.h"

namespace fc_emu {

// ---- runtime entry points (runtime.cpp) ---------------------------------------------------------
// Index variables of the running thread; the scheduler writes them before resuming a fiber.
extern uint3 g_thread_idx;
extern uint3 g_block_idx;
extern dim3 g_block_dim;
extern dim3 g_grid_dim;

// Report a kernel error (EmulatorError naming kernel, block and thread). From a fiber it abandons
// the launch; from the scheduler (a warp-collective resolver) it throws. printf-style.
[[noreturn]] void fail(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

enum BarrierKind { kBarSync = 0, kBarCount = 1, kBarAnd = 2, kBarOr = 3 };
// Block-wide barrier; returns the reduction of `pred` over the block for count/and/or.
int block_barrier(int kind, int pred, Site site);

// Warp collectives. A lane deposits a pointer to its operands and waits; once every lane named in
// `mask` (that exists in the block) waits at a collective with the same resolver and mask, the
// scheduler calls resolve(lane_data, participants) with lane_data[l] = lane l's pointer (nullptr
// for non-participants) and releases the lanes. The resolver writes each lane's results through
// its pointer. Lanes that exit, wait at a barrier or at another collective are reported.
typedef void (*WarpResolver)(void* const lane_data[32], unsigned participants);
void warp_collective(unsigned mask, WarpResolver resolve, const char* name, void* lane_data, Site site);
unsigned active_mask();    // lanes of the caller's warp that exist and have not exited

void* dynamic_shared_memory();
// Static __shared__ declarations (the macro above): every thread reaching one calls this with the
// declaration's pad.
constexpr size_t kSharedPadBytes = 64;
void shared_reached(const unsigned char* pad);
// fail() unless [p, p+n) lies in the block's static or dynamic shared memory.
void check_shared(const void* p, size_t n, const char* what, Site site);

// cp.async bookkeeping (per thread): the copy is performed when a wait releases its group.
void cp_async(void* smem_dst, const void* gmem_src, unsigned cp_size, unsigned src_size, const char* what,
              Site site);
void cp_async_commit();
void cp_async_wait(unsigned n_pending_allowed);
bool poison_async();

// ---- Hopper asynchronous machinery (csrc/arch/sm90/primitives.h) ---------------------------------
// A blocking wait on a condition: the thread sleeps until ready(ctx) is true (checked by the
// scheduler); if no thread can run any more and it is still false, the launch fails with
// describe(ctx) (a deadlock is reported, never a hang). Used for mbarrier.try_wait.
typedef bool (*PollFn)(const void* ctx);
typedef void (*DescribeFn)(const void* ctx, char* buf, size_t n);
void wait_until(PollFn ready, DescribeFn describe, const void* ctx, const char* name, Site site);

// mbarrier state (PTX ISA "Parallel Synchronization and Communication Instructions: mbarrier"),
// kept beside the 8-byte object in shared memory: the object holds a marker written by init, so a
// barrier that was never initialised (poisoned shared memory) or overwritten is reported.
struct MBarrierState {
  uint32_t expected = 0;   // arrival count of each phase (init's count)
  uint32_t pending = 0;    // arrivals still missing in the current phase
  int64_t tx = 0;          // transaction bytes still expected (expect_tx adds, complete_tx subtracts)
  uint32_t phase = 0;      // number of completed phases; the current phase's parity is phase & 1
};
constexpr uint64_t kMBarrierMarker = 0x4d4241525249455aull;   // "ZEIRRABM"
MBarrierState& mbarrier_init_state(void* bar, uint32_t count, Site site);
MBarrierState& mbarrier_state(const void* bar, const char* what, Site site);
// For deferred work, which runs in the scheduler: nullptr if bar holds no initialised mbarrier.
MBarrierState* mbarrier_lookup(const void* bar);
// The current phase completes once every arrival and every expected transaction byte has come.
inline void mbarrier_maybe_complete(MBarrierState& s) {
  if (s.pending == 0 && s.tx == 0) {
    ++s.phase;
    s.pending = s.expected;
  }
}

// Work that completes asynchronously (a bulk tensor copy): queued, and run by the scheduler only
// when no thread of the block can run, i.e. as late as any GPU could finish it, so a read that
// does not wait for it sees the old contents. `ctx` (n bytes) is copied. Pending work at block
// exit is an error (the copy would land in a finished block's shared memory).
void defer_async(void (*run)(const void* ctx), const void* ctx, size_t n, const char* what, Site site);

// Per-thread queues of asynchronous operations in commit groups (wgmma.mma_async): push appends
// an op (n bytes, copied) to the uncommitted list, commit closes a group, pop_groups moves the
// ops of all but the newest `keep` committed groups (oldest first) into `out`.
void async_push(const void* op, size_t n);
void async_commit();
size_t async_pop_groups(unsigned keep, void* out, size_t capacity, size_t op_bytes);

// Proxies (PTX ISA "Memory Consistency Model: Proxies"): wgmma and TMA access shared memory through the
// async proxy, which sees a generic-proxy store only after a fence.proxy.async. The runtime keeps the
// dynamic shared memory as the async proxy last saw it: a fence (by any thread: coarser than the GPU's
// per-thread rule) and async-proxy writes (TMA) update it; an async-proxy read of bytes that differ from
// it read a generic store that no fence made visible, and fails.
void async_proxy_fence();
void async_proxy_wrote(uint32_t offset, size_t n);
void async_proxy_check(uint32_t offset, size_t n, const char* what, Site site);

// Shared-window addresses: offset of p in the block's dynamic shared memory (what the GPU's
// __cvta_generic_to_shared gives, up to a constant), and back. The wgmma descriptors and the TMA
// swizzle are computed on these offsets; operands must lie in dynamic shared memory.
uint32_t shared_offset(const void* p, const char* what, Site site);
char* shared_pointer(uint32_t offset, size_t n, const char* what, Site site);

// The value of pointer parameter `index` of the running kernel (an emulated tensor map names its
// global tensor by the kernel parameter that carries it, since the host cannot know the address).
void* kernel_pointer_param(int index, const char* what, Site site);

unsigned long long clock_counter();

// The poison pattern, placed by address modulo 8: every 4-byte word is 0x7fa5ffa5, a signalling NaN
// as float32 whose halves are NaN as float16 and signalling NaN as bfloat16. Any arithmetic on a
// signalling NaN sets its quiet bit, so a value computed from a guard and stored back into one
// differs from the pattern. Guard zones, uninitialised shared memory and cp.async destinations in
// poison mode are filled with it (global buffers: a variant per argument and dtype, float64 ones a
// signalling float64 NaN, runtime.cpp poison_pattern()). A float64 read from shared poison is
// 5.6e306, not a NaN: float32 NaN in every word and float64 NaN in 8 bytes exclude each other.
constexpr uint32_t kPoisonWord = 0x7fa5ffa5u;
constexpr uint64_t kPoison64 = 0x7fa5ffa57fa5ffa5ull;
void poison_fill(void* p, size_t n);

template <class To, class From>
inline To bit_cast(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast: sizes differ");
  To to;
  std::memcpy(&to, &from, sizeof(To));
  return to;
}

}  // namespace fc_emu

// ---- built-in variables ---------------------------------------------------------------------------
inline const uint3& threadIdx = fc_emu::g_thread_idx;
inline const uint3& blockIdx = fc_emu::g_block_idx;
inline const dim3& blockDim = fc_emu::g_block_dim;
inline const dim3& gridDim = fc_emu::g_grid_dim;
inline constexpr int warpSize = 32;

// Dynamic shared memory (`extern __shared__` has no g++ equivalent): sized by the launch's
// shared_bytes, 256-byte aligned, poisoned at every block start and guarded (a write past
// shared_bytes faults in a read-only guard page, or is found in the guard's last partial page).
#define FC_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(::fc_emu::dynamic_shared_memory())

// ---- barriers ------------------------------------------------------------------------------------
inline void __syncthreads(fc_emu::Site s = fc_emu::Site::here()) { fc_emu::block_barrier(fc_emu::kBarSync, 0, s); }
inline int __syncthreads_count(int pred, fc_emu::Site s = fc_emu::Site::here()) {
  return fc_emu::block_barrier(fc_emu::kBarCount, pred, s);
}
inline int __syncthreads_and(int pred, fc_emu::Site s = fc_emu::Site::here()) {
  return fc_emu::block_barrier(fc_emu::kBarAnd, pred, s);
}
inline int __syncthreads_or(int pred, fc_emu::Site s = fc_emu::Site::here()) {
  return fc_emu::block_barrier(fc_emu::kBarOr, pred, s);
}
// One fiber runs at a time and every write is visible at once: fences have nothing to order. The
// racecheck build records them: a block may read another block's write only if the writing thread
// fenced after it (the "last block done" pattern).
#if defined(FC_EMU_RACECHECK)
namespace fc_emu { void race_fence(); }
inline void __threadfence() { fc_emu::race_fence(); }
#else
inline void __threadfence() {}
#endif
inline void __threadfence_block() {}
inline void __threadfence_system() {}
inline void __nanosleep(unsigned) {}
inline long long clock64() { return static_cast<long long>(fc_emu::clock_counter()); }
[[noreturn]] inline void __trap() { fc_emu::fail("__trap() called"); }
[[noreturn]] inline void __brkpt() { fc_emu::fail("__brkpt() called"); }

// Device-side assert: a failing assert() reports an EmulatorError (the GPU traps) instead of
// aborting the Python process.
namespace fc_emu {
[[noreturn]] inline void assert_fail(const char* expr, const char* file, unsigned line) {
  fail("assertion `%s` failed at %s:%u", expr, file, line);
}
}  // namespace fc_emu
#undef assert
#define assert(e) ((e) ? (void)0 : ::fc_emu::assert_fail(#e, __FILE__, __LINE__))

#include "fp16.h"
#include "warp.h"
#include "device_functions.h"
