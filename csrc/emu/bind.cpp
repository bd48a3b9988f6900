// bind.cpp — the Python module fastconv._emu: argument conversion and checks, nothing else.
// fastconv/emulator.py is the public wrapper (launch-configuration checks, the env default order).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cfloat>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "runtime.h"
#include "symbols.h"

namespace py = pybind11;
using fc_emu::ArgBuffer;
using fc_emu::GuardedBuffer;
using fc_emu::KernelEntry;
using fc_emu::ParamKind;
using fc_emu::ParamSpec;

namespace {

[[noreturn]] void raise(PyObject* type, const std::string& msg) {
  PyErr_SetString(type, msg.c_str());
  throw py::error_already_set();
}

std::string type_name(const py::handle& obj) { return py::str(py::type::handle_of(obj).attr("__name__")); }

// One pointer argument's device buffer; arrays passed more than once share one.
struct Binding {
  py::array array;
  std::unique_ptr<GuardedBuffer> buffer;
  bool written = false;  // some parameter it is passed to is a pointer to non-const
};

struct Converter {
  const KernelEntry& k;
  std::vector<std::unique_ptr<Binding>> bindings;
  std::vector<ArgBuffer> arg_buffers;

  std::string label(size_t i) const {
    return "kernel '" + k.name + "' argument " + std::to_string(i) + " (" + k.params[i].cpp_type + ")";
  }

  void pointer(size_t i, const py::handle& obj, void* slot) {
    const ParamSpec& p = k.params[i];
    if (!py::isinstance<py::array>(obj))
      raise(PyExc_TypeError, label(i) + ": expected a NumPy array of dtype " + p.dtype + ", got " + type_name(obj));
    py::array arr = py::reinterpret_borrow<py::array>(obj);
    const py::dtype want(p.dtype);
    const py::dtype got = arr.dtype();
    const char order = got.byteorder();
    if (got.kind() != want.kind() || got.itemsize() != want.itemsize() || got.has_fields() || order == '>')
      raise(PyExc_TypeError, label(i) + ": expected a NumPy array of dtype " + p.dtype + ", got dtype " +
                                 std::string(py::str(got)));
    if (!(arr.flags() & py::array::c_style))
      raise(PyExc_ValueError, label(i) + ": the array must be C-contiguous (use numpy.ascontiguousarray)");
    const size_t nbytes = static_cast<size_t>(arr.nbytes());
    if (nbytes % p.pointee_size)
      raise(PyExc_ValueError, label(i) + ": the array's " + std::to_string(nbytes) + " bytes are not a whole number of " +
                                  std::to_string(p.pointee_size) + "-byte elements");
    if (!p.pointee_const && !arr.writeable())
      raise(PyExc_ValueError, label(i) + ": the array is read-only but the kernel writes through this pointer");
    // The same memory passed twice maps to one device buffer, as on the GPU; a partial overlap
    // cannot be reproduced with separate copies.
    const char* lo = static_cast<const char*>(arr.data());
    Binding* shared = nullptr;
    for (auto& b : bindings) {
      const char* blo = static_cast<const char*>(b->array.data());
      const size_t bn = static_cast<size_t>(b->array.nbytes());
      if (blo == lo && bn == nbytes) shared = b.get();
      else if (nbytes && bn && lo < blo + bn && blo < lo + nbytes)
        raise(PyExc_ValueError, label(i) + ": the array partly overlaps another array argument; pass the same array, or disjoint ones");
    }
    if (!shared) {
      bindings.push_back(std::make_unique<Binding>());
      shared = bindings.back().get();
      shared->array = arr;
      shared->buffer = std::make_unique<GuardedBuffer>(nbytes, fc_emu::poison_pattern(p.dtype, static_cast<int>(bindings.size())));
      if (nbytes) std::memcpy(shared->buffer->data(), lo, nbytes);
    }
    shared->written = shared->written || !p.pointee_const;
    arg_buffers.push_back(ArgBuffer{shared->buffer.get(), static_cast<int>(i), p.cpp_type, p.pointee_size});
    void* device_ptr = shared->buffer->data();
    std::memcpy(slot, &device_ptr, sizeof(void*));
  }

  void integer(size_t i, const py::handle& obj, void* slot) {
    const ParamSpec& p = k.params[i];
    if (!PyIndex_Check(obj.ptr()) || py::isinstance<py::array>(obj))
      raise(PyExc_TypeError, label(i) + ": expected an int, got " + type_name(obj));
    py::object v = py::reinterpret_steal<py::object>(PyNumber_Index(obj.ptr()));
    if (!v) throw py::error_already_set();
    const unsigned bits = static_cast<unsigned>(8 * p.size);
    int overflow = 0;
    const long long s = PyLong_AsLongLongAndOverflow(v.ptr(), &overflow);
    if (PyErr_Occurred()) throw py::error_already_set();
    bool ok;
    unsigned long long raw;
    if (p.kind == ParamKind::Signed) {
      const long long lo = bits == 64 ? LLONG_MIN : -(1LL << (bits - 1)), hi = bits == 64 ? LLONG_MAX : (1LL << (bits - 1)) - 1;
      ok = overflow == 0 && s >= lo && s <= hi;
      raw = static_cast<unsigned long long>(s);
    } else {
      unsigned long long u = 0;
      if (overflow > 0) {
        u = PyLong_AsUnsignedLongLong(v.ptr());
        ok = !PyErr_Occurred();
        PyErr_Clear();
      } else {
        ok = overflow == 0 && s >= 0;
        u = static_cast<unsigned long long>(s);
      }
      ok = ok && (bits == 64 || u <= (1ULL << bits) - 1);
      raw = u;
    }
    if (!ok)
      raise(PyExc_OverflowError, label(i) + ": " + std::string(py::str(obj)) + " does not fit in " + p.cpp_type);
    std::memcpy(slot, &raw, p.size);  // little-endian: the low bytes are the value
  }

