// warp.h — warp-level intrinsics for the emulator. Each is a warp collective (emu.h): every lane
// named in `mask` that exists in the block must arrive at the same intrinsic with the same mask,
// or the launch fails with the lanes that did not (exited, at a barrier, at another collective).
#pragma once

namespace fc_emu {
namespace warp_detail {

using ::fc_emu::kPoison64;

// shfl.sync, PTX ISA "Data Movement and Conversion Instructions: shfl.sync" (§9.7.9.6 in PTX ISA
// 8.5; the number shifts between versions). With b the lane operand and c the clamp/segment
// operand, for each lane:
//   segmask = c[12:8]; maxLane = (lane & segmask) | (c[4:0] & ~segmask); minLane = lane & segmask
//   up:   j = lane - b;   valid = j >= maxLane        down: j = lane + b;  valid = j <= maxLane
//   bfly: j = lane ^ b;   valid = j <= maxLane        idx:  j = minLane | (b[4:0] & ~segmask); valid = j <= maxLane
//   if !valid: j = lane (the lane keeps its own value)
// Reading a lane that does not take part (not in the mask, or not in the block) is undefined:
// the emulator returns the poison pattern (NaN for floats).
enum ShflMode { kShflIdx, kShflUp, kShflDown, kShflBfly };
struct ShflLane { uint64_t value; int b; int c; uint64_t result; };

template <int MODE>
void resolve_shfl(void* const lanes[32], unsigned participants) {
  for (int lane = 0; lane < 32; ++lane) {
    if (!(participants >> lane & 1u)) continue;
    ShflLane& me = *static_cast<ShflLane*>(lanes[lane]);
    const int bval = me.b & 31, cval = me.c & 31, segmask = (me.c >> 8) & 31;
    const int max_lane = (lane & segmask) | (cval & ~segmask), min_lane = lane & segmask;
    int j = lane;
    bool valid = false;
    switch (MODE) {
      case kShflIdx: j = min_lane | (bval & ~segmask); valid = j <= max_lane; break;
      case kShflUp: j = lane - bval; valid = j >= max_lane; break;
      case kShflDown: j = lane + bval; valid = j <= max_lane; break;
      case kShflBfly: j = lane ^ bval; valid = j <= max_lane; break;
    }
    if (!valid) j = lane;
    me.result = (j >= 0 && j < 32 && (participants >> j & 1u)) ? static_cast<ShflLane*>(lanes[j])->value : kPoison64;
  }
}

// CUDA's __shfl*_sync(mask, var, b, width) pass c = ((32 - width) << 8) | clamp, clamp = 0 for up
// and 31 otherwise (CUDA C++ Programming Guide, "Warp Shuffle Functions").
template <int MODE, class T>
inline T shfl(unsigned mask, T var, int b, int width, const char* name, Site site) {
  static_assert(std::is_trivially_copyable<T>::value && (sizeof(T) == 1 || sizeof(T) == 2 || sizeof(T) == 4 || sizeof(T) == 8),
                "warp shuffles take a trivially copyable value of 1, 2, 4 or 8 bytes");
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    fail("%s: width %d is not a power of two in [1, 32] (%s:%u)", name, width, site.file, site.line);
  ShflLane me{0, b, ((32 - width) << 8) | (MODE == kShflUp ? 0 : 31), 0};
  std::memcpy(&me.value, &var, sizeof(T));
  warp_collective(mask, &resolve_shfl<MODE>, name, &me, site);
  T out;
  std::memcpy(&out, &me.result, sizeof(T));
  return out;
}

struct VoteLane { int pred; unsigned result; };
inline unsigned ballot_of(void* const lanes[32], unsigned participants) {
  unsigned b = 0;
  for (int l = 0; l < 32; ++l)
    if ((participants >> l & 1u) && static_cast<VoteLane*>(lanes[l])->pred) b |= 1u << l;
  return b;
}
inline void set_all(void* const lanes[32], unsigned participants, unsigned v) {
  for (int l = 0; l < 32; ++l)
    if (participants >> l & 1u) static_cast<VoteLane*>(lanes[l])->result = v;
}
inline void resolve_ballot(void* const lanes[32], unsigned p) { set_all(lanes, p, ballot_of(lanes, p)); }
inline void resolve_any(void* const lanes[32], unsigned p) { set_all(lanes, p, ballot_of(lanes, p) != 0); }
inline void resolve_all(void* const lanes[32], unsigned p) { set_all(lanes, p, ballot_of(lanes, p) == p); }
inline void resolve_syncwarp(void* const*, unsigned) {}

inline unsigned vote(unsigned mask, int pred, WarpResolver r, const char* name, Site site) {
  VoteLane me{pred != 0, 0};
  warp_collective(mask, r, name, &me, site);
  return me.result;
}

struct MatchLane { uint64_t value; unsigned result; int all_equal; };
inline void resolve_match(void* const lanes[32], unsigned p) {
  bool all = true;
  for (int l = 0; l < 32; ++l) {
    if (!(p >> l & 1u)) continue;
    MatchLane& me = *static_cast<MatchLane*>(lanes[l]);
    me.result = 0;
    for (int k = 0; k < 32; ++k)
      if ((p >> k & 1u) && static_cast<MatchLane*>(lanes[k])->value == me.value) me.result |= 1u << k;
    all = all && me.result == p;
  }
  for (int l = 0; l < 32; ++l)
    if (p >> l & 1u) static_cast<MatchLane*>(lanes[l])->all_equal = all;
}
template <class T>
inline MatchLane match(unsigned mask, T value, const char* name, Site site) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "__match_*_sync takes a 32- or 64-bit value");
  MatchLane me{0, 0, 0};
  std::memcpy(&me.value, &value, sizeof(T));
  warp_collective(mask, &resolve_match, name, &me, site);
  return me;
}

