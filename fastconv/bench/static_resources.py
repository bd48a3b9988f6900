"""What the compiled binary says about a kernel, per GPU target: registers, static shared memory,
stack and spills (ptxas' report from nvcc), and with a launch's block size and dynamic shared memory,
the theoretical occupancy and what limits it (fastconv.bench.occupancy).

    report = kernel_resources(["fc::reduce_to_scalar<float>"], ("sm_80", "sm_90a"))
    report.rows[("fc::reduce_to_scalar<float>", "sm_80")]   # {"registers": 31, "smem": 1024, ...}

Needs nvcc (no GPU): one translation unit instantiates the kernels, as scripts/resource_report.py
does, compiled once per target. The report is cached under $FASTCONV_EMU_CACHE/resources by a hash
of csrc/, nvcc's version, the target and the kernel list, so `fastconv profile --emulated` compiles
only when a kernel changed. Without nvcc, report.unavailable says so and rows is empty.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .occupancy import TARGETS, occupancy, target_limits

ARCHS = tuple(TARGETS)
_INT_ALIASES = (("int64_t", "long"), ("uint64_t", "unsigned long"), ("int32_t", "int"), ("uint32_t", "unsigned int"),
                ("uint8_t", "unsigned char"), ("int8_t", "signed char"), ("uint16_t", "unsigned short"),
                ("int16_t", "short"))


def find_nvcc() -> str | None:
    """nvcc on PATH, in $CUDA_HOME/bin or $CUDA_PATH/bin, or /usr/local/cuda/bin."""
    found = shutil.which("nvcc")
    if found:
        return found
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home and (Path(home) / "bin" / "nvcc").exists():
            return str(Path(home) / "bin" / "nvcc")
    return None


def parse_ptxas(text: str) -> list[dict]:
    """One dict per entry function of `nvcc -Xptxas -v` output: symbol (mangled), arch, registers,
    smem (static shared bytes), stack, spill_stores, spill_loads (bytes)."""
    entries, current = [], None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\w+)' for '(\w+)'", line)
        if m:
            current = {"symbol": m.group(1), "arch": m.group(2)}
            entries.append(current)
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)), spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
            sm = re.search(r"(\d+) bytes smem", line)
            current["smem"] = int(sm.group(1)) if sm else 0
    return entries


def _aliases(csrc: Path) -> dict[str, str]:
    """fc::Alias -> fc::Template<args> for the namespace-scope `using Alias = Template<...>;` of csrc/
    (the tile traits), as a demangler spells the kernels' template arguments."""
    out = {}
    for p in csrc.rglob("*.h"):
        for m in re.finditer(r"^using (\w+) = (\w+<[^;>]*>);", p.read_text(errors="replace"), re.M):
            out[f"fc::{m.group(1)}"] = f"fc::{m.group(2)}"
    return out


def _normal(name: str) -> str:
    return re.sub(r"\s+", "", name)


def _spelled_as_demangled(name: str, aliases: dict[str, str]) -> str:
    """A template-id as c++filt prints it: aliases expanded, fixed-width ints by their builtin name."""
    for alias, full in aliases.items():
        name = re.sub(rf"{re.escape(alias)}\b", full, name)
    for fixed, builtin in _INT_ALIASES:
        name = re.sub(rf"\b{fixed}\b", builtin, name)
    from ..backends.kernel_table import demangled_spelling
    return _normal(demangled_spelling(name))


