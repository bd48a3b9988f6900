"""Finding the CUDA command-line tools and demangling kernel symbols, for the report scripts."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def find_tool(name):
    """nvcc / cuobjdump / cu++filt on PATH, in $CUDA_HOME/bin, or in an installed nvidia-* wheel (nvidia/cu13/bin)."""
    found = shutil.which(name)
    if found:
        return found
    dirs = [Path(os.environ[v]) / "bin" for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)]
    dirs.append(Path("/usr/local/cuda/bin"))
    try:
        import nvidia
        for base in nvidia.__path__:
            dirs += sorted(Path(base).glob("*/bin"))
    except ImportError:
        pass
    for d in dirs:
        if (d / name).exists():
            return str(d / name)
    return None


def demangle(symbols):
    """C++ names of mangled symbols (unchanged when no c++filt / cu++filt is found)."""
    tool = shutil.which("c++filt") or find_tool("cu++filt")
    if not tool:
        return list(symbols)
    out = subprocess.run([tool], input="\n".join(symbols), capture_output=True, text=True, check=True).stdout
    return out.splitlines()
