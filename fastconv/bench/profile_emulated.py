"""`fastconv profile --emulated`: Nsight Compute's memory counters without a GPU.

Runs one op, or one training step of a model, through the emulated backend (the csrc/ kernels on
the CPU SIMT emulator) with every launch counted in the instrumented build (emulator.counting()),
and reports per kernel, summed over its launches (emulator.kernel_counters): global requests,
sectors, sectors per request, bytes requested vs moved; shared requests, wavefronts and the extra
wavefronts of bank conflicts; each column named by its ncu metric; then the executed warp
collectives (shuffles, mma, ldmatrix, ...) and barriers. Per op: its FLOPs and minimum
bytes (fastconv.bench.roofline's counts) and the ratio of global bytes moved to that floor. Per
kernel and target (sm_80, sm_90a), from nvcc's ptxas report: registers, static and dynamic shared
memory, stack/spills, and theoretical occupancy with what limits it.

    fastconv profile --emulated --op conv2d_fprop --suite seed [--shape NAME] [--batch 2]
    fastconv profile --emulated --model seed --batch 8          # one train_on_batch step
    fastconv profile --emulated --model resnet18 --convs --batch 1 --image-size 8   # its convs, fwd + bwd
    ... --lines (per source line)  --kernel REGEX (those kernels only)  --json FILE  --no-static

Python: fastconv.emulator.profile_op(...), profile_step(...) (this module's functions). The counts
are exact functions of the addresses the kernels touch (csrc/emu/README.md says what is modelled);
nothing here is a time: the one time printed is a model, labelled so.
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field

from ..emulator_counters import (METRICS, format_kernel_table, format_line_table, format_table, kernel_counters,
                                 line_counters)
from . import roofline as rl
from .occupancy import TARGETS

ARCHS = tuple(TARGETS)
# The time model's ceilings: H200 HBM and fp32 CUDA-core peak (../shared/FACTS.md, datasheet).
MODEL_BANDWIDTH, MODEL_FP32_FLOPS = 4.8e12, 67e12


@dataclass
class EmulatedProfile:
    """What profile_op / profile_step counted: the launches (emulator.Launch, each tagged with the
    backend op that made it), each op's FLOPs and minimum bytes, and the static resources."""
    label: str
    launches: list
    ops: dict = field(default_factory=dict)        # op -> {"calls", "flops" (None: unknown), "bytes" (floor)}
    resources: object = None                       # static_resources.ResourceReport, or None (--no-static)
    archs: tuple = ARCHS

    def kernels(self, pattern: str | None = None) -> dict:
        """emulator.kernel_counters over the launches (of kernels matching `pattern`, a regex)."""
        return kernel_counters(_matching(self.launches, pattern))

    def lines(self, pattern: str | None = None) -> list:
        return line_counters(_matching(self.launches, pattern))

    def op_rows(self) -> list[dict]:
        """Per op: calls, FLOPs, minimum bytes, global bytes its kernels moved (sectors x 32, loads and
        stores) and moved / minimum."""
        rows = []
        for op, s in self.ops.items():
            mine = [launch for launch in self.launches if launch.op == op]
            moved = sum(r["global_ld_bytes_moved"] + r["global_st_bytes_moved"] for r in kernel_counters(mine).values())
            rows.append({"op": op, "calls": s["calls"], "launches": len(mine), "flops": s["flops"],
                         "min_bytes": s["bytes"], "bytes_moved": moved,
                         "moved_over_min": moved / s["bytes"] if s["bytes"] else None})
        return rows

    def static_rows(self, pattern: str | None = None) -> list[dict]:
        """Per kernel and target: registers, static shared, the largest dynamic shared memory its launches
        asked for, stack, spills, and theoretical occupancy for that launch's block size."""
        from .static_resources import launch_occupancy
        if self.resources is None:
            return []
        out = []
        for name in self.kernels(pattern):
            launch = max((launch for launch in self.launches if launch.kernel == name),
                         key=lambda launch: launch.shared_bytes)
            threads = launch.block[0] * launch.block[1] * launch.block[2]
            for arch in self.archs:
                res = self.resources.rows.get((name, arch))
                row = {"kernel": name, "arch": arch, "threads_per_block": threads, "dynamic_smem": launch.shared_bytes}
                if res is None:
                    row["missing"] = self.resources.missing.get(name, self.resources.unavailable or "no report")
                else:
                    row.update({k: res[k] for k in ("registers", "smem", "stack", "spill_stores", "spill_loads")})
                    try:
                        row["occupancy"] = launch_occupancy(res, arch, threads, launch.shared_bytes)
                    except ValueError as exc:
                        row["occupancy_error"] = str(exc)
                out.append(row)
        return out

    def to_json(self, pattern: str | None = None, lines: bool = False) -> dict:
        out = {"label": self.label, "metrics": METRICS, "kernels": self.kernels(pattern), "ops": self.op_rows(),
               "static": self.static_rows(pattern),
               "static_unavailable": self.resources.unavailable if self.resources else "not asked for (--no-static)",
               "launches": [{"kernel": launch.kernel, "op": launch.op, "grid": list(launch.grid),
                             "block": list(launch.block), "shared_bytes": launch.shared_bytes}
                            for launch in _matching(self.launches, pattern)]}
        if lines:
            out["lines"] = self.lines(pattern)
        return out

    def format(self, pattern: str | None = None, lines: bool = False) -> str:
        kernels = self.kernels(pattern)
        parts = [f"fastconv profile --emulated: {self.label}: {len(self.launches)} launches of "
                 f"{len({launch.kernel for launch in self.launches})} kernels, counted in the emulator "
                 "(exact for the kernels' addresses; no GPU ran)"]
        if pattern and not kernels:
            parts.append(f"no kernel matches --kernel {pattern!r}; the kernels were: "
                         + ", ".join(sorted({launch.kernel for launch in self.launches})))
            return "\n".join(parts)
        parts += ["", "per kernel, summed over its launches (column -> Nsight Compute metric below):",
                  format_kernel_table(kernels)]
        if lines:
            parts += ["", "per source line:", format_line_table(self.lines(pattern))]
        if self.ops:
            parts += ["", _format_ops(self.op_rows())]
        parts += ["", self._format_static(pattern)]
        return "\n".join(parts)

    def _format_static(self, pattern) -> str:
        if self.resources is None:
            return "static resources: not asked for (--no-static)"
        if self.resources.unavailable:
            return f"static resources: unavailable: {self.resources.unavailable}"
        rows = self.static_rows(pattern)
        head = ("kernel", "arch", "regs", "smem static", "smem dyn", "stack", "spill st/ld", "threads", "CTAs/SM",
                "warps/SM", "occupancy", "limited by")
        body = []
        for r in rows:
            name = r["kernel"] if len(r["kernel"]) <= 80 else r["kernel"][:77] + "..."
            if "missing" in r:
                body.append((name, r["arch"], *(["-"] * 9), r["missing"]))
                continue
            o = r.get("occupancy")
            body.append((name, r["arch"], r["registers"], r["smem"], r["dynamic_smem"], r["stack"],
                         f"{r['spill_stores']}/{r['spill_loads']}", r["threads_per_block"],
                         o["blocks_per_sm"] if o else "-", o["warps_per_sm"] if o else "-",
                         f"{100 * o['occupancy']:.0f}%" if o else "-", o["limiter"] if o else r.get("occupancy_error")))
        cached = " (cached)" if self.resources.cached else ""
        return (f"static resources per target, from nvcc's ptxas report{cached}; occupancy for each kernel's "
                "launch with the most dynamic shared memory:\n"
                + format_table(body, head, (None, None, "launch__registers_per_thread",
                                      "launch__shared_mem_per_block_static", "launch__shared_mem_per_block_dynamic",
                                      None, None, "launch__block_size",
                                      "the least of launch__occupancy_limit_{registers,shared_mem,warps,blocks}",
                                      None, "sm__maximum_warps_per_active_cycle_pct", None)))


