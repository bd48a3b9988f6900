// runtime.cpp — the emulator's scheduler: fibers, blocks, barriers, warp collectives, cp.async,
// guarded buffers, and the fault net that turns a segfault in device code into an EmulatorError.
//
// A launch runs on a fresh worker OS thread (so that the module's thread-local storage, which holds
// every kernel's static __shared__ arrays, is private to the launch and can be poisoned per block).
// The worker runs the blocks one after another; for each block it starts one fiber per thread and
// sweeps over the threads in the chosen order, running each ready one until it blocks at a barrier
// or warp collective, or exits. When a sweep leaves nothing ready, it resolves the warp collectives
// whose lanes have all arrived, else releases the barrier if every thread waits at the same one,
// else reports what each thread is waiting for: an emulated deadlock is an error, never a hang.
#include "../common/platform.h"
#include "runtime.h"
#include "symbols.h"
#if defined(FC_EMU_RACECHECK)
#  include "racecheck.h"
#endif

#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <deque>
#include <exception>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>

#if !defined(__x86_64__) || defined(FC_EMU_USE_UCONTEXT)
#  include <ucontext.h>
#  define FC_EMU_UCONTEXT 1
#endif

namespace fc_emu {

uint3 g_thread_idx{0, 0, 0};
uint3 g_block_idx{0, 0, 0};
dim3 g_block_dim;
dim3 g_grid_dim;

// ---- registry ---------------------------------------------------------------------------------------
std::vector<KernelEntry>& registry() {
  static std::vector<KernelEntry> entries;
  return entries;
}

const KernelEntry* find_kernel(const std::string& name) {
  for (const KernelEntry& e : registry())
    if (e.name == name) return &e;
  return nullptr;
}

std::string KernelEntry::signature() const {
  std::string s = expr + "(";
  for (size_t i = 0; i < params.size(); ++i) s += (i ? ", " : "") + params[i].cpp_type;
  return s + ")";
}

// ---- poison ---------------------------------------------------------------------------------------
// The pattern's phase follows the address (byte a holds byte a%8 of the little-endian 8-byte
// pattern), so any aligned float, half or double read from poison is a NaN.
static inline unsigned char poison_byte(uintptr_t addr, uint64_t pattern) {
  return static_cast<unsigned char>(pattern >> (8 * (addr & 7u)));
}

static void poison_fill(void* p, size_t n, uint64_t pattern) {
  unsigned char* b = static_cast<unsigned char*>(p);
  size_t i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(b + i) & 7u); ++i) b[i] = poison_byte(reinterpret_cast<uintptr_t>(b + i), pattern);
  for (; i + 8 <= n; i += 8) std::memcpy(b + i, &pattern, 8);
  for (; i < n; ++i) b[i] = poison_byte(reinterpret_cast<uintptr_t>(b + i), pattern);
}

void poison_fill(void* p, size_t n) { poison_fill(p, n, kPoison64); }

uint64_t poison_pattern(const char* dtype, int index) {
  const uint64_t id = 1 + static_cast<uint64_t>(index) % 63;   // a payload of 1..63: NaN and signalling in every type
  if (dtype && std::strcmp(dtype, "float16") == 0) {
    const uint64_t half = 0x7d00u | id;                        // exponent all ones, quiet bit clear
    return half * 0x0001000100010001ull;
  }
  const uint64_t lo = (kPoisonWord & 0xffffff00u) | 0x80u | id;  // float32 0x7fa5ff8x, bfloat16 halves signalling
  if (dtype && std::strcmp(dtype, "float64") == 0) return lo | (0x7ff5ff80ull | id) << 32;   // exponent all ones, quiet bit clear
  return lo | lo << 32;
}

// Offsets (from `origin`) of the first and last bytes of [p, p+n) that are not poison. Compares
// 8 bytes at a time.
static bool find_unpoisoned(const char* p, size_t n, const char* origin, uint64_t pattern, long long* first, long long* last) {
  auto bad = [&](size_t i) {
    return static_cast<unsigned char>(p[i]) != poison_byte(reinterpret_cast<uintptr_t>(p + i), pattern);
  };
  auto word_ok = [&](size_t i) {  // p + i is 8-aligned
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    return w == pattern;
  };
  size_t i = 0;
  while (i < n && (reinterpret_cast<uintptr_t>(p + i) & 7u) && !bad(i)) ++i;
  if (i < n && !(reinterpret_cast<uintptr_t>(p + i) & 7u))
    while (i + 8 <= n && word_ok(i)) i += 8;
  while (i < n && !bad(i)) ++i;
  if (i == n) return false;
  size_t j = n;  // one past the last bad byte, scanning down
  while (j > i && (reinterpret_cast<uintptr_t>(p + j) & 7u) && !bad(j - 1)) --j;
  if (!(reinterpret_cast<uintptr_t>(p + j) & 7u))
    while (j >= i + 8 && word_ok(j - 8)) j -= 8;
  while (j > i && !bad(j - 1)) --j;
  *first = static_cast<long long>(p + i - origin);
  *last = static_cast<long long>(p + j - 1 - origin);
  return true;
}

// ---- guarded buffers ------------------------------------------------------------------------------
static size_t page_size() {
  static const size_t p = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return p;
}
static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

GuardedBuffer::GuardedBuffer(size_t nbytes, uint64_t pattern) : size_(nbytes), pattern_(pattern) {
  const size_t P = kNoAccessBytes, G = round_up(kGuardBytes, page_size());
  const size_t rounded = round_up(nbytes, 256), span = round_up(rounded, page_size());
  map_len_ = P + G + span + G + P;
  void* m = mmap(nullptr, map_len_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) throw Error("emulator: cannot map a buffer of " + std::to_string(nbytes) + " bytes");
  map_ = static_cast<char*>(m);
  if (mprotect(map_ + P, map_len_ - 2 * P, PROT_READ | PROT_WRITE) != 0) {
    munmap(map_, map_len_);
    throw Error("emulator: cannot map a buffer of " + std::to_string(nbytes) + " bytes");
  }
  rw_lo_ = map_ + P + G;
  rw_hi_ = rw_lo_ + span;
  data_ = rw_hi_ - rounded;
  poison_fill(map_ + P, map_len_ - 2 * P, pattern_);
  if (mprotect(map_ + P, G, PROT_READ) != 0 || mprotect(rw_hi_, G, PROT_READ) != 0) {
    munmap(map_, map_len_);
    throw Error("emulator: cannot protect the guards of a buffer of " + std::to_string(nbytes) + " bytes");
  }
}

GuardedBuffer::~GuardedBuffer() { munmap(map_, map_len_); }

