"""A plain (non-editable) install must carry the kernel headers: the jit backend compiles them with
NVRTC at first use, and a wheel has no csrc/ beside the package (and the emulator's sources, for
emulator.compile_kernel)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_build_py_packages_the_kernel_headers_and_jit_finds_them(tmp_path):
    lib = tmp_path / "lib"
    subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(lib)], cwd=ROOT, check=True,
                   capture_output=True, env={**os.environ, "FASTCONV_SKIP_CUDA_BUILD": "1"})
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
