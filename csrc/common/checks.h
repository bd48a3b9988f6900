// checks.h — host-side argument and CUDA-call checks for the launchers and the binding.
// Failures throw (std::invalid_argument for bad arguments, std::runtime_error for CUDA errors);
// pybind11 turns them into ValueError / RuntimeError with the message intact.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace fc {

template <class... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace fc

// FC_CHECK(cond, "message parts", ...): an argument check; the message says what was expected and got.
#define FC_CHECK(cond, ...) \
  do { if (!(cond)) throw std::invalid_argument(::fc::cat(__VA_ARGS__)); } while (0)

// FC_CUDA_CHECK(call, "what"): every CUDA runtime call goes through this.
#define FC_CUDA_CHECK(call, ...)                                                                    \
  do {                                                                                              \
    cudaError_t fc_err_ = (call);                                                                   \
    if (fc_err_ != cudaSuccess)                                                                     \
      throw std::runtime_error(::fc::cat(__VA_ARGS__, ": ", cudaGetErrorName(fc_err_), " (",        \
                                         cudaGetErrorString(fc_err_), ") from " #call));            \
  } while (0)
