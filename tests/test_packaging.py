"""A plain (non-editable) install must carry the kernel headers: the jit backend compiles them with
NVRTC at first use, and a wheel has no csrc/ beside the package (and the emulator's sources, for
emulator.compile_kernel)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_build_py_packages_the_kernel_headers_and_jit_finds_them(tmp_path):
    lib = tmp_path / "lib"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)], cwd=ROOT, check=True,
                   capture_output=True, env={**os.environ, "FASTCONV_BUILD_CUDA": "0"})
    packaged = lib / "fastconv" / "_csrc"
    headers = {p.relative_to(packaged).as_posix() for p in packaged.rglob("*") if p.is_file()}
    checkout = {p.relative_to(ROOT / "csrc").as_posix() for p in (ROOT / "csrc").rglob("*")
                if p.suffix in (".h", ".cuh", ".inc")}
    # and the emulator's sources, which fastconv.emulator.compile_kernel and racecheck build from
    checkout |= {p.relative_to(ROOT / "csrc").as_posix() for p in (ROOT / "csrc" / "emu").glob("*.cpp")}
    assert headers == checkout
    # the built package alone (no checkout beside it): the jit backend reads the packaged copy
    probe = ("from fastconv.backends import jit; "
             "print(jit.CSRC); print(len(jit.kernel_sources())); print((jit.CSRC / jit.KERNEL_HEADER).exists())")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(lib)}).stdout.split()
    assert Path(out[0]) == packaged.resolve()
    assert int(out[1]) > 20 and out[2] == "True"


def _setup_function(name):
    """One function of setup.py, taken alone (importing setup.py runs setup())."""
    import ast
    tree = ast.parse((ROOT / "setup.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    namespace = {}
    exec(compile(ast.Module([fn], type_ignores=[]), "setup.py", "exec"), namespace)
    return namespace[name]


@pytest.mark.parametrize("env, driver, build", [
    ({}, False, False),                                   # nvcc without a driver: minutes for nothing
    ({}, True, True),                                     # where _C can run, it is built by default
    ({"FASTCONV_BUILD_CUDA": "auto"}, True, True),
    ({"FASTCONV_BUILD_CUDA": "1"}, False, True),          # CI: compile-check and link without a GPU
    ({"FASTCONV_BUILD_CUDA": "0"}, True, False),
    ({"FASTCONV_SKIP_CUDA_BUILD": "1"}, True, False),     # the older switch still skips
    ({"FASTCONV_BUILD_CUDA": "1", "FASTCONV_SKIP_CUDA_BUILD": "1"}, True, False),
])
def test_native_extension_is_built_only_where_it_can_run_or_when_asked(monkeypatch, env, driver, build):
    import ctypes

    def fake_cdll(name, *a, **k):
        if name != "libcuda.so.1" or not driver:
            raise OSError(f"{name}: cannot open shared object file")
        return object()

    for var in ("FASTCONV_BUILD_CUDA", "FASTCONV_SKIP_CUDA_BUILD"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    monkeypatch.setattr(ctypes, "CDLL", fake_cdll)
    wanted, why = _setup_function("cuda_build_wanted")()
    assert wanted is build
    if not build and not env:
        assert "FASTCONV_BUILD_CUDA=1" in why   # the message says how to get it anyway


def test_native_build_switch_rejects_unknown_values(monkeypatch):
    monkeypatch.setenv("FASTCONV_BUILD_CUDA", "yes")
    monkeypatch.delenv("FASTCONV_SKIP_CUDA_BUILD", raising=False)
    with pytest.raises(ValueError, match="FASTCONV_BUILD_CUDA must be 1"):
        _setup_function("cuda_build_wanted")()