// __reduce_*_sync (sm_80 redux.sync): the result over all participating lanes.
enum ReduceOp { kRedAdd, kRedMin, kRedMax, kRedAnd, kRedOr, kRedXor };
struct ReduceLane { uint32_t value; uint32_t result; };
template <int OP, bool SIGNED>
void resolve_reduce(void* const lanes[32], unsigned p) {
  bool first = true;
  uint32_t acc = 0;
  for (int l = 0; l < 32; ++l) {
    if (!(p >> l & 1u)) continue;
    const uint32_t v = static_cast<ReduceLane*>(lanes[l])->value;
    if (first) { acc = v; first = false; continue; }
    switch (OP) {
      case kRedAdd: acc += v; break;
      case kRedMin: acc = SIGNED ? (static_cast<int32_t>(v) < static_cast<int32_t>(acc) ? v : acc) : (v < acc ? v : acc); break;
      case kRedMax: acc = SIGNED ? (static_cast<int32_t>(v) > static_cast<int32_t>(acc) ? v : acc) : (v > acc ? v : acc); break;
      case kRedAnd: acc &= v; break;
      case kRedOr: acc |= v; break;
      case kRedXor: acc ^= v; break;
    }
  }
  for (int l = 0; l < 32; ++l)
    if (p >> l & 1u) static_cast<ReduceLane*>(lanes[l])->result = acc;
}
template <int OP, bool SIGNED>
inline uint32_t reduce(unsigned mask, uint32_t v, const char* name, Site site) {
  ReduceLane me{v, 0};
  warp_collective(mask, &resolve_reduce<OP, SIGNED>, name, &me, site);
  return me.result;
}

}  // namespace warp_detail
}  // namespace fc_emu

