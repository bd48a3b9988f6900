// counters.h — memory counters of the instrumented build (counters.cpp): what Nsight Compute counts
// per load/store instruction, computed from the addresses each lane touched.
//
// A warp-level request is one execution of one load/store site by the lanes of a warp: the k-th time
// each lane of the warp reaches that code address (exact without divergence inside the site's loop
// nest; lanes that skip an execution shift their later ones, so divergent loops are approximate).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace fc_emu {
namespace counters {

struct Site {
  uintptr_t pc = 0;
  bool shared = false;            // shared memory (else global)
  bool store = false;
  uint64_t requests = 0;          // warp-level requests      (ncu: *_op_ld / *_op_st requests)
  uint64_t lanes = 0;             // lane accesses (thread-level)
  uint64_t bytes = 0;             // bytes requested by the lanes
  uint64_t sectors = 0;           // global: distinct 32-byte sectors per request, summed
  uint64_t wavefronts = 0;        // shared: wavefronts, bank conflicts included
  uint64_t ideal_wavefronts = 0;  // shared: wavefronts without conflicts (one per phase)
  const char* instruction = nullptr;  // non-null: not a memory site but a kind of executed warp-level
                                      // instruction (a warp collective's name, __syncthreads); requests
                                      // then counts how many a launch executed
};

// Called by the runtime in the instrumented build when a launch asks for counters.
void begin_launch(std::vector<std::pair<const char*, const char*>> global, const char* dyn_lo, const char* dyn_hi,
                  const char* tls_lo, size_t tls_len, unsigned nthreads);
void begin_block();
void set_thread(int linear_thread);
bool active();
void record(const void* p, size_t n, bool store, uintptr_t pc);
void count_instruction(const char* kind, uint64_t warps);   // `warps` warp-level executions of `kind`
std::vector<Site> end_launch();   // flushes the last block; sites sorted by code address, then instructions

}  // namespace counters
}  // namespace fc_emu
