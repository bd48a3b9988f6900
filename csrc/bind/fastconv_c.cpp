// fastconv_c.cpp — the one pybind11 file of the native extension fastconv._C. Thin: it converts and
// checks arguments, does no math and makes no choices (the launch plans in
// fastconv/backends/plans/ choose kernel, grid and block; fastconv/backends/native.py runs them here).
//
//   _C.launch(name, grid, block, args, shared_bytes=0, stream=0)
//       name: a kernel's C++ template-id (_C.kernel_names()); grid/block: 1 to 3 ints;
//       args: one per kernel parameter — an object with __cuda_array_interface__ (CuPy array, torch
//       tensor, ...) or None (nullptr) for a pointer; an int or float for a scalar; bytes of exactly
//       sizeof(T) for a struct, or the 128 bytes of an encoded CUtensorMap for an fc::sm90::TensorMap;
//       stream: a cudaStream_t as an int (CuPy: stream.ptr).
//   _C.kernel_names(), _C.cuda_runtime_version(), _C.device_count()
//   _C.kernel_requires(name): '' or 'sm_90a' (machine code only for that target; csrc/launch/registry.h)
//   _C.has_device_code(name): whether the current device runs real code of it (not a trapping stand-in)
//   _C.sm90a_code(): whether the current device runs this build's sm_90a code (the wgmma kernels)
// Every mismatch (unknown kernel, wrong argument count, dtype, read-only output, non-contiguous
// array, misaligned pointer, out-of-range scalar, bad grid) raises ValueError/TypeError naming the
// kernel, the argument and what was expected; every CUDA error raises RuntimeError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstring>
#include <limits>

#include "../common/checks.h"
#include "../launch/registry.h"

namespace py = pybind11;
using fc::launch::KernelInfo;
using fc::launch::ParamInfo;
using fc::launch::ParamKind;

