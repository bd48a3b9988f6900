// symbols.cpp — reads the module's own .symtab (see symbols.h). Static __shared__ arrays are
// function-local `static thread_local` variables (emu.h), so each is a TLS symbol whose demangled
// name is "<function>::<array>"; every declaration also has a pad "<function>::fc_emu_shared_pad_N",
// which g++ places after the array it comes with (it emits a function's statics in reverse order of
// declaration).
#include "symbols.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>

namespace fc_emu {

namespace {

std::string demangle(const char* mangled) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> p(abi::__cxa_demangle(mangled, nullptr, nullptr, &status), std::free);
  return status == 0 && p ? std::string(p.get()) : std::string();
}

struct TlsObject {
  size_t begin, end;
  int owner;          // index into the owner names, -1 for thread_locals that are not shared memory
  bool pad;
  bool guard_variable;  // g++'s "initialised" flag of a thread_local with a constructor
  std::string local;    // the variable's own name
};

constexpr const char kPadPrefix[] = "fc_emu_shared_pad_";

void read_symbols(ModuleSymbols& S) {
  Dl_info info{};
  link_map* lm = nullptr;
  if (!dladdr1(reinterpret_cast<void*>(&module_symbols), &info, reinterpret_cast<void**>(&lm), RTLD_DL_LINKMAP) || !lm ||
      !info.dli_fname)
    return;
  S.path = info.dli_fname;
  const uintptr_t bias = lm->l_addr;
  S.bias = bias;
  const int fd = open(info.dli_fname, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st{};
  if (fstat(fd, &st) != 0 || st.st_size < static_cast<off_t>(sizeof(Elf64_Ehdr))) {
    close(fd);
    return;
  }
  const size_t len = static_cast<size_t>(st.st_size);
  void* m = mmap(nullptr, len, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return;
  const char* base = static_cast<const char*>(m);
  const Elf64_Ehdr* eh = reinterpret_cast<const Elf64_Ehdr*>(base);
  auto in_file = [&](size_t off, size_t n) { return off <= len && n <= len - off; };
  const bool elf64 = std::memcmp(eh->e_ident, ELFMAG, SELFMAG) == 0 && eh->e_ident[EI_CLASS] == ELFCLASS64 &&
                     in_file(eh->e_shoff, size_t{eh->e_shnum} * sizeof(Elf64_Shdr));
  const Elf64_Shdr* sh = elf64 ? reinterpret_cast<const Elf64_Shdr*>(base + eh->e_shoff) : nullptr;
  std::vector<TlsObject> tls;
  std::vector<std::string> owner_names;
  std::map<std::string, int> owner_index;
  for (int i = 0; sh && i < eh->e_shnum; ++i) {
    if (sh[i].sh_type != SHT_SYMTAB || sh[i].sh_link >= eh->e_shnum) continue;
    const Elf64_Shdr& strs = sh[sh[i].sh_link];
    if (!in_file(sh[i].sh_offset, sh[i].sh_size) || !in_file(strs.sh_offset, strs.sh_size)) continue;
    const Elf64_Sym* syms = reinterpret_cast<const Elf64_Sym*>(base + sh[i].sh_offset);
    const size_t n = sh[i].sh_size / sizeof(Elf64_Sym);
    const char* names = base + strs.sh_offset;
    for (size_t k = 0; k < n; ++k) {
      const Elf64_Sym& s = syms[k];
      if (s.st_name >= strs.sh_size || s.st_size == 0) continue;
      const char* name = names + s.st_name;
      const int type = ELF64_ST_TYPE(s.st_info);
      if (type == STT_FUNC && s.st_shndx != SHN_UNDEF) {
        S.functions.push_back({bias + s.st_value, bias + s.st_value + s.st_size, name});
      } else if (type == STT_TLS) {
        std::string d = demangle(name);
        const char* gv = "guard variable for ";
        const bool guard_variable = d.compare(0, std::strlen(gv), gv) == 0;
        if (guard_variable) d = d.substr(std::strlen(gv));
        const size_t cut = d.rfind("::");
        TlsObject o{s.st_value, s.st_value + s.st_size, -1, false, guard_variable, cut == std::string::npos ? d : d.substr(cut + 2)};
        if (cut != std::string::npos) {
          const std::string owner = d.substr(0, cut);
          auto it = owner_index.emplace(owner, static_cast<int>(owner_names.size())).first;
          if (it->second == static_cast<int>(owner_names.size())) owner_names.push_back(owner);
          o.owner = it->second;
          o.pad = o.local.compare(0, sizeof kPadPrefix - 1, kPadPrefix) == 0;
        }
        tls.push_back(o);
      }
    }
  }
  munmap(m, len);
  std::sort(S.functions.begin(), S.functions.end(), [](const auto& a, const auto& b) { return a.begin < b.begin; });
  std::sort(tls.begin(), tls.end(), [](const TlsObject& a, const TlsObject& b) { return a.begin < b.begin; });
  tls.erase(std::unique(tls.begin(), tls.end(), [](const TlsObject& a, const TlsObject& b) { return a.begin == b.begin && a.end == b.end; }),
            tls.end());
  // Owners with a pad have static shared memory: number them and collect what to poison and check.
  std::vector<int> shared_index(owner_names.size(), -1);
  for (const TlsObject& o : tls)
    if (o.pad && shared_index[o.owner] < 0) {
      shared_index[o.owner] = static_cast<int>(S.owners.size());
      S.owners.push_back(SharedOwner{owner_names[o.owner], {}, {}});
    }
  for (size_t i = 0; i < tls.size(); ++i) {
    const TlsObject& o = tls[i];
    const int so = o.owner < 0 ? -1 : shared_index[o.owner];
    if (so < 0) continue;
    SharedOwner& owner = S.owners[so];
    // Alignment gaps between objects of the same function are poisoned (and checked) too.
    const bool next_same = i + 1 < tls.size() && tls[i + 1].owner == o.owner;
    const size_t end = next_same ? tls[i + 1].begin : o.end;
    if (!owner.poison.empty() && owner.poison.back().second == o.begin) owner.poison.back().second = end;
    else owner.poison.push_back({o.begin, end});
    if (!o.pad && !o.guard_variable) S.arrays.push_back({o.begin, o.end, owner.function + "::" + o.local});
    if (o.pad) {
      S.pads.push_back({o.begin, so});
      const bool after_array = i > 0 && tls[i - 1].owner == o.owner && !tls[i - 1].pad && !tls[i - 1].guard_variable;
      if (after_array) owner.guards.push_back({tls[i - 1].end, o.end, tls[i - 1].local, tls[i - 1].end - tls[i - 1].begin});
      else owner.guards.push_back({o.begin, o.end, std::string(), 0});
    }
  }
  std::sort(S.pads.begin(), S.pads.end());
  S.ok = !S.functions.empty();
}

}  // namespace

int ModuleSymbols::owner_of_pad(size_t off) const {
  auto it = std::lower_bound(pads.begin(), pads.end(), std::make_pair(off, -1));
  return it != pads.end() && it->first == off ? it->second : -1;
}

const ModuleSymbols::Array* ModuleSymbols::array_at(size_t off) const {
  auto it = std::upper_bound(arrays.begin(), arrays.end(), off, [](size_t a, const Array& x) { return a < x.begin; });
  if (it == arrays.begin()) return nullptr;
  --it;
  return off < it->end ? &*it : nullptr;
}

std::string ModuleSymbols::function_at(uintptr_t pc) const {
  auto it = std::upper_bound(functions.begin(), functions.end(), pc, [](uintptr_t a, const Function& f) { return a < f.begin; });
  if (it == functions.begin()) return std::string();
  --it;
  if (pc >= it->end) return std::string();
  std::string d = demangle(it->name.c_str());
  char off[32];
  std::snprintf(off, sizeof off, "+0x%zx", static_cast<size_t>(pc - it->begin));
  return (d.empty() ? it->name : d) + off;
}

std::string ModuleSymbols::site_token(uintptr_t pc) const {
  char b[64];
  std::snprintf(b, sizeof b, "+0x%zx ", static_cast<size_t>(pc - bias));
  const std::string f = function_at(pc);
  return "{site " + path + b + (f.empty() ? std::string("?") : f) + "}";
}

const ModuleSymbols& module_symbols() {
  static ModuleSymbols symbols;
  static std::once_flag once;
  std::call_once(once, [] { read_symbols(symbols); });
  return symbols;
}

}  // namespace fc_emu
