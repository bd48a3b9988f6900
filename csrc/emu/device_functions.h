// device_functions.h — atomics, math intrinsics and bit tricks for the emulator.
//
// Math: the CUDA math library's float functions (expf, logf, tanhf, sqrtf, fmaf, ...) are the C
// library's, from <math.h>. The fast intrinsics (__expf, __logf, __fdividef, ...) are computed
// accurately here, whereas the GPU uses approximations (ex2.approx etc.): compare kernels that use
// them with a tolerance, not bit for bit. Conversions and bit reinterpretations are exact.
#pragma once

// ---- atomics: one fiber runs at a time, so a read-modify-write is atomic -------------------------
namespace fc_emu {
#if defined(FC_EMU_RACECHECK)
// The racecheck build instruments the kernels' loads and stores; an atomic's own accesses are not
// instrumented but recorded as one atomic access, at the caller's code address (noinline keeps it).
void race_atomic(const void* address, size_t size, const void* pc);
template <class T, class F>
__attribute__((no_sanitize_thread, noinline)) T atomic_rmw(T* address, F op) {
  race_atomic(address, sizeof(T), __builtin_return_address(0));
  const T old = *address;
  *address = op(old);
  return old;
}
#else
template <class T, class F>
inline T atomic_rmw(T* address, F op) {
  const T old = *address;
  *address = op(old);
  return old;
}
#endif
// atom.add.f32 "flushes subnormal inputs and results to sign-preserving zero" (PTX ISA, atom);
// the f64 add does not.
inline float ftz(float x) { return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x; }
}  // namespace fc_emu

inline int atomicAdd(int* a, int v) {
  return fc_emu::atomic_rmw(a, [v](int o) { return static_cast<int>(static_cast<unsigned>(o) + static_cast<unsigned>(v)); });
}
inline unsigned atomicAdd(unsigned* a, unsigned v) { return fc_emu::atomic_rmw(a, [v](unsigned o) { return o + v; }); }
inline unsigned long long atomicAdd(unsigned long long* a, unsigned long long v) {
  return fc_emu::atomic_rmw(a, [v](unsigned long long o) { return o + v; });
}
inline float atomicAdd(float* a, float v) {
  return fc_emu::atomic_rmw(a, [v](float o) { return fc_emu::ftz(fc_emu::ftz(o) + fc_emu::ftz(v)); });
}
inline double atomicAdd(double* a, double v) { return fc_emu::atomic_rmw(a, [v](double o) { return o + v; }); }
inline int atomicSub(int* a, int v) {
  return fc_emu::atomic_rmw(a, [v](int o) { return static_cast<int>(static_cast<unsigned>(o) - static_cast<unsigned>(v)); });
}
inline unsigned atomicSub(unsigned* a, unsigned v) { return fc_emu::atomic_rmw(a, [v](unsigned o) { return o - v; }); }
template <class T>
inline T atomicExch(T* a, T v) {
  static_assert(std::is_same<T, int>::value || std::is_same<T, unsigned>::value ||
                std::is_same<T, unsigned long long>::value || std::is_same<T, float>::value,
                "atomicExch: int, unsigned, unsigned long long or float");
  return fc_emu::atomic_rmw(a, [v](T) { return v; });
}
template <class T>
inline T atomicMax(T* a, T v) {
  static_assert(std::is_integral<T>::value && sizeof(T) >= 4, "atomicMax: 32- or 64-bit integers");
  return fc_emu::atomic_rmw(a, [v](T o) { return o > v ? o : v; });
}
template <class T>
inline T atomicMin(T* a, T v) {
  static_assert(std::is_integral<T>::value && sizeof(T) >= 4, "atomicMin: 32- or 64-bit integers");
  return fc_emu::atomic_rmw(a, [v](T o) { return o < v ? o : v; });
}
template <class T>
inline T atomicCAS(T* a, T compare, T v) {
  static_assert(std::is_same<T, int>::value || std::is_same<T, unsigned>::value ||
                std::is_same<T, unsigned long long>::value || std::is_same<T, unsigned short>::value,
                "atomicCAS: int, unsigned, unsigned long long or unsigned short");
  return fc_emu::atomic_rmw(a, [compare, v](T o) { return o == compare ? v : o; });
}
template <class T>
inline T atomicAnd(T* a, T v) { return fc_emu::atomic_rmw(a, [v](T o) { return static_cast<T>(o & v); }); }
template <class T>
inline T atomicOr(T* a, T v) { return fc_emu::atomic_rmw(a, [v](T o) { return static_cast<T>(o | v); }); }
template <class T>
inline T atomicXor(T* a, T v) { return fc_emu::atomic_rmw(a, [v](T o) { return static_cast<T>(o ^ v); }); }
inline unsigned atomicInc(unsigned* a, unsigned v) { return fc_emu::atomic_rmw(a, [v](unsigned o) { return o >= v ? 0u : o + 1u; }); }
inline unsigned atomicDec(unsigned* a, unsigned v) {
  return fc_emu::atomic_rmw(a, [v](unsigned o) { return (o == 0u || o > v) ? v : o - 1u; });
}
// Scope variants (atomicAdd_block, ..._system) behave the same with one fiber running at a time.
#define atomicAdd_block atomicAdd
#define atomicAdd_system atomicAdd
#define atomicMax_block atomicMax
#define atomicMin_block atomicMin
#define atomicCAS_block atomicCAS
#define atomicExch_block atomicExch