void GuardedBuffer::repoison_data() { poison_fill(data_, size_, pattern_); }

bool GuardedBuffer::corrupted(long long* first, long long* last) const {
  long long f0 = 0, l0 = 0, f1 = 0, l1 = 0;
  const bool before = find_unpoisoned(rw_lo_, static_cast<size_t>(data_ - rw_lo_), data_, pattern_, &f0, &l0);
  const bool after = find_unpoisoned(data_ + size_, static_cast<size_t>(rw_hi_ - (data_ + size_)), data_, pattern_, &f1, &l1);
  if (!before && !after) return false;
  *first = before ? f0 : f1;
  *last = after ? l1 : l0;
  return true;
}

bool GuardedBuffer::maps(const void* addr) const {
  const char* a = static_cast<const char*>(addr);
  return a >= map_ && a < map_ + map_len_;
}

bool GuardedBuffer::in_guard(const void* addr) const {
  const char* a = static_cast<const char*>(addr);
  const size_t G = round_up(kGuardBytes, page_size());
  return (a >= rw_lo_ - G && a < rw_lo_) || (a >= rw_hi_ && a < rw_hi_ + G);
}

// ---- context switch ---------------------------------------------------------------------------------
// x86-64 System V: save the callee-saved registers, MXCSR and the x87 control word on the current
// stack, store the stack pointer, load the other one, restore and return into it. A new fiber's
// stack is laid out as if it had been switched away from just before entering fiber_main. This
// avoids the sigprocmask system call glibc's swapcontext makes on every switch (the ucontext path
// remains for other architectures, or with -DFC_EMU_USE_UCONTEXT; tests/emu passes with both).
#if !defined(FC_EMU_UCONTEXT)
asm(R"(
    .text
    .p2align 4
    .globl fc_emu_switch_context
    .hidden fc_emu_switch_context
    .type fc_emu_switch_context, @function
fc_emu_switch_context:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size fc_emu_switch_context, .-fc_emu_switch_context
)");
extern "C" void fc_emu_switch_context(void** save_sp, void* load_sp);
#endif

namespace {

enum class St : uint8_t { Ready, Barrier, Warp, Poll, Exited };

struct CopyOp {
  void* dst;
  const void* src;
  unsigned cp_size, src_size;
};

constexpr size_t kStackBytes = 256 * 1024;  // per CUDA thread; only touched pages cost memory
// PROT_NONE below each stack. setup.py compiles with -fstack-clash-protection, so a frame larger
// than the guard is probed page by page and its first fault lands in the guard, never in the stack
// of another fiber.
constexpr size_t kStackGuardBytes = 64 * 1024;

struct Fiber {
#if defined(FC_EMU_UCONTEXT)
  ucontext_t ctx;
#else
  void* sp = nullptr;
#endif
  char* stack_lo = nullptr;  // usable stack [stack_lo, stack_hi); kStackGuardBytes of PROT_NONE below
  char* stack_hi = nullptr;
  St st = St::Exited;
  unsigned linear = 0;
  uint3 tid{0, 0, 0};
  Site bar_site{nullptr, 0};
  int bar_kind = 0, bar_pred = 0, bar_result = 0;
  unsigned w_mask = 0;
  WarpResolver w_resolve = nullptr;
  const char* w_name = nullptr;
  void* w_data = nullptr;
  Site w_site{nullptr, 0};
  std::vector<CopyOp> uncommitted;
  std::deque<std::vector<CopyOp>> committed;
  // wait_until (St::Poll)
  PollFn p_ready = nullptr;
  DescribeFn p_describe = nullptr;
  const void* p_ctx = nullptr;
  const char* p_name = nullptr;
  Site p_site{nullptr, 0};
  // async_push / async_commit (wgmma): op bytes of the open group, and the committed groups
  std::vector<unsigned char> a_uncommitted;
  size_t a_uncommitted_ops = 0;
  std::deque<std::pair<std::vector<unsigned char>, size_t>> a_committed;
};

struct DeferredWork {
  void (*run)(const void* ctx);
  std::vector<unsigned char> ctx;
  const char* what;
  Site site;
  unsigned thread;
};

struct LaunchState {
  const KernelEntry* kernel = nullptr;
  const LaunchConfig* cfg = nullptr;
  void* const* slots = nullptr;
  const std::vector<ArgBuffer>* buffers = nullptr;
  std::vector<Fiber> fibers;
  unsigned nthreads = 0, nwarps = 0;
  Fiber* current = nullptr;  // the fiber running now; nullptr while the scheduler runs
#if defined(FC_EMU_UCONTEXT)
  ucontext_t sched_ctx;
#else
  void* sched_sp = nullptr;
  uint64_t fpu_word = 0;  // MXCSR | x87 control word << 32, for new fibers
#endif
  bool failed = false;
  std::string error;
  std::unique_ptr<GuardedBuffer> dyn_smem;
  std::vector<char> async_view;   // dyn_smem as the async proxy last saw it (async_proxy_fence)
  char* tls_lo = nullptr;  // the worker thread's TLS block of this module: static __shared__ arrays
  size_t tls_len = 0;
  // Static shared memory by function (symbols.h): poisoned when a block first reaches one of its
  // declarations; the pads of those reached in this block are checked after every thread's turn.
  const ModuleSymbols* symbols = nullptr;   // nullptr: no symbol table, poison the whole block
  std::vector<uint32_t> owner_epoch;        // the block (epoch) that last poisoned each owner
  uint32_t block_epoch = 0;
  std::vector<int> block_owners;            // owners reached in this block
  const unsigned char* last_pad = nullptr;  // a one-entry cache for shared_reached()
  int last_owner = -1;
  std::mt19937_64 rng;
  std::vector<unsigned> order;
  unsigned long long clock = 0;
  std::unordered_map<const void*, MBarrierState> mbarriers;  // this block's, by address
  std::vector<DeferredWork> deferred;                         // bulk copies in flight
  pthread_t worker{};
  // set by the fault handler
  int fault_signal = 0;
  void* fault_addr = nullptr;
  uintptr_t fault_pc = 0;
};

LaunchState* g_L = nullptr;
std::mutex g_launch_mutex;
std::vector<char*> g_stack_pool;  // stacks are kept across launches (guarded by g_launch_mutex)

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, f);
  vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

std::string site_str(const Site& s) { return s.file ? fmt("%s:%u", s.file, s.line) : std::string("?"); }

// " at {site ...}" (symbols.h) for a code address of this module, if the symbol table has it.
std::string code_str(uintptr_t pc) {
  const ModuleSymbols& sym = module_symbols();
  return sym.function_at(pc).empty() ? std::string() : " at " + sym.site_token(pc);
}
std::string tid_str(const Fiber& f) { return fmt("(%u,%u,%u)", f.tid.x, f.tid.y, f.tid.z); }

