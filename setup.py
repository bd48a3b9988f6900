"""Build script: extensions compiled from csrc/.

Three extensions: the emulator and the input pipeline's CPU kernels (always) and the native CUDA extension
(optional, only where it can run).

- fastconv._emu (always built): g++ compiles the device sources in csrc/ against the CPU SIMT
  emulator (csrc/emu/); fastconv.emulator launches the kernels registered in
  csrc/emu/kernel_table.inc on NumPy buffers. Needs only a C++17 compiler and pybind11.
- fastconv._host (always built, optional): g++ compiles the input pipeline's CPU kernels (csrc/host/: the
  antialiased resize of RandomResizedCrop). optional=True: without it the transforms resize with Pillow.
- fastconv._C (optional, nvcc): built where it can run (nvcc found and a CUDA driver loads), or when
  FASTCONV_BUILD_CUDA=1 asks for it (CI); FASTCONV_BUILD_CUDA=0 skips it. optional=True, so a failed
  CUDA build leaves the install working. Do not import torch here (pip's isolated build has no torch).

Development build: python setup.py build_ext --inplace
"""
import runpy
from glob import glob

from pybind11.setup_helpers import ParallelCompile, Pybind11Extension, build_ext
from setuptools import setup
from setuptools.command.build_py import build_py

CSRC_HEADERS = sorted(glob("csrc/**/*.h", recursive=True) + glob("csrc/**/*.cuh", recursive=True)
                      + glob("csrc/**/*.inc", recursive=True))
# Everything a compiled extension depends on: every file under csrc/ (BuildExt also hashes the flags).
CSRC_ALL = sorted(set(CSRC_HEADERS + glob("csrc/**/*.cpp", recursive=True) + glob("csrc/**/*.cu", recursive=True)))
EMU = runpy.run_path("fastconv/backends/_emu_flags.py")   # by path: the package itself is not importable here
EMU_RUNTIME_SOURCES = [f"csrc/emu/{name}" for name in EMU["RUNTIME_SOURCES"]]


def emulator_extension():
    return Pybind11Extension(
        "fastconv._emu",
        sources=[*EMU_RUNTIME_SOURCES, "csrc/emu/kernels.cpp"],
        include_dirs=["csrc"],
        depends=CSRC_ALL,  # BuildExt also rebuilds when their contents differ from the last build's
        define_macros=list(EMU["DEFINES"]),
        cxx_std=EMU["CXX_STD"],
        extra_compile_args=list(EMU["COMPILE_FLAGS"]),
        extra_link_args=list(EMU["LINK_FLAGS"]),
    )


def libjpeg_turbo():
    """(include dir, library dir or None) of a libjpeg-turbo with region decoding (jpeg_crop_scanline, 1.5+),
    or None. FASTCONV_JPEG_PREFIX names one (its include/ and lib/); else the usual system and conda places.
    Without one, fastconv._host is built without decode_jpeg_region and JPEGs are decoded whole."""
    import os
    prefixes = [os.environ["FASTCONV_JPEG_PREFIX"]] if os.environ.get("FASTCONV_JPEG_PREFIX") else [
        os.environ.get("CONDA_PREFIX", ""), "/usr/local", "/usr", "/opt/homebrew/opt/jpeg-turbo", "/usr/local/opt/jpeg-turbo"]
    for prefix in filter(None, prefixes):
        header = os.path.join(prefix, "include", "jpeglib.h")
        if os.path.isfile(header) and "jpeg_crop_scanline" in open(header, errors="replace").read():
            libs = [d for d in (os.path.join(prefix, "lib"), os.path.join(prefix, "lib64"),
                                os.path.join(prefix, "lib", "x86_64-linux-gnu"), os.path.join(prefix, "lib", "aarch64-linux-gnu"))
                    if glob(os.path.join(d, "libjpeg.*"))]
            if libs:
                return os.path.join(prefix, "include"), libs[0]
    return None


