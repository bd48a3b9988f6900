// runtime.h — host side of the emulator: the kernel registry, guarded buffers and the launcher.
// Shared by runtime.cpp (the scheduler), kernels.cpp (registration, through registry.h) and
// bind.cpp (the Python module). No device vocabulary here, so bind.cpp stays free of emu.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "counters.h"

namespace fc_emu {

// Every launch failure; the message starts with the kernel's name. Python: EmulatorError.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// An out-of-bounds write found after the launch in a buffer's lead or tail (no thread named yet):
// the binding reruns the launch with LaunchConfig::locate_writes to name the thread.
struct LateOutOfBoundsError : Error {
  using Error::Error;
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
  bool locate_writes = false;   // check every buffer's lead and tail after each thread's turn (slow)
  // Non-null: count memory requests per site into it (instrumented build only; no race checks then).
  std::vector<counters::Site>* counters_out = nullptr;
};

// Device memory behind a pointer argument (or the dynamic shared memory):
//   [no access][read-only guard][lead][data, 256-byte aligned][tail][read-only guard][no access]
// The data ends where its 256-byte rounded size ends a page, so the tail is < 256 bytes and the lead
// < one page. Guards, lead and tail hold the poison pattern, so out-of-bounds reads poison results.
// A write into a guard page faults at once (the launcher names the thread and the element); a write
// into the lead or the tail is found by corrupted() after the fact (the pattern is a signalling NaN,
// so any value computed from it differs). Accesses farther out (up to 256 MiB) fault in a
// PROT_NONE region. `pattern` is the 8-byte poison (poison_pattern()).
class GuardedBuffer {
 public:
  static constexpr size_t kGuardBytes = 64 * 1024;
  static constexpr size_t kNoAccessBytes = 256 * 1024 * 1024;  // address space only
  GuardedBuffer(size_t nbytes, uint64_t pattern);
  ~GuardedBuffer();
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;
  char* data() const { return data_; }
  size_t size() const { return size_; }
  void repoison_data();                 // the data only (lead and tail are checked, not refilled)
  // Byte offsets (relative to data()) of the first and last lead/tail bytes that differ from the
  // pattern; false if both are intact.
  bool corrupted(long long* first, long long* last) const;
  // True if addr lies in this buffer's mapping (guards and PROT_NONE pages included).
  bool maps(const void* addr) const;
  // True if addr lies in a read-only guard page (a fault there is an out-of-bounds write).
  bool in_guard(const void* addr) const;

 private:
  char* map_ = nullptr;
  size_t map_len_ = 0;
  char* rw_lo_ = nullptr;               // the writable pages: [rw_lo_, rw_hi_) hold lead, data, tail
  char* rw_hi_ = nullptr;
  char* data_ = nullptr;
  size_t size_ = 0;
  uint64_t pattern_;
};

// The poison of a global buffer: a signalling NaN of the argument's dtype (float16 arrays: float16
// in every half; float64: float64 in the 8 bytes; others: emu.h's float32/bfloat16 pattern), with a
// payload that differs between arguments (`index`), so a guard value copied from one array into
// another's differs from that array's pattern.
uint64_t poison_pattern(const char* dtype, int index);

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

// emu.h's kPoisonWord, for the binding (which does not include the device-side headers).
uint32_t poison_word();

}  // namespace fc_emu
