// resize_bilinear_aa.h — antialiased bilinear resize of 8-bit interleaved images, on the CPU.
//
// The input pipeline's RandomResizedCrop and Resize (fastconv/data/images/transforms.py). torchvision's
// PIL path resizes with Pillow, and our transforms promise its pixels, so this is Pillow's arithmetic:
// a triangle filter widened by the downscale factor, each output's weights normalised in double and
// rounded to kWeightBits fractional bits, one pass per axis with the result rounded to 8 bits in
// between, in the order Pillow picks (the caller says which: it changed in Pillow 13). The pixels are
// Pillow's bit for bit (tests/data/test_data_images_resize.py).
//
// The time is not Pillow's: Pillow widens RGB to 4 bytes a pixel and gathers each output's taps along a
// row, channel by channel. Here both passes are weighted sums of whole rows, which vectorise (AVX2 where
// the CPU has it): the pass along a row runs on transposed strips, and the transposes are cheap next to
// the gathers they replace. A left-right flip costs nothing: the horizontal pass takes its taps in
// reverse order.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fastconv::host {

// 255 * 2^22 * (weights summing to about 1) stays inside int32
constexpr int kWeightBits = 22;
constexpr int32_t kHalf = 1 << (kWeightBits - 1);

// For each output index o: inputs first[o] .. first[o] + count[o] - 1 with weights
// weight[o * stride + i], in kWeightBits fixed point.
struct FilterTaps {
  std::vector<int> first, count;
  std::vector<int32_t> weight;
  int stride = 0;
  int lo() const { return first.front(); }                     // the first input any output reads
  int hi() const { return first.back() + count.back(); }       // one past the last
};

inline double triangle(double x) {
  x = std::fabs(x);
  return x < 1.0 ? 1.0 - x : 0.0;
}

// Taps resampling the span [lo, hi) of an axis of in_size pixels to out_size pixels. Pillow takes the
// span as float and subtracts in float; the expressions, their order included, are the ones whose
// rounding its pixels depend on.
inline FilterTaps bilinear_taps(float lo, float hi, int in_size, int out_size) {
  const double scale = static_cast<double>(hi - lo) / out_size;
  const double widen = std::max(scale, 1.0);   // downscaling: the filter spans `scale` inputs a side
  const double support = 1.0 * widen;
  const double inv_widen = 1.0 / widen;
  FilterTaps taps;
  taps.stride = static_cast<int>(std::ceil(support)) * 2 + 1;
  taps.first.resize(out_size);
  taps.count.resize(out_size);
  taps.weight.assign(static_cast<size_t>(out_size) * taps.stride, 0);
  std::vector<double> w(taps.stride);
  for (int o = 0; o < out_size; ++o) {
    const double center = lo + (o + 0.5) * scale;
    const int first = std::max(static_cast<int>(center - support + 0.5), 0);   // truncation, as (int)
    const int count = std::min(static_cast<int>(center + support + 0.5), in_size) - first;
    double total = 0.0;
    for (int i = 0; i < count; ++i) {
      w[i] = triangle((i + first - center + 0.5) * inv_widen);
      total += w[i];
    }
    int32_t* out = &taps.weight[static_cast<size_t>(o) * taps.stride];
    for (int i = 0; i < count; ++i) {
      const double k = total != 0.0 ? w[i] / total : w[i];
      out[i] = static_cast<int32_t>(k * (1 << kWeightBits) + (k < 0.0 ? -0.5 : 0.5));
    }
    taps.first[o] = first;
    taps.count[o] = count;
  }
  return taps;
}

// kLanes sums of one output row, from j on, held in registers across the taps.
template <int kLanes>
inline void weighted_lanes(const uint8_t* rows, ptrdiff_t stride, const int32_t* w, int count, int j, uint8_t* out) {
  int32_t acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = kHalf;
  for (int i = 0; i < count; ++i) {
    const uint8_t* row = rows + i * stride + j;
    const int32_t wi = w[i];
    for (int l = 0; l < kLanes; ++l) acc[l] += row[l] * wi;
  }
  for (int l = 0; l < kLanes; ++l) out[j + l] = static_cast<uint8_t>(std::clamp(acc[l] >> kWeightBits, 0, 255));
}

