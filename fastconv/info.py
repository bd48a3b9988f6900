"""`fastconv info`: version, devices, and which compute paths are available and why not."""
from __future__ import annotations

import importlib
import platform
import shutil


def _version(module: str):
    try:
        return importlib.import_module(module).__version__
    except Exception:
        return None


def collect_info() -> dict:
    from . import __version__
    from .backends import backend_status
    from .backends.device import cuda_status, default_device
    gpu_ok, gpu_reason = cuda_status()
    from .backends import backend_name
    from .data.images.decode import decoder_name
    from .data.images.resize import resizer_name
    paths = {name: {"available": ok, "reason": reason} for name, (ok, reason) in backend_status().items()}
    return {
        "fastconv": __version__, "python": platform.python_version(), "platform": platform.platform(),
        "numpy": _version("numpy"), "cupy": _version("cupy"), "torch": _version("torch"),
        "nvcc": shutil.which("nvcc"),
        "devices": {"cpu": {"available": True}, "cuda": {"available": gpu_ok, "reason": gpu_reason}},
        "default_device": default_device(), "backend_in_use": backend_name(default_device()), "compute_paths": paths,
        "image_decoder": decoder_name(), "image_resize": resizer_name(),
    }


def format_info(info: dict) -> str:
    lines = [f"fastconv {info['fastconv']} (Python {info['python']}, NumPy {info['numpy']}, "
             f"CuPy {info['cupy'] or '-'}, PyTorch {info['torch'] or '-'})",
             f"platform: {info['platform']}", f"nvcc: {info['nvcc'] or 'not found'}",
             f"default device: {info['default_device']} (backend in use: {info['backend_in_use']})",
             f"image decoder: {info.get('image_decoder', '-')}", f"image resize: {info.get('image_resize', '-')}",
             "devices:"]
    for name, d in info["devices"].items():
        lines.append(f"  {name:10s} {'yes' if d['available'] else 'no '}  {d.get('reason', '')}")
    lines.append("compute paths:")
    for name, d in info["compute_paths"].items():
        lines.append(f"  {name:10s} {'yes' if d['available'] else 'no '}  {d['reason']}")
    return "\n".join(lines)