std::string block_prefix(const LaunchState& L) {
  return fmt("kernel '%s' block (%u,%u,%u): ", L.kernel->name.c_str(), g_block_idx.x, g_block_idx.y, g_block_idx.z);
}

// "(0,0,0), (1,0,0), (2,0,0), (3,0,0) and 12 more"
std::string thread_list(const LaunchState& L, const std::vector<unsigned>& ids) {
  std::string s;
  for (size_t i = 0; i < ids.size() && i < 4; ++i) s += (i ? ", " : "") + tid_str(L.fibers[ids[i]]);
  if (ids.size() > 4) s += fmt(" and %zu more", ids.size() - 4);
  return s;
}

// "0-15, 17" for a lane mask
std::string lane_list(unsigned mask) {
  std::string s;
  for (int l = 0; l < 32; ++l) {
    if (!(mask >> l & 1u)) continue;
    int h = l;
    while (h + 1 < 32 && (mask >> (h + 1) & 1u)) ++h;
    s += (s.empty() ? "" : ", ") + (h == l ? fmt("%d", l) : fmt("%d-%d", l, h));
    l = h;
  }
  return s;
}

// ---- fibers --------------------------------------------------------------------------------------
char* allocate_stack() {
  void* m = mmap(nullptr, kStackGuardBytes + kStackBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) throw Error("emulator: cannot map a fiber stack");
  char* lo = static_cast<char*>(m) + kStackGuardBytes;
  if (mprotect(lo, kStackBytes, PROT_READ | PROT_WRITE) != 0) throw Error("emulator: cannot map a fiber stack");
  return lo;
}

void switch_to_scheduler(Fiber& f) {
#if defined(FC_EMU_UCONTEXT)
  swapcontext(&f.ctx, &g_L->sched_ctx);
#else
  fc_emu_switch_context(&f.sp, g_L->sched_sp);
#endif
}

void complete_copies(std::vector<CopyOp>& ops) {
  for (const CopyOp& c : ops) {
    std::memcpy(c.dst, c.src, c.src_size);
    std::memset(static_cast<char*>(c.dst) + c.src_size, 0, c.cp_size - c.src_size);
  }
  ops.clear();
}

[[noreturn]] void fiber_main() {
  LaunchState& L = *g_L;
  Fiber& f = *L.current;
  L.kernel->invoke(L.kernel->fn, L.slots);
  // Copies still in flight land eventually on the GPU; complete them in issue order.
  while (!f.committed.empty()) {
    complete_copies(f.committed.front());
    f.committed.pop_front();
  }
  complete_copies(f.uncommitted);
  f.st = St::Exited;
  switch_to_scheduler(f);
  __builtin_unreachable();  // an exited fiber is never resumed
}

void prepare_fiber(LaunchState& L, Fiber& f) {
  f.st = St::Ready;
  f.uncommitted.clear();
  f.committed.clear();
  f.a_uncommitted.clear();
  f.a_uncommitted_ops = 0;
  f.a_committed.clear();
  f.p_ready = nullptr;
#if defined(FC_EMU_UCONTEXT)
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack_lo;
  f.ctx.uc_stack.ss_size = static_cast<size_t>(f.stack_hi - f.stack_lo);
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, reinterpret_cast<void (*)()>(&fiber_main), 0);
  (void)L;
#else
  uint64_t* sp = reinterpret_cast<uint64_t*>(f.stack_hi);  // 16-byte aligned
  *--sp = 0;                                                // fiber_main's (never used) return address
  *--sp = reinterpret_cast<uint64_t>(&fiber_main);          // where the switch's `ret` goes
  for (int i = 0; i < 6; ++i) *--sp = 0;                    // rbp rbx r12 r13 r14 r15
  *--sp = L.fpu_word;
  f.sp = sp;
#endif
}

void resume(LaunchState& L, Fiber& f) {
  L.current = &f;
  g_thread_idx = f.tid;
#if defined(FC_EMU_RACECHECK)
  race::set_thread(static_cast<int>(f.linear));
  counters::set_thread(static_cast<int>(f.linear));
#endif
#if defined(FC_EMU_UCONTEXT)
  swapcontext(&L.sched_ctx, &f.ctx);
#else
  fc_emu_switch_context(&L.sched_sp, f.sp);
#endif
#if defined(FC_EMU_RACECHECK)
  race::set_thread(-1);
  counters::set_thread(-1);
#endif
  L.current = nullptr;
}

Fiber& current_fiber(const char* what) {
  if (!g_L || !g_L->current) fail("%s called outside a kernel launch", what);
  return *g_L->current;
}

// ---- the fault net ------------------------------------------------------------------------------------
struct sigaction g_old_segv, g_old_bus, g_old_fpe;

[[noreturn]] void fiber_fault_exit() {
  LaunchState& L = *g_L;
  const void* a = L.fault_addr;
  if (L.fault_signal == SIGFPE) fail("arithmetic exception (SIGFPE: integer division by zero?)");
  const std::string where = code_str(L.fault_pc);
  for (const ArgBuffer& b : *L.buffers) {
    if (!b.buffer->maps(a)) continue;
    const long long off = static_cast<const char*>(a) - b.buffer->data(), es = static_cast<long long>(b.elem_size);
    const long long n = static_cast<long long>(b.buffer->size()) / es, elem = off >= 0 ? off / es : -((-off + es - 1) / es);
    if (b.buffer->in_guard(a))
      fail("out-of-bounds write to argument %d (%s, %lld elements): element %lld (byte offset %lld)%s", b.arg_index,
           b.cpp_type.c_str(), n, elem, off, where.c_str());
    fail("out-of-bounds access to argument %d (%s, %zu bytes): byte offset %lld from its start, beyond its guard zone%s",
         b.arg_index, b.cpp_type.c_str(), b.buffer->size(), off, where.c_str());
  }
  if (L.dyn_smem->maps(a)) {
    const long long off = static_cast<const char*>(a) - L.dyn_smem->data();
    fail("out-of-bounds %s dynamic shared memory (shared_bytes=%zu): byte offset %lld%s",
         L.dyn_smem->in_guard(a) ? "write to" : "access to", L.cfg->shared_bytes, off, where.c_str());
  }
  const Fiber& f = *L.current;
  const char* ca = static_cast<const char*>(a);
  if (ca < f.stack_lo && ca >= f.stack_lo - kStackGuardBytes)
    fail("stack overflow: the thread used more than %zu KiB of local memory", kStackBytes / 1024);
  if (!a) fail("invalid memory access (signal %d): a null pointer, or an address so far out that the CPU reports none", L.fault_signal);
  fail("invalid memory access at address %p (signal %d)", a, L.fault_signal);
}

