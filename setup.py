"""Build script: extensions compiled from csrc/.

The emulator extension (CPU SIMT emulator running csrc/ kernels) is added by the emulator work;
the native CUDA extension fastconv._C is built only when nvcc is found (optional).

- fastconv._emu (always built): g++ compiles the device sources in csrc/ against the CPU SIMT
  emulator (csrc/emu/); fastconv.emulator launches the kernels registered in
  csrc/emu/kernel_table.inc on NumPy buffers. Needs only a C++17 compiler and pybind11.
- fastconv._C (optional, nvcc): append its Extension in native_extensions() below; build it with
  optional=True so that an install without nvcc still succeeds. Do not import torch here (pip's
  isolated build has no torch).

Development build: python setup.py build_ext --inplace
"""
from glob import glob

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup

CSRC_HEADERS = sorted(glob("csrc/**/*.h", recursive=True) + glob("csrc/**/*.cuh", recursive=True)
                      + glob("csrc/**/*.inc", recursive=True))


def emulator_extension():
    return Pybind11Extension(
        "fastconv._emu",
        sources=["csrc/emu/bind.cpp", "csrc/emu/runtime.cpp", "csrc/emu/kernels.cpp"],
        include_dirs=["csrc"],
        depends=CSRC_HEADERS,  # rebuild when any kernel or emulator header changes
        define_macros=[("FASTCONV_EMULATOR", "1")],
        cxx_std=17,
        # -fno-strict-aliasing: kernels type-pun (float4 loads, half2 bits) as nvcc allows;
        # -fstack-clash-protection: a thread's oversized local array faults in its stack guard.
        extra_compile_args=["-O2", "-fno-strict-aliasing", "-fstack-clash-protection", "-Wno-unknown-pragmas"],
        extra_link_args=["-pthread"],
    )


ParallelCompile("FASTCONV_BUILD_JOBS", default=0).install()  # the three emulator sources in parallel

setup(ext_modules=[emulator_extension()], cmdclass={"build_ext": build_ext})
