// vector_types.h — CUDA's built-in vector types for the emulator, with CUDA's sizes and alignments
// (vector_types.h in the CUDA toolkit: 2-element types of 8 bytes are 8-aligned, 16-byte types are
// 16-aligned, 3-element types have their element's alignment), and the make_* functions.
#pragma once

#define FC_EMU_VEC2(T, name, align) \
  struct __attribute__((aligned(align))) name { T x, y; }; \
  inline name make_##name(T x, T y) { return name{x, y}; }
#define FC_EMU_VEC3(T, name) \
  struct name { T x, y, z; }; \
  inline name make_##name(T x, T y, T z) { return name{x, y, z}; }
#define FC_EMU_VEC4(T, name, align) \
  struct __attribute__((aligned(align))) name { T x, y, z, w; }; \
  inline name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }

FC_EMU_VEC2(signed char, char2, 2)
FC_EMU_VEC2(unsigned char, uchar2, 2)
FC_EMU_VEC4(signed char, char4, 4)
FC_EMU_VEC4(unsigned char, uchar4, 4)
FC_EMU_VEC2(short, short2, 4)
FC_EMU_VEC2(unsigned short, ushort2, 4)
FC_EMU_VEC4(short, short4, 8)
FC_EMU_VEC4(unsigned short, ushort4, 8)
FC_EMU_VEC2(int, int2, 8)
FC_EMU_VEC3(int, int3)
FC_EMU_VEC4(int, int4, 16)
FC_EMU_VEC2(unsigned int, uint2, 8)
FC_EMU_VEC3(unsigned int, uint3)
FC_EMU_VEC4(unsigned int, uint4, 16)
FC_EMU_VEC2(long long, longlong2, 16)
FC_EMU_VEC2(unsigned long long, ulonglong2, 16)
FC_EMU_VEC2(float, float2, 8)
FC_EMU_VEC3(float, float3)
FC_EMU_VEC4(float, float4, 16)
FC_EMU_VEC2(double, double2, 16)

#undef FC_EMU_VEC2
#undef FC_EMU_VEC3
#undef FC_EMU_VEC4

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

static_assert(sizeof(float2) == 8 && alignof(float2) == 8, "float2 layout");
static_assert(sizeof(float4) == 16 && alignof(float4) == 16, "float4 layout");
static_assert(sizeof(int4) == 16 && alignof(int4) == 16, "int4 layout");
static_assert(sizeof(uint4) == 16 && alignof(uint4) == 16, "uint4 layout");
static_assert(sizeof(float3) == 12 && alignof(float3) == 4, "float3 layout");
static_assert(sizeof(double2) == 16 && alignof(double2) == 16, "double2 layout");