void on_fault(int sig, siginfo_t* info, void* uc_void) {
  LaunchState* L = g_L;
  if (L && L->current && pthread_equal(pthread_self(), L->worker)) {
#if defined(__x86_64__)
    // Resume the faulting fiber in fiber_fault_exit on a fresh top of its own stack; it reports
    // and switches to the scheduler, which abandons the fiber.
    ucontext_t* uc = static_cast<ucontext_t*>(uc_void);
    L->fault_signal = sig;
    L->fault_addr = info->si_addr;
    L->fault_pc = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
    uc->uc_mcontext.gregs[REG_RSP] = static_cast<greg_t>(reinterpret_cast<uintptr_t>(L->current->stack_hi) - 24);
    uc->uc_mcontext.gregs[REG_RIP] = static_cast<greg_t>(reinterpret_cast<uintptr_t>(&fiber_fault_exit));
    return;
#endif
  }
  // Not a fault of device code: hand it to whoever handled it before (the fault repeats).
  sigaction(sig, sig == SIGSEGV ? &g_old_segv : sig == SIGBUS ? &g_old_bus : &g_old_fpe, nullptr);
}

void install_fault_handlers() {
#if defined(__x86_64__)
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = &on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_old_segv);
  sigaction(SIGBUS, &sa, &g_old_bus);
  sigaction(SIGFPE, &sa, &g_old_fpe);
#endif
}

void restore_fault_handlers() {
#if defined(__x86_64__)
  sigaction(SIGSEGV, &g_old_segv, nullptr);
  sigaction(SIGBUS, &g_old_bus, nullptr);
  sigaction(SIGFPE, &g_old_fpe, nullptr);
#endif
}

// ---- static shared memory = this module's TLS block on the worker thread ---------------------------
thread_local char t_tls_anchor;  // touching it makes the loader allocate the module's TLS block

struct TlsSearch {
  uintptr_t code;
  char* lo;
  size_t len;
};

int find_module_tls(dl_phdr_info* info, size_t, void* data) {
  TlsSearch* s = static_cast<TlsSearch*>(data);
  bool mine = false;
  size_t tls_len = 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    const uintptr_t start = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && s->code >= start && s->code < start + ph.p_memsz) mine = true;
    if (ph.p_type == PT_TLS) tls_len = ph.p_memsz;
  }
  if (!mine) return 0;
  if (tls_len && info->dlpi_tls_data) {
    s->lo = static_cast<char*>(info->dlpi_tls_data);
    s->len = tls_len;
  }
  return 1;
}

void locate_static_shared(LaunchState& L) {
  *static_cast<volatile char*>(&t_tls_anchor) = 1;
  TlsSearch s{reinterpret_cast<uintptr_t>(&find_module_tls), nullptr, 0};
  dl_iterate_phdr(&find_module_tls, &s);
  L.tls_lo = s.lo;
  L.tls_len = s.len;
  const ModuleSymbols& sym = module_symbols();
  if (L.tls_lo && sym.ok && !sym.owners.empty()) {
    L.symbols = &sym;
    L.owner_epoch.assign(sym.owners.size(), 0);
  }
}

// A thread of this block reached a static __shared__ declaration of an owner not yet poisoned in
// this block: poison all of that function's static shared memory (and pads) now, before any thread
// can use it.
void poison_owner(LaunchState& L, int o) {
  for (const auto& r : L.symbols->owners[o].poison) poison_fill(L.tls_lo + r.first, r.second - r.first);
  L.owner_epoch[o] = L.block_epoch;
  L.block_owners.push_back(o);
}

// After a thread's turn: the pads of the static shared arrays reached in this block must still be
// poison, else the thread wrote past the end of an array.
void check_shared_pads(LaunchState& L, const Fiber& f) {
  for (int o : L.block_owners) {
    const SharedOwner& owner = L.symbols->owners[o];
    for (const SharedOwner::Guard& g : owner.guards) {
      long long first = 0, last = 0;
      const char* lo = L.tls_lo + g.begin;
      if (!find_unpoisoned(lo, g.end - g.begin, lo, kPoison64, &first, &last)) continue;
      const std::string what = g.array.empty() ? "a static __shared__ guard"
                                               : fmt("static __shared__ array '%s' (%zu bytes)", g.array.c_str(), g.array_bytes);
      throw Error(block_prefix(L) + fmt("thread %s: out-of-bounds write past the end of %s of %s: bytes %lld..%lld past its end "
                                        "were overwritten (in the code the thread ran since its last barrier or warp collective)",
                                        tid_str(f).c_str(), what.c_str(), owner.function.c_str(), first, last));
    }
  }
}

// ---- scheduling ------------------------------------------------------------------------------------
void make_order(LaunchState& L, std::vector<unsigned>& order, unsigned n) {
  order.resize(n);
  for (unsigned i = 0; i < n; ++i) order[i] = L.cfg->order == Order::Reverse ? n - 1 - i : i;
  if (L.cfg->order == Order::Random)
    for (unsigned i = n; i > 1; --i) std::swap(order[i - 1], order[static_cast<unsigned>(L.rng() % i)]);
}

unsigned existing_lanes(const LaunchState& L, unsigned warp) {
  const unsigned n = std::min(32u, L.nthreads - warp * 32);
  return n == 32 ? 0xffffffffu : ((1u << n) - 1u);
}

// Resolve every warp collective whose lanes have all arrived. Returns whether any was.
bool resolve_warps(LaunchState& L) {
  bool progress = false;
  for (unsigned w = 0; w < L.nwarps; ++w) {
    Fiber* lanes = &L.fibers[w * 32];
    const unsigned exist = existing_lanes(L, w);
    for (unsigned l = 0; l < 32; ++l) {
      if (!(exist >> l & 1u) || lanes[l].st != St::Warp) continue;
      const Fiber& f = lanes[l];
      const unsigned need = f.w_mask & exist;
      bool complete = true;
      for (unsigned j = 0; j < 32 && complete; ++j)
        if (need >> j & 1u)
          complete = lanes[j].st == St::Warp && lanes[j].w_resolve == f.w_resolve && lanes[j].w_mask == f.w_mask;
      if (!complete) continue;
      void* data[32] = {};
      for (unsigned j = 0; j < 32; ++j)
        if (need >> j & 1u) data[j] = lanes[j].w_data;
      try {
        f.w_resolve(data, need);
      } catch (const Error& e) {
        throw Error(block_prefix(L) + fmt("%s at %s (warp %u): ", f.w_name, site_str(f.w_site).c_str(), w) + e.what());
      }
      for (unsigned j = 0; j < 32; ++j)
        if (need >> j & 1u) lanes[j].st = St::Ready;
#if defined(FC_EMU_RACECHECK)
      if (std::strcmp(f.w_name, "__syncwarp") == 0) race::syncwarp(w);
      if (counters::active()) counters::count_instruction(f.w_name, 1);   // one warp-level instruction
#endif
      progress = true;
    }
  }
  return progress;
}

