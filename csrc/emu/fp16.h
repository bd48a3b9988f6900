// fp16.h — __half and __nv_bfloat16 for the emulator (the subset of cuda_fp16.h / cuda_bf16.h that
// kernels use), with conversions bit-exact with CUDA's:
//   float -> half / bfloat16: round to nearest even (cvt.rn.f16.f32, cvt.rn.bf16.f32), subnormals
//     kept (no flush), overflow to infinity, every NaN -> 0x7fff (CUDA returns the canonical NaN);
//   half -> float: exact, NaN -> 0x7fffffff (canonical, as CUDA's cuda_fp16.hpp host path);
//   bfloat16 -> float: exact, the bits shifted (NaN payload and sign kept, as CUDA).
// Arithmetic on half/bfloat16 is done in float and rounded once: for +, -, *, / this is the
// correctly rounded result because float has at least 2p+2 significand bits (p = 11 or 8).
#pragma once

namespace fc_emu {

enum RoundMode { kRoundNearestEven, kRoundTowardZero, kRoundUp, kRoundDown };

// Round x to a binary float with `mbits` explicit significand bits, exponent range [emin, emax]
// (normal numbers) and `ebits` exponent bits; returns the bit pattern (sign at bit ebits+mbits).
// Done in double, where every value of the narrow format and every scaled significand is exact:
// q = |x| * 2^(mbits - E) is the significand in units of the last place, rounded to an integer.
inline uint32_t round_to_narrow_float(double x, int mbits, int ebits, int emin, int emax, RoundMode mode) {
  const uint32_t sign = std::signbit(x) ? (1u << (ebits + mbits)) : 0u;
  const uint32_t exp_all_ones = ((1u << ebits) - 1u) << mbits;
  if (std::isnan(x)) return 0x7fffu;                       // CUDA's canonical NaN for both formats
  const double a = std::fabs(x);
  if (std::isinf(a)) return sign | exp_all_ones;
  const bool negative = sign != 0;
  auto round_int = [&](double q) {
    switch (mode) {
      case kRoundNearestEven: return std::nearbyint(q);    // default FP environment: ties to even
      case kRoundTowardZero: return std::trunc(q);
      case kRoundUp: return negative ? std::trunc(q) : std::ceil(q);
      case kRoundDown: return negative ? std::ceil(q) : std::trunc(q);
    }
    return q;
  };
  const bool overflow_to_inf = mode == kRoundNearestEven || (mode == kRoundUp && !negative) ||
                               (mode == kRoundDown && negative);
  const uint32_t max_finite = exp_all_ones - 1u;
  int e2;
  std::frexp(a, &e2);                                      // a = f * 2^e2, f in [0.5, 1)
  int E = e2 - 1;                                          // a in [2^E, 2^(E+1))
  if (a == 0.0 || E < emin) {                              // zero or subnormal in the narrow format
    const double r = round_int(std::ldexp(a, mbits - emin));  // units of the subnormal spacing
    return sign | static_cast<uint32_t>(r);                // r == 2^mbits is the smallest normal: still right
  }
  if (E > emax) return sign | (overflow_to_inf ? exp_all_ones : max_finite);
  double r = round_int(std::ldexp(a, mbits - E));          // in [2^mbits, 2^(mbits+1)]
  if (r == std::ldexp(1.0, mbits + 1)) {                   // rounded up to the next binade
    r = std::ldexp(1.0, mbits);
    if (++E > emax) return sign | (overflow_to_inf ? exp_all_ones : max_finite);
  }
  const uint32_t biased = static_cast<uint32_t>(E + (1 << (ebits - 1)) - 1);
  return sign | (biased << mbits) | (static_cast<uint32_t>(r) - (1u << mbits));
}

inline uint16_t to_f16_bits(double x, RoundMode m = kRoundNearestEven) {
  return static_cast<uint16_t>(round_to_narrow_float(x, 10, 5, -14, 15, m));
}
inline uint16_t to_bf16_bits(double x, RoundMode m = kRoundNearestEven) {
  return static_cast<uint16_t>(round_to_narrow_float(x, 7, 8, -126, 127, m));
}

inline float f16_bits_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  if (e == 0x1f) return bit_cast<float>(m ? 0x7fffffffu : (sign | 0x7f800000u));
  if (e == 0) {                                            // zero or subnormal: m * 2^-24, exact in float
    const float v = std::ldexp(static_cast<float>(m), -24);
    return sign ? -v : v;
  }
  return bit_cast<float>(sign | ((e + 112u) << 23) | (m << 13));
}
inline float bf16_bits_to_float(uint16_t b) { return bit_cast<float>(static_cast<uint32_t>(b) << 16); }

