// jpeg_region.h — decode only a region of a JPEG, with libjpeg-turbo (its libjpeg API), on the CPU.
//
// RandomResizedCrop keeps on average under half of an image, yet a full decode pays for every pixel.
// libjpeg-turbo can do less: jpeg_skip_scanlines passes the rows above the region through the entropy
// decoder only (no IDCT, upsampling or colour conversion), jpeg_crop_scanline limits those stages to the
// iMCU columns around the region, and the rows below it are never read. The pixels are the full decode's
// (tests/data/test_data_images_jpeg_region.py), given a margin: fancy upsampling reads chroma one sample
// beyond each pixel, so a margin of one iMCU on each side (kept out of the result) leaves the region's
// inputs exactly those of a full decode.
//
// Built only where libjpeg-turbo's headers are found (setup.py defines FASTCONV_HOST_JPEG). We decode
// nothing ourselves: this is a binding that asks libjpeg-turbo for less.
#pragma once

#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>   // jpeglib.h needs FILE
#include <cstring>
#include <string>

#include <jpeglib.h>

namespace fastconv::host {

// libjpeg reports errors through error_exit, which must not return: jump back to decode_jpeg_region.
// Warnings (corrupt data it can step over) count as errors too, so a damaged file is never half-decoded
// here; the caller's fallback (Pillow) names what is wrong with it.
struct JpegErrors {
  jpeg_error_mgr mgr;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

inline void jpeg_fail(j_common_ptr info) {
  auto* errors = reinterpret_cast<JpegErrors*>(info->err);
  (*info->err->format_message)(info, errors->message);
  std::longjmp(errors->jump, 1);
}

inline void jpeg_warn(j_common_ptr info, int level) {
  if (level < 0) jpeg_fail(info);   // level -1: a warning about the data; >= 0: trace messages
}

inline void report_errors_to(jpeg_decompress_struct& info, JpegErrors& errors) {
  info.err = jpeg_std_error(&errors.mgr);
  errors.mgr.error_exit = jpeg_fail;
  errors.mgr.emit_message = jpeg_warn;
}

// The decompressor over `data` with its header read and its output scaled to 1/scale_denom. Called after
// the caller's setjmp: libjpeg's errors jump back to it, through this frame.
inline void read_header(jpeg_decompress_struct& info, const uint8_t* data, size_t bytes, int scale_denom) {
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, data, static_cast<unsigned long>(bytes));
  jpeg_read_header(&info, TRUE);
  info.scale_num = 1;
  info.scale_denom = static_cast<unsigned int>(scale_denom);
}

// The decode's size at 1/scale_denom (scale_denom 1, 2, 4 or 8), and whether libjpeg-turbo decodes it
// here (colour space Y, YCbCr or RGB, so the output is RGB as Pillow's convert("RGB") gives it).
struct JpegShape {
  int width = 0, height = 0;
  bool supported = false;
};

// The region [left, right) x [top, bottom) of the JPEG in `data`, decoded at 1/scale_denom (1, 2, 4 or 8),
// as RGB into `out` (rows out_stride bytes apart). Returns "" or what went wrong (libjpeg's message).
// No C++ object with a destructor lives between the setjmp and a longjmp to it.
inline std::string decode_jpeg_region(const uint8_t* data, size_t bytes, int scale_denom, int left, int top, int right,
                                      int bottom, uint8_t* out, ptrdiff_t out_stride) {
  jpeg_decompress_struct info;
  JpegErrors errors;
  report_errors_to(info, errors);
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&info);
    return errors.message;
  }
  read_header(info, data, bytes, scale_denom);
  info.out_color_space = JCS_RGB;
  jpeg_start_decompress(&info);
  const int width = static_cast<int>(info.output_width), height = static_cast<int>(info.output_height);
  if (!(0 <= left && left < right && right <= width && 0 <= top && top < bottom && bottom <= height)) {
    jpeg_destroy_decompress(&info);
    return "the region lies outside the decode";
  }
  // one iMCU of margin around the region (see the top of this file)
  const int mcu_w = info.max_h_samp_factor * info.min_DCT_scaled_size;
  const int mcu_h = info.max_v_samp_factor * info.min_DCT_scaled_size;
  JDIMENSION x0 = static_cast<JDIMENSION>(left > mcu_w ? left - mcu_w : 0);
  JDIMENSION span = static_cast<JDIMENSION>((right + mcu_w < width ? right + mcu_w : width)) - x0;
  jpeg_crop_scanline(&info, &x0, &span);   // widens them to iMCU boundaries
  // kRows rows of the cropped output at a time, from libjpeg's pool (freed with it, longjmp or not)
  constexpr int kRows = 16;
  JSAMPARRAY rows = (*info.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&info), JPOOL_IMAGE,
                                              span * info.output_components, kRows);
  const int skip = top > mcu_h ? top - mcu_h : 0;
  if (skip > 0 && jpeg_skip_scanlines(&info, static_cast<JDIMENSION>(skip)) != static_cast<JDIMENSION>(skip)) {
    jpeg_destroy_decompress(&info);
    return "the JPEG ended before the region";
  }
  for (int y = skip; y < bottom;) {
    const int got = static_cast<int>(jpeg_read_scanlines(&info, rows, bottom - y < kRows ? bottom - y : kRows));
    if (got == 0) {
      jpeg_destroy_decompress(&info);
      return "the JPEG ended inside the region";
    }
    for (int i = 0; i < got; ++i, ++y)
      if (y >= top)
        std::memcpy(out + (y - top) * out_stride, rows[i] + (left - static_cast<int>(x0)) * 3,
                    static_cast<size_t>(right - left) * 3);
  }
  jpeg_destroy_decompress(&info);   // the rows below the region are never decoded
  return "";
}

// The header's facts: the decode's size at 1/scale_denom and whether decode_jpeg_region takes it.
inline std::string jpeg_shape(const uint8_t* data, size_t bytes, int scale_denom, JpegShape* shape) {
  jpeg_decompress_struct info;
  JpegErrors errors;
  report_errors_to(info, errors);
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&info);
    return errors.message;
  }
  read_header(info, data, bytes, scale_denom);
  jpeg_calc_output_dimensions(&info);
  shape->width = static_cast<int>(info.output_width);
  shape->height = static_cast<int>(info.output_height);
  shape->supported = info.jpeg_color_space == JCS_GRAYSCALE || info.jpeg_color_space == JCS_YCbCr ||
                     info.jpeg_color_space == JCS_RGB;
  jpeg_destroy_decompress(&info);
  return "";
}

}  // namespace fastconv::host