// Threads in wait_until whose condition now holds become ready. Returns whether any did.
bool wake_pollers(LaunchState& L) {
  bool progress = false;
  for (Fiber& f : L.fibers)
    if (f.st == St::Poll && f.p_ready(f.p_ctx)) {
      f.st = St::Ready;
      progress = true;
    }
  return progress;
}

void run_deferred(LaunchState& L) {
  std::vector<DeferredWork> work;
  work.swap(L.deferred);
  for (const DeferredWork& d : work) {
    try {
      d.run(d.ctx.data());
    } catch (const Error& e) {
      throw Error(block_prefix(L) + fmt("%s issued by thread %s at %s: ", d.what, tid_str(L.fibers[d.thread]).c_str(),
                                        site_str(d.site).c_str()) + e.what());
    }
  }
}

// Nothing can run, no collective can complete and the barrier cannot be released: say why.
[[noreturn]] void report_deadlock(LaunchState& L) {
  // A thread blocked in wait_until (an mbarrier phase that never completes).
  for (const Fiber& f : L.fibers) {
    if (f.st != St::Poll) continue;
    char why[512] = "";
    if (f.p_describe) f.p_describe(f.p_ctx, why, sizeof why);
    unsigned polling = 0;
    for (const Fiber& g : L.fibers) polling += g.st == St::Poll;
    throw Error(block_prefix(L) +
                fmt("deadlock: thread %s waits at %s at %s, which can never complete (%s); %u thread(s) wait like this and "
                    "no thread of the block can run",
                    tid_str(f).c_str(), f.p_name, site_str(f.p_site).c_str(), why, polling));
  }
  // A warp collective that cannot complete, with what each missing lane is doing instead.
  for (unsigned w = 0; w < L.nwarps; ++w) {
    Fiber* lanes = &L.fibers[w * 32];
    const unsigned exist = existing_lanes(L, w);
    for (unsigned l = 0; l < 32; ++l) {
      if (!(exist >> l & 1u) || lanes[l].st != St::Warp) continue;
      const Fiber& f = lanes[l];
      std::string why;
      unsigned exited = 0, at_barrier = 0, elsewhere = 0;
      std::string other;
      for (unsigned j = 0; j < 32; ++j) {
        if (!((f.w_mask & exist) >> j & 1u)) continue;
        const Fiber& g = lanes[j];
        if (g.st == St::Exited) exited |= 1u << j;
        else if (g.st == St::Barrier) at_barrier |= 1u << j;
        else if (g.st == St::Warp && (g.w_resolve != f.w_resolve || g.w_mask != f.w_mask)) {
          elsewhere |= 1u << j;
          if (other.empty())
            other = fmt("%s at %s with mask 0x%08x", g.w_name, site_str(g.w_site).c_str(), g.w_mask);
        }
      }
      if (exited) why += "; lanes " + lane_list(exited) + " exited";
      if (at_barrier) why += "; lanes " + lane_list(at_barrier) + " wait at __syncthreads()";
      if (elsewhere) why += "; lanes " + lane_list(elsewhere) + " wait at another warp collective (first: " + other + ")";
      throw Error(block_prefix(L) +
                  fmt("%s at %s in warp %u (mask 0x%08x, lanes %s waiting) cannot complete: every lane named in the mask "
                      "must arrive at the same intrinsic with the same mask",
                      f.w_name, site_str(f.w_site).c_str(), w, f.w_mask, lane_list(exist & f.w_mask & ~(exited | at_barrier | elsewhere)).c_str()) +
                  why);
    }
  }
  // Otherwise the barrier: threads wait at it while others exited.
  std::vector<unsigned> waiting, exited;
  for (unsigned i = 0; i < L.nthreads; ++i) (L.fibers[i].st == St::Barrier ? waiting : exited).push_back(i);
  throw Error(block_prefix(L) +
              fmt("__syncthreads() at %s is waited at by %zu thread(s) (%s) but %zu thread(s) exited without reaching it (%s): "
                  "a barrier must be reached by every thread of the block",
                  site_str(L.fibers[waiting[0]].bar_site).c_str(), waiting.size(), thread_list(L, waiting).c_str(),
                  exited.size(), thread_list(L, exited).c_str()));
}

// Every thread waits at a barrier: check they wait at the same one, reduce, release.
void release_barrier(LaunchState& L) {
  const Fiber& first = L.fibers[0];
  bool same = true;
  for (const Fiber& f : L.fibers)
    same = same && f.bar_site.line == first.bar_site.line && std::strcmp(f.bar_site.file, first.bar_site.file) == 0 &&
           f.bar_kind == first.bar_kind;
  if (!same) {
    std::vector<std::pair<std::string, std::vector<unsigned>>> groups;
    for (unsigned i = 0; i < L.nthreads; ++i) {
      const std::string s = site_str(L.fibers[i].bar_site);
      auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == s; });
      if (it == groups.end()) groups.push_back({s, {i}});
      else it->second.push_back(i);
    }
    std::string detail;
    for (const auto& g : groups)
      detail += fmt("%s%s (%zu threads: %s)", detail.empty() ? "" : "; ", g.first.c_str(), g.second.size(), thread_list(L, g.second).c_str());
    throw Error(block_prefix(L) + "threads wait at different __syncthreads() call sites: " + detail);
  }
  int count = 0;
  for (const Fiber& f : L.fibers) count += f.bar_pred;
  const int n = static_cast<int>(L.nthreads);
  int result = 0;
  switch (first.bar_kind) {
    case kBarCount: result = count; break;
    case kBarAnd: result = count == n; break;
    case kBarOr: result = count > 0; break;
    default: break;
  }
  for (Fiber& f : L.fibers) {
    f.bar_result = result;
    f.st = St::Ready;
  }
#if defined(FC_EMU_RACECHECK)
  race::barrier();
  if (counters::active()) counters::count_instruction("__syncthreads", L.nwarps);   // each warp executes one
#endif
}