// a*b+c rounded once to the narrow format: the product of two narrow values is exact in double;
// TwoSum gives the rounding error of the double sum, which is then folded in as a sticky nudge
// (no narrow-format rounding boundary lies strictly between s and s+err).
inline double fma_for_narrow(double a, double b, double c) {
  const double p = a * b, s = p + c;
  const double bb = s - p, err = (p - (s - bb)) + (c - bb);
  if (err == 0.0 || !std::isfinite(s)) return s;
  return std::nextafter(s, err > 0 ? INFINITY : -INFINITY);
}

}  // namespace fc_emu

struct __half_raw { unsigned short x; };
struct __nv_bfloat16_raw { unsigned short x; };

struct __attribute__((aligned(2))) __half {
  unsigned short __x;
  __half() = default;
  constexpr __half(const __half_raw& r) : __x(r.x) {}
  __half(float f) : __x(fc_emu::to_f16_bits(f)) {}
  __half(double d) : __x(fc_emu::to_f16_bits(d)) {}
  __half(int i) : __x(fc_emu::to_f16_bits(i)) {}
  __half(unsigned int i) : __x(fc_emu::to_f16_bits(i)) {}
  __half(long long i) : __x(fc_emu::to_f16_bits(static_cast<double>(i))) {}
  __half(unsigned long long i) : __x(fc_emu::to_f16_bits(static_cast<double>(i))) {}
  __half(short i) : __x(fc_emu::to_f16_bits(i)) {}
  __half(unsigned short i) : __x(fc_emu::to_f16_bits(i)) {}
  operator float() const { return fc_emu::f16_bits_to_float(__x); }
  operator __half_raw() const { return __half_raw{__x}; }
};

struct __attribute__((aligned(2))) __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  constexpr __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
  __nv_bfloat16(float f) : __x(fc_emu::to_bf16_bits(f)) {}
  __nv_bfloat16(double d) : __x(fc_emu::to_bf16_bits(d)) {}
  __nv_bfloat16(int i) : __x(fc_emu::to_bf16_bits(i)) {}
  __nv_bfloat16(unsigned int i) : __x(fc_emu::to_bf16_bits(i)) {}
  __nv_bfloat16(long long i) : __x(fc_emu::to_bf16_bits(static_cast<double>(i))) {}
  __nv_bfloat16(unsigned long long i) : __x(fc_emu::to_bf16_bits(static_cast<double>(i))) {}
  __nv_bfloat16(short i) : __x(fc_emu::to_bf16_bits(i)) {}
  __nv_bfloat16(unsigned short i) : __x(fc_emu::to_bf16_bits(i)) {}
  operator float() const { return fc_emu::bf16_bits_to_float(__x); }
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
};

struct __attribute__((aligned(4))) __half2 {
  __half x, y;
  __half2() = default;
  constexpr __half2(const __half& a, const __half& b) : x(a), y(b) {}
};
struct __attribute__((aligned(4))) __nv_bfloat162 {
  __nv_bfloat16 x, y;
  __nv_bfloat162() = default;
  constexpr __nv_bfloat162(const __nv_bfloat16& a, const __nv_bfloat16& b) : x(a), y(b) {}
};

typedef __half half;
typedef __half2 half2;
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