def _demangle(symbols: list[str]) -> list[str]:
    tool = shutil.which("c++filt") or shutil.which("cu++filt")
    if not tool or not symbols:
        return list(symbols)
    out = subprocess.run([tool], input="\n".join(symbols), capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def _sm90a_only(name: str) -> bool:
    from ..backends.jit import SM90A_KERNEL_PREFIXES
    return name.startswith(SM90A_KERNEL_PREFIXES)


def ptxas_resources(names: list[str], arch: str, nvcc: str | None = None) -> dict[str, dict]:
    """{kernel template-id: ptxas' resources on `arch`} for kernels of the GPU build (csrc/launch/
    all_kernels.h, and the sm_90a headers of the sm_90a kernels asked for). Raises FileNotFoundError without
    nvcc, subprocess.CalledProcessError (with nvcc's output) when the build fails."""
    from ..backends._sources import csrc_dir
    from ..backends.jit import KERNEL_HEADER, SM90A_HEADERS
    target_limits(arch)
    nvcc = nvcc or find_nvcc()
    if nvcc is None:
        raise FileNotFoundError("nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)")
    if not names:
        return {}
    csrc = csrc_dir()
    headers = [KERNEL_HEADER] + sorted({h for p, h in SM90A_HEADERS.items() if any(n.startswith(p) for n in names)})
    lines = [f'#include "{h}"' for h in headers]
    lines += [f"static const void* const fc_instance_{i} = reinterpret_cast<const void*>(&{n});"   # instantiates
              for i, n in enumerate(names)]
    num = arch.split("_")[1]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "instances.cu"
        src.write_text("\n".join(lines) + "\n")
        cmd = [nvcc, "-std=c++17", f"-I{csrc}", "--ftz=true", f"-gencode=arch=compute_{num},code={arch}",
               "-Xptxas", "-v", "-c", str(src), "-o", str(Path(tmp) / "instances.o")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    entries = parse_ptxas(proc.stdout + proc.stderr)
    aliases = _aliases(csrc)
    wanted = {_spelled_as_demangled(n, aliases): n for n in names}
    out = {}
    for e, demangled in zip(entries, _demangle([e["symbol"] for e in entries])):
        base = demangled.split("(")[0]
        base = base[5:] if base.startswith("void ") else base
        name = wanted.get(_normal(base))
        if name is not None:
            out[name] = {k: e.get(k, 0) for k in ("registers", "smem", "stack", "spill_stores", "spill_loads")}
            out[name]["symbol"] = e["symbol"]
    return out


def _gpu_build_names() -> set[str]:
    """The kernel instantiations of the native/jit build: the plans' kernels and the sm_90a ones."""
    from ..backends.jit import all_kernel_names
    from ..backends.plans.gemm import sm90a_kernel_names
    return set(all_kernel_names() + sm90a_kernel_names())


@dataclass
class ResourceReport:
    rows: dict = field(default_factory=dict)        # (kernel, arch) -> ptxas' resources
    missing: dict = field(default_factory=dict)     # kernel -> why it has no row (not in the GPU build, ...)
    unavailable: str | None = None                  # why there is no report at all (no nvcc, a failed build)
    cached: bool = False


def _cache_file(arch: str, nvcc: str) -> Path:
    """One JSON file per (csrc/ contents, nvcc version, target): {kernel: resources, or None where
    ptxas reported no entry}; kernels are added to it as runs ask for them."""
    from ..backends._emu_build import cache_dir, sources_hash
    try:
        version = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        version = nvcc
    h = hashlib.sha256("\n".join([sources_hash(), version, arch, Path(__file__).read_text()]).encode())
    return cache_dir() / "resources" / f"{arch}-{h.hexdigest()[:24]}.json"


def kernel_resources(names, archs=ARCHS) -> ResourceReport:
    """ptxas' resources of `names` on each of `archs`, cached; kernels outside the GPU build (the
    emulator's self-tests, compile_kernel() kernels) and sm_90a-only kernels on other targets are
    listed in .missing with the reason."""
    for a in archs:
        target_limits(a)
    report = ResourceReport()
    nvcc = find_nvcc()
    if nvcc is None:
        report.unavailable = "no static report: nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin)"
        return report
    built = _gpu_build_names()
    names = list(dict.fromkeys(names))
    for n in names:
        if n not in built:
            report.missing[n] = "not a kernel of the GPU build (emulator only)"
    report.cached = True
    for arch in archs:
        todo = [n for n in names if n in built and (arch == "sm_90a" or not _sm90a_only(n))]
        cache = _cache_file(arch, nvcc)
        try:
            found = json.loads(cache.read_text())
        except (OSError, ValueError):
            found = {}
        new = [n for n in todo if n not in found]
        if new:
            report.cached = False
            try:
                compiled = ptxas_resources(new, arch, nvcc)
            except subprocess.CalledProcessError as exc:
                tail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
                report.unavailable = f"no static report: nvcc failed for {arch}: " + " / ".join(tail)
                return report
            found.update({n: compiled.get(n) for n in new})
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(found, indent=1))
            os.replace(tmp, cache)
        for n in names:
            if found.get(n) is not None:
                report.rows[(n, arch)] = found[n]
            elif n in built and n not in report.missing:
                report.missing[n] = ("sm_90a only" if _sm90a_only(n) else
                                     f"ptxas reported no entry of this name for {arch}")
    return report


def launch_occupancy(resources: dict, arch: str, threads_per_block: int, dynamic_smem: int) -> dict:
    """occupancy() on `arch` for a launch of `threads_per_block` threads with `dynamic_smem` bytes of
    dynamic shared memory, with the kernel's registers and static shared memory from `resources`."""
    return occupancy(int(threads_per_block), int(resources["registers"]), int(resources["smem"]) + int(dynamic_smem),
                     target_limits(arch))