// One output row of `len` bytes: the taps' weighted sum of `count` input rows, `stride` bytes apart,
// rounded and clipped to 8 bits. Portable; compilers vectorise weighted_lanes.
inline void weighted_rows_portable(const uint8_t* rows, ptrdiff_t stride, const int32_t* w, int count, int len,
                                   uint8_t* out, int j = 0) {
  for (; j + 32 <= len; j += 32) weighted_lanes<32>(rows, stride, w, count, j, out);
  for (; j + 8 <= len; j += 8) weighted_lanes<8>(rows, stride, w, count, j, out);
  for (; j < len; ++j) weighted_lanes<1>(rows, stride, w, count, j, out);
}

#if defined(__x86_64__) || defined(__i386__)
// The same with AVX2, 32 outputs at a time in four registers of int32 sums. Written out because the
// compiler's clamp-and-narrow took as long as the sums: two saturating packs do it (int32 -> int16 cannot
// saturate here, |sum >> 22| < 2^10; int16 -> uint8 clamps to 0..255), and a lane permute restores order.
__attribute__((target("avx2"))) inline void weighted_rows_avx2(const uint8_t* rows, ptrdiff_t stride,
                                                                const int32_t* w, int count, int len, uint8_t* out) {
  const __m256i half = _mm256_set1_epi32(kHalf);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  int j = 0;
  for (; j + 32 <= len; j += 32) {
    __m256i a0 = half, a1 = half, a2 = half, a3 = half;
    for (int i = 0; i < count; ++i) {
      const uint8_t* row = rows + i * stride + j;
      const __m256i wi = _mm256_set1_epi32(w[i]);
      // 8 bytes at a time, widened to int32
      const __m256i p0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row)));
      const __m256i p1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 8)));
      const __m256i p2 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 16)));
      const __m256i p3 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + 24)));
      a0 = _mm256_add_epi32(a0, _mm256_mullo_epi32(p0, wi));
      a1 = _mm256_add_epi32(a1, _mm256_mullo_epi32(p1, wi));
      a2 = _mm256_add_epi32(a2, _mm256_mullo_epi32(p2, wi));
      a3 = _mm256_add_epi32(a3, _mm256_mullo_epi32(p3, wi));
    }
    const __m256i lo = _mm256_packs_epi32(_mm256_srai_epi32(a0, kWeightBits), _mm256_srai_epi32(a1, kWeightBits));
    const __m256i hi = _mm256_packs_epi32(_mm256_srai_epi32(a2, kWeightBits), _mm256_srai_epi32(a3, kWeightBits));
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(lo, hi), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), bytes);
  }
  weighted_rows_portable(rows, stride, w, count, len, out, j);
}

inline bool cpu_has_avx2() { return __builtin_cpu_supports("avx2"); }
#else
inline bool cpu_has_avx2() { return false; }
#endif

// Whether weighted_rows takes the AVX2 path: the CPU's answer, or the tests' (which check both).
inline std::atomic<bool>& use_avx2() {
  static std::atomic<bool> on{cpu_has_avx2()};
  return on;
}

inline void weighted_rows(const uint8_t* rows, ptrdiff_t stride, const int32_t* w, int count, int len, uint8_t* out) {
#if defined(__x86_64__) || defined(__i386__)
  if (use_avx2().load(std::memory_order_relaxed)) return weighted_rows_avx2(rows, stride, w, count, len, out);
#endif
  weighted_rows_portable(rows, stride, w, count, len, out);
}

// Resample axis 0 of `in` (rows of `len` bytes, in_stride apart; row r is the taps' input r + shift)
// into the taps' outputs, rows of `len` bytes out_stride apart at `out`; reversed: output row o uses the
// taps of the last output minus o (a mirror of the resampled axis). first_out, n: only outputs
// first_out .. first_out + n - 1.
inline void resample_rows(const uint8_t* in, ptrdiff_t in_stride, int shift, const FilterTaps& taps, int len,
                          uint8_t* out, ptrdiff_t out_stride, bool reversed, int first_out, int n) {
  const int last = static_cast<int>(taps.first.size()) - 1;
  for (int o = first_out; o < first_out + n; ++o) {
    const int t = reversed ? last - o : o;
    weighted_rows(in + static_cast<ptrdiff_t>(taps.first[t] - shift) * in_stride, in_stride,
                  &taps.weight[static_cast<size_t>(t) * taps.stride], taps.count[t], len,
                  out + static_cast<ptrdiff_t>(o - first_out) * out_stride);
  }
}

