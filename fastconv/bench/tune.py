"""`fastconv tune`: for each shape of a suite, time every valid kernel configuration (tile; tile x split-k
for conv2d_wgrad; tensor-core tile for the tf32/fp16/bf16 GEMM; BM x BN of the sm_90a conv for the fp16/bf16
conv2d fprop, op "conv2d_fprop_sm90"), keep the fastest in the tuning file
(fastconv/backends/tuning.py) and print the table.

    fastconv tune --suite resnet50 --op fprop,dgrad,wgrad --dtype float32 [--batch 128] [--file PATH]

Each candidate runs through the very launch plans the model uses (KernelOps with its test knobs force_tile /
force_splits / force_tensor_op_tile / force_sm90_conv_tile), and what it launched is read back from the trace
(fastconv.explain), so a configuration the plan would not honour (e.g. the 64-bit index path) is seen,
not assumed. Every candidate's output is checked against the heuristic's before anything is timed.
Timing: CUDA events on the GPU, candidates alternating sample by sample (bench/timing.py). The
heuristic stays unless the fastest candidate's median beats the heuristic's 25th percentile, so a
noise-level "win" does not churn the committed file.

Without a GPU it refuses, except `--backend emulated`: the same plans through the CPU emulator timed by
wall clock, for tests on tiny shapes; its entries are under the device "fastconv emulator (CPU)",
marked "real": false, and it writes only to an explicit --file.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..backends import tuning
from ..explain import tracing
from .cli import _positive_int

OPS = {"fprop": "conv2d_fprop", "dgrad": "conv2d_dgrad", "wgrad": "conv2d_wgrad", "gemm": "gemm"}
DTYPES = {"float32": "float32", "fp32": "float32", "tf32": "tf32", "float16": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}
SUITE_DTYPES = {"float32": "fp32", "tf32": "tf32", "float16": "fp16", "bfloat16": "bf16"}   # bench/suites names
# Candidates differ only in summation order: max |out - heuristic out| <= TOLERANCE * max(1, max |out|).
TOLERANCE = {"float32": 1e-4, "tf32": 1e-2, "float16": 1e-2, "bfloat16": 2e-2}
SPLITS = (1, 2, 4, 8, 16, 32, 64)
_FP32_KERNEL = re.compile(r"^fc::(conv2d_\w+_implicit_gemm|gemm_bias_act)<fc::(Tile\w+), (\d+), (int64_t|int), ")
_TENSOR_OP_KERNEL = re.compile(r"^fc::gemm_tensor_op<fc::TensorOp(?:Tf32|F16|Bf16)(Tile\d+), (\d+), ")
_SM90_CONV_KERNEL = re.compile(r"^fc::conv2d_fprop_wgmma_sm90<fc::WgmmaTile<(\d+), \d+(?:, (\d+))?>")
_SM90_TYPES = {"bfloat16": "__nv_bfloat16", "float16": "__half"}


class TuneError(RuntimeError):
    """`fastconv tune` cannot run as asked (no GPU, bad arguments)."""


# ---- backends and clocks -----------------------------------------------------------------------
class CupyClock:
    """cupy.cuda.Event pairs on the current stream (the stream the native and jit backends launch on)."""
    name = "cuda events"

    def __init__(self, cupy):
        self.cupy = cupy

    def mark(self):
        ev = self.cupy.cuda.Event()
        ev.record()
        return ev

    def sync(self):
        self.cupy.cuda.get_current_stream().synchronize()

    def seconds(self, t0, t1) -> float:
        return self.cupy.cuda.get_elapsed_time(t0, t1) / 1e3


@dataclass
class Backend:
    name: str
    ops: object            # a KernelOps
    xp: object             # numpy or cupy
    clock: object          # mark / sync / seconds (bench/timing.py)
    real: bool             # False: emulator wall clock, not a real tuning
    repeats: int = 20
    warmup: int = 3
    max_inner: int = 64
    target_sample_s: float = 1e-3

    @property
    def device(self) -> str:
        return self.ops.tuning_device or tuning.device_id(self.xp)

    @property
    def timer(self) -> str:
        return self.clock.name if self.real else "emulator wall clock (not a real tuning)"

    def to_host(self, a):
        return a.get() if hasattr(a, "get") else np.asarray(a)


def gpu_backend(name: str = "auto") -> Backend:
    """native (else jit) KernelOps on CuPy arrays, timed with CUDA events; TuneError when neither runs."""
    from ..backends import backend_status
    status = backend_status()
    for n in (("native", "jit") if name == "auto" else (name,)):
        ok, reason = status[n]
        if ok:
            import cupy

            from ..backends import jit, native
            ops = (native if n == "native" else jit)._ops()
            return Backend(n, ops, cupy, CupyClock(cupy), real=True)
    reasons = "; ".join(f"{n}: {status[n][1]}" for n in ("native", "jit"))
    raise TuneError(f"fastconv tune times kernels on a GPU, and none is usable ({reasons}). "
                    "(--backend emulated exists for tests: it times tiny shapes through the CPU emulator, "
                    "writes only to an explicit --file and marks the entries as not a real tuning)")


def emulated_backend() -> Backend:
    from ..backends import emulated
    from .timing import CpuClock
    ok, reason = emulated.status()
    if not ok:
        raise TuneError(f"--backend emulated: {reason}")
    return Backend("emulated", emulated.ops(), np, CpuClock(), real=False, repeats=3, warmup=1, max_inner=1,
                   target_sample_s=0.0)


# ---- one tuning task: an op on one concrete problem ----------------------------------------------
@dataclass
class Task:
    op: str               # the tuning file's op (tuning.OPS)
    dtype: str            # float32 | tf32 | float16 | bfloat16
    problem: str          # tuning.conv_problem / gemm_problem
    label: str            # for the table
    inputs: list          # one tuple of device arrays per rotation set
    call: object          # call(ops, *inputs) -> output array
    groups: int = 1


def _random(xp, shape, dtype, rng):
    a = rng.standard_normal(shape).astype(np.float32)
    if dtype == "float16":
        a = a.astype(np.float16)
    elif dtype == "bfloat16":
        from ..backends.plans.tensor_op import float32_to_bf16_bits
        a = float32_to_bf16_bits(np, a)
    return xp.asarray(a)


def make_task(case, dtype: str, backend: Backend, n_sets: int = 1, seed: int = 0) -> Task:
    """A Task for a bench/suites Case (conv2d_fprop/dgrad/wgrad or gemm) in `dtype`."""
    rng = np.random.default_rng(seed)
    g = case.geometry
    xp = backend.xp
    if case.op == "gemm":
        m, n, k = g["M"], g["N"], g["K"]
        inputs = [(_random(xp, (m, k), dtype, rng), _random(xp, (k, n), dtype, rng)) for _ in range(n_sets)]
        if dtype == "float32":
            return Task("gemm", dtype, tuning.gemm_problem(m, n, k), case.shape_text(), inputs,
                        lambda ops, a, b: ops.gemm(a, b))
        return Task("gemm_tensor_op", dtype, tuning.gemm_problem(m, n, k, out="float32"), case.shape_text(), inputs,
                    lambda ops, a, b: ops.gemm_tensor_op(a, b))
    args = (g["stride"], g["padding"], g["dilation"], g["groups"])
    problem = tuning.conv_problem(g["x"], g["w"], *args)
    if case.op == "conv2d_fprop" and dtype in _SM90_TYPES:   # the sm_90a conv's tiles (where the plan routes there)
        inputs = [(_random(xp, g["x"], dtype, rng), _random(xp, g["w"], dtype, rng)) for _ in range(n_sets)]
        return Task("conv2d_fprop_sm90", dtype, problem, case.shape_text(), inputs,
                    lambda ops, x, w: ops.conv2d_fprop_tensor_core(x, w, *args), g["groups"])
    if dtype != "float32":
        raise TuneError(f"{case.op} is tuned in float32, and conv2d_fprop in float16 / bfloat16 too (the sm_90a "
                        "conv's tiles); the tensor-core dgrad and wgrad have one tile each")
    shapes = {"conv2d_fprop": (g["x"], g["w"]), "conv2d_dgrad": (g["y"], g["w"]), "conv2d_wgrad": (g["x"], g["y"])}
    inputs = [tuple(_random(xp, s, dtype, rng) for s in shapes[case.op]) for _ in range(n_sets)]
    call = {"conv2d_fprop": lambda ops, x, w: ops.conv2d_fprop(x, w, *args),
            "conv2d_dgrad": lambda ops, dy, w: ops.conv2d_dgrad(dy, w, g["x"], *args),
            "conv2d_wgrad": lambda ops, x, dy: ops.conv2d_wgrad(x, dy, g["w"], *args)}[case.op]
    return Task(case.op, dtype, problem, case.shape_text(), inputs, call, g["groups"])


def _set_knobs(ops, config):
    from ..backends.plans.common import TILES
    tile = config.get("tile")
    if tile in TILES:
        ops.force_tile = tile
    elif tile and "x" in tile:   # "64x128": BM x BN of the sm_90a conv
        ops.force_sm90_conv_tile = tuple(int(v) for v in tile.split("x"))
    elif tile:
        ops.force_tensor_op_tile = tile
    ops.force_splits = config.get("splits")


def _clear_knobs(ops):
    ops.force_tile = ops.force_splits = ops.force_tensor_op_tile = ops.force_sm90_conv_tile = None


def launched_config(task: Task, events) -> dict:
    """The configuration a run launched, read from its trace: {"tile", "splits"?} plus "vec" and
    "index"; TuneError if the op ran no tunable kernel (depthwise conv, say)."""
    for e in events:
        if e.kind != "kernel":
            continue
        m = _SM90_CONV_KERNEL.match(e.text)
        if m:
            return {"tile": f"{m.group(2) or 128}x{m.group(1)}", "vec": 8, "index": "int"}
        if task.op == "conv2d_fprop_sm90":   # routed elsewhere (mma.sync, CUDA cores): not this op's tiles
            continue
        m = _FP32_KERNEL.match(e.text)
        if m:
            cfg = {"tile": m.group(2), "vec": int(m.group(3)), "index": m.group(4)}
            if task.op == "conv2d_wgrad":
                cfg["splits"] = e.detail["grid"][2] // task.groups
            return cfg
        m = _TENSOR_OP_KERNEL.match(e.text)
        if m:
            return {"tile": m.group(1), "vec": int(m.group(2)), "index": "int"}
    kernels = [e.text for e in events if e.kind == "kernel"]
    if task.op == "conv2d_fprop_sm90":
        raise TuneError(f"the plan did not route it to the sm_90a conv (ran {', '.join(kernels)}; fastconv explain "
                        "says why); nothing to tune")
    raise TuneError(f"no tile-parameterized kernel ran ({', '.join(kernels)}); nothing to tune")


def run_config(backend: Backend, task: Task, config: dict | None, i: int = 0):
    """One call with `config` forced (None: the heuristic, tuning file bypassed) -> (output, launched config)."""
    ops = backend.ops
    try:
        if config:
            _set_knobs(ops, config)
        with tuning.bypassed(), tracing() as events:
            out = task.call(ops, *task.inputs[i])
        return out, launched_config(task, events)
    finally:
        _clear_knobs(ops)


def candidate_configs(task: Task, heuristic: dict) -> list[dict]:
    """Every configuration worth trying: each tile (and, for conv2d_wgrad, each split-k in SPLITS)."""
    if task.op == "conv2d_fprop_sm90":
        from ..backends.plans.conv2d_sm90 import sm90_conv_tiles
        return [{"tile": f"{bm}x{bn}"} for bm, bn in sm90_conv_tiles(_SM90_TYPES[task.dtype])]
    if task.op == "gemm_tensor_op":
        from ..backends.plans.tensor_op import TENSOR_OP_TILES
        return [{"tile": t} for t in TENSOR_OP_TILES]
    from ..backends.plans.common import TILES
    if task.op != "conv2d_wgrad":
        return [{"tile": t} for t in TILES]
    return [{"tile": t, "splits": s} for t in TILES for s in SPLITS] + [dict(heuristic)]


def label(config: dict) -> str:
    return config["tile"] + (f" splits={config['splits']}" if "splits" in config else "")


def _key(config: dict) -> dict:
    return {k: config[k] for k in ("tile", "splits") if k in config}


@dataclass
class Result:
    task: Task
    heuristic: dict
    chosen: dict
    times_us: dict         # label -> median microseconds
    dropped: dict          # label -> why it was not timed
    speedup: float
    key: str | None = None
    skipped: str | None = None


def tune_task(backend: Backend, task: Task) -> Result:
    """Validate every candidate against the heuristic's output, time the survivors, pick the fastest."""
    from .timing import time_alternating
    ref, heuristic = run_config(backend, task, None)
    if heuristic["index"] == "int64_t":
        return Result(task, _key(heuristic), _key(heuristic), {}, {}, 1.0,
                      skipped="64-bit index path: one tile, nothing to tune")
    ref = backend.to_host(ref).astype(np.float32)
    tol = TOLERANCE[task.dtype] * max(1.0, float(np.abs(ref).max()) if ref.size else 1.0)
    configs, dropped = {}, {}
    failed = {}                    # tile -> why: its other split-k counts are the same instantiation
    for want in candidate_configs(task, _key(heuristic)):
        if want["tile"] in failed:
            continue
        try:
            out, got = run_config(backend, task, want)
        except Exception as exc:   # an instantiation this build lacks, a shape the config cannot run
            failed[want["tile"]] = dropped[want["tile"]] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
            continue
        got = _key(got)
        if label(got) in configs:
            continue               # the plan normalized it into one already tried (split-k rounding)
        err = float(np.abs(backend.to_host(out).astype(np.float32) - ref).max()) if ref.size else 0.0
        if not err <= tol:
            dropped[label(got)] = f"output differs from the heuristic's by {err:.3g} (tolerance {tol:.3g})"
            continue
        configs[label(got)] = got
    h = label(_key(heuristic))
    configs.setdefault(h, _key(heuristic))
    n_sets = len(task.inputs)
    ops = backend.ops

    def fn(config):
        def call(i):
            _set_knobs(ops, config)
            try:
                task.call(ops, *task.inputs[i])
            finally:
                _clear_knobs(ops)
        return call
    timings = time_alternating({lab: fn(c) for lab, c in configs.items()}, n_sets, backend.clock,
                               repeats=backend.repeats, warmup=backend.warmup,
                               target_sample_s=backend.target_sample_s, max_inner=backend.max_inner)
    times = {lab: t.median_s * 1e6 for lab, t in timings.items()}
    best = min(times, key=times.get)
    if timings[best].median_s >= timings[h].quantile(0.25):
        best = h                   # not clearly faster than the heuristic: keep the heuristic
    return Result(task, configs[h], configs[best], times, dropped, times[h] / times[best] if times[best] else 1.0)


