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
// row, channel by channel. Here both passes are weighted sums of whole rows, which vectorise: the pass
// along a row runs on the transposed image, and the transposes are cheap next to the gathers they
// replace. A left-right flip costs nothing: the horizontal pass takes its taps in reverse order.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

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

// kLanes sums of one output row, from j on: they stay in registers across the taps.
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
// rounded and clipped to 8 bits. Cloned for AVX2, where the int32 multiply-adds are 8 lanes wide;
// "default" is the portable build.
__attribute__((target_clones("avx2", "default")))
inline void weighted_rows(const uint8_t* rows, ptrdiff_t stride, const int32_t* w, int count, int len,
                          uint8_t* out) {
  int j = 0;
  for (; j + 32 <= len; j += 32) weighted_lanes<32>(rows, stride, w, count, j, out);
  for (; j + 8 <= len; j += 8) weighted_lanes<8>(rows, stride, w, count, j, out);
  for (; j < len; ++j) weighted_lanes<1>(rows, stride, w, count, j, out);
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
void transpose_pixels(const uint8_t* in, ptrdiff_t in_stride, int rows, int cols, uint8_t* out,
                      ptrdiff_t out_stride) {
  constexpr int kBlock = 16;
  for (int r0 = 0; r0 < rows; r0 += kBlock)
    for (int c0 = 0; c0 < cols; c0 += kBlock)
      for (int c = c0, ce = std::min(c0 + kBlock, cols); c < ce; ++c)
        for (int r = r0, re = std::min(r0 + kBlock, rows); r < re; ++r)
          std::memcpy(out + c * out_stride + r * C, in + r * in_stride + c * C, C);
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
