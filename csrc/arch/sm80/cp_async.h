// cp_async.h — asynchronous global -> shared copies (sm_80+) behind our own device functions.
//
//   fc::cp_async_ca<BYTES>(smem_dst, gmem_src, src_bytes)  cp.async.ca.shared.global, BYTES in {4, 8, 16}
//   fc::cp_async_cg16(smem_dst, gmem_src, src_bytes)       cp.async.cg.shared.global, 16 bytes (L2 only)
//   fc::cp_async_commit()                                   cp.async.commit_group
//   fc::cp_async_wait_group<N>()                            cp.async.wait_group N
//   fc::cp_async_wait_all()                                 cp.async.wait_all
//
// Semantics (PTX ISA "Data Movement and Conversion Instructions: cp.async", "cp.async.commit_group",
// "cp.async.wait_group / cp.async.wait_all"; §9.7.9.25 in PTX ISA 8.5): copies src_bytes (<= cp-size)
// from global memory and fills the rest of the cp-size destination bytes with zeros (src_bytes = 0
// zero-fills without reading); both addresses are cp-size aligned. commit_group closes the thread's
// pending copies into a group; wait_group N returns once at most the N most recent groups are
// pending; wait_all = commit_group + wait_group 0. A wait orders only the calling thread's copies:
// other threads see the data after their __syncthreads() that follows this thread's wait.
//
// Emulator: the copy is performed when a wait releases its group (or when the thread exits), so a
// read before the wait sees the old contents; with launch(..., poison_async=True) the destination
// is filled with NaN at issue time, so such a read produces NaN.
#pragma once

#include "../../common/platform.h"

namespace fc {

template <int BYTES>
FC_DEVICE void cp_async_ca(void* smem_dst, const void* gmem_src, int src_bytes = BYTES FC_SITE_PARAM) {
  static_assert(BYTES == 4 || BYTES == 8 || BYTES == 16, "cp.async.ca copies 4, 8 or 16 bytes");
#if defined(FC_TARGET_EMULATOR)
  ::fc_emu::cp_async(smem_dst, gmem_src, BYTES, static_cast<unsigned>(src_bytes), "cp.async.ca.shared.global", fc_site);
#else
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], %2, %3;\n" ::"r"(dst), "l"(gmem_src), "n"(BYTES), "r"(src_bytes)
               : "memory");
#endif
}

FC_DEVICE void cp_async_cg16(void* smem_dst, const void* gmem_src, int src_bytes = 16 FC_SITE_PARAM) {
#if defined(FC_TARGET_EMULATOR)
  ::fc_emu::cp_async(smem_dst, gmem_src, 16, static_cast<unsigned>(src_bytes), "cp.async.cg.shared.global", fc_site);
#else
  const unsigned dst = static_cast<unsigned>(__cvta_generic_to_shared(smem_dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(gmem_src), "r"(src_bytes) : "memory");
#endif
}

FC_DEVICE void cp_async_commit() {
#if defined(FC_TARGET_EMULATOR)
  ::fc_emu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

template <int N>
FC_DEVICE void cp_async_wait_group() {
  static_assert(N >= 0, "wait_group takes a non-negative count");
#if defined(FC_TARGET_EMULATOR)
  ::fc_emu::cp_async_wait(static_cast<unsigned>(N));
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

FC_DEVICE void cp_async_wait_all() {
#if defined(FC_TARGET_EMULATOR)
  ::fc_emu::cp_async_commit();
  ::fc_emu::cp_async_wait(0);
#else
  asm volatile("cp.async.wait_all;\n" ::: "memory");
#endif
}

}  // namespace fc