# ---- the command -------------------------------------------------------------------------------
def _parse_list(text, allowed, what):
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        if item not in allowed:
            raise TuneError(f"--{what} {item!r} is not one of {sorted(allowed)}")
        out.append(allowed[item] if isinstance(allowed, dict) else item)
    if not out:
        raise TuneError(f"--{what} names nothing")
    return out


def format_result(r: Result) -> list[str]:
    head = f"{r.task.op} {r.task.dtype} {r.task.label}"
    if r.skipped:
        return [f"{head}: skipped ({r.skipped})"]
    lines = [head]
    h, c = label(r.heuristic), label(r.chosen)
    for lab, us in sorted(r.times_us.items(), key=lambda kv: kv[1]):
        tags = [t for t, on in (("chosen", lab == c), ("heuristic", lab == h)) if on]
        lines.append(f"    {lab:<22} {us:12.3f} us  {' '.join(tags)}")
    for lab, why in r.dropped.items():
        lines.append(f"    {lab:<22} {'-':>12}     dropped: {why}")
    lines.append(f"  -> {c}, {r.speedup:.2f}x vs heuristic ({h})")
    return lines


def run_tune(args) -> int:
    from .env import l2_bytes
    from .suites import expand_cases, load_suite
    from .timing import rotation_sets
    ops = _parse_list(args.op, OPS, "op")
    dtypes = _parse_list(args.dtype, DTYPES, "dtype")
    if args.backend == "emulated":
        if not args.file:
            raise TuneError("--backend emulated writes only to an explicit --file (its wall-clock timings are "
                            "not a real tuning and must not reach the tuning file the GPU backends read)")
        backend = emulated_backend()
    else:
        backend = gpu_backend(args.backend)
    path = args.file or tuning.default_path()
    tf = tuning.TuningFile.read(path)   # an unreadable file stops here: it is never overwritten
    suite = load_suite(args.suite)
    batches = args.batch or ([suite.cpu_batch] if not backend.real else None)
    cases, _ = expand_cases([suite], ops, batches=batches, dtypes=[SUITE_DTYPES[d] for d in dtypes],
                            shapes=args.shape)
    device = backend.device
    print(f"fastconv tune: suite {suite.name}, {len(cases)} case(s), backend {backend.name} on {device}, "
          f"timer {backend.timer}; file {path}")
    written = 0
    for case in cases:
        dtype = next(d for d in dtypes if SUITE_DTYPES[d] == case.dtype)
        n_sets = 1 if not backend.real else rotation_sets(case.input_bytes, l2_bytes({"name": device}),
                                                          budget_bytes=2 << 30, max_sets=16)
        try:
            task = make_task(case, dtype, backend, n_sets)
            result = tune_task(backend, task)
        except TuneError as exc:
            print(f"{case.op} {dtype} {case.shape_text()}: skipped ({exc})")
            continue
        print("\n".join(format_result(result)))
        if result.skipped:
            continue
        tf.put(device, task.op, task.dtype, task.problem, result.chosen, heuristic=result.heuristic,
               candidates_us={k: round(v, 3) for k, v in sorted(result.times_us.items())},
               speedup_vs_heuristic=round(result.speedup, 3), timer=backend.timer, real=backend.real)
        tf.save()                  # after every shape: a long run that dies keeps what it measured
        written += 1
    print(f"fastconv tune: {written} entr{'y' if written == 1 else 'ies'} written to {path}")
    return 0


