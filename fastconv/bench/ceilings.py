"""Measure the two ceilings at the start of a run: memory bandwidth (a large device-to-device copy,
counting bytes read + bytes written) and the matrix rate per dtype (a large product through
torch.matmul, i.e. cuBLAS on the GPU). On the CPU: a large tensor copy and an fp32 torch.matmul.
"""
from __future__ import annotations

import json
import time

from .roofline import Ceilings, datasheet_for


def _best_event_time(fn, reps: int, warmup: int = 3) -> float:
    """The fastest of reps timed calls: a ceiling is what the machine can reach, so the best run
    estimates it (the median of the op timings is what the ops are held to)."""
    import torch
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        times.append((a, b))
    torch.cuda.synchronize()
    return min(a.elapsed_time(b) / 1e3 for a, b in times)


def _best_wall_time(fn, reps: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure_gpu(dtypes=("fp32", "tf32", "fp16", "bf16"), copy_bytes: int = 2**30, matmul_n: int = 8192,
                reps: int = 10) -> tuple[Ceilings, dict]:
    import torch

    from .runners import set_math_mode, torch_dtype
    free, _ = torch.cuda.mem_get_info()
    nbytes = int(min(copy_bytes, free // 8)) // 4096 * 4096
    src = torch.empty(nbytes, dtype=torch.uint8, device="cuda").random_(0, 256)   # never time zeros
    dst = torch.empty_like(src)
    t = _best_event_time(lambda: dst.copy_(src), reps * 2)
    bandwidth = 2 * nbytes / t
    details = {"copy": {"bytes_each_way": nbytes, "best_s": t, "bandwidth": bandwidth}}
    src = dst = None                     # free the copy buffers before the products
    peaks = {}
    n = matmul_n
    for dtype in dtypes:
        restore = set_math_mode(dtype)
        try:
            a = torch.randn(n, n, device="cuda", dtype=torch_dtype(dtype))
            b = torch.randn(n, n, device="cuda", dtype=torch_dtype(dtype))
            t = _best_event_time(lambda: torch.matmul(a, b), reps if dtype not in ("fp32",) else max(3, reps // 2))
            peaks[dtype] = 2 * n ** 3 / t
            details[f"matmul_{dtype}"] = {"n": n, "best_s": t, "flops": peaks[dtype]}
            a = b = None
        finally:
            restore()
    torch.cuda.empty_cache()
    return Ceilings(peaks, bandwidth, f"measured: {n}^3 torch.matmul per dtype, {nbytes / 2**30:.2f} GiB copy"), details


def measure_cpu(copy_bytes: int = 256 * 2**20, matmul_n: int = 1024, reps: int = 10) -> tuple[Ceilings, dict]:
    import numpy as np
    try:
        import torch
    except ImportError:
        torch = None
    # Both libraries' BLAS: the reference runs NumPy's (OpenBLAS), the baseline PyTorch's (MKL/oneDNN),
    # and either can be the faster on a given CPU; the ceiling is the better of the two.
    n_el = copy_bytes // 4
    rng = np.random.default_rng(0)
    src = rng.random(n_el, dtype=np.float32)
    dst = np.empty_like(src)
    copies = {"numpy": _best_wall_time(lambda: np.copyto(dst, src), reps)}
    a = rng.random((matmul_n, matmul_n), dtype=np.float32)
    b = rng.random((matmul_n, matmul_n), dtype=np.float32)
    products = {"numpy": _best_wall_time(lambda: a @ b, reps)}
    if torch is not None:
        ts, td = torch.from_numpy(src), torch.empty(n_el)
        copies["torch"] = _best_wall_time(lambda: td.copy_(ts), reps)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        products["torch"] = _best_wall_time(lambda: torch.matmul(ta, tb), reps)
    copy_lib = min(copies, key=copies.get)
    mm_lib = min(products, key=products.get)
    bandwidth = 2 * copy_bytes / copies[copy_lib]
    peak = 2 * matmul_n ** 3 / products[mm_lib]
    details = {"copy": {"bytes_each_way": copy_bytes, "best_s": copies, "bandwidth": bandwidth},
               "matmul_fp32": {"n": matmul_n, "best_s": products, "flops": peak}}
    how = f"{copy_lib} copy of {copy_bytes / 2**20:.0f} MiB, {mm_lib} {matmul_n}^3 fp32 matmul (best of numpy/torch)"
    return Ceilings({"fp32": peak}, bandwidth, f"measured: {how}"), details


def load(path: str) -> Ceilings:
    with open(path) as f:
        d = json.load(f)
    return Ceilings.from_json(d.get("measured", d))


def ceilings_block(measured: Ceilings, details: dict, gpu_name: str | None) -> dict:
    sheet = datasheet_for(gpu_name)
    return {"measured": measured.to_json(), "details": details, "datasheet": sheet.to_json() if sheet else None}


def format_ceilings(measured: Ceilings, gpu_name: str | None, mode: str) -> str:
    sheet = datasheet_for(gpu_name) if mode == "gpu" else None
    unit, scale = ("TFLOP/s", 1e12) if mode == "gpu" else ("GFLOP/s", 1e9)
    parts = [f"{k} {v / scale:,.1f}" for k, v in measured.peak_flops.items()]
    line = (f"ceilings ({measured.source}): {measured.bandwidth / 1e9:,.0f} GB/s copy (read+write); {unit}: "
            + ", ".join(parts))
    if sheet:
        frac = [f"{k} {measured.peak_flops[k] / sheet.peak_flops[k] * 100:.0f}%" for k in measured.peak_flops
                if k in sheet.peak_flops]
        line += (f"\n  vs {sheet.source}: {sheet.bandwidth / 1e12:.2f} TB/s "
                 f"({measured.bandwidth / sheet.bandwidth * 100:.0f}% reached), "
                 + ", ".join(f"{k} {v / 1e12:.0f}" for k, v in sheet.peak_flops.items())
                 + f" TFLOP/s dense ({', '.join(frac)} reached)")
    elif mode == "gpu":
        line += f"\n  (no datasheet entry for {gpu_name!r})"
    return line