def _format_ops(rows: list[dict]) -> str:
    head = ("op", "calls", "launches", "FLOPs", "min bytes", "bytes moved", "moved/min", "model us (H200)")
    body = []
    for r in rows:
        floor = rl.roofline(r["flops"] or 0, r["bytes_moved"], MODEL_FP32_FLOPS, MODEL_BANDWIDTH).floor_s
        body.append((r["op"], r["calls"], r["launches"], "-" if r["flops"] is None else r["flops"], r["min_bytes"],
                     r["bytes_moved"], "-" if r["moved_over_min"] is None else f"{r['moved_over_min']:.2f}",
                     f"{floor * 1e6:.3f}"))
    return ("per op: FLOPs and minimum bytes (fastconv.bench.roofline: every input read once, every output "
            "written once) against the global bytes its kernels moved (sectors x 32):\n"
            + format_table(body, head) + "\n  model us (H200): a model, not a measurement: max(FLOPs / 67 TFLOP/s fp32, "
            "bytes moved / 4.8 TB/s), with no caches, latency or launch cost")


def _matching(launches, pattern):
    if pattern is None:
        return list(launches)
    rx = re.compile(pattern)
    return [launch for launch in launches if rx.search(launch.kernel)]


@contextlib.contextmanager
def _emulated_backend():
    """FASTCONV_BACKEND=emulated for the duration (the backend is chosen per call from it)."""
    old = os.environ.get("FASTCONV_BACKEND")
    os.environ["FASTCONV_BACKEND"] = "emulated"
    try:
        yield
    finally:
        if old is None:
            del os.environ["FASTCONV_BACKEND"]
        else:
            os.environ["FASTCONV_BACKEND"] = old


