// racecheck.h — the racecheck build's access records (racecheck.cpp), driven by the scheduler.
//
// In that build (FC_EMU_RACECHECK, the kernels' translation unit compiled with -fsanitize=thread)
// every load and store of kernel code calls a __tsan_* hook with its address; the hooks keep the
// accesses that land in the block's shared memory (per barrier interval) or in a global buffer (per
// launch), and fail the launch at the first pair of accesses to the same bytes by different threads
// (shared) or different blocks (global), at least one of them a non-atomic write, naming both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fc_emu {
namespace race {

struct Region {
  const char* begin;
  const char* end;
  std::string name;            // "argument 1 (float*)", "dynamic shared memory"
  size_t elem_size;            // for element numbers in reports (1 for shared memory)
};

// Called by the launcher / scheduler (runtime.cpp) only in the racecheck build.
void begin_launch(std::vector<Region> global, Region dynamic_shared, const char* tls_lo, size_t tls_len, unsigned nthreads);
void begin_block(unsigned linear_block);
void set_thread(int linear_thread);   // the fiber about to run; -1 while the scheduler runs
void barrier();                       // a __syncthreads() was released: a new interval
void syncwarp(unsigned warp);         // a __syncwarp() of this warp completed
void end_launch();

}  // namespace race
}  // namespace fc_emu
