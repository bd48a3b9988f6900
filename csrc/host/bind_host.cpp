// bind_host.cpp — the Python module fastconv._host: the input pipeline's CPU kernels, argument checks
// and conversion only. fastconv/data/images/resize.py is the public wrapper and its fallback (Pillow).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "resize_bilinear_aa.h"
#ifdef FASTCONV_HOST_JPEG
#include "jpeg_region.h"
#endif

namespace py = pybind11;

namespace {

[[noreturn]] void bad(const std::string& msg) { throw py::value_error(msg); }

std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  return s + (a.ndim() == 1 ? ",)" : ")");
}

// src: (H, W, C) uint8 whose pixels are packed (rows may be further apart); out: (h, w, C) uint8,
// C-contiguous and writable. box: (left, top, right, bottom) inside src, in its pixels.
void resize_bilinear_aa(const py::array& src, py::tuple box, py::array& out, bool vertical_first, bool flip) {
  if (!py::isinstance<py::array_t<uint8_t>>(src) || src.ndim() != 3)
    bad("src must be an (H, W, C) uint8 array, got " + std::string(py::str(src.dtype())) + " of shape " + shape_of(src));
  if (!py::isinstance<py::array_t<uint8_t>>(out) || out.ndim() != 3)
    bad("out must be an (h, w, C) uint8 array, got " + std::string(py::str(out.dtype())) + " of shape " + shape_of(out));
  const int channels = static_cast<int>(src.shape(2));
  if (channels < 1 || channels > 4 || channels == 2) bad("src must have 1, 3 or 4 channels, got shape " + shape_of(src));
  if (out.shape(2) != channels) bad("out must have src's " + std::to_string(channels) + " channels, got shape " + shape_of(out));
  if (src.strides(2) != 1 || src.strides(1) != channels || src.strides(0) < src.shape(1) * channels)
    bad("src's pixels must be packed (strides (row, " + std::to_string(channels) + ", 1)), got a view with strides ("
        + std::to_string(src.strides(0)) + ", " + std::to_string(src.strides(1)) + ", " + std::to_string(src.strides(2)) + ")");
  if (!(out.flags() & py::array::c_style) || !out.writeable()) bad("out must be C-contiguous and writable");
  if (src.shape(0) < 1 || src.shape(1) < 1 || out.shape(0) < 1 || out.shape(1) < 1)
    bad("src " + shape_of(src) + " and out " + shape_of(out) + " must have at least one pixel");
  if (src.shape(0) > (1 << 20) || src.shape(1) > (1 << 20) || out.shape(0) > (1 << 20) || out.shape(1) > (1 << 20))
    bad("images over 2^20 pixels a side are not supported: src " + shape_of(src) + ", out " + shape_of(out));
  if (py::len(box) != 4) bad("box must be (left, top, right, bottom), got " + std::string(py::str(box)));
  // float, as Pillow holds the box
  const float left = box[0].cast<float>(), top = box[1].cast<float>();
  const float right = box[2].cast<float>(), bottom = box[3].cast<float>();
  if (!(0 <= left && left < right && right <= src.shape(1) && 0 <= top && top < bottom && bottom <= src.shape(0)))
    bad("box must satisfy 0 <= left < right <= width and 0 <= top < bottom <= height of src " + shape_of(src)
        + ", got " + std::string(py::str(box)));
  const auto* in = static_cast<const uint8_t*>(src.data());
  auto* dst = static_cast<uint8_t*>(out.mutable_data());
  const int in_h = static_cast<int>(src.shape(0)), in_w = static_cast<int>(src.shape(1));
  const int out_h = static_cast<int>(out.shape(0)), out_w = static_cast<int>(out.shape(1));
  const py::ssize_t stride = src.strides(0);
  py::gil_scoped_release unlocked;   // decoding threads resize in parallel
  switch (channels) {
    case 1: fastconv::host::resize_bilinear_aa<1>(in, in_h, in_w, stride, left, top, right, bottom, dst, out_h, out_w, vertical_first, flip); break;
    case 3: fastconv::host::resize_bilinear_aa<3>(in, in_h, in_w, stride, left, top, right, bottom, dst, out_h, out_w, vertical_first, flip); break;
    default: fastconv::host::resize_bilinear_aa<4>(in, in_h, in_w, stride, left, top, right, bottom, dst, out_h, out_w, vertical_first, flip); break;
  }
}