std::string late_write_str(const ArgBuffer& b, long long first, long long last) {
  const long long n = static_cast<long long>(b.buffer->size() / b.elem_size), es = static_cast<long long>(b.elem_size);
  auto elem = [&](long long off) { return off >= 0 ? off / es : -((-off + es - 1) / es); };
  return fmt("out-of-bounds write to argument %d (%s, %lld elements): bytes %lld..%lld relative to its start "
             "(elements %lld..%lld) were overwritten",
             b.arg_index, b.cpp_type.c_str(), n, first, last, elem(first), elem(last));
}

// The rerun of a launch whose buffers were found written out of bounds after it: find the thread.
void locate_late_writes(LaunchState& L, const Fiber& f) {
  for (const ArgBuffer& b : *L.buffers) {
    long long first = 0, last = 0;
    if (b.buffer->corrupted(&first, &last))
      throw Error(block_prefix(L) + "thread " + tid_str(f) + ": " + late_write_str(b, first, last) +
                  " (in the code the thread ran since its last barrier or warp collective)");
  }
}

void run_block(LaunchState& L) {
  for (Fiber& f : L.fibers) prepare_fiber(L, f);
  L.mbarriers.clear();
  L.deferred.clear();
  ++L.block_epoch;
  L.block_owners.clear();
#if defined(FC_EMU_RACECHECK)
  race::begin_block(g_block_idx.x + g_grid_dim.x * (g_block_idx.y + g_grid_dim.y * g_block_idx.z));
  if (counters::active()) counters::begin_block();
#endif
  if (L.tls_lo && !L.symbols) poison_fill(L.tls_lo, L.tls_len);
  L.dyn_smem->repoison_data();
  L.async_view.assign(L.dyn_smem->data(), L.dyn_smem->data() + L.dyn_smem->size());
  for (;;) {
    make_order(L, L.order, L.nthreads);
    for (unsigned i : L.order) {
      Fiber& f = L.fibers[i];
      if (f.st == St::Poll && f.p_ready(f.p_ctx)) f.st = St::Ready;
      if (f.st != St::Ready) continue;
      resume(L, f);
      if (L.failed) throw Error(block_prefix(L) + L.error);
      if (!L.block_owners.empty()) check_shared_pads(L, f);
      if (L.cfg->locate_writes) locate_late_writes(L, f);
    }
    if (resolve_warps(L)) continue;
    if (wake_pollers(L)) continue;
    unsigned exited = 0, at_barrier = 0;
    for (const Fiber& f : L.fibers) {
      exited += f.st == St::Exited;
      at_barrier += f.st == St::Barrier;
    }
    if (!L.deferred.empty()) {       // nothing can run: the copy engine finishes what is in flight
      if (exited == L.nthreads) {
        const DeferredWork& d = L.deferred.front();
        throw Error(block_prefix(L) + fmt("%s issued by thread %s at %s is still in flight when every thread has exited: "
                                          "wait on its mbarrier before the block ends",
                                          d.what, tid_str(L.fibers[d.thread]).c_str(), site_str(d.site).c_str()));
      }
      run_deferred(L);
      continue;
    }
    if (exited == L.nthreads) break;
    if (at_barrier == L.nthreads) {
      release_barrier(L);
      continue;
    }
    report_deadlock(L);
  }
  long long first = 0, last = 0;
  if (L.dyn_smem->corrupted(&first, &last))
    throw Error(block_prefix(L) + fmt("out-of-bounds write to dynamic shared memory (shared_bytes=%zu): byte offsets %lld..%lld",
                                      L.cfg->shared_bytes, first, last));
}

void run_grid(LaunchState& L) {
  const LaunchConfig& c = *L.cfg;
  const unsigned long long nblocks = 1ull * c.grid[0] * c.grid[1] * c.grid[2];
  std::vector<unsigned> block_order;
  make_order(L, block_order, static_cast<unsigned>(nblocks));
  for (unsigned b : block_order) {
    g_block_idx = uint3{b % c.grid[0], b / c.grid[0] % c.grid[1], b / c.grid[0] / c.grid[1]};
    run_block(L);
  }
}

void worker_main(LaunchState& L, std::exception_ptr& error) {
  L.worker = pthread_self();
  // The fault handler needs a stack of its own: a fiber that overflows its stack has none left.
  std::vector<char> alt(64 * 1024);
  stack_t ss{}, old_ss{};
  ss.ss_sp = alt.data();
  ss.ss_size = alt.size();
  sigaltstack(&ss, &old_ss);
  try {
    locate_static_shared(L);
#if !defined(FC_EMU_UCONTEXT)
    uint32_t mxcsr = 0;
    uint16_t fcw = 0;
    asm volatile("stmxcsr %0" : "=m"(mxcsr));
    asm volatile("fnstcw %0" : "=m"(fcw));
    L.fpu_word = mxcsr | static_cast<uint64_t>(fcw) << 32;
#endif
#if defined(FC_EMU_RACECHECK)
    std::vector<race::Region> global;
    for (const ArgBuffer& b : *L.buffers)
      global.push_back({b.buffer->data(), b.buffer->data() + b.buffer->size(),
                        fmt("argument %d (%s)", b.arg_index, b.cpp_type.c_str()), b.elem_size});
    if (L.cfg->counters_out) {
      std::vector<std::pair<const char*, const char*>> ranges;
      for (const race::Region& r : global) ranges.push_back({r.begin, r.end});
      counters::begin_launch(std::move(ranges), L.dyn_smem->data(), L.dyn_smem->data() + L.dyn_smem->size(), L.tls_lo,
                             L.tls_len, L.nthreads);
    } else {
      race::begin_launch(std::move(global), {L.dyn_smem->data(), L.dyn_smem->data() + L.dyn_smem->size(), "dynamic shared memory", 1},
                         L.tls_lo, L.tls_len, L.nthreads);
    }
#endif
    run_grid(L);
#if defined(FC_EMU_RACECHECK)
    if (L.cfg->counters_out) *L.cfg->counters_out = counters::end_launch();
#endif
  } catch (...) {
    error = std::current_exception();
  }
#if defined(FC_EMU_RACECHECK)
  race::end_launch();
  if (counters::active()) counters::end_launch();
#endif
  stack_t off{};
  off.ss_flags = SS_DISABLE;
  sigaltstack(&off, nullptr);
}

}  // namespace

// ---- device-side entry points (emu.h) -----------------------------------------------------------
void fail(const char* f, ...) {
  char buf[2048];
  va_list ap;
  va_start(ap, f);
  vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  LaunchState* L = g_L;
  if (L && L->current) {  // in a fiber: record, and never come back to this thread
    Fiber& me = *L->current;
    L->failed = true;
    L->error = "thread " + tid_str(me) + ": " + buf;
    me.st = St::Exited;
    switch_to_scheduler(me);
    __builtin_unreachable();
  }
  throw Error(buf);
}