def _count(label: str, run, archs, static: bool) -> EmulatedProfile:
    """Runs run() once on the emulated backend with every launch counted and tagged with its op."""
    from .. import emulator
    from ..backends import emulated
    from .nvtx import Nvtx
    from .profile import OpTimer
    if not emulator.available():
        raise RuntimeError("the emulator is not built (fastconv._emu): python setup.py build_ext --inplace")
    for a in archs:
        if a not in TARGETS:
            raise ValueError(f"archs: each must be one of {list(TARGETS)}, got {a!r}")

    class Tagging(OpTimer):   # charges each op its FLOPs and bytes, and tags the launches it makes
        def _wrap(self, name, fn):
            timed = super()._wrap(name, fn)

            def wrapped(*args, **kwargs):
                start = len(launches)
                out = timed(*args, **kwargs)
                for launch in launches[start:]:
                    launch.op = launch.op or name
                return out
            return wrapped

    with _emulated_backend(), emulator.counting() as launches, Tagging(emulated, Nvtx(enabled=False), gpu=False) as t:
        run()
    ops = {name: {"calls": s["calls"], "flops": s["flops"] if s["flops_known"] else None, "bytes": s["bytes"]}
           for name, s in t.stats.items()}
    resources = None
    if static:
        from .static_resources import kernel_resources
        resources = kernel_resources([launch.kernel for launch in launches], archs)
    return EmulatedProfile(label, launches, ops, resources, tuple(archs))


def profile_op(op: str, suite: str = "seed", shape: str | None = None, batch: int | None = None, seed: int = 0,
               archs=ARCHS, static: bool = True) -> EmulatedProfile:
    """One call of `op` (conv2d_fprop, conv2d_dgrad, conv2d_wgrad, maxpool, gemm) on a problem of a
    benchmark suite (fastconv.bench.suites; the first of `suite` of that kind unless `shape` names
    one), fp32, through the emulated backend with counters. The emulator runs a CUDA thread per
    fiber: keep problems small (the `seed` suite's, batch 1-8)."""
    from .runners import OP_FUNCS, _fastconv_call, make_inputs
    from .suites import OP_KIND, expand_cases, load_suites
    if op not in OP_FUNCS:
        raise ValueError(f"op must be one of {list(OP_FUNCS)}, got {op!r}")
    if batch is not None and (not isinstance(batch, int) or isinstance(batch, bool) or batch < 1):
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    suites = [s for s in load_suites(suite) if s.of_kind(OP_KIND[op])]
    cases, _ = expand_cases(suites, [op], [batch] if batch else None, ["fp32"], [shape] if shape else None, cpu=True)
    if not cases:
        raise ValueError(f"no {op} problem in suite {suite!r}" + (f" named {shape!r}" if shape else ""))
    case = cases[0]
    inputs = make_inputs(case, 1, "cpu", seed=seed)[0]
    from ..backends import emulated
    call = _fastconv_call(emulated, case)
    return _count(f"op {op} {case.problem.name} ({case.shape_text()}, fp32)", lambda: call(inputs), archs, static)


