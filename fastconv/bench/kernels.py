"""Per-kernel facts for `fastconv profile`: resource attributes, an occupancy estimate, and the
kernel table read from a PyTorch profiler (Kineto) trace.

Where fastconv kernels report their attributes (the hook; both optional, whichever exists):
  * the native extension: `fastconv._C.kernel_attributes()` -> list of dicts with at least `name` and
    cudaFuncGetAttributes' numRegs, sharedSizeBytes, localSizeBytes, maxThreadsPerBlock (either
    spelling, CUDA's camelCase or CuPy's snake_case);
  * the jit backend: `fastconv.backends.jit.loaded_kernels()` -> {name: CuPy Function} of the kernels
    loaded on the current device; each kernel's attributes (num_regs, shared_size_bytes,
    local_size_bytes, ...) are read with cuFuncGetAttribute on the Function's handle.
localSizeBytes > 0 means per-thread local memory: register spills or a local array.
"""
from __future__ import annotations

import importlib
import re

from .occupancy import SM90, SmLimits, occupancy  # noqa: F401  (the calculator moved; kept importable here)

KERNEL_REGEX = "fastconv|conv2d|pool2d|gemm"


_ATTR_ALIASES = {"num_regs": ("numRegs", "num_regs", "registers"),
                 "shared_size_bytes": ("sharedSizeBytes", "shared_size_bytes"),
                 "local_size_bytes": ("localSizeBytes", "local_size_bytes"),
                 "max_threads_per_block": ("maxThreadsPerBlock", "max_threads_per_block"),
                 "max_dynamic_shared_size_bytes": ("maxDynamicSharedSizeBytes", "max_dynamic_shared_size_bytes")}


def normalize_attributes(raw: dict) -> dict:
    out = {}
    for key, names in _ATTR_ALIASES.items():
        for n in names:
            if n in raw:
                out[key] = int(raw[n])
                break
    return out


_CU_FUNC_ATTRIBUTE = {"max_threads_per_block": 0, "shared_size_bytes": 1, "const_size_bytes": 2,
                      "local_size_bytes": 3, "num_regs": 4, "max_dynamic_shared_size_bytes": 8}


def function_attributes(fn) -> dict:
    """Attributes of a CuPy RawKernel (its .attributes) or of a RawModule's Function (read through
    the driver: cuFuncGetAttribute on its handle)."""
    if hasattr(fn, "attributes"):
        return normalize_attributes(dict(fn.attributes))
    from cupy.cuda import driver
    return {k: int(driver.funcGetAttribute(code, fn.ptr)) for k, code in _CU_FUNC_ATTRIBUTE.items()}


def fastconv_kernel_attributes() -> tuple[dict, str]:
    """({kernel name: attributes}, where they came from, or why there are none)."""
    found, sources = {}, []
    try:
        native = importlib.import_module("fastconv._C")
        if hasattr(native, "kernel_attributes"):
            for d in native.kernel_attributes():
                found[d["name"]] = normalize_attributes(d)
            sources.append("fastconv._C.kernel_attributes()")
    except ImportError:
        pass
    try:
        jit = importlib.import_module("fastconv.backends.jit")
        kernels = jit.loaded_kernels()
        for name, k in kernels.items():
            try:
                found.setdefault(name, function_attributes(k))
            except Exception:
                continue
        if kernels:
            sources.append("attributes of the jit backend's compiled kernels")
    except ImportError:
        pass
    if not sources:
        return {}, ("no fastconv kernel attributes: fastconv._C has no kernel_attributes() and the jit backend "
                    "has compiled no kernel in this process")
    return found, " + ".join(sources)


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