// ---- loads and stores with cache hints: plain accesses ------------------------------------------
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

// ---- integer min/max (CUDA's overloads in the global namespace) -----------------------------------
inline int max(int a, int b) { return a > b ? a : b; }
inline int min(int a, int b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline float max(float a, float b) { return fmaxf(a, b); }
inline float min(float a, float b) { return fminf(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(double a, double b) { return fmin(a, b); }

// ---- float intrinsics ----------------------------------------------------------------------------
inline float __expf(float x) { return expf(x); }
inline float __exp10f(float x) { return powf(10.0f, x); }
inline float __logf(float x) { return logf(x); }
inline float __log2f(float x) { return log2f(x); }
inline float __log10f(float x) { return log10f(x); }
inline float __sinf(float x) { return sinf(x); }
inline float __cosf(float x) { return cosf(x); }
inline float __tanf(float x) { return tanf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline void __sincosf(float x, float* s, float* c) { *s = sinf(x); *c = cosf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return sqrtf(x); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
// rsqrtf: 1/sqrt computed in double and rounded once (the GPU's rsqrt is approximate, ~2 ulp).
inline float rsqrtf(float x) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(x))); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __frsqrt_rn(float x) { return rsqrtf(x); }
inline float __saturatef(float x) { return std::isnan(x) ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x)); }
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }

// ---- bit reinterpretation ----------------------------------------------------------------------
inline unsigned __float_as_uint(float x) { return fc_emu::bit_cast<unsigned>(x); }
inline int __float_as_int(float x) { return fc_emu::bit_cast<int>(x); }
inline float __uint_as_float(unsigned x) { return fc_emu::bit_cast<float>(x); }
inline float __int_as_float(int x) { return fc_emu::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return fc_emu::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return fc_emu::bit_cast<double>(x); }
inline int __double2hiint(double x) { return static_cast<int>(fc_emu::bit_cast<unsigned long long>(x) >> 32); }
inline int __double2loint(double x) { return static_cast<int>(fc_emu::bit_cast<unsigned long long>(x) & 0xffffffffu); }

// ---- float -> integer conversions (cvt.rni/rzi/rmi/rpi.s32.f32: NaN -> 0, out of range saturates)
namespace fc_emu {
template <class I, class F>
inline I saturating_convert(F r) {
  if (std::isnan(r)) return 0;
  if (r <= static_cast<F>(std::numeric_limits<I>::min())) return std::numeric_limits<I>::min();
  if (r >= static_cast<F>(std::numeric_limits<I>::max())) return std::numeric_limits<I>::max();
  return static_cast<I>(r);
}
}  // namespace fc_emu
inline int __float2int_rn(float x) { return fc_emu::saturating_convert<int>(std::nearbyint(static_cast<double>(x))); }
inline int __float2int_rz(float x) { return fc_emu::saturating_convert<int>(std::trunc(static_cast<double>(x))); }
inline int __float2int_rd(float x) { return fc_emu::saturating_convert<int>(std::floor(static_cast<double>(x))); }
inline int __float2int_ru(float x) { return fc_emu::saturating_convert<int>(std::ceil(static_cast<double>(x))); }
inline unsigned __float2uint_rn(float x) { return fc_emu::saturating_convert<unsigned>(std::nearbyint(static_cast<double>(x))); }
inline unsigned __float2uint_rz(float x) { return fc_emu::saturating_convert<unsigned>(std::trunc(static_cast<double>(x))); }
inline long long __float2ll_rn(float x) { return fc_emu::saturating_convert<long long>(std::nearbyint(static_cast<double>(x))); }
inline long long __float2ll_rz(float x) { return fc_emu::saturating_convert<long long>(std::trunc(static_cast<double>(x))); }
inline int __double2int_rn(double x) { return fc_emu::saturating_convert<int>(std::nearbyint(x)); }
inline int __double2int_rz(double x) { return fc_emu::saturating_convert<int>(std::trunc(x)); }
inline float __int2float_rn(int x) { return static_cast<float>(x); }
inline float __uint2float_rn(unsigned x) { return static_cast<float>(x); }
inline float __ll2float_rn(long long x) { return static_cast<float>(x); }
inline double __int2double_rn(int x) { return static_cast<double>(x); }
inline float __double2float_rn(double x) { return static_cast<float>(x); }

// ---- integer intrinsics -------------------------------------------------------------------------
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline unsigned __brev(unsigned x) {
  unsigned r = 0;
  for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
  return r;
}
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<unsigned>((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xffu) << (8 * i);
  return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (shift & 31u)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (shift & 31u));
}
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<long long>(a) * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) { return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32); }
inline long long __mul64hi(long long a, long long b) { return static_cast<long long>((static_cast<__int128>(a) * b) >> 64); }
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}
inline int __mul24(int a, int b) {
  const int a24 = static_cast<int>(static_cast<unsigned>(a) << 8) >> 8, b24 = static_cast<int>(static_cast<unsigned>(b) << 8) >> 8;
  return static_cast<int>(static_cast<unsigned>(a24) * static_cast<unsigned>(b24));
}
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xffffffu) * (b & 0xffffffu); }
inline int __sad(int a, int b, unsigned c) { return static_cast<int>((a > b ? static_cast<unsigned>(a - b) : static_cast<unsigned>(b - a)) + c); }
