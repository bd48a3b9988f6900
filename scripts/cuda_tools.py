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


def opcode_counts(cubin, opcodes, cuobjdump=None):
    """{symbol: {opcode: count}} for the SASS of every kernel in `cubin`, and {symbol: (registers,
    stack bytes)} from cuobjdump's resource usage."""
    import re
    cuobjdump = cuobjdump or find_tool("cuobjdump")
    if cuobjdump is None:
        raise FileNotFoundError("cuobjdump not found (pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm)")
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(cuobjdump).parent), os.environ.get("PATH", "")]))

    def run(flag):
        return subprocess.run([cuobjdump, flag, str(cubin)], capture_output=True, text=True, check=True, env=env).stdout
    usage = {m[0]: (int(m[1]), int(m[2])) for m in re.findall(r"Function (\w+):\s*\n\s*REG:(\d+) STACK:(\d+)",
                                                              run("-res-usage"))}
    rows, current = {}, None
    for line in run("-sass").splitlines():
        m = re.match(r"\s*Function : (\w+)", line)
        if m:
            current = rows.setdefault(m.group(1), {op: 0 for op in opcodes})
            continue
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)(?:\.|\s|;)", line)
        if current is not None and m and m.group(1) in opcodes:
            current[m.group(1)] += 1
    return rows, usage
