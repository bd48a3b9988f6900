// registry.h — FC_EMU_KERNEL: one line registers a kernel with the emulator. The launcher template
// deduces every parameter from the kernel's function type:
//   T* / const T*   a NumPy array whose dtype matches T (table below); const => not copied back
//   integers, bool  a Python int (range-checked against the C++ type)
//   float, double, __half, __nv_bfloat16   a Python float (overflow is an error)
//   trivially copyable struct (a params struct, float4, ...)   bytes / a structured NumPy scalar
//                                                              of exactly sizeof(T) bytes
// Included by kernels.cpp after platform.h, so the device types are known.
#pragma once

#include <cxxabi.h>

#include <cfloat>
#include <cstdlib>
#include <memory>
#include <typeinfo>
#include <utility>

#include "runtime.h"

namespace fc_emu {
namespace reg {

// Pointee type -> (C++ name, NumPy dtype of the array). Vector types take arrays of their element.
template <class T> struct Pointee { static constexpr const char* name = nullptr; static constexpr const char* dtype = nullptr; };
#define FC_EMU_POINTEE(T, cname, npname) \
  template <> struct Pointee<T> { static constexpr const char* name = cname; static constexpr const char* dtype = npname; };
FC_EMU_POINTEE(float, "float", "float32")
FC_EMU_POINTEE(double, "double", "float64")
FC_EMU_POINTEE(signed char, "int8_t", "int8")
FC_EMU_POINTEE(unsigned char, "uint8_t", "uint8")
FC_EMU_POINTEE(short, "int16_t", "int16")
FC_EMU_POINTEE(unsigned short, "uint16_t", "uint16")
FC_EMU_POINTEE(int, "int", "int32")
FC_EMU_POINTEE(unsigned int, "unsigned", "uint32")
FC_EMU_POINTEE(long, "long", "int64")
FC_EMU_POINTEE(long long, "long long", "int64")
FC_EMU_POINTEE(unsigned long, "unsigned long", "uint64")
FC_EMU_POINTEE(unsigned long long, "unsigned long long", "uint64")
FC_EMU_POINTEE(bool, "bool", "bool")
FC_EMU_POINTEE(__half, "__half", "float16")
FC_EMU_POINTEE(__half2, "__half2", "float16")
FC_EMU_POINTEE(__nv_bfloat16, "__nv_bfloat16", "uint16")
FC_EMU_POINTEE(__nv_bfloat162, "__nv_bfloat162", "uint16")
FC_EMU_POINTEE(float2, "float2", "float32")
FC_EMU_POINTEE(float4, "float4", "float32")
FC_EMU_POINTEE(int2, "int2", "int32")
FC_EMU_POINTEE(int4, "int4", "int32")
FC_EMU_POINTEE(uint2, "uint2", "uint32")
FC_EMU_POINTEE(uint4, "uint4", "uint32")
#undef FC_EMU_POINTEE

template <class T> struct dependent_false : std::false_type {};

inline std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> p(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && p ? std::string(p.get()) : std::string(mangled);
}

template <class T>
bool store_float(double v, void* dst) {
  T x;
  if constexpr (std::is_same<T, float>::value) x = static_cast<float>(v);
  else if constexpr (std::is_same<T, double>::value) x = v;
  else x = T(v);                         // __half(double) / __nv_bfloat16(double): round to nearest even
  std::memcpy(dst, &x, sizeof(T));
  if constexpr (std::is_same<T, double>::value) return true;
  else return !std::isfinite(v) || std::isfinite(static_cast<float>(x));
}

template <class T>
ParamSpec param_spec() {
  static_assert(!std::is_reference<T>::value, "kernel parameters cannot be references");
  using U = std::remove_cv_t<T>;
  ParamSpec p;
  p.size = sizeof(U);
  p.align = alignof(U);
  static_assert(alignof(U) <= 64, "kernel parameters aligned beyond 64 bytes are not supported");
  if constexpr (std::is_pointer<U>::value) {
    using P = std::remove_pointer_t<U>;
    using B = std::remove_cv_t<P>;
    static_assert(Pointee<B>::dtype != nullptr,
                  "unsupported pointer parameter: the pointee must be float, double, (u)int8/16/32/64, bool, "
                  "__half(2), __nv_bfloat16(2), float2/4, int2/4 or uint2/4");
    p.kind = ParamKind::Pointer;
    p.pointee_const = std::is_const<P>::value;
    p.dtype = Pointee<B>::dtype;
    p.pointee_size = sizeof(B);
    p.cpp_type = std::string(p.pointee_const ? "const " : "") + Pointee<B>::name + "*";
  } else if constexpr (std::is_same<U, bool>::value) {
    p.kind = ParamKind::Bool;
    p.cpp_type = "bool";
  } else if constexpr (std::is_integral<U>::value || std::is_enum<U>::value) {
    using I = typename std::conditional_t<std::is_enum<U>::value, std::underlying_type<U>, std::common_type<U>>::type;
    p.kind = std::is_signed<I>::value ? ParamKind::Signed : ParamKind::Unsigned;
    p.cpp_type = std::is_enum<U>::value ? demangle(typeid(U).name()) : (Pointee<I>::name ? Pointee<I>::name : demangle(typeid(U).name()));
  } else if constexpr (std::is_same<U, float>::value || std::is_same<U, double>::value) {
    p.kind = ParamKind::Float;
    p.cpp_type = std::is_same<U, float>::value ? "float" : "double";
    p.from_double = &store_float<U>;
  } else if constexpr (std::is_same<U, __half>::value || std::is_same<U, __nv_bfloat16>::value) {
    p.kind = std::is_same<U, __half>::value ? ParamKind::Half : ParamKind::BFloat16;
    p.cpp_type = Pointee<U>::name;
    p.from_double = &store_float<U>;
  } else if constexpr (std::is_class<U>::value && std::is_trivially_copyable<U>::value) {
    p.kind = ParamKind::Struct;
    p.cpp_type = demangle(typeid(U).name());
  } else {
    static_assert(dependent_false<T>::value, "unsupported kernel parameter type");
  }
  return p;
}

template <class... Args, size_t... I>
void invoke_impl(ErasedFn fn, void* const* slots, std::index_sequence<I...>) {
  reinterpret_cast<void (*)(Args...)>(fn)(*static_cast<std::remove_cv_t<Args>*>(slots[I])...);
}
template <class... Args>
void invoke(ErasedFn fn, void* const* slots) {
  invoke_impl<Args...>(fn, slots, std::index_sequence_for<Args...>{});
}

template <class... Args>
KernelEntry make_entry(const char* name, const char* expr, void (*fn)(Args...)) {
  KernelEntry e;
  e.name = name;
  e.expr = expr;
  if (e.expr.size() >= 2 && e.expr.front() == '(' && e.expr.back() == ')') e.expr = e.expr.substr(1, e.expr.size() - 2);
  e.params = {param_spec<Args>()...};
  e.fn = reinterpret_cast<ErasedFn>(fn);
  e.invoke = &invoke<Args...>;
  return e;
}

}  // namespace reg
}  // namespace fc_emu

#define FC_EMU_CONCAT_(a, b) a##b
#define FC_EMU_CONCAT(a, b) FC_EMU_CONCAT_(a, b)
// FC_EMU_KERNEL("name", (kernel<template args>)): the parentheses protect commas in template lists.
#define FC_EMU_KERNEL(name, fn) \
  static const ::fc_emu::Registrar FC_EMU_CONCAT(fc_emu_kernel_, __COUNTER__)(::fc_emu::reg::make_entry(name, #fn, fn));
