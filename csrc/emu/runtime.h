// runtime.h — host side of the emulator: the kernel registry, guarded buffers and the launcher.
// Shared by runtime.cpp (the scheduler), kernels.cpp (registration, through registry.h) and
// bind.cpp (the Python module). No device vocabulary here, so bind.cpp stays free of emu.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace fc_emu {

// Every launch failure; the message starts with the kernel's name. Python: EmulatorError.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class ParamKind { Pointer, Signed, Unsigned, Float, Bool, Half, BFloat16, Struct };

// One kernel parameter, as deduced from the kernel's function type (registry.h).
struct ParamSpec {
  ParamKind kind = ParamKind::Struct;
  size_t size = 0, align = 1;          // of the parameter itself
  std::string cpp_type;                 // "const float*", "int", "fc_selftest::AxpyParams"
  // Pointer: the array must have this NumPy dtype; its bytes must be a multiple of pointee_size
  // (a float4* takes a float32 array of 4k elements). Pointer-to-const arguments are not copied back.
  bool pointee_const = false;
  const char* dtype = nullptr;
  size_t pointee_size = 0;
  // Float / Half / BFloat16: store `v` converted to the parameter type; false if it overflows.
  bool (*from_double)(double v, void* dst) = nullptr;
};

typedef void (*ErasedFn)();
typedef void (*Invoker)(ErasedFn fn, void* const* slots);

struct KernelEntry {
  std::string name;                     // the table's name, e.g. "selftest.sgemm_tiled"
  std::string expr;                     // the C++ expression, e.g. "fc_selftest::sgemm_tiled<16, false>"
  std::vector<ParamSpec> params;
  ErasedFn fn = nullptr;                // the kernel, its type erased
  Invoker invoke = nullptr;             // calls fn with the parameter values in slots[i]
  std::string signature() const;        // "fc_selftest::sgemm_tiled<16, false>(const float*, ..., int)"
};

std::vector<KernelEntry>& registry();
const KernelEntry* find_kernel(const std::string& name);

struct Registrar {
  explicit Registrar(KernelEntry e) { registry().push_back(std::move(e)); }
};

enum class Order { Forward, Reverse, Random };

struct LaunchConfig {
  unsigned grid[3] = {1, 1, 1};
  unsigned block[3] = {1, 1, 1};
  size_t shared_bytes = 0;
  Order order = Order::Forward;
  uint64_t seed = 0;
  bool poison_async = false;
};

// Device memory behind a pointer argument (or the dynamic shared memory):
//   [no access][guard >= kGuardBytes][data, 256-byte aligned][guard >= kGuardBytes][no access]
// Guards hold the poison pattern (NaN for every float type), so out-of-bounds reads poison results
// and out-of-bounds writes are found by corrupted(); accesses farther out (up to 256 MiB) fault in
// a PROT_NONE region, which the launcher reports as an error naming the argument.
class GuardedBuffer {
 public:
  static constexpr size_t kGuardBytes = 64 * 1024;
  static constexpr size_t kNoAccessBytes = 256 * 1024 * 1024;  // address space only
  explicit GuardedBuffer(size_t nbytes);
  ~GuardedBuffer();
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  char* data() const { return data_; }
  size_t size() const { return size_; }
  void repoison();                      // fill data and guards with the poison pattern
  void repoison_data();                 // the data only (the guards are checked, not refilled)
  // Byte offsets (relative to data()) of the first and last guard bytes that differ from the
  // pattern; false if both guards are intact.
  bool corrupted(long long* first, long long* last) const;
  // True if addr lies in this buffer's mapping (guards and PROT_NONE pages included).
  bool maps(const void* addr) const;

 private:
  char* map_ = nullptr;
  size_t map_len_ = 0;
  char* data_ = nullptr;
  size_t size_ = 0;
};

// A pointer argument's buffer, for error messages.
struct ArgBuffer {
  const GuardedBuffer* buffer;
  int arg_index;
  std::string cpp_type;
  size_t elem_size;
};

// Runs every block of the grid. Throws Error (the message names the kernel, and the block and
// thread where it applies) on a barrier or warp-collective mismatch, an error raised by device code,
// a fault, or an out-of-bounds write found in the guards of `buffers` or of the shared memory.
void launch(const KernelEntry& kernel, const LaunchConfig& cfg, void* const* slots, const std::vector<ArgBuffer>& buffers);

}  // namespace fc_emu
