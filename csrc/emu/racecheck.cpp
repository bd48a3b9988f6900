// racecheck.cpp — the racecheck build's memory-access hooks and records (racecheck.h). Compiled
// into every emulator module, but empty unless FC_EMU_RACECHECK is defined.
//
// g++ -fsanitize=thread makes every load and store of the kernels' translation unit call
// __tsan_readN / __tsan_writeN (and _range variants) with the address; this file defines those
// hooks itself (the thread-sanitizer runtime is not linked). Records are per byte:
//   shared memory, per barrier interval: the last writer and two distinct readers (thread, code
//     address, and the warp's __syncwarp count at the time: a __syncwarp orders its own lanes);
//   global memory, per launch: the same with blocks in place of threads, and the writer's
//     __threadfence count, so a read of another block's write is allowed once the writer fenced.
// Atomics are recorded by atomic_rmw (device_functions.h) as one atomic access; two atomics never
// race, an atomic and a plain read do not either (at least one access must be a non-atomic write).
#include "../common/platform.h"
#include "counters.h"
#include "racecheck.h"
#include "symbols.h"

#if defined(FC_EMU_RACECHECK)

#include <unordered_map>

namespace fc_emu {
namespace race {
namespace {

enum Kind : uint8_t { kRead, kWrite, kAtomic };
const char* kind_name(Kind k) { return k == kRead ? "read" : k == kWrite ? "write" : "atomic"; }

struct Access {
  int32_t who = -1;       // thread (shared) or block (global); -1: none
  uint32_t thread = 0;    // linear thread index
  uint32_t epoch = 0;     // shared: the warp's __syncwarp count; global: the thread's fence count
  uintptr_t pc = 0;
  Kind kind = kRead;
};

struct Record {
  Access w, r1, r2;       // last writer (plain or atomic), two distinct readers
};

struct State {
  bool active = false;
  std::vector<Region> global;
  Region dyn{nullptr, nullptr, "", 1};
  const char* tls_lo = nullptr;
  size_t tls_len = 0;
  int thread = -1;
  unsigned block = 0;
  std::vector<uint32_t> warp_epoch;
  std::unordered_map<uintptr_t, Record> shared, global_records;
  std::unordered_map<uint64_t, uint32_t> fences;   // (block << 32 | thread) -> __threadfence() count
};
State S;

std::string thread_str(uint32_t t) {
  char b[64];
  std::snprintf(b, sizeof b, "(%u,%u,%u)", t % g_block_dim.x, t / g_block_dim.x % g_block_dim.y, t / g_block_dim.x / g_block_dim.y);
  return b;
}

std::string block_str(uint32_t b) {
  char s[64];
  std::snprintf(s, sizeof s, "(%u,%u,%u)", b % g_grid_dim.x, b / g_grid_dim.x % g_grid_dim.y, b / g_grid_dim.x / g_grid_dim.y);
  return s;
}

std::string site_str(uintptr_t pc) { return module_symbols().site_token(pc); }

std::string where_shared(uintptr_t a) {
  const char* p = reinterpret_cast<const char*>(a);
  char b[96];
  if (p >= S.dyn.begin && p < S.dyn.end) {
    std::snprintf(b, sizeof b, "dynamic shared memory, byte offset %td", p - S.dyn.begin);
    return b;
  }
  const size_t off = static_cast<size_t>(p - S.tls_lo);
  const ModuleSymbols::Array* arr = module_symbols().array_at(off);
  if (!arr) return "static shared memory";
  std::snprintf(b, sizeof b, ", byte offset %zu", off - arr->begin);
  return "static __shared__ " + arr->name + b;
}

std::string where_global(const Region& g, uintptr_t a) {
  const long long off = reinterpret_cast<const char*>(a) - g.begin;
  char b[96];
  std::snprintf(b, sizeof b, ", element %lld (byte offset %lld)", off / static_cast<long long>(g.elem_size), off);
  return g.name + b;
}

[[noreturn]] void report_shared(uintptr_t a, const Access& first, const Access& second) {
  fail("data race in shared memory on %s: %s by thread %s at %s and %s by thread %s at %s, with no __syncthreads() "
       "between them", where_shared(a).c_str(), kind_name(first.kind), thread_str(first.thread).c_str(), site_str(first.pc).c_str(),
       kind_name(second.kind), thread_str(second.thread).c_str(), site_str(second.pc).c_str());
}

[[noreturn]] void report_global(const Region& g, uintptr_t a, const Access& first, const Access& second, const char* why) {
  fail("data race in global memory on %s: %s by block %s thread %s at %s and %s by block %s thread %s at %s (%s)",
       where_global(g, a).c_str(), kind_name(first.kind), block_str(first.who).c_str(), thread_str(first.thread).c_str(),
       site_str(first.pc).c_str(), kind_name(second.kind), block_str(second.who).c_str(), thread_str(second.thread).c_str(),
       site_str(second.pc).c_str(), why);
}

void remember(Record& r, const Access& me) {
  if (me.kind == kRead) {
    if (r.r1.who < 0 || r.r1.who == me.who) r.r1 = me;
    else if (r.r2.who < 0 || r.r2.who == me.who) r.r2 = me;
  } else {
    r.w = me;
  }
}

void on_shared(uintptr_t a, size_t n, Kind k, uintptr_t pc) {
  const unsigned warp = static_cast<unsigned>(S.thread) / 32;
  const Access me{S.thread, static_cast<uint32_t>(S.thread), S.warp_epoch[warp], pc, k};
  // Another thread's access, not ordered by a __syncwarp of a warp both belong to.
  auto unordered = [&](const Access& x) {
    return x.who >= 0 && x.who != me.who && !(x.thread / 32 == warp && x.epoch < S.warp_epoch[warp]);
  };
  for (size_t i = 0; i < n; ++i) {
    Record& r = S.shared[a + i];
    if (unordered(r.w) && (r.w.kind == kWrite || k == kWrite)) report_shared(a + i, r.w, me);
    if (k == kWrite) {
      if (unordered(r.r1)) report_shared(a + i, r.r1, me);
      if (unordered(r.r2)) report_shared(a + i, r.r2, me);
    }
    remember(r, me);
  }
}

void on_global(const Region& g, uintptr_t a, size_t n, Kind k, uintptr_t pc) {
  const uint64_t key = static_cast<uint64_t>(S.block) << 32 | static_cast<uint32_t>(S.thread);
  const Access me{static_cast<int32_t>(S.block), static_cast<uint32_t>(S.thread), S.fences[key], pc, k};
  auto other = [&](const Access& x) { return x.who >= 0 && x.who != me.who; };
  for (size_t i = 0; i < n; ++i) {
    Record& r = S.global_records[a + i];
    if (other(r.w) && (r.w.kind == kWrite || k == kWrite)) {
      const uint64_t wkey = static_cast<uint64_t>(r.w.who) << 32 | r.w.thread;
      const bool published = k == kRead && S.fences[wkey] > r.w.epoch;
      if (!published)
        report_global(g, a + i, r.w, me,
                      k == kRead ? "the writing thread ran no __threadfence() after its write, so no block may rely on "
                                   "reading it: blocks of one launch are not ordered"
                                 : "blocks of one launch are not ordered: use an atomic, or give each block its own elements");
    }
    if (k == kWrite) {
      if (other(r.r1)) report_global(g, a + i, r.r1, me, "blocks of one launch are not ordered: the read may see either value");
      if (other(r.r2)) report_global(g, a + i, r.r2, me, "blocks of one launch are not ordered: the read may see either value");
    }
    remember(r, me);
  }
}

void on_access(const void* p, size_t n, Kind k, const void* pc_ptr) {
  if (counters::active()) return counters::record(p, n, k != kRead, reinterpret_cast<uintptr_t>(pc_ptr));
  if (!S.active || S.thread < 0) return;
  const char* c = static_cast<const char*>(p);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p), pc = reinterpret_cast<uintptr_t>(pc_ptr);
  if ((c >= S.dyn.begin && c < S.dyn.end) || (c >= S.tls_lo && c < S.tls_lo + S.tls_len)) return on_shared(a, n, k, pc);
  for (const Region& g : S.global)
    if (c >= g.begin && c < g.end) return on_global(g, a, n, k, pc);
}

}  // namespace

void begin_launch(std::vector<Region> global, Region dynamic_shared, const char* tls_lo, size_t tls_len, unsigned nthreads) {
  S = State{};
  S.global = std::move(global);
  S.dyn = std::move(dynamic_shared);
  S.tls_lo = tls_lo;
  S.tls_len = tls_len;
  S.warp_epoch.assign((nthreads + 31) / 32, 0);
  S.active = true;
}

void begin_block(unsigned linear_block) {
  S.block = linear_block;
  S.shared.clear();
  std::fill(S.warp_epoch.begin(), S.warp_epoch.end(), 0);
}

void set_thread(int linear_thread) { S.thread = linear_thread; }
void barrier() { S.shared.clear(); }
void syncwarp(unsigned warp) { ++S.warp_epoch[warp]; }

void end_launch() { S = State{}; }

}  // namespace race

