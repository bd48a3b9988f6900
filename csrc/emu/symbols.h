// symbols.h — the emulator module's own ELF symbol table, read once: where each function's static
// __shared__ arrays lie in the module's TLS block (so that a block poisons only the shared memory
// of the functions it runs, and checks the pad after each array), and which function a code
// address belongs to (error messages name it). A stripped module has no table: the runtime then
// falls back to poisoning the whole TLS block at every block start, without pad checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fc_emu {

// The static shared memory of one function (a kernel or a device function it calls): offsets in
// the module's TLS block.
struct SharedOwner {
  std::string function;                               // demangled, e.g. "void fc::transpose<32>(float const*, float*)"
  std::vector<std::pair<size_t, size_t>> poison;      // [begin, end) ranges to poison per block
  struct Guard {
    size_t begin, end;                                // bytes after the array, up to its pad's end
    std::string array;                                // the array's name ("" if the pad follows none)
    size_t array_bytes;
  };
  std::vector<Guard> guards;
};

struct ModuleSymbols {
  bool ok = false;                                    // false: no symbol table (stripped) or unreadable
  std::string path;                                   // the module's file
  uintptr_t bias = 0;                                 // load address - file address
  std::vector<SharedOwner> owners;
  std::vector<std::pair<size_t, int>> pads;           // (pad offset, owner index), sorted by offset
  struct Array {
    size_t begin, end;
    std::string name;                                 // "void fc::transpose<32>(float const*, float*)::tile"
  };
  std::vector<Array> arrays;                          // static shared arrays, sorted by begin
  struct Function {
    uintptr_t begin, end;                             // load addresses
    std::string name;                                 // mangled
  };
  std::vector<Function> functions;                    // sorted by begin

  // The owner whose pad starts at TLS offset `off`, or -1.
  int owner_of_pad(size_t off) const;
  // The static shared array holding TLS offset `off`, or nullptr.
  const Array* array_at(size_t off) const;
  // "fc::transpose<32>(float const*, float*)+0x1c" for a code address in this module, else "".
  std::string function_at(uintptr_t pc) const;
  // "{site /path/module.so+0x1c2b fc::transpose<32>(float const*, float*)+0x1c}": a code address
  // that fastconv/emulator.py turns into file:line where the module has line tables.
  std::string site_token(uintptr_t pc) const;
};

// The table of the module that holds this function (read on first use; thread-safe).
const ModuleSymbols& module_symbols();

}  // namespace fc_emu