  void boolean(size_t i, const py::handle& obj, void* slot) {
    bool b;
    if (PyBool_Check(obj.ptr())) b = obj.ptr() == Py_True;
    else if ((PyIndex_Check(obj.ptr()) && !py::isinstance<py::array>(obj)) || type_name(obj) == "bool") {
      const long long v = py::int_(py::reinterpret_borrow<py::object>(obj));
      if (v != 0 && v != 1) raise(PyExc_OverflowError, label(i) + ": " + std::to_string(v) + " is not a bool (0 or 1)");
      b = v != 0;
    } else {
      raise(PyExc_TypeError, label(i) + ": expected a bool, got " + type_name(obj));
    }
    std::memcpy(slot, &b, sizeof b);
  }

  void floating(size_t i, const py::handle& obj, void* slot) {
    const ParamSpec& p = k.params[i];
    if (PyUnicode_Check(obj.ptr()) || PyBytes_Check(obj.ptr()) || !PyNumber_Check(obj.ptr()) || py::isinstance<py::array>(obj))
      raise(PyExc_TypeError, label(i) + ": expected a float, got " + type_name(obj));
    const double v = PyFloat_AsDouble(obj.ptr());
    if (PyErr_Occurred()) throw py::error_already_set();
    if (!p.from_double(v, slot))
      raise(PyExc_OverflowError, label(i) + ": " + std::string(py::repr(obj)) + " overflows " + p.cpp_type);
  }

  void structure(size_t i, const py::handle& obj, void* slot) {
    const ParamSpec& p = k.params[i];
    const std::string want = label(i) + ": expected bytes or a NumPy structured scalar of exactly " + std::to_string(p.size) + " bytes";
    if (py::isinstance<py::array>(obj) && py::reinterpret_borrow<py::array>(obj).dtype().kind() != 'V')
      raise(PyExc_TypeError, want + ", got an array of dtype " + std::string(py::str(py::reinterpret_borrow<py::array>(obj).dtype())));
    if (!PyObject_CheckBuffer(obj.ptr())) raise(PyExc_TypeError, want + ", got " + type_name(obj));
    Py_buffer view;
    if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_C_CONTIGUOUS) != 0) throw py::error_already_set();
    const size_t len = static_cast<size_t>(view.len);
    if (len == p.size) std::memcpy(slot, view.buf, len);
    PyBuffer_Release(&view);
    if (len != p.size) raise(PyExc_TypeError, want + ", got " + std::to_string(len) + " bytes");
  }
};

py::dict kernels() {
  py::dict d;
  for (const KernelEntry& e : fc_emu::registry()) d[py::str(e.name)] = e.signature();
  return d;
}