def host_extension():
    jpeg = libjpeg_turbo()
    print(f"fastconv._host: JPEG region decoding {'with libjpeg-turbo in ' + jpeg[1] if jpeg else 'not built (no libjpeg-turbo headers found; FASTCONV_JPEG_PREFIX names a prefix)'}")
    return Pybind11Extension(
        "fastconv._host",
        sources=["csrc/host/bind_host.cpp"],
        include_dirs=["csrc", *([jpeg[0]] if jpeg else [])],
        library_dirs=[jpeg[1]] if jpeg else [],
        libraries=["jpeg"] if jpeg else [],
        define_macros=[("FASTCONV_HOST_JPEG", "1")] if jpeg else [],
        depends=sorted(glob("csrc/host/*")),
        cxx_std=17,
        # -O3: the resize's row sums are vectorised loops (GCC 12's -O2 vectorises only the cheapest);
        # -fno-wrapv undoes Python's -fwrapv, under which those loops ran at half the speed
        extra_compile_args=["-O3", "-fno-wrapv"],
        optional=True,
    )


def cuda_build_wanted():
    """(build _C?, why): FASTCONV_BUILD_CUDA=1 asks for it (CI sets it, to compile-check and link _C where
    no GPU is), =0 (or the older FASTCONV_SKIP_CUDA_BUILD=1) refuses it; otherwise _C is built only where
    it can run: a CUDA driver (libcuda) loads. Without one, nvcc would spend minutes on an extension no
    kernel of which can launch on that machine."""
    import ctypes
    import os
    wanted = os.environ.get("FASTCONV_BUILD_CUDA", "").strip().lower()
    if wanted not in ("", "auto", "0", "1"):
        raise ValueError(f"FASTCONV_BUILD_CUDA must be 1 (build fastconv._C), 0 (skip it) or auto, got {wanted!r}")
    if wanted == "0" or os.environ.get("FASTCONV_SKIP_CUDA_BUILD") == "1":
        return False, "FASTCONV_BUILD_CUDA=0"
    if wanted == "1":
        return True, "FASTCONV_BUILD_CUDA=1"
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False, "no CUDA driver (libcuda.so.1) here; FASTCONV_BUILD_CUDA=1 builds it anyway"
    return True, "a CUDA driver is present"


def find_nvcc():
    import os
    import shutil
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    nvcc = os.path.join(home, "bin", "nvcc") if home else shutil.which("nvcc")
    return os.path.realpath(nvcc) if nvcc and os.path.exists(nvcc) else None


def find_cuda_home(nvcc):
    """The toolkit directory holding include/cuda_runtime.h (nvcc may be a wrapper script elsewhere)."""
    import os
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), os.path.dirname(os.path.dirname(nvcc)),
                  "/usr/local/cuda"]
    for home in filter(None, candidates):
        if os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            return os.path.realpath(home)
    return None


def cuda_gencode_flags():
    """FASTCONV_CUDA_ARCHS (default 'sm_80;sm_90a'): machine code per sm_XY[a]; compute_XY entries add
    PTX. compute_90 PTX is always kept for future GPUs; never PTX for an 'a' target (not forward
    compatible)."""
    import os
    archs = [a.strip() for a in os.environ.get("FASTCONV_CUDA_ARCHS", "sm_80;sm_90a").split(";") if a.strip()]
    flags = []
    for a in archs + ["compute_90"]:
        # _C registers the tensor-core kernels (mma.sync bf16, cp.async, ldmatrix): sm_80 and newer only
        digits = a.split("_")[-1].rstrip("a")
        if a.startswith(("sm_", "compute_")) and digits.isdigit() and int(digits) < 80:
            raise ValueError(f"FASTCONV_CUDA_ARCHS: {a!r} is older than sm_80, which the tensor-core kernels need")
        if a.startswith("sm_"):
            flags.append(f"-gencode=arch=compute_{a[3:]},code={a}")
        elif a.startswith("compute_") and not a.endswith("a"):
            flag = f"-gencode=arch={a},code={a}"
            if flag not in flags:
                flags.append(flag)
        else:
            raise ValueError(f"FASTCONV_CUDA_ARCHS: {a!r} is not sm_XY[a] or compute_XY (no PTX for 'a' targets)")
    return flags