int block_barrier(int kind, int pred, Site site) {
  Fiber& f = current_fiber("__syncthreads()");
  f.st = St::Barrier;
  f.bar_site = site;
  f.bar_kind = kind;
  f.bar_pred = pred != 0;
  switch_to_scheduler(f);
  return f.bar_result;
}

void warp_collective(unsigned mask, WarpResolver resolve, const char* name, void* lane_data, Site site) {
  Fiber& f = current_fiber(name);
  const unsigned lane = f.linear & 31u;
  if (!(mask >> lane & 1u))
    fail("%s at %s: mask 0x%08x does not include the calling lane %u", name, site_str(site).c_str(), mask, lane);
  f.st = St::Warp;
  f.w_mask = mask;
  f.w_resolve = resolve;
  f.w_name = name;
  f.w_data = lane_data;
  f.w_site = site;
  switch_to_scheduler(f);
}

unsigned active_mask() {
  Fiber& f = current_fiber("__activemask()");
  const unsigned w = f.linear / 32;
  unsigned m = 0;
  for (unsigned l = 0; l < 32; ++l)
    if ((existing_lanes(*g_L, w) >> l & 1u) && g_L->fibers[w * 32 + l].st != St::Exited) m |= 1u << l;
  return m;
}

void shared_reached(const unsigned char* pad) {
  if (!g_L || !g_L->symbols) return;
  LaunchState& L = *g_L;
  int o = L.last_owner;
  if (pad != L.last_pad) {
    o = L.symbols->owner_of_pad(static_cast<size_t>(pad - reinterpret_cast<unsigned char*>(L.tls_lo)));
    if (o < 0) fail("emulator: a static __shared__ declaration (pad %p) is missing from the module's symbol table", static_cast<const void*>(pad));
    L.last_pad = pad;
    L.last_owner = o;
  }
  if (L.owner_epoch[o] != L.block_epoch) poison_owner(L, o);
}

void* dynamic_shared_memory() {
  current_fiber("FC_DYNAMIC_SHARED");
  return g_L->dyn_smem->data();
}

void check_shared(const void* p, size_t n, const char* what, Site site) {
  LaunchState& L = *g_L;
  const char* a = static_cast<const char*>(p);
  const bool in_static = L.tls_lo && a >= L.tls_lo && a + n <= L.tls_lo + L.tls_len;
  const bool in_dynamic = a >= L.dyn_smem->data() && a + n <= L.dyn_smem->data() + L.dyn_smem->size();
  if (!in_static && !in_dynamic && L.tls_lo)
    fail("%s at %s: address %p (%zu bytes) is not in the block's shared memory", what, site_str(site).c_str(), p, n);
}

void cp_async(void* dst, const void* src, unsigned cp_size, unsigned src_size, const char* what, Site site) {
  Fiber& f = current_fiber(what);
  if (cp_size != 4 && cp_size != 8 && cp_size != 16) fail("%s at %s: cp-size %u is not 4, 8 or 16", what, site_str(site).c_str(), cp_size);
  if (src_size > cp_size)
    fail("%s at %s: src-size %u exceeds cp-size %u", what, site_str(site).c_str(), src_size, cp_size);
  if (reinterpret_cast<uintptr_t>(dst) % cp_size || reinterpret_cast<uintptr_t>(src) % cp_size)
    fail("%s at %s: shared address %p and global address %p must both be %u-byte aligned", what, site_str(site).c_str(), dst, src, cp_size);
  check_shared(dst, cp_size, what, site);
  if (g_L->cfg->poison_async) poison_fill(dst, cp_size);
  f.uncommitted.push_back(CopyOp{dst, src, cp_size, src_size});
}

void cp_async_commit() {
  Fiber& f = current_fiber("cp.async.commit_group");
  f.committed.push_back(std::move(f.uncommitted));
  f.uncommitted.clear();
}

void cp_async_wait(unsigned n) {
  Fiber& f = current_fiber("cp.async.wait_group");
  while (f.committed.size() > n) {
    complete_copies(f.committed.front());
    f.committed.pop_front();
  }
}

bool poison_async() { return g_L && g_L->cfg->poison_async; }

void wait_until(PollFn ready, DescribeFn describe, const void* ctx, const char* name, Site site) {
  Fiber& f = current_fiber(name);
  if (ready(ctx)) return;
  f.st = St::Poll;
  f.p_ready = ready;
  f.p_describe = describe;
  f.p_ctx = ctx;
  f.p_name = name;
  f.p_site = site;
  switch_to_scheduler(f);
  f.p_ready = nullptr;
}

MBarrierState& mbarrier_init_state(void* bar, uint32_t count, Site site) {
  current_fiber("mbarrier.init");
  if (reinterpret_cast<uintptr_t>(bar) % 8) fail("mbarrier.init at %s: address %p is not 8-byte aligned", site_str(site).c_str(), bar);
  check_shared(bar, 8, "mbarrier.init", site);
  if (count < 1 || count > (1u << 20) - 1)
    fail("mbarrier.init at %s: count %u is outside [1, 2^20 - 1]", site_str(site).c_str(), count);
  std::memcpy(bar, &kMBarrierMarker, 8);
  MBarrierState& st = g_L->mbarriers[bar];
  st = MBarrierState{};
  st.expected = st.pending = count;
  return st;
}

MBarrierState& mbarrier_state(const void* bar, const char* what, Site site) {
  current_fiber(what);
  if (reinterpret_cast<uintptr_t>(bar) % 8) fail("%s at %s: mbarrier address %p is not 8-byte aligned", what, site_str(site).c_str(), bar);
  check_shared(bar, 8, what, site);
  auto it = g_L->mbarriers.find(bar);
  if (it == g_L->mbarriers.end() || std::memcmp(bar, &kMBarrierMarker, 8) != 0)
    fail("%s at %s: the mbarrier at %p was not initialised with mbarrier.init in this block (or was overwritten by a "
         "plain store)", what, site_str(site).c_str(), bar);
  return it->second;
}

MBarrierState* mbarrier_lookup(const void* bar) {
  auto it = g_L->mbarriers.find(bar);
  if (it == g_L->mbarriers.end() || std::memcmp(bar, &kMBarrierMarker, 8) != 0) return nullptr;
  return &it->second;
}

void defer_async(void (*run)(const void* ctx), const void* ctx, size_t n, const char* what, Site site) {
  Fiber& f = current_fiber(what);
  const unsigned char* c = static_cast<const unsigned char*>(ctx);
  g_L->deferred.push_back(DeferredWork{run, std::vector<unsigned char>(c, c + n), what, site, f.linear});
}