namespace {

void dims3(const py::object& obj, unsigned out[3], const char* what, const std::string& kernel) {
  py::tuple t = py::isinstance<py::int_>(obj) ? py::make_tuple(obj) : py::tuple(obj);
  FC_CHECK(t.size() >= 1 && t.size() <= 3, kernel, ": ", what, " must have 1 to 3 dimensions, got ", t.size());
  out[0] = out[1] = out[2] = 1;
  for (size_t i = 0; i < t.size(); ++i) {
    const long long v = t[i].cast<long long>();
    FC_CHECK(v >= 1 && v <= std::numeric_limits<unsigned>::max(), kernel, ": ", what, "[", i, "] = ", v,
             " is out of range");
    out[i] = unsigned(v);
  }
}

// Fills `slot` with the device pointer of a __cuda_array_interface__ object, after checking it.
void pointer_arg(const py::handle& obj, const ParamInfo& p, size_t index, const KernelInfo& k, int align, void* slot) {
  const std::string where = fc::cat(k.name, ": argument ", index, " (", p.cpp, ")");
  void* ptr = nullptr;
  if (!obj.is_none()) {
    FC_CHECK(py::hasattr(obj, "__cuda_array_interface__"), where, " must be a GPU array (an object with ",
             "__cuda_array_interface__) or None, got ", std::string(py::str(py::type::of(obj))));
    py::dict cai = obj.attr("__cuda_array_interface__");
    py::tuple data = cai["data"];
    const uintptr_t address = data[0].cast<uintptr_t>();
    const bool readonly = data[1].cast<bool>();
    const std::string typestr = cai["typestr"].cast<std::string>();
    FC_CHECK(typestr.size() >= 3 && typestr[1] == p.pointee_kind && std::stoi(typestr.substr(2)) == p.pointee_size,
             where, " needs elements of kind '", p.pointee_kind, "' and ", p.pointee_size, " bytes, got typestr ",
             typestr);
    FC_CHECK(!readonly || p.pointee_const, where, " is written by the kernel but the array is read-only");
    py::tuple shape = cai["shape"];
    if (cai.contains("strides") && !cai["strides"].is_none()) {   // must describe a C-contiguous array
      py::tuple strides = cai["strides"];
      long long expected = p.pointee_size;
      for (size_t d = shape.size(); d-- > 0;) {
        const long long extent = shape[d].cast<long long>();
        FC_CHECK(extent <= 1 || strides[d].cast<long long>() == expected, where,
                 " must be C-contiguous (make a copy with ascontiguousarray)");
        expected *= extent;
      }
    }
    FC_CHECK(address % uintptr_t(p.pointee_size) == 0, where, " is not aligned to its element size");
    FC_CHECK(align == 0 || address % uintptr_t(align) == 0, where, " must be ", align,
             "-byte aligned for this 16-byte-load kernel; the plan should have chosen the scalar one");
    ptr = reinterpret_cast<void*>(address);
  }
  std::memcpy(slot, &ptr, sizeof(ptr));
}

template <class I>
void integer_arg(const py::handle& obj, const std::string& where, void* slot) {
  FC_CHECK(py::isinstance<py::int_>(obj) || py::hasattr(obj, "__index__"), where, " must be an int, got ",
           std::string(py::str(py::type::of(obj))));
  py::int_ v = py::reinterpret_borrow<py::object>(obj).attr("__index__")();
  I value;
  if (std::is_signed<I>::value) {
    const long long x = v.cast<long long>();
    FC_CHECK(x >= static_cast<long long>(std::numeric_limits<I>::min()) &&
                 x <= static_cast<long long>(std::numeric_limits<I>::max()),
             where, " = ", x, " does not fit");
    value = static_cast<I>(x);
  } else {
    FC_CHECK(v.cast<py::object>() >= py::int_(0), where, " must be >= 0");
    const unsigned long long x = v.cast<unsigned long long>();
    FC_CHECK(x <= static_cast<unsigned long long>(std::numeric_limits<I>::max()), where, " = ", x, " does not fit");
    value = static_cast<I>(x);
  }
  std::memcpy(slot, &value, sizeof(I));
}

void scalar_arg(const py::handle& obj, const ParamInfo& p, const std::string& where, void* slot) {
  switch (p.kind) {
    case ParamKind::kSigned:
      if (p.size == 1) integer_arg<int8_t>(obj, where, slot);
      else if (p.size == 2) integer_arg<int16_t>(obj, where, slot);
      else if (p.size == 4) integer_arg<int32_t>(obj, where, slot);
      else integer_arg<int64_t>(obj, where, slot);
      break;
    case ParamKind::kUnsigned:
      if (p.size == 1) integer_arg<uint8_t>(obj, where, slot);
      else if (p.size == 2) integer_arg<uint16_t>(obj, where, slot);
      else if (p.size == 4) integer_arg<uint32_t>(obj, where, slot);
      else integer_arg<uint64_t>(obj, where, slot);
      break;
    case ParamKind::kFloat: {
      const double v = py::float_(py::reinterpret_borrow<py::object>(obj)).cast<double>();
      if (p.size == 4) {
        const float f = static_cast<float>(v);
        std::memcpy(slot, &f, 4);
      } else {
        std::memcpy(slot, &v, 8);
      }
      break;
    }
    case ParamKind::kTensorMap: {   // the 128 bytes of a CUtensorMap (cuTensorMapEncodeTiled)
      py::object b = py::reinterpret_borrow<py::object>(obj);
      if (!py::isinstance<py::bytes>(b) && py::hasattr(b, "tobytes")) b = b.attr("tobytes")();
      FC_CHECK(py::isinstance<py::bytes>(b), where, " must be the ", fc::launch::kTensorMapBytes,
               " bytes of an encoded CUtensorMap (cuTensorMapEncodeTiled)");
      const std::string s = b.cast<std::string>();
      FC_CHECK(int(s.size()) == fc::launch::kTensorMapBytes, where, " must be exactly ", fc::launch::kTensorMapBytes,
               " bytes (a CUtensorMap), got ", s.size());
      FC_CHECK(s.find_first_not_of('\0') != std::string::npos, where, " is all zeros: not an encoded tensor map");
      uint32_t head = 0;
      std::memcpy(&head, s.data(), 4);
      FC_CHECK(head != 0x4d544346u, where, " holds an emulator tensor map (EmuTensorMap, \"FCTM\"); a GPU needs ",
               "the driver's (fastconv/backends/plans/tensor_map.py encode_tensor_map_cuda)");
      std::memcpy(slot, s.data(), s.size());
      break;
    }
    default: {   // struct: bytes (or anything with tobytes(), e.g. a structured NumPy scalar)
      py::object b = py::reinterpret_borrow<py::object>(obj);
      if (!py::isinstance<py::bytes>(b) && py::hasattr(b, "tobytes")) b = b.attr("tobytes")();
      FC_CHECK(py::isinstance<py::bytes>(b), where, " must be bytes of a ", p.cpp);
      const std::string s = b.cast<std::string>();
      FC_CHECK(int(s.size()) == p.size, where, " must be exactly ", p.size, " bytes, got ", s.size());
      std::memcpy(slot, s.data(), s.size());
    }
  }
}

void launch(const std::string& name, const py::object& grid, const py::object& block, const py::sequence& args,
            size_t shared_bytes, uintptr_t stream) {
  const KernelInfo* k = fc::launch::find_kernel(name);
  FC_CHECK(k != nullptr, "fastconv._C has no kernel named '", name,
           "' (python scripts/gen_kernel_list.py lists the plans' kernels; rebuild after changing it)");
  FC_CHECK(args.size() == k->params.size(), name, " takes ", k->params.size(), " arguments, got ", args.size());
  unsigned g[3], b[3];
  dims3(grid, g, "grid", name);
  dims3(block, b, "block", name);
  // One slot per argument, big and aligned enough for a CUtensorMap (128 bytes; alignas(128) in CUDA 13's
  // cuda.h, 64 before, and 64 is what TMA needs). cudaLaunchKernel copies each slot into the kernel's
  // parameter buffer at the offset the kernel's own signature gives it (fc::sm90::TensorMap: 64-aligned).
  struct alignas(128) Slot {
    unsigned char bytes[128];
  };
  std::vector<Slot> slots(k->params.size());
  std::vector<void*> pointers(k->params.size());
  int arrays_seen = 0;
  for (size_t i = 0; i < k->params.size(); ++i) {
    const ParamInfo& p = k->params[i];
    FC_CHECK(p.size <= int(sizeof(Slot)), name, ": parameter ", i, " is larger than ", sizeof(Slot), " bytes");
    if (p.kind == ParamKind::kPointer) {
      const int align = arrays_seen < 2 ? k->operand_align : 0;
      pointer_arg(args[i], p, i, *k, align, slots[i].bytes);
      ++arrays_seen;
    } else {
      scalar_arg(args[i], p, fc::cat(name, ": argument ", i, " (", p.cpp, ")"), slots[i].bytes);
    }
    pointers[i] = slots[i].bytes;
  }
  py::gil_scoped_release release;
  fc::launch::launch_kernel(*k, g, b, pointers.data(), shared_bytes, stream);
}

const KernelInfo& known_kernel(const std::string& name) {
  const KernelInfo* k = fc::launch::find_kernel(name);
  FC_CHECK(k != nullptr, "fastconv._C has no kernel named '", name, "'");
  return *k;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "fastconv native kernels: a checked launcher over the nvcc-built kernel table (csrc/launch)";
  m.def("launch", &launch, py::arg("name"), py::arg("grid"), py::arg("block"), py::arg("args"),
        py::arg("shared_bytes") = 0, py::arg("stream") = 0);
  m.def("kernel_names", &fc::launch::kernel_names);
  m.def("cuda_runtime_version", &fc::launch::cuda_runtime_version);
  m.def("device_count", &fc::launch::device_count);
  m.def("kernel_requires", [](const std::string& name) { return std::string(known_kernel(name).needs_sm90a ? "sm_90a" : ""); });
  m.def("has_device_code", [](const std::string& name) { return fc::launch::has_device_code(known_kernel(name)); });
  m.def("sm90a_code", &fc::launch::sm90a_code_on_current_device);
}