// out (cols x rows pixels of C bytes, rows out_stride apart) = the transpose of in (rows x cols, rows
// in_stride apart), in square blocks so that both sides stay in cache.
template <int C>
void transpose_pixels_portable(const uint8_t* in, ptrdiff_t in_stride, int rows, int cols, uint8_t* out,
                               ptrdiff_t out_stride) {
  constexpr int kBlock = 16;
  for (int r0 = 0; r0 < rows; r0 += kBlock)
    for (int c0 = 0; c0 < cols; c0 += kBlock)
      for (int c = c0, ce = std::min(c0 + kBlock, cols); c < ce; ++c) {
        // 3-byte pixels move as 4 bytes (one load, one store, not two each) where the extra byte read is
        // still in the row (not the last column) and the one written is the next pixel, stored after
        // this one (not the last of an output row)
        const int wide_end = C == 3 && c + 1 < cols ? std::min(r0 + kBlock, rows - 1) : r0;
        int r = r0;
        for (; r < wide_end; ++r) std::memcpy(out + c * out_stride + r * C, in + r * in_stride + c * C, 4);
        for (int re = std::min(r0 + kBlock, rows); r < re; ++r)
          std::memcpy(out + c * out_stride + r * C, in + r * in_stride + c * C, C);
      }
}

#if defined(__x86_64__) || defined(__i386__)
// The RGB transpose with AVX2, 8 x 8 pixels at a time: each input row's 24 bytes widened to 8 int32 (two
// 16-byte loads that end at the 24th byte, one in-lane shuffle), the 8 x 8 int32 transpose, each output
// row narrowed back and stored as 12 + 12 bytes; nothing read or written outside the block.
__attribute__((target("avx2"))) inline void transpose_rgb_blocks_avx2(const uint8_t* in, ptrdiff_t in_stride,
                                                                      int rows8, int cols8, uint8_t* out,
                                                                      ptrdiff_t out_stride) {
  const __m256i widen = _mm256_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, 6, 7, 8, -1, 9, 10, 11, -1,     // bytes 0..15
                                         4, 5, 6, -1, 7, 8, 9, -1, 10, 11, 12, -1, 13, 14, 15, -1);  // bytes 8..23
  const __m256i narrow = _mm256_setr_epi8(0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1,
                                          0, 1, 2, 4, 5, 6, 8, 9, 10, 12, 13, 14, -1, -1, -1, -1);
  for (int r0 = 0; r0 < rows8; r0 += 8)
    for (int c0 = 0; c0 < cols8; c0 += 8) {
      __m256i v[8];
      for (int i = 0; i < 8; ++i) {
        const uint8_t* p = in + (r0 + i) * in_stride + c0 * 3;
        const __m256i pair = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)),
                                              _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        v[i] = _mm256_shuffle_epi8(pair, widen);
      }
      // 8 x 8 int32 transpose: pairs of rows, then pairs of pairs, then 128-bit halves
      __m256i t[8], u[8];
      for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_epi32(v[i], v[i + 1]);
        t[i + 1] = _mm256_unpackhi_epi32(v[i], v[i + 1]);
      }
      for (int i = 0; i < 8; i += 4) {
        u[i] = _mm256_unpacklo_epi64(t[i], t[i + 2]);
        u[i + 1] = _mm256_unpackhi_epi64(t[i], t[i + 2]);
        u[i + 2] = _mm256_unpacklo_epi64(t[i + 1], t[i + 3]);
        u[i + 3] = _mm256_unpackhi_epi64(t[i + 1], t[i + 3]);
      }
      for (int i = 0; i < 4; ++i) {
        v[i] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x20);
        v[i + 4] = _mm256_permute2x128_si256(u[i], u[i + 4], 0x31);
      }
      for (int i = 0; i < 8; ++i) {   // output row c0 + i: pixels r0 .. r0 + 7
        const __m256i packed = _mm256_shuffle_epi8(v[i], narrow);
        uint8_t* q = out + (c0 + i) * out_stride + r0 * 3;
        const __m128i lo = _mm256_castsi256_si128(packed), hi = _mm256_extracti128_si256(packed, 1);
        _mm_storel_epi64(reinterpret_cast<__m128i*>(q), lo);
        const int lo_tail = _mm_extract_epi32(lo, 2), hi_tail = _mm_extract_epi32(hi, 2);
        std::memcpy(q + 8, &lo_tail, 4);
        _mm_storel_epi64(reinterpret_cast<__m128i*>(q + 12), hi);
        std::memcpy(q + 20, &hi_tail, 4);
      }
    }
}
#endif

