// counters.cpp — see counters.h. Global memory: the distinct 32-byte sectors a request touches.
// Shared memory: 32 banks of 4 bytes; a request is served in phases (32 lanes for accesses of up to
// 4 bytes, 16 for 8-byte and 8 for 16-byte accesses: 128 bytes per phase), and a phase takes as many
// wavefronts as the most distinct 4-byte words any one bank holds among its lanes' accesses (the
// same word read by several lanes is one: a broadcast). Compiled into every emulator module, empty
// unless FC_EMU_RACECHECK (the instrumented build) is defined.
#include "counters.h"

#if defined(FC_EMU_RACECHECK)

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <unordered_map>

namespace fc_emu {
namespace counters {
namespace {

struct Lane {
  unsigned lane;
  uintptr_t addr;
  uint32_t size;
};

struct Group {
  bool shared = false, store = false;
  std::vector<Lane> lanes;
};

struct State {
  bool active = false;
  std::vector<std::pair<const char*, const char*>> global;
  const char *dyn_lo = nullptr, *dyn_hi = nullptr, *tls_lo = nullptr;
  size_t tls_len = 0;
  int thread = -1;
  std::vector<std::unordered_map<uintptr_t, uint32_t>> occurrence;   // per thread: executions per site
  std::map<std::tuple<unsigned, uintptr_t, uint32_t>, Group> groups;  // (warp, site, occurrence)
  std::map<std::pair<uintptr_t, int>, Site> sites;                   // (site, shared*2+store)
  std::map<std::string, uint64_t> instructions;                      // kind -> warp-level executions
};
State S;

uint64_t shared_wavefronts(const std::vector<Lane>& lanes, uint64_t* ideal) {
  uint32_t size = 0;
  for (const Lane& l : lanes) size = std::max(size, l.size);
  const unsigned per_phase = size <= 4 ? 32 : size <= 8 ? 16 : 8;
  std::map<unsigned, std::vector<const Lane*>> phases;
  for (const Lane& l : lanes) phases[l.lane / per_phase].push_back(&l);
  uint64_t total = 0;
  for (const auto& ph : phases) {
    std::set<uintptr_t> words[32];
    for (const Lane* l : ph.second)
      for (uintptr_t w = l->addr / 4; w <= (l->addr + l->size - 1) / 4; ++w) words[w % 32].insert(w);
    size_t most = 1;
    for (const auto& b : words) most = std::max(most, b.size());
    total += most;
  }
  *ideal += phases.size();
  return total;
}

void flush() {
  for (const auto& g : S.groups) {
    const uintptr_t pc = std::get<1>(g.first);
    Site& s = S.sites[{pc, g.second.shared * 2 + g.second.store}];
    s.pc = pc;
    s.shared = g.second.shared;
    s.store = g.second.store;
    ++s.requests;
    s.lanes += g.second.lanes.size();
    for (const Lane& l : g.second.lanes) s.bytes += l.size;
    if (g.second.shared) {
      s.wavefronts += shared_wavefronts(g.second.lanes, &s.ideal_wavefronts);
    } else {
      std::set<uintptr_t> sectors;
      for (const Lane& l : g.second.lanes)
        for (uintptr_t sec = l.addr / 32; sec <= (l.addr + l.size - 1) / 32; ++sec) sectors.insert(sec);
      s.sectors += sectors.size();
    }
  }
  S.groups.clear();
}

}  // namespace

void begin_launch(std::vector<std::pair<const char*, const char*>> global, const char* dyn_lo, const char* dyn_hi,
                  const char* tls_lo, size_t tls_len, unsigned nthreads) {
  S = State{};
  S.global = std::move(global);
  S.dyn_lo = dyn_lo;
  S.dyn_hi = dyn_hi;
  S.tls_lo = tls_lo;
  S.tls_len = tls_len;
  S.occurrence.resize(nthreads);
  S.active = true;
}

void begin_block() {
  flush();
  for (auto& m : S.occurrence) m.clear();
}

void set_thread(int t) { S.thread = t; }
bool active() { return S.active; }

void record(const void* p, size_t n, bool store, uintptr_t pc) {
  if (!S.active || S.thread < 0 || n == 0) return;
  const char* c = static_cast<const char*>(p);
  const bool shared = (c >= S.dyn_lo && c < S.dyn_hi) || (c >= S.tls_lo && c < S.tls_lo + S.tls_len);
  bool global = false;
  for (const auto& g : S.global) global = global || (c >= g.first && c < g.second);
  if (!shared && !global) return;
  const unsigned t = static_cast<unsigned>(S.thread);
  const uint32_t k = S.occurrence[t][pc]++;
  Group& g = S.groups[{t / 32, pc, k}];
  g.shared = shared;
  g.store = store;
  g.lanes.push_back({t % 32, reinterpret_cast<uintptr_t>(p), static_cast<uint32_t>(n)});
}

void count_instruction(const char* kind, uint64_t warps) {
  if (S.active) S.instructions[kind] += warps;
}

std::vector<Site> end_launch() {
  flush();
  std::vector<Site> out;
  for (const auto& s : S.sites) out.push_back(s.second);
  static std::set<std::string> kinds;   // the names outlive the launch
  for (const auto& i : S.instructions) {
    Site s;
    s.instruction = kinds.insert(i.first).first->c_str();
    s.requests = i.second;
    out.push_back(s);
  }
  S = State{};
  return out;
}

}  // namespace counters
}  // namespace fc_emu

#endif  // FC_EMU_RACECHECK
