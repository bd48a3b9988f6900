"""Where a benchmark ran: the device mode (gpu or cpu, and why), versions, clocks, commit and date.

    python -m fastconv.bench.env            # print the environment as JSON
    python -m fastconv.bench.env --slug     # '<date>-<gpu>' for naming a results file
"""
from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=None)
def torch_cuda_status() -> tuple[bool, str]:
    """(usable, reason): the GPU mode needs PyTorch with CUDA (it runs every baseline and the timers)."""
    try:
        import torch
    except Exception as exc:
        return False, f"PyTorch is not importable ({type(exc).__name__}: {exc})"
    if not torch.cuda.is_available():
        built = torch.version.cuda
        why = f"torch {torch.__version__} was built without CUDA" if not built else \
              f"torch {torch.__version__} (CUDA {built}) sees no GPU"
        return False, why
    return True, f"{torch.cuda.get_device_name(0)} visible to torch {torch.__version__}"


def device_mode(requested: str = "auto") -> tuple[str, str]:
    """'gpu' or 'cpu', and the reason. --device gpu without a usable GPU is an error."""
    requested = (requested or "auto").lower()
    if requested not in ("auto", "cpu", "gpu", "cuda"):
        raise ValueError(f"--device must be auto, cpu or gpu, got {requested!r}")
    if requested == "cpu":
        return "cpu", "--device cpu"
    ok, reason = torch_cuda_status()
    if ok:
        return "gpu", reason
    if requested in ("gpu", "cuda"):
        raise RuntimeError(f"--device gpu was requested but {reason}")
    return "cpu", f"no GPU: {reason}"


def _run(cmd, timeout=10) -> str | None:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_info() -> dict:
    """Commit of the checkout (read-only git calls), or $FASTCONV_GIT_COMMIT where .git is absent."""
    commit = _run(["git", "rev-parse", "HEAD"])
    if commit is None:
        return {"commit": os.environ.get("FASTCONV_GIT_COMMIT"), "dirty": None}
    status = _run(["git", "status", "--porcelain", "--untracked-files=no"])
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _version(module: str):
    try:
        mod = __import__(module)
        return getattr(mod, "__version__", None)
    except Exception:
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_cache_bytes() -> int:
    """Size of the last-level cache (for the input rotation on the CPU), 32 MiB if unknown."""
    best = 0
    for idx in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            text = (idx / "size").read_text().strip()
        except OSError:
            continue
        m = re.fullmatch(r"(\d+)([KMG]?)", text)
        if m:
            best = max(best, int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)])
    return best or 32 * 2**20


def limit_cpu_threads(n: int | None) -> str:
    """Run PyTorch's and NumPy's BLAS with n threads each (None or 0: leave the libraries' defaults).
    One thread each is the CPU mode's default: the same resources for both sides, and numbers that
    survive a shared machine (a spinning BLAS thread pool on an oversubscribed CPU loses a scheduler
    tick per call). Returns a description for the report."""
    if not n:
        try:
            import torch
            return f"library defaults (torch {torch.get_num_threads()} threads)"
        except ImportError:
            return "library defaults"
    parts = []
    try:
        import torch
        torch.set_num_threads(n)
        parts.append(f"torch {n}")
    except ImportError:
        pass
    try:
        import threadpoolctl
        threadpoolctl.threadpool_limits(n)
        parts.append(f"NumPy BLAS {n}")
    except ImportError:
        parts.append("NumPy BLAS unchanged (threadpoolctl is not installed)")
    return "threads: " + ", ".join(parts)


def nvidia_smi() -> dict:
    """Driver and clocks as nvidia-smi reports them (read-only queries), {} where it is absent."""
    fields = ["name", "driver_version", "clocks.sm", "clocks.mem", "clocks.max.sm", "clocks.max.mem",
              "power.draw", "power.limit", "temperature.gpu", "persistence_mode", "memory.total"]
    out = _run(["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader"])
    if not out:
        return {}
    values = [v.strip() for v in out.splitlines()[0].split(",")]
    return dict(zip(fields, values)) if len(values) == len(fields) else {"raw": out}


def gpu_properties() -> dict:
    import torch
    props = torch.cuda.get_device_properties(0)
    d = {"name": props.name, "capability": f"{props.major}.{props.minor}", "sm_count": props.multi_processor_count,
         "memory_bytes": int(props.total_memory)}
    l2 = getattr(props, "L2_cache_size", None)
    if l2:
        d["l2_bytes"] = int(l2)
    return d


def l2_bytes(props: dict | None = None) -> int:
    """L2 size from the device, else by name (H100 50 MB, H200 60 MB), else 50 MB."""
    from .roofline import L2_BYTES
    props = props or {}
    if props.get("l2_bytes"):
        return int(props["l2_bytes"])
    name = (props.get("name") or "").upper()
    for key, size in L2_BYTES.items():
        if key in name:
            return size
    return 50 * 2**20


def collect_env(mode: str) -> dict:
    from .. import __version__
    from ..backends import backend_status
    env = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode, "fastconv": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "numpy": _version("numpy"), "torch": _version("torch"), "cupy": _version("cupy"),
        "cpu": cpu_name(), "cpu_count": os.cpu_count(), "git": git_info(),
        "fastconv_paths": {k: {"available": ok, "reason": why} for k, (ok, why) in backend_status().items()},
    }
    try:
        import torch
        env["torch_threads"] = torch.get_num_threads()
    except Exception:
        pass
    if mode == "gpu":
        import torch
        env["gpu"] = gpu_properties()
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        smi = nvidia_smi()
        env["driver"] = smi.get("driver_version")
        env["clocks"] = {k: v for k, v in smi.items() if k not in ("name", "driver_version")}
        try:
            import cupy
            env["cupy_cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        except Exception:
            pass
    return env


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def results_name(env: dict) -> str:
    """'<date>-<gpu>.json', e.g. 2026-11-28-nvidia-h200.json (cpu runs: <date>-cpu-<model>.json)."""
    date = env["date"][:10]
    card = env.get("gpu", {}).get("name") if env.get("mode") == "gpu" else "cpu " + env.get("cpu", "")
    return f"{date}-{slug(card or 'unknown')[:40]}.json"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    mode, reason = device_mode("auto")
    env = collect_env(mode)
    env["mode_reason"] = reason
    if "--slug" in argv:
        print(results_name(env)[:-5])
    else:
        print(json.dumps(env, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