def _model_input(model, batch, image_size) -> tuple:
    """The model's input shape (image_size x image_size when given), after checking the arguments."""
    import fastconv as fc
    from .train_step import MODELS
    if model not in fc.models.ZOO:
        raise ValueError(f"model must be one of {sorted(fc.models.ZOO)}, got {model!r}")
    for what, v in (("batch", batch), ("image_size", image_size)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{what} must be a positive int, got {v!r}")
    shape = tuple(MODELS[model]["input"] if model in MODELS else (32, 32, 3))
    return shape if image_size is None else (image_size, image_size, shape[-1])


def profile_step(model: str = "seed", batch: int = 8, image_size: int | None = None, seed: int = 0, archs=ARCHS,
                 static: bool = True) -> EmulatedProfile:
    """One train_on_batch step (forward, backward, Adam) of a model of fastconv.models.ZOO on random
    data through the emulated backend with counters. image_size: square inputs of that size instead
    of the model's default (small sizes keep the emulator quick)."""
    import numpy as np

    import fastconv as fc
    shape = _model_input(model, batch, image_size)
    fc.set_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.random((batch,) + tuple(shape), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    with fc.using_device("cpu"):
        net = fc.models.ZOO[model](tuple(shape), 10)
    net.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with _emulated_backend():
        net._ensure_built(tuple(shape))
    label = f"model {model} train_on_batch (batch {batch}, {'x'.join(map(str, shape))}, fp32)"
    return _count(label, lambda: net.train_on_batch(x, y), archs, static)


def profile_convs(model: str = "resnet18", batch: int = 1, image_size: int | None = 8, seed: int = 0, archs=ARCHS,
                  static: bool = True) -> EmulatedProfile:
    """Every distinct Conv2D of a model of fastconv.models.ZOO (by input shape, filter, stride,
    padding, dilation, groups), forward and backward (fprop, dgrad, wgrad) through autograd on
    random data, on the emulated backend with counters: the convs of a model whose whole step (11M
    parameters through Adam, one fiber per element) is too slow for the emulator. image_size as for
    profile_step (ResNet-18 at 8x8, batch 1: 33 launches, about 40 s of CPU here)."""
    import numpy as np

    import fastconv as fc
    import fastconv.functional as F
    shape = _model_input(model, batch, image_size)
    with fc.using_device("cpu"):
        net = fc.models.ZOO[model](tuple(shape), 10)
        net._ensure_built(tuple(shape))
    convs = {}
    for layer in net.layers:
        if type(layer).__name__ == "Conv2D":
            kernel = tuple(layer.params["kernel"].shape)
            key = (tuple(layer.input_shape), kernel, layer.strides, layer.padding, layer.dilation_rate, layer.groups)
            convs.setdefault(key, layer)
    if not convs:
        raise ValueError(f"model {model!r} has no Conv2D layer")
    rng = np.random.default_rng(seed)

    def run():
        for (in_shape, kernel, strides, padding, dilation, groups) in convs:
            x = fc.Tensor(rng.standard_normal((batch, *in_shape), dtype=np.float32), requires_grad=True)
            w = fc.Tensor(rng.standard_normal(kernel, dtype=np.float32), requires_grad=True)
            y = F.conv2d(x, w, None, strides, padding, dilation, groups)
            y.backward(rng.standard_normal(y.shape, dtype=np.float32))
    label = (f"model {model}: its {len(convs)} distinct convs forward and backward (batch {batch}, "
             f"{'x'.join(map(str, shape))} input, fp32)")
    return _count(label, run, archs, static)


def run_emulated_profile(args) -> int:
    """The CLI: `fastconv profile --emulated ...` (options parsed by fastconv.bench.cli)."""
    archs = tuple(a.strip() for a in args.arch.split(",")) if args.arch else ARCHS
    static = not args.no_static
    if args.kernel:
        try:
            re.compile(args.kernel)
        except re.error as exc:
            raise ValueError(f"--kernel must be a regular expression: {exc}") from None
    for bad, why in ((args.layer, "--layer"), (args.ncu, "--ncu"), (args.backend != "fastconv", "--backend torch"),
                     (args.dtype not in (None, "fp32"), f"--dtype {args.dtype}")):
        if bad:
            raise ValueError(f"--emulated does not take {why}: it counts fastconv's fp32 kernels in the emulator")
    if sum(bool(v) for v in (args.op, args.model)) != 1:
        raise ValueError("--emulated: name exactly one of --op OP or --model NAME (--layer is not wired for it)")
    if args.convs and not args.model:
        raise ValueError("--convs needs --model NAME (the model whose convs to profile)")
    if args.op:
        prof = profile_op(args.op, args.suite or "seed", args.shape, int(args.batch) if args.batch else None,
                          args.seed, archs, static)
    elif args.convs:
        prof = profile_convs(args.model, int(args.batch) if args.batch else 1, args.image_size, args.seed, archs,
                             static)
    else:
        prof = profile_step(args.model, int(args.batch) if args.batch else 8, args.image_size, args.seed, archs,
                            static)
    print(prof.format(args.kernel, args.lines))
    if args.json:
        from .report import write_json
        write_json(args.json, prof.to_json(args.kernel, args.lines))
        print(f"wrote {args.json}")
    return 0
