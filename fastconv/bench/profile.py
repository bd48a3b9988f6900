"""`fastconv profile`: run one op, one layer or one model step under NVTX ranges and report per op
(and on a GPU per kernel) where the time goes, against the roofline.

    fastconv profile --op conv2d_fprop --suite resnet50 --shape res2_3x3 [--batch 32] [--dtype bf16]
    fastconv profile --layer res2_3x3 --suite resnet50          # conv forward + backward via autograd
    fastconv profile --model seed [--batch 128]                 # train_on_batch steps
    ... --ncu [--run]      print (and run) the Nsight Compute command filtered to fastconv kernels

Per op: every function of the backend module is wrapped for the run (the functional layer looks it
up on each call), timed (perf_counter on the CPU, CUDA events on the GPU) and charged its FLOPs and
minimum bytes. On a GPU the PyTorch profiler adds the kernel table: time, launches, registers,
shared memory, block/grid, occupancy; spills come from the fastconv kernels' attributes.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import roofline as rl
from .kernels import KERNEL_REGEX, fastconv_kernel_attributes, match_attributes, occupancy, parse_trace
from .nvtx import DOMAIN, Nvtx

_DTYPE_KEY = {"float32": "fp32", "float64": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def _nbytes(a) -> int:
    return int(getattr(a, "nbytes", 0) or 0)


def _is_array(a) -> bool:
    return hasattr(a, "shape") and hasattr(a, "dtype") and hasattr(a, "nbytes")


def count_op(name: str, args: tuple, result) -> tuple[int | None, int]:
    """(FLOPs or None, minimum bytes) of one backend call, from its arguments and result."""
    outs = [o for o in (result if isinstance(result, tuple) else (result,)) if _is_array(o)]
    arrays = [a for a in args if _is_array(a)]
    nbytes = sum(_nbytes(a) for a in arrays) + sum(_nbytes(o) for o in outs)
    try:
        if name == "conv2d_fprop":
            x, w, y = args[0], args[1], outs[0]
            n, p, q, k = y.shape
            r, s, cg, _ = w.shape
            return 2 * n * p * q * k * r * s * cg, nbytes
        if name == "conv2d_dgrad":
            dy, w = args[0], args[1]
            n, p, q, k = dy.shape
            r, s, cg, _ = w.shape
            return 2 * n * p * q * k * r * s * cg, nbytes
        if name == "conv2d_wgrad":
            dy, dw = args[1], outs[0]
            n, p, q, k = dy.shape
            r, s, cg, _ = dw.shape
            return 2 * n * p * q * k * r * s * cg, nbytes
        if name == "max_pool2d_fprop":
            pool = args[1]
            return int(outs[0].size) * (pool[0] * pool[1] - 1), nbytes
        if name == "dense_fprop":
            x, w = args[0], args[1]
            m, kk = x.shape[0], x.shape[-1]
            return 2 * m * kk * w.shape[-1] + (m * w.shape[-1] if len(args) > 2 and args[2] is not None else 0), nbytes
        if name == "dense_bprop":
            dy, x = args[0], args[1]
            m, nn, kk = dy.shape[0], dy.shape[-1], x.shape[-1]
            need_dx = args[3] if len(args) > 3 else True
            return 2 * m * nn * kk * (2 if need_dx else 1) + m * nn, nbytes
    except (IndexError, ValueError, AttributeError, TypeError):
        pass
    return None, nbytes


class OpTimer:
    """Wraps every public function of a backend module for the duration of a `with`, accumulating
    calls, time, FLOPs and bytes per function, inside an NVTX range per call."""

    def __init__(self, module, nvtx: Nvtx, gpu: bool):
        self.module, self.nvtx, self.gpu = module, nvtx, gpu
        self.stats: dict = {}
        self._pending = []

    def _wrap(self, name, fn):
        def wrapped(*args, **kwargs):
            with self.nvtx.range(f"{DOMAIN}/{name}"):
                if self.gpu:
                    import torch
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record()
                    out = fn(*args, **kwargs)
                    b.record()
                    self._pending.append((name, a, b))
                    dt = None
                else:
                    t = time.perf_counter()
                    out = fn(*args, **kwargs)
                    dt = time.perf_counter() - t
            flops, nbytes = count_op(name, args, out)
            first = next((a for a in args if _is_array(a)), None)
            s = self.stats.setdefault(name, {"calls": 0, "seconds": 0.0, "flops": 0, "bytes": 0, "flops_known": True,
                                             "dtype": str(getattr(first, "dtype", "float32"))})
            s["calls"] += 1
            s["seconds"] += dt or 0.0
            s["bytes"] += nbytes
            if flops is None:
                s["flops_known"] = False
            else:
                s["flops"] += flops
            return out
        wrapped.__wrapped__ = fn
        return wrapped

    def _names(self):
        """The op names: __all__ (reference), or REFERENCE_API + EXTRA_API (the GPU backends serve
        their ops through a module __getattr__, so dir() does not list them)."""
        names = getattr(self.module, "__all__", None)
        if not names:
            names = tuple(getattr(self.module, "REFERENCE_API", ())) + tuple(getattr(self.module, "EXTRA_API", ()))
        return list(names) or [n for n in dir(self.module) if not n.startswith("_")]

    def __enter__(self):
        self._saved = {}
        for n in self._names():
            try:
                fn = getattr(self.module, n)
            except AttributeError:
                continue
            if callable(fn) and not isinstance(fn, type):
                self._saved[n] = (fn, n in vars(self.module))
                setattr(self.module, n, self._wrap(n, fn))
        return self

    def __exit__(self, *exc):
        for n, (fn, own) in self._saved.items():
            if own:
                setattr(self.module, n, fn)
            else:
                delattr(self.module, n)      # back to the module's __getattr__
        if self.gpu and self._pending:
            import torch
            torch.cuda.synchronize()
            for name, a, b in self._pending:
                self.stats[name]["seconds"] += a.elapsed_time(b) / 1e3
            self._pending.clear()
        return False


# ---- targets ----------------------------------------------------------------------------------
def _case(args, op):
    from .suites import OP_KIND, expand_cases, load_suites
    suites = [s for s in load_suites(args.suite or ("seed" if not args.shape else "all")) if s.of_kind(OP_KIND[op])]
    shapes = [args.shape] if args.shape else None
    batch = [int(args.batch)] if args.batch else None
    cases, _ = expand_cases(suites, [op], batch, [args.dtype or "fp32"], shapes, cpu=(args.mode == "cpu"))
    if not cases:
        raise ValueError(f"no {op} problem found for --suite {args.suite} --shape {args.shape}")
    return cases[0]


def build_target(args):
    """(label, callable running one iteration, backend module to instrument or None, notes)."""
    mode = args.mode
    if args.op:
        from .runners import FastconvRunner, TorchRunner, make_inputs
        case = _case(args, args.op)
        runner = FastconvRunner(mode) if args.backend == "fastconv" else TorchRunner(mode)
        ok, why = runner.available(case)
        if not ok:
            hint = "; try --backend torch to profile the baseline" if args.backend == "fastconv" else ""
            raise RuntimeError(f"{args.backend} cannot run {case.key}: {why}{hint}")
        sets = make_inputs(case, 2, "cpu" if mode == "cpu" else "gpu", seed=args.seed)
        prepared = runner.setup(case, sets)[0]
        counter = {"i": 0}

        def run():
            prepared.fn(counter["i"] % 2)
            counter["i"] += 1
        module = _backend_module(mode) if args.backend == "fastconv" else None
        notes = {"case": case.key, "shape": case.shape_text(), "flops": case.flops, "bytes": case.bytes,
                 "implementation": prepared.label}
        return f"op {case.op} {case.problem.name} ({case.shape_text()}, {case.dtype})", run, module, notes, case
    if args.layer:
        return _layer_target(args)
    return _model_target(args)


def _backend_module(mode):
    from ..backends import backend_for
    return backend_for("cpu" if mode == "cpu" else "cuda")


def _layer_target(args):
    """Forward + backward of the layer's functional op through fastconv autograd (or torch.autograd)."""
    from .suites import load_suites
    suites = load_suites(args.suite or "all")
    prob = None
    for s in suites:
        try:
            prob = s.problem(args.layer)
            break
        except KeyError:
            continue
    if prob is None:
        raise ValueError(f"--layer {args.layer!r} is not a problem of {[s.name for s in suites]}")
    batch = int(args.batch) if args.batch else (1 if args.mode == "cpu" else 32)
    p = prob.params
    rng = np.random.default_rng(args.seed)
    if args.backend == "torch":
        return _torch_layer(prob, batch, args)
    if args.mode == "gpu":
        _backend_module("gpu")       # raises with the reason while there is no GPU backend
    import fastconv.functional as F
    from fastconv import Tensor
    if prob.kind == "conv2d":
        x = Tensor(rng.standard_normal((batch, p["H"], p["W"], p["C"]), dtype=np.float32), requires_grad=True)
        w = Tensor(rng.standard_normal((p["R"], p["S"], p["C"] // p["groups"], p["K"]), dtype=np.float32),
                   requires_grad=True)
        f = lambda: F.conv2d(x, w, None, tuple(p["stride"]), p["padding"], tuple(p["dilation"]), p["groups"])
    elif prob.kind == "maxpool":
        x = Tensor(rng.standard_normal((batch, p["H"], p["W"], p["C"]), dtype=np.float32), requires_grad=True)
        f = lambda: F.max_pool2d(x, tuple(p["pool"]), tuple(p["stride"]), p["padding"])
    else:
        m = batch if p["M"] == "batch" else p["M"]
        x = Tensor(rng.standard_normal((m, p["K"]), dtype=np.float32), requires_grad=True)
        w = Tensor(rng.standard_normal((p["K"], p["N"]), dtype=np.float32), requires_grad=True)
        f = lambda: F.dense(x, w)
    y0 = f()
    g = rng.standard_normal(y0.shape, dtype=np.float32)

    def run():
        f().backward(g)
    return (f"layer {prob.name} forward+backward ({prob.describe()}, batch {batch}, fp32)", run,
            _backend_module(args.mode), {"problem": prob.name}, None)


def _torch_layer(prob, batch, args):
    import torch
    import torch.nn.functional as F
    dev = "cuda" if args.mode == "gpu" else "cpu"
    p = prob.params
    if prob.kind == "conv2d":
        x = torch.randn(batch, p["C"], p["H"], p["W"], device=dev, requires_grad=True)
        w = torch.randn(p["K"], p["C"] // p["groups"], p["R"], p["S"], device=dev, requires_grad=True)
        f = lambda: F.conv2d(x, w, None, tuple(p["stride"]), (p["padding"][0][0], p["padding"][1][0]),
                             tuple(p["dilation"]), p["groups"])
    elif prob.kind == "maxpool":
        x = torch.randn(batch, p["C"], p["H"], p["W"], device=dev, requires_grad=True)
        f = lambda: F.max_pool2d(x, tuple(p["pool"]), tuple(p["stride"]), (p["padding"][0][0], p["padding"][1][0]))
    else:
        m = batch if p["M"] == "batch" else p["M"]
        x = torch.randn(m, p["K"], device=dev, requires_grad=True)
        w = torch.randn(p["K"], p["N"], device=dev, requires_grad=True)
        f = lambda: x @ w
    g = torch.randn_like(f())

    def run():
        f().backward(g)
    return f"layer {prob.name} forward+backward in torch ({prob.describe()}, batch {batch})", run, None, {}, None


def _model_target(args):
    from .train_step import _fastconv_step, _torch_step
    batch = int(args.batch) if args.batch else 128
    if args.model != "seed":
        raise ValueError(f"--model: only 'seed' is wired for profiling, got {args.model!r}")
    if args.backend == "torch":
        step = _torch_step(batch, 2, args.mode, args.dtype or "fp32")
        label = f"model seed train step in torch eager (batch {batch})"
        module = None
    else:
        step = _fastconv_step(batch, 2, args.mode, args.seed)
        label = f"model seed train_on_batch (batch {batch}, fp32)"
        module = _backend_module(args.mode)
    counter = {"i": 0}

    def run():
        step(counter["i"] % 2)
        counter["i"] += 1
    return label, run, module, {"batch": batch}, None


# ---- the command ------------------------------------------------------------------------------
def ncu_command(args, argv_rest: list[str]) -> list[str]:
    """The Nsight Compute command line for the same target, filtered to fastconv kernels in the
    `fastconv` NVTX range; the child runs with --plain (no PyTorch profiler: it and ncu both want CUPTI)."""
    out = args.ncu_out or "fastconv-profile"
    export = [] if out == "-" else ["--export", out, "--force-overwrite"]     # '-': print to stdout
    return ["ncu", "--nvtx", "--nvtx-include", f"{DOMAIN}/", "--kernel-name", f"regex:{KERNEL_REGEX}",
            "--launch-count", str(args.ncu_launches), "--set", args.ncu_set, *export,
            sys.executable, "-m", "fastconv.bench", "profile", *argv_rest, "--plain"]


def target_argv(args) -> list[str]:
    """The profile options that name the target, rebuilt from the parsed arguments."""
    out = []
    for opt in ("op", "layer", "model", "suite", "shape", "batch", "dtype", "backend", "steps", "warmup", "seed",
                "device"):
        v = getattr(args, opt, None)
        if v is not None and v != "":
            out += [f"--{opt}", str(v)]
    return out


def run_profile(args) -> int:
    from .env import device_mode
    mode, why = device_mode(args.device)
    args.mode = mode
    if sum(bool(v) for v in (args.op, args.layer, args.model)) != 1:
        raise ValueError("name exactly one of --op OP, --layer SHAPE or --model NAME")
    if args.ncu:
        cmd = ncu_command(args, target_argv(args))
        print("Nsight Compute command (kernels matching", KERNEL_REGEX, "inside the", DOMAIN, "NVTX range):")
        print("  " + shlex.join(cmd))
        if not args.run:
            return 0
        if mode != "gpu":
            print("--run: not run: no GPU here")
            return 0
        if not shutil.which("ncu"):
            print("--run: ncu is not on PATH")
            return 1
        return subprocess.call(cmd)
    if mode == "cpu":
        from .env import limit_cpu_threads
        limit_cpu_threads(1 if args.threads is None else args.threads)
    nvtx = Nvtx(enabled=(mode == "gpu"))
    label, run, module, notes, case = build_target(args)
    steps = args.steps
    print(f"fastconv profile: {label} on {'GPU' if mode == 'gpu' else 'CPU'} ({why}); {steps} iterations after "
          f"{args.warmup} warm-up; NVTX {nvtx.backend}")
    for _ in range(args.warmup):
        run()
    if mode == "gpu":
        import torch
        torch.cuda.synchronize()
    ceil = None if args.plain else _ceilings(mode, args)
    trace = None
    prof_ctx = contextlib.nullcontext()
    if mode == "gpu" and not args.plain:
        import torch
        prof_ctx = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                      torch.profiler.ProfilerActivity.CUDA])
    timer = OpTimer(module, nvtx, gpu=(mode == "gpu")) if module is not None else contextlib.nullcontext()
    t0 = time.perf_counter()
    with prof_ctx as prof:
        with nvtx.domain():
            with timer:
                for i in range(steps):
                    rf = contextlib.nullcontext()
                    if mode == "gpu":
                        import torch
                        rf = torch.profiler.record_function(f"{DOMAIN}/iter")
                    with rf:
                        run()
        if mode == "gpu":
            import torch
            torch.cuda.synchronize()
    wall = time.perf_counter() - t0
    if mode == "gpu" and not args.plain and prof is not None:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "trace.json")
            prof.export_chrome_trace(path)
            with open(path) as f:
                trace = json.load(f)
    report = {"label": label, "mode": mode, "steps": steps, "wall_s": wall, "notes": notes,
              "ceilings": ceil.to_json() if ceil else None, "ops": [], "kernels": []}
    tu, ts, ru, rs = ("us", 1e6, "TFLOP/s", 1e12) if mode == "gpu" else ("ms", 1e3, "GFLOP/s", 1e9)
    if module is not None:
        stats = timer.stats
        print(f"\nper op ({'CUDA events' if mode == 'gpu' else 'wall time'} around each backend call):")
        print(f"{'op':<30} {'calls':>6} {'total ' + tu:>12} {'mean ' + tu:>11} {ru:>9} {'GB/s':>8} {'%roof':>6} "
              f"{'bound':>8}")
        for name, s in sorted(stats.items(), key=lambda kv: -kv[1]["seconds"]):
            row = _op_row(name, s, ceil)
            report["ops"].append(row)
            print(f"{name:<30} {s['calls']:>6} {s['seconds'] * ts:>12.2f} {s['seconds'] / s['calls'] * ts:>11.2f} "
                  f"{_fmt(row['flops_per_s'], rs, 9, '.2f')} {_fmt(row['bytes_per_s'], 1e9, 8, '.1f')} "
                  f"{_fmt(row['pct_roofline'], 1, 6, '.0f')} {row['bound'] or '-':>8}")
        covered = sum(s["seconds"] for s in stats.values())
        print(f"(backend ops {covered * ts:.1f} {tu} of {wall * ts:.1f} {tu} wall for {steps} iterations; the rest is "
              f"Python, autograd, the optimizer and other non-backend work)")
    print(f"\nwall: {wall / steps * ts:.2f} {tu} per iteration ({steps} iterations)")
    if module is None and case is not None and mode == "cpu":
        per = wall / steps
        fl, by = rl.achieved(case.flops, case.bytes, per)
        roof = rl.roofline(case.flops, case.bytes, ceil.peak("fp32"), ceil.bandwidth) if ceil else None
        print(f"{label}: {per * ts:.2f} {tu} per call, {fl / rs:.2f} {ru}, {by / 1e9:.1f} GB/s"
              + (f", {roof.pct(per):.0f}% of roofline ({roof.bound}-bound)" if roof else ""))
        report["ops"].append({"name": label, "calls": steps, "seconds": wall, "flops_per_s": fl, "bytes_per_s": by})
    if trace is not None:
        report["kernels"] = _kernel_table(trace, args, notes, case, ceil, steps)
    if args.json:
        from .report import write_json
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