py::object launch(const std::string& name, std::vector<unsigned> grid, std::vector<unsigned> block, const py::sequence& args,
                  size_t shared_bytes, const std::string& order, uint64_t seed, bool poison_async, bool counters) {
  const KernelEntry* k = fc_emu::find_kernel(name);
  if (!k) throw fc_emu::Error("unknown kernel '" + name + "'; fastconv.emulator.kernels() lists the registered ones");
  if (grid.size() != 3 || block.size() != 3) throw py::value_error("grid and block must have 3 dimensions");
  if (static_cast<size_t>(py::len(args)) != k->params.size())
    raise(PyExc_TypeError, "kernel '" + name + "' takes " + std::to_string(k->params.size()) + " arguments (" + k->signature() +
                               "), got " + std::to_string(py::len(args)));
  fc_emu::LaunchConfig cfg;
  for (int d = 0; d < 3; ++d) {
    cfg.grid[d] = grid[d];
    cfg.block[d] = block[d];
  }
  cfg.shared_bytes = shared_bytes;
  cfg.seed = seed;
  cfg.poison_async = poison_async;
  std::vector<fc_emu::counters::Site> sites;
  if (counters) cfg.counters_out = &sites;
  if (order == "forward") cfg.order = fc_emu::Order::Forward;
  else if (order == "reverse") cfg.order = fc_emu::Order::Reverse;
  else if (order == "random") cfg.order = fc_emu::Order::Random;
  else throw py::value_error("order must be 'forward', 'reverse' or 'random', got '" + order + "'");

  // Parameter values, each at its alignment in one 64-byte aligned block.
  size_t total = 0;
  std::vector<size_t> offsets;
  for (const ParamSpec& p : k->params) {
    total = (total + p.align - 1) / p.align * p.align;
    offsets.push_back(total);
    total += p.size;
  }
  std::unique_ptr<void, void (*)(void*)> storage(nullptr, std::free);
  std::vector<void*> slots;
  std::unique_ptr<Converter> conv;
  auto run = [&] {  // fresh device buffers from the (untouched) arrays, then the launch
    storage.reset(std::aligned_alloc(64, (total + 63) / 64 * 64 + 64));
    slots.clear();
    conv = std::make_unique<Converter>(Converter{*k, {}, {}});
    for (size_t i = 0; i < k->params.size(); ++i) {
      void* slot = static_cast<char*>(storage.get()) + offsets[i];
      slots.push_back(slot);
      const py::handle obj = args[i];
      switch (k->params[i].kind) {
        case ParamKind::Pointer: conv->pointer(i, obj, slot); break;
        case ParamKind::Signed:
        case ParamKind::Unsigned: conv->integer(i, obj, slot); break;
        case ParamKind::Bool: conv->boolean(i, obj, slot); break;
        case ParamKind::Float:
        case ParamKind::Half:
        case ParamKind::BFloat16: conv->floating(i, obj, slot); break;
        case ParamKind::Struct: conv->structure(i, obj, slot); break;
      }
    }
    py::gil_scoped_release release;
    fc_emu::launch(*k, cfg, slots.data(), conv->arg_buffers);
  };
  try {
    run();
  } catch (const fc_emu::LateOutOfBoundsError&) {
    // Found only after the launch: run it again, checking after every thread's turn, to name the
    // thread (the launch is deterministic for a given order and seed). Failing that, report as found.
    cfg.locate_writes = true;
    run();
    throw;
  }
  for (auto& b : conv->bindings) {
    const size_t n = static_cast<size_t>(b->array.nbytes());
    if (!n) continue;
    if (b->written) std::memcpy(b->array.mutable_data(), b->buffer->data(), n);
    else if (std::memcmp(b->array.data(), b->buffer->data(), n) != 0)
      throw fc_emu::Error("kernel '" + name + "': wrote to an array passed only through pointer-to-const parameters");
  }
  if (!counters) return py::none();
  py::list out;
  for (const auto& s : sites) {
    py::dict d;
    if (s.instruction) {   // an executed instruction kind, not a memory site
      d["site"] = "";
      d["space"] = "instruction";
      d["op"] = s.instruction;
      d["requests"] = s.requests;
      out.append(d);
      continue;
    }
    d["site"] = fc_emu::module_symbols().site_token(s.pc);
    d["space"] = s.shared ? "shared" : "global";
    d["op"] = s.store ? "store" : "load";
    d["requests"] = s.requests;
    d["lanes"] = s.lanes;
    d["bytes"] = s.bytes;
    if (s.shared) {
      d["wavefronts"] = s.wavefronts;
      d["ideal_wavefronts"] = s.ideal_wavefronts;
    } else {
      d["sectors"] = s.sectors;
    }
    out.append(d);
  }
  return out;
}

void bind_module(py::module_& m) {
  m.doc() = "CPU SIMT emulator for fastconv's CUDA kernels (see fastconv.emulator and csrc/emu/README.md)";
  for (size_t i = 0; i < fc_emu::registry().size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (fc_emu::registry()[i].name == fc_emu::registry()[j].name)
        throw std::runtime_error("csrc/emu/kernel_table.inc registers '" + fc_emu::registry()[i].name + "' twice");
  // Local: each kernel module (compile_kernel, racecheck) has its own class; emulator.py maps them.
  py::register_local_exception<fc_emu::Error>(m, "EmulatorError", PyExc_RuntimeError);
  m.attr("POISON_WORD") = fc_emu::poison_word();   // what shared memory no store has reached reads as
  m.def("kernels", &kernels, "name -> C++ signature of every registered kernel, in table order");
  m.def("launch", &launch, py::arg("kernel"), py::arg("grid"), py::arg("block"), py::arg("args"), py::arg("shared_bytes"),
        py::arg("order"), py::arg("seed"), py::arg("poison_async"), py::arg("counters") = false,
        "Run a registered kernel (see fastconv.emulator.launch, which checks the configuration first).");
}

}  // namespace

PYBIND11_MODULE(_emu, m) { bind_module(m); }

// Kernel modules built at run time (fastconv.emulator.compile_kernel, the racecheck build) link this
// file's object under their own module name: their generated PyInit_<name> calls this.
extern "C" PyObject* fc_emu_init_module(const char* name) {
  static PyModuleDef def;
  try {
    auto m = py::module_::create_extension_module(name, nullptr, &def);
    bind_module(m);
    return m.release().ptr();
  } catch (py::error_already_set& e) {
    e.restore();
  } catch (const std::exception& e) {
    PyErr_SetString(PyExc_ImportError, e.what());
  }
  return nullptr;
}