template <class T>
inline T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, fc_emu::Site s = fc_emu::Site::here()) {
  return fc_emu::warp_detail::shfl<fc_emu::warp_detail::kShflIdx>(mask, var, srcLane, width, "__shfl_sync", s);
}
template <class T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, fc_emu::Site s = fc_emu::Site::here()) {
  return fc_emu::warp_detail::shfl<fc_emu::warp_detail::kShflUp>(mask, var, static_cast<int>(delta), width, "__shfl_up_sync", s);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, fc_emu::Site s = fc_emu::Site::here()) {
  return fc_emu::warp_detail::shfl<fc_emu::warp_detail::kShflDown>(mask, var, static_cast<int>(delta), width, "__shfl_down_sync", s);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize, fc_emu::Site s = fc_emu::Site::here()) {
  return fc_emu::warp_detail::shfl<fc_emu::warp_detail::kShflBfly>(mask, var, laneMask, width, "__shfl_xor_sync", s);
}

inline unsigned __ballot_sync(unsigned mask, int pred, fc_emu::Site s = fc_emu::Site::here()) {
  return fc_emu::warp_detail::vote(mask, pred, &fc_emu::warp_detail::resolve_ballot, "__ballot_sync", s);
}
inline int __any_sync(unsigned mask, int pred, fc_emu::Site s = fc_emu::Site::here()) {
  return static_cast<int>(fc_emu::warp_detail::vote(mask, pred, &fc_emu::warp_detail::resolve_any, "__any_sync", s));
}
inline int __all_sync(unsigned mask, int pred, fc_emu::Site s = fc_emu::Site::here()) {
  return static_cast<int>(fc_emu::warp_detail::vote(mask, pred, &fc_emu::warp_detail::resolve_all, "__all_sync", s));
}
inline void __syncwarp(unsigned mask = 0xffffffffu, fc_emu::Site s = fc_emu::Site::here()) {
  fc_emu::warp_detail::vote(mask, 0, &fc_emu::warp_detail::resolve_syncwarp, "__syncwarp", s);
}
// Lanes of the caller's warp that exist and have not exited. The emulator has no notion of which
// lanes are converged at this instruction, so divergent code that feeds __activemask() into a
// *_sync intrinsic is reported when the other branch's lanes never arrive.
inline unsigned __activemask() { return fc_emu::active_mask(); }

template <class T>
inline unsigned __match_any_sync(unsigned mask, T value, fc_emu::Site s = fc_emu::Site::here()) {
  return fc_emu::warp_detail::match(mask, value, "__match_any_sync", s).result;
}
template <class T>
inline unsigned __match_all_sync(unsigned mask, T value, int* pred, fc_emu::Site s = fc_emu::Site::here()) {
  const fc_emu::warp_detail::MatchLane r = fc_emu::warp_detail::match(mask, value, "__match_all_sync", s);
  *pred = r.all_equal;
  return r.all_equal ? mask : 0u;
}

#define FC_EMU_REDUCE(fname, OP, T, SIGNED)                                                             \
  inline T fname(unsigned mask, T value, fc_emu::Site s = fc_emu::Site::here()) {                       \
    return static_cast<T>(fc_emu::warp_detail::reduce<fc_emu::warp_detail::OP, SIGNED>(                  \
        mask, static_cast<uint32_t>(value), #fname, s));                                                \
  }
FC_EMU_REDUCE(__reduce_add_sync, kRedAdd, unsigned, false)
FC_EMU_REDUCE(__reduce_add_sync, kRedAdd, int, true)
FC_EMU_REDUCE(__reduce_min_sync, kRedMin, unsigned, false)
FC_EMU_REDUCE(__reduce_min_sync, kRedMin, int, true)
FC_EMU_REDUCE(__reduce_max_sync, kRedMax, unsigned, false)
FC_EMU_REDUCE(__reduce_max_sync, kRedMax, int, true)
FC_EMU_REDUCE(__reduce_and_sync, kRedAnd, unsigned, false)
FC_EMU_REDUCE(__reduce_or_sync, kRedOr, unsigned, false)
FC_EMU_REDUCE(__reduce_xor_sync, kRedXor, unsigned, false)
#undef FC_EMU_REDUCE