template <int C>
void transpose_pixels(const uint8_t* in, ptrdiff_t in_stride, int rows, int cols, uint8_t* out,
                      ptrdiff_t out_stride) {
#if defined(__x86_64__) || defined(__i386__)
  if (C == 3 && use_avx2().load(std::memory_order_relaxed)) {
    const int rows8 = rows / 8 * 8, cols8 = cols / 8 * 8;
    transpose_rgb_blocks_avx2(in, in_stride, rows8, cols8, out, out_stride);
    // the edges the 8 x 8 blocks leave: the last cols % 8 columns of every row, the last rows % 8 rows
    transpose_pixels_portable<C>(in + cols8 * C, in_stride, rows, cols - cols8, out + cols8 * out_stride, out_stride);
    transpose_pixels_portable<C>(in + rows8 * in_stride, in_stride, rows - rows8, cols8, out + rows8 * C, out_stride);
    return;
  }
#endif
  transpose_pixels_portable<C>(in, in_stride, rows, cols, out, out_stride);
}

// Rows are resampled across in strips of kStrip: each strip is turned (so the pass is a weighted sum
// of rows), resampled and turned back, in scratch that stays in cache.
constexpr int kStrip = 32;   // a strip's turned row is 32 * C bytes: whole 32-lane chunks

// The horizontal pass: n rows of `in` (in_stride apart; `in` points at column col_lo, the first one
// the taps read) to n rows of the taps' outputs (out_stride apart); flip mirrors them.
template <int C>
void resample_across(const uint8_t* in, ptrdiff_t in_stride, int n, int col_lo, int cols, const FilterTaps& taps,
                     bool flip, uint8_t* out, ptrdiff_t out_stride, std::vector<uint8_t>& scratch) {
  const int out_w = static_cast<int>(taps.first.size());
  scratch.resize(static_cast<size_t>(cols + out_w) * kStrip * C);
  uint8_t* turned = scratch.data();                                 // cols x strip
  uint8_t* done = turned + static_cast<size_t>(cols) * kStrip * C;  // out_w x strip
  for (int s = 0; s < n; s += kStrip) {
    const int rows = std::min(kStrip, n - s);
    transpose_pixels<C>(in + s * in_stride, in_stride, rows, cols, turned, rows * C);
    resample_rows(turned, rows * C, col_lo, taps, rows * C, done, rows * C, flip, 0, out_w);
    transpose_pixels<C>(done, rows * C, out_w, rows, out + s * out_stride, out_stride);
  }
}

// Resize the box [left, right) x [top, bottom) of `in` (in_h x in_w pixels of C channels, rows
// in_stride bytes apart) to out_h x out_w pixels written contiguously to `out`. vertical_first: the
// order of the passes (Pillow's choice, which changes the rounding in between); flip mirrors left-right.
// The filter reads only pixels of `in`: it is clipped at in's edges, as Pillow clips at the image's.
template <int C>
void resize_bilinear_aa(const uint8_t* in, int in_h, int in_w, ptrdiff_t in_stride, float left, float top,
                        float right, float bottom, uint8_t* out, int out_h, int out_w, bool vertical_first,
                        bool flip) {
  const FilterTaps across = bilinear_taps(left, right, in_w, out_w);
  const FilterTaps down = bilinear_taps(top, bottom, in_h, out_h);
  const int row_lo = down.lo(), rows = down.hi() - down.lo();        // the input rows read
  const int col_lo = across.lo(), cols = across.hi() - across.lo();  // and columns
  const ptrdiff_t out_stride = static_cast<ptrdiff_t>(out_w) * C;
  std::vector<uint8_t> scratch, mid;
  if (vertical_first) {   // strip by strip of output rows: down into `mid`, then across into `out`
    mid.resize(static_cast<size_t>(kStrip) * cols * C);
    for (int y = 0; y < out_h; y += kStrip) {
      const int n = std::min(kStrip, out_h - y);
      resample_rows(in + col_lo * C, in_stride, 0, down, cols * C, mid.data(), cols * C, false, y, n);
      resample_across<C>(mid.data(), cols * C, n, col_lo, cols, across, flip, out + y * out_stride, out_stride,
                         scratch);
    }
  } else {                // across, every input row read, into `mid`; then down into `out`
    mid.resize(static_cast<size_t>(rows) * out_stride);
    resample_across<C>(in + row_lo * in_stride + col_lo * C, in_stride, rows, col_lo, cols, across, flip, mid.data(),
                       out_stride, scratch);
    resample_rows(mid.data(), out_stride, row_lo, down, out_w * C, out, out_stride, false, 0, out_h);
  }
}

}  // namespace fastconv::host
