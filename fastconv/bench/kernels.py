"""Per-kernel facts for `fastconv profile`: resource attributes, an occupancy estimate, and the
kernel table read from a PyTorch profiler (Kineto) trace.

Where the attributes come from: the jit backend's loaded kernels (`fastconv.backends.jit.loaded_kernels()`,
{name: CuPy Function}), read with cuFuncGetAttribute on each Function's handle. fastconv._C exports no
attributes, so a native-only run shows the trace's registers and shared memory alone.
local_size_bytes > 0 means per-thread local memory: register spills or a local array.
"""
from __future__ import annotations

import re

from .occupancy import SM90, SmLimits, occupancy  # noqa: F401  (the calculator moved; kept importable here)

KERNEL_REGEX = "fastconv|conv2d|pool2d|gemm"


_CU_FUNC_ATTRIBUTE = {"max_threads_per_block": 0, "shared_size_bytes": 1, "const_size_bytes": 2,
                      "local_size_bytes": 3, "num_regs": 4, "max_dynamic_shared_size_bytes": 8}


def function_attributes(fn) -> dict:
    """Attributes of a CuPy Function, read through the driver (cuFuncGetAttribute on its handle)."""
    from cupy.cuda import driver
    return {k: int(driver.funcGetAttribute(code, fn.ptr)) for k, code in _CU_FUNC_ATTRIBUTE.items()}


def fastconv_kernel_attributes() -> tuple[dict, str]:
    """({kernel name: attributes}, where they came from, or why there are none)."""
    found = {}
    try:
        from ..backends import jit
        kernels = jit.loaded_kernels()
    except ImportError:
        kernels = {}
    for name, k in kernels.items():
        try:
            found[name] = function_attributes(k)
        except Exception:
            continue
    if not kernels:
        return {}, "no fastconv kernel attributes: the jit backend has loaded no kernel in this process"
    return found, "attributes of the jit backend's compiled kernels"


def match_attributes(kernel_name: str, attrs: dict) -> dict | None:
    """A trace shows mangled or templated names; match a registered name inside it."""
    if kernel_name in attrs:
        return attrs[kernel_name]
    for name, a in attrs.items():
        if name and name in kernel_name:
            return a
    return None


# ---- the Kineto trace -------------------------------------------------------------------------
def _dims(v):
    if isinstance(v, (list, tuple)):
        return [int(x) for x in v]
    return None


def parse_trace(trace: dict, name_filter: str | None = None) -> tuple[list, list]:
    """(kernels, ranges) from a chrome trace exported by torch.profiler.
    kernels: one entry per kernel name: launches, total/mean µs, registers, shared memory (static +
    dynamic), block, grid, Kineto's estimated achieved occupancy, and the innermost GPU user ranges
    (record_function labels) that contain its launches. ranges: GPU-side user annotations."""
    events = trace.get("traceEvents", trace if isinstance(trace, list) else [])
    ranges = [e for e in events if e.get("ph") == "X" and e.get("cat") == "gpu_user_annotation"]
    kernels: dict = {}
    rx = re.compile(name_filter) if name_filter else None
    for e in events:
        if e.get("ph") != "X" or e.get("cat") != "kernel":
            continue
        name = e.get("name", "?")
        if rx and not rx.search(name):
            continue
        args = e.get("args", {})
        k = kernels.setdefault(name, {"name": name, "launches": 0, "total_us": 0.0, "registers": None,
                                      "shared_memory": None, "block": None, "grid": None, "est_occupancy_pct": None,
                                      "ranges": []})
        k["launches"] += 1
        k["total_us"] += float(e.get("dur", 0.0))
        if args.get("registers per thread") is not None:
            k["registers"] = int(args["registers per thread"])
        if args.get("shared memory") is not None:
            k["shared_memory"] = int(args["shared memory"])
        k["block"] = _dims(args.get("block")) or k["block"]
        k["grid"] = _dims(args.get("grid")) or k["grid"]
        occ = args.get("est. achieved occupancy %")
        if occ is not None:
            k["est_occupancy_pct"] = float(occ)
        ts, end = float(e.get("ts", 0.0)), float(e.get("ts", 0.0)) + float(e.get("dur", 0.0))
        inner = None
        for r in ranges:
            r0, r1 = float(r["ts"]), float(r["ts"]) + float(r.get("dur", 0.0))
            if r0 <= ts and end <= r1 and (inner is None or r1 - r0 < inner[1]):
                inner = (r["name"], r1 - r0)
        if inner and inner[0] not in k["ranges"]:
            k["ranges"].append(inner[0])
    out = sorted(kernels.values(), key=lambda k: -k["total_us"])
    for k in out:
        k["mean_us"] = k["total_us"] / k["launches"]
    return out, [{"name": r["name"], "ts": r["ts"], "dur_us": r.get("dur", 0.0)} for r in ranges]