def native_extensions():
    """fastconv._C: the nvcc-built kernel table (csrc/launch/*.cu) and its pybind11 binding
    (csrc/bind/fastconv_c.cpp). Built when cuda_build_wanted() says so and nvcc is found; optional, so a failed CUDA build
    leaves the rest of the install working (the jit and reference backends)."""
    import os
    build, why = cuda_build_wanted()
    if not build:
        print(f"fastconv._C: not built ({why})")
        return []
    nvcc = find_nvcc()
    if nvcc is None:
        print("fastconv._C: not built (nvcc not found; set CUDA_HOME or put nvcc on PATH)")
        return []
    cuda_home = find_cuda_home(nvcc)
    if cuda_home is None:
        print(f"fastconv._C: skipped, no CUDA headers next to {nvcc} (set CUDA_HOME)")
        return []
    libdirs = [d for d in (os.path.join(cuda_home, "lib64"), os.path.join(cuda_home, "targets", "x86_64-linux", "lib"))
               if os.path.isdir(d)]
    ext = Pybind11Extension(
        "fastconv._C",
        sources=["csrc/bind/fastconv_c.cpp"],
        include_dirs=["csrc", os.path.join(cuda_home, "include")],
        depends=CSRC_HEADERS,
        cxx_std=17,
        library_dirs=libdirs,
        libraries=["cudart_static", "dl", "rt"],   # static runtime: only the driver is needed at run time
        extra_link_args=["-pthread"],
        optional=True,
    )
    ext.cuda_sources = sorted(glob("csrc/launch/*.cu"))
    ext.nvcc = nvcc
    return [ext]


class BuildExt(build_ext):
    """pybind11's build_ext, plus: the .cu sources of an extension that has them (fastconv._C) are
    compiled by nvcc, in parallel, and linked in as objects."""

    def build_extension(self, ext):
        # setuptools compares modification times only, so a module copied in or built from other
        # sources looks up to date; a stamp of the inputs' contents and flags catches that.
        import hashlib
        import os
        h = hashlib.sha256(repr((ext.define_macros, ext.extra_compile_args, getattr(ext, "cuda_sources", None))).encode())
        for p in sorted(set(ext.sources + list(ext.depends) + list(getattr(ext, "cuda_sources", None) or []))):
            h.update(p.encode())
            with open(p, "rb") as f:
                h.update(f.read())
        stamp = self.get_ext_fullpath(ext.name) + ".inputs"
        force = self.force
        if not os.path.exists(stamp) or open(stamp).read() != h.hexdigest():
            self.force = True
        try:
            self._build_extension(ext)
        finally:
            self.force = force
        with open(stamp, "w") as f:
            f.write(h.hexdigest())

    def _build_extension(self, ext):
        cu = getattr(ext, "cuda_sources", None)
        if cu:
            ext.extra_objects = list(ext.extra_objects or []) + self._nvcc_compile(ext, cu)
        super().build_extension(ext)

    def _nvcc_compile(self, ext, sources):
        import os
        import subprocess
        from concurrent.futures import ThreadPoolExecutor
        out_dir = os.path.join(self.build_temp, "nvcc")
        os.makedirs(out_dir, exist_ok=True)
        # --ftz=true matches the -ftz=true that CuPy passes to NVRTC, so native and jit round alike.
        flags = ["-std=c++17", "-O3", "--ftz=true", "-Xcompiler", "-fPIC", "-Icsrc", *cuda_gencode_flags()]

        def compile_one(src):
            obj = os.path.join(out_dir, os.path.basename(src) + ".o")
            newest = max(os.path.getmtime(p) for p in [src, *CSRC_HEADERS])
            if self.force or not os.path.exists(obj) or os.path.getmtime(obj) < newest:
                print(f"nvcc {src}", flush=True)
                subprocess.run([ext.nvcc, *flags, "-c", src, "-o", obj], check=True)
            return obj

        jobs = int(os.environ.get("FASTCONV_BUILD_JOBS") or 0) or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            return list(pool.map(compile_one, sources))


class BuildPyWithKernelSources(build_py):
    """Copies the kernel headers into the package as fastconv/_csrc, so a wheel's jit backend (NVRTC
    at first use) finds them (fastconv/backends/_sources.py), and the emulator's sources, so that
    fastconv.emulator.compile_kernel and racecheck can build; editable installs read csrc/ in place."""

    def run(self):
        import os
        import shutil
        super().run()
        if self.editable_mode:
            return
        for src in CSRC_HEADERS + EMU_RUNTIME_SOURCES + ["csrc/emu/kernels.cpp"]:
            dst = os.path.join(self.build_lib, "fastconv", "_csrc", os.path.relpath(src, "csrc"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copyfile(src, dst)


ParallelCompile("FASTCONV_BUILD_JOBS", default=0).install()  # the three emulator sources in parallel

setup(ext_modules=[emulator_extension(), host_extension(), *native_extensions()], cmdclass={"build_ext": BuildExt, "build_py": BuildPyWithKernelSources})