void race_atomic(const void* address, size_t size, const void* pc) { race::on_access(address, size, race::kAtomic, pc); }

void race_fence() {
  if (race::S.active && race::S.thread >= 0) ++race::S.fences[static_cast<uint64_t>(race::S.block) << 32 | static_cast<uint32_t>(race::S.thread)];
}

}  // namespace fc_emu

// ---- the thread-sanitizer instrumentation's entry points ------------------------------------------
#define FC_RACE_HOOK(name, n, kind)                                                                            \
  extern "C" __attribute__((visibility("default"), noinline)) void name(void* p) {                            \
    fc_emu::race::on_access(p, n, fc_emu::race::kind, __builtin_return_address(0));                            \
  }
#define FC_RACE_HOOKS(n)                                  \
  FC_RACE_HOOK(__tsan_read##n, n, kRead)                  \
  FC_RACE_HOOK(__tsan_write##n, n, kWrite)                \
  FC_RACE_HOOK(__tsan_unaligned_read##n, n, kRead)        \
  FC_RACE_HOOK(__tsan_unaligned_write##n, n, kWrite)      \
  FC_RACE_HOOK(__tsan_volatile_read##n, n, kRead)         \
  FC_RACE_HOOK(__tsan_volatile_write##n, n, kWrite)
FC_RACE_HOOK(__tsan_read1, 1, kRead)
FC_RACE_HOOK(__tsan_write1, 1, kWrite)
FC_RACE_HOOK(__tsan_volatile_read1, 1, kRead)
FC_RACE_HOOK(__tsan_volatile_write1, 1, kWrite)
FC_RACE_HOOKS(2)
FC_RACE_HOOKS(4)
FC_RACE_HOOKS(8)
FC_RACE_HOOKS(16)

extern "C" {
__attribute__((visibility("default"), noinline)) void __tsan_read_range(void* p, unsigned long n) {
  fc_emu::race::on_access(p, n, fc_emu::race::kRead, __builtin_return_address(0));
}
__attribute__((visibility("default"), noinline)) void __tsan_write_range(void* p, unsigned long n) {
  fc_emu::race::on_access(p, n, fc_emu::race::kWrite, __builtin_return_address(0));
}
__attribute__((visibility("default"))) void __tsan_init() {}
__attribute__((visibility("default"))) void __tsan_func_entry(void*) {}
__attribute__((visibility("default"))) void __tsan_func_exit() {}
__attribute__((visibility("default"))) void __tsan_vptr_read(void**) {}
__attribute__((visibility("default"))) void __tsan_vptr_update(void**, void*) {}
}

#endif  // FC_EMU_RACECHECK