static_assert(sizeof(__half) == 2 && alignof(__half) == 2, "__half layout");
static_assert(sizeof(__half2) == 4 && alignof(__half2) == 4, "__half2 layout");
static_assert(sizeof(__nv_bfloat16) == 2 && sizeof(__nv_bfloat162) == 4, "bfloat16 layout");
static_assert(std::is_trivially_copyable<__half>::value && std::is_trivially_copyable<__half2>::value, "POD");

namespace fc_emu {
inline __half make_half(uint16_t bits) { return __half(__half_raw{bits}); }
inline __nv_bfloat16 make_bf16(uint16_t bits) { return __nv_bfloat16(__nv_bfloat16_raw{bits}); }
}  // namespace fc_emu

// ---- half: conversions -----------------------------------------------------------------------
inline __half __float2half(float f) { return fc_emu::make_half(fc_emu::to_f16_bits(f)); }
inline __half __float2half_rn(float f) { return __float2half(f); }
inline __half __float2half_rz(float f) { return fc_emu::make_half(fc_emu::to_f16_bits(f, fc_emu::kRoundTowardZero)); }
inline __half __float2half_ru(float f) { return fc_emu::make_half(fc_emu::to_f16_bits(f, fc_emu::kRoundUp)); }
inline __half __float2half_rd(float f) { return fc_emu::make_half(fc_emu::to_f16_bits(f, fc_emu::kRoundDown)); }
inline __half __double2half(double d) { return fc_emu::make_half(fc_emu::to_f16_bits(d)); }
inline float __half2float(__half h) { return fc_emu::f16_bits_to_float(h.__x); }
inline __half2 __float2half2_rn(float f) { return __half2(__float2half(f), __float2half(f)); }
inline __half2 __floats2half2_rn(float lo, float hi) { return __half2(__float2half(lo), __float2half(hi)); }
inline __half2 __float22half2_rn(float2 v) { return __floats2half2_rn(v.x, v.y); }
inline float2 __half22float2(__half2 v) { return make_float2(__half2float(v.x), __half2float(v.y)); }
inline float __low2float(__half2 v) { return __half2float(v.x); }
inline float __high2float(__half2 v) { return __half2float(v.y); }
inline __half __low2half(__half2 v) { return v.x; }
inline __half __high2half(__half2 v) { return v.y; }
inline __half2 __halves2half2(__half lo, __half hi) { return __half2(lo, hi); }
inline __half2 __half2half2(__half h) { return __half2(h, h); }
inline __half2 __lows2half2(__half2 a, __half2 b) { return __half2(a.x, b.x); }
inline __half2 __highs2half2(__half2 a, __half2 b) { return __half2(a.y, b.y); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline short __half_as_short(__half h) { return static_cast<short>(h.__x); }
inline __half __ushort_as_half(unsigned short u) { return fc_emu::make_half(u); }
inline __half __short_as_half(short s) { return fc_emu::make_half(static_cast<uint16_t>(s)); }
inline __half __int2half_rn(int i) { return fc_emu::make_half(fc_emu::to_f16_bits(i)); }
inline int __half2int_rz(__half h) {
  const float f = __half2float(h);
  return std::isnan(f) ? 0 : static_cast<int>(f);          // every finite half fits in int
}

// ---- half: arithmetic and comparison -----------------------------------------------------------
inline __half __hadd(__half a, __half b) { return __float2half(__half2float(a) + __half2float(b)); }
inline __half __hsub(__half a, __half b) { return __float2half(__half2float(a) - __half2float(b)); }
inline __half __hmul(__half a, __half b) { return __float2half(__half2float(a) * __half2float(b)); }
inline __half __hdiv(__half a, __half b) { return __float2half(__half2float(a) / __half2float(b)); }
inline __half __hneg(__half a) { return fc_emu::make_half(static_cast<uint16_t>(a.__x ^ 0x8000u)); }
inline __half __habs(__half a) { return fc_emu::make_half(static_cast<uint16_t>(a.__x & 0x7fffu)); }
inline __half __hfma(__half a, __half b, __half c) {
  return fc_emu::make_half(fc_emu::to_f16_bits(fc_emu::fma_for_narrow(__half2float(a), __half2float(b), __half2float(c))));
}
inline bool __hisnan(__half a) { return (a.__x & 0x7fffu) > 0x7c00u; }
inline bool __heq(__half a, __half b) { return __half2float(a) == __half2float(b); }
inline bool __hne(__half a, __half b) { return !__hisnan(a) && !__hisnan(b) && __half2float(a) != __half2float(b); }
inline bool __hlt(__half a, __half b) { return __half2float(a) < __half2float(b); }
inline bool __hle(__half a, __half b) { return __half2float(a) <= __half2float(b); }
inline bool __hgt(__half a, __half b) { return __half2float(a) > __half2float(b); }
inline bool __hge(__half a, __half b) { return __half2float(a) >= __half2float(b); }
inline __half __hmax(__half a, __half b) { return __float2half(fmaxf(__half2float(a), __half2float(b))); }
inline __half __hmin(__half a, __half b) { return __float2half(fminf(__half2float(a), __half2float(b))); }
inline __half2 __hadd2(__half2 a, __half2 b) { return __half2(__hadd(a.x, b.x), __hadd(a.y, b.y)); }
inline __half2 __hsub2(__half2 a, __half2 b) { return __half2(__hsub(a.x, b.x), __hsub(a.y, b.y)); }
inline __half2 __hmul2(__half2 a, __half2 b) { return __half2(__hmul(a.x, b.x), __hmul(a.y, b.y)); }
inline __half2 __hfma2(__half2 a, __half2 b, __half2 c) { return __half2(__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y)); }