#ifdef FASTCONV_HOST_JPEG
struct Encoded {   // the bytes of an encoded image, borrowed from a bytes-like object
  py::buffer_info view;
  explicit Encoded(const py::buffer& data) : view(data.request()) {
    if (view.itemsize != 1 || view.ndim != 1 || view.strides[0] != 1) bad("data must be bytes (a contiguous byte buffer)");
  }
  const uint8_t* ptr() const { return static_cast<const uint8_t*>(view.ptr); }
  size_t size() const { return static_cast<size_t>(view.size); }
};

int check_scale(int scale_denom) {
  if (scale_denom != 1 && scale_denom != 2 && scale_denom != 4 && scale_denom != 8)
    bad("scale_denom must be 1, 2, 4 or 8, got " + std::to_string(scale_denom));
  return scale_denom;
}

// -> ((width, height) of the decode at 1/scale_denom, whether decode_jpeg_region takes this JPEG)
py::tuple jpeg_shape(const py::buffer& data, int scale_denom) {
  const Encoded encoded(data);
  fastconv::host::JpegShape shape;
  const std::string error = fastconv::host::jpeg_shape(encoded.ptr(), encoded.size(), check_scale(scale_denom), &shape);
  if (!error.empty()) bad("not a readable JPEG: " + error);
  return py::make_tuple(py::make_tuple(shape.width, shape.height), shape.supported);
}

// -> the (bottom - top, right - left, 3) uint8 RGB region of the decode at 1/scale_denom
py::array decode_jpeg_region(const py::buffer& data, int scale_denom, py::tuple box) {
  const Encoded encoded(data);
  check_scale(scale_denom);
  if (py::len(box) != 4) bad("box must be (left, top, right, bottom), got " + std::string(py::str(box)));
  const int left = box[0].cast<int>(), top = box[1].cast<int>(), right = box[2].cast<int>(), bottom = box[3].cast<int>();
  if (!(0 <= left && left < right && 0 <= top && top < bottom))
    bad("box must satisfy 0 <= left < right and 0 <= top < bottom, got " + std::string(py::str(box)));
  py::array_t<uint8_t> out({bottom - top, right - left, 3});
  uint8_t* dst = out.mutable_data();
  std::string error;
  {
    py::gil_scoped_release unlocked;
    error = fastconv::host::decode_jpeg_region(encoded.ptr(), encoded.size(), scale_denom, left, top, right, bottom, dst,
                                               static_cast<ptrdiff_t>(right - left) * 3);
  }
  if (!error.empty()) bad("JPEG region " + std::string(py::str(box)) + " not decoded: " + error);
  return out;
}
#endif

}  // namespace

PYBIND11_MODULE(_host, m) {
  m.doc() = "fastconv's CPU kernels for the input pipeline (csrc/host/)";
  m.def("resize_bilinear_aa", &resize_bilinear_aa, py::arg("src"), py::arg("box"), py::arg("out"), py::arg("vertical_first"),
        py::arg("flip") = false,
        "Resize src's box to out's size, antialiased bilinear: Pillow's pixels when vertical_first is the order of "
        "passes Pillow picks (fastconv/data/images/resize.py); flip mirrors left-right.");
  m.def("simd", [](py::object enable) {
        if (!enable.is_none()) {
          const bool on = enable.cast<bool>();
          if (on && !fastconv::host::cpu_has_avx2()) bad("this CPU has no AVX2");
          fastconv::host::use_avx2() = on;
        }
        return std::string(fastconv::host::use_avx2() ? "avx2" : "portable");
      }, py::arg("enable") = py::none(),
      "The resize's row sums: 'avx2' or 'portable'; simd(False) / simd(True) switch (the tests check both).");
#ifdef FASTCONV_HOST_JPEG
  constexpr int v = LIBJPEG_TURBO_VERSION_NUMBER;   // built against (MMMmmmppp)
  m.attr("jpeg") = "libjpeg-turbo " + std::to_string(v / 1000000) + "." + std::to_string(v / 1000 % 1000) + "." +
                   std::to_string(v % 1000);
  m.def("jpeg_shape", &jpeg_shape, py::arg("data"), py::arg("scale_denom") = 1,
        "((width, height) of the JPEG decoded at 1/scale_denom, whether decode_jpeg_region takes it)");
  m.def("decode_jpeg_region", &decode_jpeg_region, py::arg("data"), py::arg("scale_denom"), py::arg("box"),
        "The (left, top, right, bottom) region of the JPEG decoded at 1/scale_denom, as (h, w, 3) uint8 RGB: the "
        "full decode's pixels there, decoding (almost) nothing outside it (libjpeg-turbo).");
#else
  m.attr("jpeg") = py::none();
#endif
}
