"""The emulator's g++ recipe, written once: setup.py builds fastconv._emu with it (reading this file by path,
since a build must not import the package) and fastconv/backends/_emu_build.py builds run-time kernel modules with it.
Plain data, no imports."""

# csrc/emu/: compiled once and linked with the kernels' translation unit (csrc/emu/kernels.cpp, or a
# generated one at run time)
RUNTIME_SOURCES = ("runtime.cpp", "symbols.cpp", "racecheck.cpp", "counters.cpp", "bind.cpp")
CXX_STD = 17
DEFINES = (("FASTCONV_EMULATOR", "1"),)
# -fno-strict-aliasing: kernels type-pun (float4 loads, half2 bits) as nvcc allows;
# -fstack-clash-protection: a thread's oversized local array faults in its stack guard.
COMPILE_FLAGS = ("-O2", "-fno-strict-aliasing", "-fstack-clash-protection", "-Wno-unknown-pragmas")
LINK_FLAGS = ("-pthread",)