inline __half operator+(const __half& a, const __half& b) { return __hadd(a, b); }
inline __half operator-(const __half& a, const __half& b) { return __hsub(a, b); }
inline __half operator*(const __half& a, const __half& b) { return __hmul(a, b); }
inline __half operator/(const __half& a, const __half& b) { return __hdiv(a, b); }
inline __half operator-(const __half& a) { return __hneg(a); }
inline __half& operator+=(__half& a, const __half& b) { return a = __hadd(a, b); }
inline __half& operator-=(__half& a, const __half& b) { return a = __hsub(a, b); }
inline __half& operator*=(__half& a, const __half& b) { return a = __hmul(a, b); }
inline __half& operator/=(__half& a, const __half& b) { return a = __hdiv(a, b); }
inline bool operator==(const __half& a, const __half& b) { return __heq(a, b); }
inline bool operator!=(const __half& a, const __half& b) { return __hne(a, b); }
inline bool operator<(const __half& a, const __half& b) { return __hlt(a, b); }
inline bool operator<=(const __half& a, const __half& b) { return __hle(a, b); }
inline bool operator>(const __half& a, const __half& b) { return __hgt(a, b); }
inline bool operator>=(const __half& a, const __half& b) { return __hge(a, b); }

// ---- bfloat16 ----------------------------------------------------------------------------------
inline __nv_bfloat16 __float2bfloat16(float f) { return fc_emu::make_bf16(fc_emu::to_bf16_bits(f)); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __float2bfloat16(f); }
inline __nv_bfloat16 __float2bfloat16_rz(float f) {
  return fc_emu::make_bf16(fc_emu::to_bf16_bits(f, fc_emu::kRoundTowardZero));
}
inline __nv_bfloat16 __float2bfloat16_ru(float f) { return fc_emu::make_bf16(fc_emu::to_bf16_bits(f, fc_emu::kRoundUp)); }
inline __nv_bfloat16 __float2bfloat16_rd(float f) { return fc_emu::make_bf16(fc_emu::to_bf16_bits(f, fc_emu::kRoundDown)); }
inline __nv_bfloat16 __double2bfloat16(double d) { return fc_emu::make_bf16(fc_emu::to_bf16_bits(d)); }
inline float __bfloat162float(__nv_bfloat16 b) { return fc_emu::bf16_bits_to_float(b.__x); }
inline __nv_bfloat162 __float2bfloat162_rn(float f) { return __nv_bfloat162(__float2bfloat16(f), __float2bfloat16(f)); }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
  return __nv_bfloat162(__float2bfloat16(lo), __float2bfloat16(hi));
}
inline __nv_bfloat162 __float22bfloat162_rn(float2 v) { return __floats2bfloat162_rn(v.x, v.y); }
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return make_float2(__bfloat162float(v.x), __bfloat162float(v.y)); }
inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }
inline __nv_bfloat16 __low2bfloat16(__nv_bfloat162 v) { return v.x; }
inline __nv_bfloat16 __high2bfloat16(__nv_bfloat162 v) { return v.y; }
inline __nv_bfloat162 __halves2bfloat162(__nv_bfloat16 lo, __nv_bfloat16 hi) { return __nv_bfloat162(lo, hi); }
inline __nv_bfloat162 __bfloat162bfloat162(__nv_bfloat16 b) { return __nv_bfloat162(b, b); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline short __bfloat16_as_short(__nv_bfloat16 b) { return static_cast<short>(b.__x); }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return fc_emu::make_bf16(u); }
inline __nv_bfloat16 __short_as_bfloat16(short s) { return fc_emu::make_bf16(static_cast<uint16_t>(s)); }