def _fmt(v, scale, width, fmt):
    return ("-" if v is None else format(v / scale, fmt)).rjust(width)


def _op_row(name, s, ceil):
    fl = s["flops"] / s["seconds"] if s["flops_known"] and s["seconds"] > 0 and s["flops"] else None
    by = s["bytes"] / s["seconds"] if s["seconds"] > 0 else None
    pct = bound = None
    key = _DTYPE_KEY.get(s["dtype"].split(".")[-1], "fp32")
    if ceil and s["seconds"] > 0 and key in ceil.peak_flops:
        roof = rl.roofline(s["flops"] if s["flops_known"] else 0, s["bytes"], ceil.peak(key), ceil.bandwidth)
        pct, bound = roof.pct(s["seconds"]), roof.bound
    return {"name": name, "calls": s["calls"], "seconds": s["seconds"],
            "flops": s["flops"] if s["flops_known"] else None, "bytes": s["bytes"], "flops_per_s": fl,
            "bytes_per_s": by, "pct_roofline": pct, "bound": bound}


def _ceilings(mode, args):
    from . import ceilings as ce
    try:
        if args.ceilings:
            return ce.load(args.ceilings)
        if mode == "gpu":
            return ce.measure_gpu(dtypes=sorted({args.dtype or "fp32", "fp32"}), matmul_n=4096, reps=5)[0]
        return ce.measure_cpu(copy_bytes=64 * 2**20, matmul_n=1024, reps=5)[0]
    except Exception as exc:
        print(f"(ceilings not measured: {type(exc).__name__}: {exc})")
        return None


