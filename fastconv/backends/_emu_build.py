"""Build emulator kernel modules at run time with g++ (fastconv.emulator.compile_kernel, racecheck).

A module is the emulator runtime (csrc/emu/runtime.cpp, symbols.cpp, bind.cpp: compiled once per
set of emulator sources and flags, kept as objects) linked with one generated translation unit that
includes the kernels and registers them, and a PyInit_<name> under a name of its own (CPython keeps
one module per init name). Everything is cached under $FASTCONV_EMU_CACHE (default
~/.cache/fastconv/emu) by a hash of every source and flag that goes in, so an edit to any kernel or
emulator file rebuilds and an unchanged one loads in milliseconds.
"""
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sysconfig
import tempfile
import threading
from pathlib import Path

from ._emu_flags import COMPILE_FLAGS, CXX_STD, DEFINES, LINK_FLAGS, RUNTIME_SOURCES
from ._sources import csrc_dir

# setup.py's recipe for fastconv._emu (fastconv/backends/_emu_flags.py), plus what pybind11's build adds there
COMMON_FLAGS = [f"-std=c++{CXX_STD}", "-fPIC", "-fvisibility=hidden", *COMPILE_FLAGS, *(f"-D{k}={v}" for k, v in DEFINES)]
# The racecheck build: every load and store of the kernels' translation unit calls a __tsan_* hook
# (g++'s thread-sanitizer instrumentation, without its runtime: csrc/emu/racecheck.cpp defines the
# hooks).
RACECHECK_FLAGS = ["-DFC_EMU_RACECHECK=1"]
RACECHECK_KERNEL_FLAGS = ["-fsanitize=thread"]
# Line tables, so that reports name source lines (addr2line); DWARF 4 because binutils' addr2line
# ignores #line file names in g++ 12's DWARF 5 tables.
LINE_FLAGS = ["-g1", "-gdwarf-4"]

_lock = threading.Lock()
_loaded: dict[str, object] = {}


class BuildError(RuntimeError):
    """g++ failed; the message carries its diagnostics."""


def cache_dir() -> Path:
    root = os.environ.get("FASTCONV_EMU_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                            "fastconv", "emu")
    return Path(root)


def _compiler() -> str:
    cxx = os.environ.get("CXX") or shutil.which("g++")
    if not cxx:
        raise BuildError("building emulator kernels needs g++ (set $CXX to another GCC-compatible compiler)")
    return cxx


def _includes() -> list[str]:
    try:
        import pybind11
    except ImportError as exc:  # a build dependency, not a run-time one
        raise BuildError("building emulator kernels needs pybind11's headers: pip install pybind11") from exc
    return [f"-I{csrc_dir()}", f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}"]


def sources_hash() -> str:
    """A hash of every file under csrc/ (kernels, emulator, headers) and of this recipe: any edit
    changes it."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    root = csrc_dir()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix in (".h", ".cuh", ".inc", ".cpp", ".cu"):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _run(cmd: list[str], cwd: str | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise BuildError(f"{' '.join(cmd[:1] + cmd[-3:])} failed:\n{proc.stderr[-6000:]}")


def _atomic_build(target: Path, build) -> Path:
    """Build into a private temporary name and rename, so concurrent builders never see half a file."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=target.name + ".", suffix=".tmp")
    os.close(fd)
    try:
        build(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _runtime_objects(racecheck: bool, src_hash: str) -> list[Path]:
    cxx, flags = _compiler(), COMMON_FLAGS + (RACECHECK_FLAGS if racecheck else [])
    key = hashlib.sha256((cxx + " ".join(flags) + src_hash).encode()).hexdigest()[:16]
    objs = []
    for name in RUNTIME_SOURCES:
        target = cache_dir() / "objects" / key / (name + ".o")
        src = csrc_dir() / "emu" / name
        objs.append(_atomic_build(target, lambda tmp, src=src: _run([cxx, *flags, *_includes(), "-c", str(src), "-o", tmp])))
    return objs


def build_module(unit: str, racecheck: bool = False) -> object:
    """Compile the translation unit text `unit` (it includes the kernels and registers them with
    FC_EMU_KERNEL) with the emulator runtime into a module, and load it. Cached by content."""
    src_hash = sources_hash()
    cxx = _compiler()
    flags = COMMON_FLAGS + LINE_FLAGS + (RACECHECK_FLAGS + RACECHECK_KERNEL_FLAGS if racecheck else [])
    key = hashlib.sha256("\0".join([cxx, *flags, src_hash, unit]).encode()).hexdigest()[:20]
    name = f"_emu_kernels_{key}"
    with _lock:
        if name in _loaded:
            return _loaded[name]
        suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
        target = cache_dir() / "modules" / (name + suffix)

        def build(tmp):
            objs = _runtime_objects(racecheck, src_hash)
            cpp = Path(tmp + ".cpp")
            cpp.write_text(unit + "\n// the module's entry point (csrc/emu/bind.cpp)\n"
                           'extern "C" void* fc_emu_init_module(const char* name);\n'
                           f'extern "C" __attribute__((visibility("default"))) void* PyInit_{name}() '
                           f'{{ return fc_emu_init_module("{name}"); }}\n')
            obj = Path(tmp + ".o")
            try:
                # compiled in the cache directory, mapped away: #line names stay as given ("kernel.cu:5")
                _run([cxx, *flags, *_includes(), f"-fdebug-prefix-map={target.parent}=", "-c", str(cpp), "-o", str(obj)],
                     cwd=str(target.parent))
                # linked without -fsanitize: racecheck.cpp defines the hooks, libtsan must not come in
                _run([cxx, "-shared", str(obj), *map(str, objs), "-o", tmp, *LINK_FLAGS])
            finally:
                cpp.unlink()
                obj.unlink(missing_ok=True)

        path = _atomic_build(target, build)
        loader = importlib.machinery.ExtensionFileLoader(name, str(path))
        spec = importlib.util.spec_from_file_location(name, str(path), loader=loader)
        module = importlib.util.module_from_spec(spec)
        loader.exec_module(module)
        _loaded[name] = module
        return module