inline __nv_bfloat16 __hadd(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16(__bfloat162float(a) + __bfloat162float(b)); }
inline __nv_bfloat16 __hsub(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16(__bfloat162float(a) - __bfloat162float(b)); }
inline __nv_bfloat16 __hmul(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16(__bfloat162float(a) * __bfloat162float(b)); }
inline __nv_bfloat16 __hdiv(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16(__bfloat162float(a) / __bfloat162float(b)); }
inline __nv_bfloat16 __hneg(__nv_bfloat16 a) { return fc_emu::make_bf16(static_cast<uint16_t>(a.__x ^ 0x8000u)); }
inline __nv_bfloat16 __habs(__nv_bfloat16 a) { return fc_emu::make_bf16(static_cast<uint16_t>(a.__x & 0x7fffu)); }
inline __nv_bfloat16 __hfma(__nv_bfloat16 a, __nv_bfloat16 b, __nv_bfloat16 c) {
  return fc_emu::make_bf16(
      fc_emu::to_bf16_bits(fc_emu::fma_for_narrow(__bfloat162float(a), __bfloat162float(b), __bfloat162float(c))));
}
inline bool __hisnan(__nv_bfloat16 a) { return (a.__x & 0x7fffu) > 0x7f80u; }
inline __nv_bfloat16 __hmax(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16(fmaxf(__bfloat162float(a), __bfloat162float(b))); }
inline __nv_bfloat16 __hmin(__nv_bfloat16 a, __nv_bfloat16 b) { return __float2bfloat16(fminf(__bfloat162float(a), __bfloat162float(b))); }
inline __nv_bfloat162 __hadd2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hadd(a.x, b.x), __hadd(a.y, b.y)); }
inline __nv_bfloat162 __hmul2(__nv_bfloat162 a, __nv_bfloat162 b) { return __nv_bfloat162(__hmul(a.x, b.x), __hmul(a.y, b.y)); }
inline __nv_bfloat162 __hfma2(__nv_bfloat162 a, __nv_bfloat162 b, __nv_bfloat162 c) {
  return __nv_bfloat162(__hfma(a.x, b.x, c.x), __hfma(a.y, b.y, c.y));
}
inline __nv_bfloat16 operator+(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hadd(a, b); }
inline __nv_bfloat16 operator-(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hsub(a, b); }
inline __nv_bfloat16 operator*(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hmul(a, b); }
inline __nv_bfloat16 operator/(const __nv_bfloat16& a, const __nv_bfloat16& b) { return __hdiv(a, b); }
inline __nv_bfloat16 operator-(const __nv_bfloat16& a) { return __hneg(a); }
inline __nv_bfloat16& operator+=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hadd(a, b); }
inline __nv_bfloat16& operator*=(__nv_bfloat16& a, const __nv_bfloat16& b) { return a = __hmul(a, b); }