def _kernel_table(trace, args, notes, case, ceil, steps):
    attrs, source = fastconv_kernel_attributes()
    kernels, _ = parse_trace(trace)
    print(f"\nper kernel (PyTorch profiler; attributes: {source}):")
    print(f"{'kernel':<60} {'launch':>6} {'total us':>10} {'mean us':>9} {'regs':>5} {'smem B':>7} {'block':>11} "
          f"{'occ% est':>8} {'theo%':>6} {'spill B':>7}")
    for k in kernels:
        a = match_attributes(k["name"], attrs) or {}
        regs = k["registers"] if k["registers"] is not None else a.get("num_regs")
        smem = k["shared_memory"] if k["shared_memory"] is not None else a.get("shared_size_bytes")
        theo = None
        if k["block"] and regs is not None:
            try:
                theo = occupancy(int(np.prod(k["block"])), regs, smem or 0)["occupancy"] * 100
            except ValueError:
                theo = None
        k["theoretical_occupancy_pct"] = theo
        k["spill_bytes"] = a.get("local_size_bytes")
        k["fastconv"] = bool(a) or "fastconv" in k["name"]
        if case is not None and len(kernels) == 1 and k["total_us"] > 0 and k["launches"] == steps:
            # An op's FLOPs belong to the op; a kernel gets them when it is the op's only kernel.
            per = k["total_us"] / 1e6 / k["launches"]
            k["flops_per_s"], k["bytes_per_s"] = rl.achieved(case.flops, case.bytes, per)
            key = rl.peak_key(case.op, case.dtype)
            if ceil and key in ceil.peak_flops:
                k["pct_roofline"] = rl.roofline(case.flops, case.bytes, ceil.peak(key), ceil.bandwidth).pct(per)
        block = "x".join(map(str, k["block"])) if k["block"] else "-"
        name = k["name"] if len(k["name"]) <= 60 else k["name"][:57] + "..."
        print(f"{name:<60} {k['launches']:>6} {k['total_us']:>10.1f} {k['mean_us']:>9.2f} {_s(regs, 5)} {_s(smem, 7)} "
              f"{block:>11} {_s(k['est_occupancy_pct'], 8, '.0f')} {_s(theo, 6, '.0f')} {_s(k['spill_bytes'], 7)}")
        if k.get("flops_per_s"):
            print(f"{'':<60} -> {k['flops_per_s'] / 1e12:.1f} TFLOP/s, {k['bytes_per_s'] / 1e9:.0f} GB/s, "
                  f"{k.get('pct_roofline') or 0:.0f}% of roofline")
    if not kernels:
        print("(no kernels in the trace)")
    elif case is not None:
        per = sum(k["total_us"] for k in kernels) / 1e6 / steps
        fl, by = rl.achieved(case.flops, case.bytes, per)
        key = rl.peak_key(case.op, case.dtype)
        roof = (rl.roofline(case.flops, case.bytes, ceil.peak(key), ceil.bandwidth)
                if ceil and key in ceil.peak_flops else None)
        print(f"op = the sum of its {len(kernels)} kernel(s): {per * 1e6:.2f} us per call, {fl / 1e12:.2f} TFLOP/s, "
              f"{by / 1e9:.0f} GB/s" + (f", {roof.pct(per):.0f}% of roofline ({roof.bound}-bound, floor "
                                       f"{roof.floor_s * 1e6:.2f} us)" if roof else ""))
    return kernels


def _s(v, width, fmt="d"):
    if v is None:
        return "-".rjust(width)
    return format(int(v) if fmt == "d" else v, fmt).rjust(width)