void async_push(const void* op, size_t n) {
  Fiber& f = current_fiber("wgmma.mma_async");
  const unsigned char* c = static_cast<const unsigned char*>(op);
  f.a_uncommitted.insert(f.a_uncommitted.end(), c, c + n);
  ++f.a_uncommitted_ops;
}

void async_commit() {
  Fiber& f = current_fiber("wgmma.commit_group");
  f.a_committed.emplace_back(std::move(f.a_uncommitted), f.a_uncommitted_ops);
  f.a_uncommitted.clear();
  f.a_uncommitted_ops = 0;
}

size_t async_pop_groups(unsigned keep, void* out, size_t capacity, size_t op_bytes) {
  Fiber& f = current_fiber("wgmma.wait_group");
  size_t n = 0;
  while (f.a_committed.size() > keep) {
    const auto& g = f.a_committed.front();
    if (n + g.second > capacity) fail("wgmma.wait_group: more than %zu wgmma.mma_async operations in flight", capacity);
    std::memcpy(static_cast<unsigned char*>(out) + n * op_bytes, g.first.data(), g.first.size());
    n += g.second;
    f.a_committed.pop_front();
  }
  return n;
}

void async_proxy_fence() {
  LaunchState& L = *g_L;
  std::memcpy(L.async_view.data(), L.dyn_smem->data(), L.async_view.size());
}

void async_proxy_wrote(uint32_t offset, size_t n) {
  LaunchState& L = *g_L;
  std::memcpy(L.async_view.data() + offset, L.dyn_smem->data() + offset, n);
}

void async_proxy_check(uint32_t offset, size_t n, const char* what, Site site) {
  LaunchState& L = *g_L;
  if (offset + n > L.async_view.size()) return;   // shared_pointer reports it
  if (std::memcmp(L.async_view.data() + offset, L.dyn_smem->data() + offset, n) != 0)
    fail("%s at %s reads shared-memory bytes [%u, %zu) that a generic-proxy store changed after the last "
         "fence.proxy.async.shared::cta: fence generic writes before the async proxy (wgmma, TMA) reads them",
         what, site_str(site).c_str(), offset, offset + n);
}

uint32_t shared_offset(const void* p, const char* what, Site site) {
  LaunchState& L = *g_L;
  const char* a = static_cast<const char*>(p);
  if (a < L.dyn_smem->data() || a > L.dyn_smem->data() + L.dyn_smem->size())
    fail("%s at %s: address %p is not in the block's dynamic shared memory (the emulator computes shared-window "
         "addresses, descriptors and swizzles for dynamic shared memory only)", what, site_str(site).c_str(), p);
  return static_cast<uint32_t>(a - L.dyn_smem->data());
}

char* shared_pointer(uint32_t offset, size_t n, const char* what, Site site) {
  LaunchState& L = *g_L;
  if (offset + n > L.dyn_smem->size())
    fail("%s at %s: shared-memory bytes [%u, %zu) lie beyond the block's %zu bytes of dynamic shared memory", what,
         site_str(site).c_str(), offset, offset + n, L.dyn_smem->size());
  return L.dyn_smem->data() + offset;
}

void* kernel_pointer_param(int index, const char* what, Site site) {
  LaunchState& L = *g_L;
  const auto& params = L.kernel->params;
  if (index < 0 || index >= static_cast<int>(params.size()) || params[index].kind != ParamKind::Pointer)
    fail("%s at %s: the tensor map names kernel parameter %d as its global tensor, but that parameter is not a pointer "
         "(the kernel has %zu parameters)", what, site_str(site).c_str(), index, params.size());
  void* p;
  std::memcpy(&p, L.slots[index], sizeof p);
  return p;
}

unsigned long long clock_counter() { return g_L ? ++g_L->clock : 0; }

// ---- launch ---------------------------------------------------------------------------------------
void launch(const KernelEntry& kernel, const LaunchConfig& cfg, void* const* slots, const std::vector<ArgBuffer>& buffers) {
  const std::string who = "kernel '" + kernel.name + "': ";
  const unsigned long long nthreads = 1ull * cfg.block[0] * cfg.block[1] * cfg.block[2];
  const unsigned long long nblocks = 1ull * cfg.grid[0] * cfg.grid[1] * cfg.grid[2];
  if (nthreads == 0 || nthreads > 1024)
    throw Error(who + fmt("a block has %llu threads; CUDA allows 1 to 1024", nthreads));
  if (nblocks == 0 || nblocks > (1ull << 26))
    throw Error(who + fmt("a grid of %llu blocks is outside what the emulator runs (1 to 2^26)", nblocks));
#if !defined(FC_EMU_RACECHECK)
  if (cfg.counters_out) throw Error(who + "counters need the instrumented build (fastconv.emulator.profile builds it)");
#endif

  std::lock_guard<std::mutex> lock(g_launch_mutex);
  LaunchState L;
  L.kernel = &kernel;
  L.cfg = &cfg;
  L.slots = slots;
  L.buffers = &buffers;
  L.nthreads = static_cast<unsigned>(nthreads);
  L.nwarps = (L.nthreads + 31) / 32;
  L.rng.seed(cfg.seed);
  L.dyn_smem = std::make_unique<GuardedBuffer>(cfg.shared_bytes, kPoison64);  // also with 0 bytes: its guards catch misuse
  while (g_stack_pool.size() < L.nthreads) g_stack_pool.push_back(allocate_stack());
  L.fibers.resize(L.nthreads);
  for (unsigned i = 0; i < L.nthreads; ++i) {
    Fiber& f = L.fibers[i];
    f.stack_lo = g_stack_pool[i];
    f.stack_hi = g_stack_pool[i] + kStackBytes;
    f.linear = i;
    f.tid = uint3{i % cfg.block[0], i / cfg.block[0] % cfg.block[1], i / cfg.block[0] / cfg.block[1]};
  }
  g_block_dim = dim3(cfg.block[0], cfg.block[1], cfg.block[2]);
  g_grid_dim = dim3(cfg.grid[0], cfg.grid[1], cfg.grid[2]);

  std::exception_ptr error;
  g_L = &L;
  install_fault_handlers();
  std::thread worker([&] { worker_main(L, error); });
  worker.join();
  restore_fault_handlers();
  g_L = nullptr;
  if (error) std::rethrow_exception(error);

  for (const ArgBuffer& b : buffers) {
    long long first = 0, last = 0;
    if (b.buffer->corrupted(&first, &last)) throw LateOutOfBoundsError(who + late_write_str(b, first, last));
  }
}

uint32_t poison_word() { return kPoisonWord; }

}  // namespace fc_emu