def add_tune_parser(sub) -> None:
    p = sub.add_parser("tune", help="time every kernel configuration of a suite's shapes and keep the fastest "
                                    "in the tuning file")
    p.add_argument("--suite", required=True, help="suite name (benchmarks/suites) or path to a suite JSON")
    p.add_argument("--op", default="fprop,dgrad,wgrad,gemm", help="comma-separated: fprop, dgrad, wgrad, gemm")
    p.add_argument("--dtype", default="float32",
                   help="comma-separated: float32 (CUDA cores), tf32 / float16 / bfloat16 (tensor-core GEMM; "
                        "float16 / bfloat16 also the sm_90a conv fprop's tiles)")
    p.add_argument("--batch", type=_positive_int, action="append", help="batch size (repeatable; default: the suite's)")
    p.add_argument("--shape", action="append", help="only this problem of the suite (repeatable)")
    p.add_argument("--file", default=None, help=f"tuning file (default ${tuning.ENV} or {tuning.default_path()})")
    p.add_argument("--backend", default="auto", choices=("auto", "native", "jit", "emulated"),
                   help="auto: native, else jit; emulated: CPU emulator, for tests only (needs --file)")

    def run(args):
        import sys
        try:
            return run_tune(args)
        except (TuneError, ValueError, KeyError, FileNotFoundError) as exc:
            print(f"fastconv tune: error: {exc}", file=sys.stderr)
            return 2
    p.set_defaults(func=run)
