// register_kernels.cuh — deduces a kernel's parameter list from its type and registers it.
// Included by the kernels_shard*.cu files, each of which registers one shard of kernel_list.inc
// (sharded so a parallel build compiles them at once; ptxas dominates the build time).
// FC_REGISTER_SM90A registers a kernel whose machine code exists only for sm_90a (kernels_sm90a.cu).
#pragma once
#include <type_traits>

#include "all_kernels.h"
#include "../arch/sm90/primitives.h"
#include "registry.h"

namespace fc {
namespace launch {

template <class T>
ParamInfo param_info() {
  using U = std::remove_cv_t<T>;
  ParamInfo p{};
  p.size = int(sizeof(U));
  if constexpr (std::is_pointer<U>::value) {
    using E = std::remove_pointer_t<U>;
    using B = std::remove_cv_t<E>;
    p.kind = ParamKind::kPointer;
    p.pointee_size = int(sizeof(B));
    p.pointee_kind = std::is_floating_point<B>::value ? 'f' : (std::is_signed<B>::value ? 'i' : 'u');
    p.pointee_const = std::is_const<E>::value;
    p.cpp = std::is_floating_point<B>::value ? (sizeof(B) == 4 ? "float*" : "double*")
                                             : (std::string(p.pointee_kind == 'i' ? "int" : "uint") +
                                                std::to_string(8 * sizeof(B)) + "_t*");
    // The tensor-core operands: __half arrives as NumPy/CuPy float16 ('f', 2 bytes); __nv_bfloat16 as
    // uint16 raw bits ('u', 2 bytes), since NumPy and CuPy have no bfloat16 (plans/tensor_op.py).
    if constexpr (std::is_same<B, __half>::value) {
      p.pointee_kind = 'f';
      p.cpp = "__half*";
    } else if constexpr (std::is_same<B, __nv_bfloat16>::value) {
      p.pointee_kind = 'u';
      p.cpp = "__nv_bfloat16*";
    }
    if (p.pointee_const) p.cpp = "const " + p.cpp;
  } else if constexpr (std::is_floating_point<U>::value) {
    p.kind = ParamKind::kFloat;
    p.cpp = sizeof(U) == 4 ? "float" : "double";
  } else if constexpr (std::is_integral<U>::value) {
    p.kind = std::is_signed<U>::value ? ParamKind::kSigned : ParamKind::kUnsigned;
    p.cpp = std::string(std::is_signed<U>::value ? "int" : "uint") + std::to_string(8 * sizeof(U)) + "_t";
  } else if constexpr (std::is_same<U, sm90::TensorMap>::value) {
    static_assert(sizeof(U) == kTensorMapBytes && alignof(U) == 64, "fc::sm90::TensorMap must match CUtensorMap");
    p.kind = ParamKind::kTensorMap;
    p.cpp = "fc::sm90::TensorMap (CUtensorMap)";
  } else {
    static_assert(std::is_trivially_copyable<U>::value, "struct kernel parameters must be trivially copyable");
    p.kind = ParamKind::kStruct;
    p.cpp = "struct of " + std::to_string(sizeof(U)) + " bytes";
  }
  return p;
}

template <class... Args>
bool register_entry(const char* name, int operand_align, bool needs_sm90a, void (*fn)(Args...)) {
  register_kernel(KernelInfo{name, {param_info<Args>()...}, reinterpret_cast<const void*>(fn), operand_align,
                             needs_sm90a});
  return true;
}

}  // namespace launch
}  // namespace fc

#define FC_REGISTER_CONCAT_(a, b) a##b
#define FC_REGISTER_CONCAT(a, b) FC_REGISTER_CONCAT_(a, b)
#define FC_REGISTER(align, ...)                                                           \
  static const bool FC_REGISTER_CONCAT(fc_registered_, __COUNTER__) =                     \
      ::fc::launch::register_entry(#__VA_ARGS__, align, false, &__VA_ARGS__);
#define FC_REGISTER_SM90A(align, ...)                                                     \
  static const bool FC_REGISTER_CONCAT(fc_registered_, __COUNTER__) =                     \
      ::fc::launch::register_entry(#__VA_ARGS__, align, true, &__VA_ARGS__);
