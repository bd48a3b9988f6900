"""`fastconv bench --op train_step --model seed[,resnet18]`: one training step (forward, backward,
Adam) as images per second, side by side in one process:

- seed (28x28x1, batch 128): fastconv eager (train_on_batch, the loss read every step), fastconv
  graph (fit's CUDA-graph replay, fastconv/models/step_capture.py), PyTorch eager (cuDNN) and
  torch.compile(mode='max-autotune');
- resnet18 (ResNet-18 CIFAR, 32x32x3, batch 256): fastconv eager and graph against PyTorch eager
  with bf16 autocast and channels_last (AMP).
With --dtype bf16 / fp16 / tf32, fastconv compiles the model with that precision policy (fp32 master weights, as
PyTorch's autocast keeps them) and PyTorch runs autocast in it; fp32 is strict fp32 on both sides.

They alternate sample by sample over a rotation of input batches (the same method as the per-shape
ops; the CPU logic follows benchmarks/train_step_cpu.py). On the CPU the comparison is the
reference backend against PyTorch CPU with small counts; there is no graph there (the row says why),
and torch.compile runs only with --compile (compiling takes tens of seconds). --time-budget bounds
the whole op: torch.compile is skipped, with the reason, when too little time is left for it.
"""
from __future__ import annotations

import time

import numpy as np

from . import report
from .env import collect_env, limit_cpu_threads
from .runners import set_math_mode
from .timing import CpuClock, CudaClock, time_alternating

INPUT = (28, 28, 1)
CLASSES = 10
# per model: input (HWC), the GPU batch and dtype, the CPU batch
MODELS = {"seed": {"input": INPUT, "batch": 128, "dtype": "fp32", "cpu_batch": 128},
          "resnet18": {"input": (32, 32, 3), "batch": 256, "dtype": "bf16", "cpu_batch": 8}}
COMPILE_MODE = "max-autotune"
MIN_COMPILE_S = 60   # time left below which torch.compile(max-autotune) is not started
RESERVE_S = 30       # of the time budget, kept for each model still to run after the current one


def seed_step_flops(batch: int) -> int:
    """FLOPs of one seed-model step (see benchmarks/NOTES.md): the conv's fprop and wgrad (its input
    needs no gradient: no dgrad), the dense layer's fprop, dgrad and wgrad; elementwise work,
    pooling, softmax and Adam are left out (memory-bound, a few per cent of the FLOPs).
    conv: 2 * B*26*26*64 * 3*3*1 = 778,752 B per pass; dense: 2 * B * 10816 * 10 = 216,320 B per pass."""
    conv = 2 * batch * 26 * 26 * 64 * 9
    dense = 2 * batch * 10816 * 10
    return 2 * conv + 3 * dense


def model_step_flops(model_name: str, batch: int) -> int:
    """FLOPs of one training step: seed_step_flops for the seed model; otherwise 3x the forward
    FLOPs of every Conv2D and Dense (fprop, dgrad, wgrad; elementwise work, pooling, BN and the
    optimizer left out)."""
    if model_name == "seed":
        return seed_step_flops(batch)
    import fastconv as fc
    spec = MODELS[model_name]
    with fc.using_device("cpu"):
        model = fc.models.ZOO[model_name](spec["input"], CLASSES)
        model._ensure_built(spec["input"])
    forward = 0
    for layer in model.layers:
        kernel = layer.params.get("kernel") if type(layer).__name__ in ("Conv2D", "Dense") else None
        if kernel is not None:
            out = layer.compute_output_shape(layer.input_shape)
            forward += 2 * int(np.prod(out)) * int(np.prod(kernel.shape[:-1]))
    return 3 * forward * batch


def _fastconv_model(model_name, batch, n_sets, mode, seed, dtype="fp32"):
    import fastconv as fc
    if mode == "gpu":
        from ..backends import backend_for
        backend_for("cuda")           # raises with the reason while there is no GPU backend
    fc.set_seed(seed)
    shape = MODELS[model_name]["input"]
    model = fc.models.ZOO[model_name](shape, CLASSES)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  precision=None if dtype == "fp32" else dtype)
    rng = np.random.default_rng(seed)
    xs = [rng.random((batch,) + shape, dtype=np.float32) for _ in range(n_sets)]
    ys = [rng.integers(0, CLASSES, batch) for _ in range(n_sets)]
    return model, xs, ys


def _fastconv_step(batch, n_sets, mode, seed=0, model_name="seed", dtype="fp32"):
    """fastconv eager: train_on_batch, as fit(graph=False) runs it (it reads the loss every step). On
    the GPU the inputs are device-resident, as for the graph and PyTorch (fit prefetches them)."""
    model, xs, ys = _fastconv_model(model_name, batch, n_sets, mode, seed, dtype)
    if mode == "gpu":
        import cupy
        xs = [cupy.asarray(x) for x in xs]
    return lambda i: model.train_on_batch(xs[i], ys[i])


def _fastconv_graph_step(batch, n_sets, mode, seed=0, model_name="seed", dtype="fp32"):
    """fastconv graph: fit's runner (step_capture.GraphSteps) on device-resident batches; the first
    call runs eagerly (warm-up), the second captures. Raises with the reasons where no graph is used."""
    from ..models.step_capture import GraphSteps, capture_decision
    model, xs, ys = _fastconv_model(model_name, batch, n_sets, mode, seed, dtype)
    model._ensure_built(xs[0].shape[1:])
    decision = capture_decision(model)
    if not decision.use:
        raise RuntimeError("no CUDA graph: " + "; ".join(decision.reasons))
    import cupy
    runner = GraphSteps(model, decision)
    xs_dev, ys_dev = [cupy.asarray(x) for x in xs], [cupy.asarray(y) for y in ys]

    def step(i):
        runner.step(xs_dev[i], ys[i], ys_dev[i])
        if runner.failed:
            raise RuntimeError(runner.failed)
    return step


def _torch_resnet18(torch):
    """ResNet-18 for 32x32 inputs as fastconv.models.resnet18 builds it: a 3x3 stem, no max-pool,
    basic blocks (2, 2, 2, 2) of widths 64..512, a 1x1 projection where the shape changes."""
    nn = torch.nn

    def conv_bn(cin, cout, k, stride, relu=True):
        layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout, momentum=0.01,
                                                                                       eps=1e-3)]
        return nn.Sequential(*layers, *([nn.ReLU()] if relu else []))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(conv_bn(cin, cout, 3, stride), conv_bn(cout, cout, 3, 1, relu=False))
            self.short = conv_bn(cin, cout, 1, stride, relu=False) if stride != 1 or cin != cout else nn.Identity()

        def forward(self, x):
            return torch.relu(self.body(x) + self.short(x))

    layers, cin = [conv_bn(3, 64, 3, 1)], 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for i in range(2):
            layers.append(Block(cin, width, 2 if i == 0 and stage > 0 else 1))
            cin = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, CLASSES))


def _torch_step(batch, n_sets, mode, dtype, compiled=False, seed=0, model_name="seed", compile_mode=None,
                channels_last=False):
    import torch
    dev = "cuda" if mode == "gpu" else "cpu"
    if mode == "gpu":
        torch.backends.cudnn.benchmark = True     # cuDNN's own algorithm search, as the per-shape baselines
    torch.manual_seed(seed)
    if model_name == "seed":
        model = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                    torch.nn.Flatten(), torch.nn.Linear(64 * 13 * 13, CLASSES)).to(dev)
    else:
        model = _torch_resnet18(torch).to(dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fwd = torch.compile(model, **({"mode": compile_mode} if compile_mode else {})) if compiled else model
    h, w, c = MODELS[model_name]["input"]
    xs = [torch.rand(batch, c, h, w, device=dev).to(memory_format=fmt) for _ in range(n_sets)]
    ys = [torch.randint(0, CLASSES, (batch,), device=dev) for _ in range(n_sets)]
    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(dtype)

    def step(i):
        opt.zero_grad(set_to_none=True)
        if amp is not None:
            with torch.autocast(device_type=dev, dtype=amp):
                loss = torch.nn.functional.cross_entropy(fwd(xs[i]), ys[i])
        else:
            loss = torch.nn.functional.cross_entropy(fwd(xs[i]), ys[i])
        loss.backward()
        opt.step()
        return loss                    # no .item(): it would synchronize inside the timed region
    return step


IMPLS = ("fastconv", "fastconv graph", "torch eager", "torch.compile")   # "fastconv" is the eager step


def run_train_step(args, mode: str, why: str) -> int:
    names = [m.strip() for m in (args.model or "seed").split(",") if m.strip()]
    for name in names:
        if name not in MODELS:
            raise ValueError(f"--model must be one of {list(MODELS)} (comma-separated) for --op train_step, "
                             f"got {name!r}")
    start = time.perf_counter()
    budget = getattr(args, "time_budget", None) or (600 if mode == "gpu" else 60)
    deadline = start + budget
    threads = limit_cpu_threads(1 if args.threads is None else args.threads) if mode == "cpu" else None
    env = collect_env(mode)
    env["threads"] = threads
    where = env.get("gpu", {}).get("name") if mode == "gpu" else f"CPU ({env['cpu']}, torch {env['torch']}, " \
        f"{env.get('torch_threads')} threads)"
    results, all_rows = [], {}
    for k, name in enumerate(names):
        spec = MODELS[name]
        dtype = (args.dtype or ("fp32" if mode == "cpu" else spec["dtype"])).split(",")[0]
        batch = int((args.batch or str(spec["batch"] if mode == "gpu" else spec["cpu_batch"])).split(",")[0])
        repeats = args.repeats or (30 if mode == "gpu" else 10)
        # each model may use what is left of the budget less a reserve for the ones after it (torch.compile's
        # compile time comes out of it too)
        model_deadline = deadline - RESERVE_S * (len(names) - k - 1)
        result, rows = _run_model(args, mode, name, dtype, batch, repeats, model_deadline, where, why)
        results.append(result)
        all_rows[f"{name}, batch {batch}, {dtype}"] = rows
    doc = report.document(env, None, [{"kind": "train_step",
                                       "config": {"models": names, "repeats": args.repeats, "mode": mode,
                                                  "time_budget_s": budget},
                                       "results": results}])
    report.write_outputs(args, doc, lambda path: _plot(all_rows, path, f"training step, images/s, {where}"))
    return 0


def _run_model(args, mode, name, dtype, batch, repeats, deadline, where, why):
    n_sets = 4
    print(f"fastconv bench --op train_step: {name} model, batch {batch}, {dtype}, {where} [{why}]")
    impls, status = {}, {}
    fc_dtype_note = "" if dtype == "fp32" else f", precision {dtype}"
    for impl, make in (("fastconv", _fastconv_step), ("fastconv graph", _fastconv_graph_step)):
        try:
            if mode == "cpu" and dtype != "fp32":
                raise RuntimeError("the CPU mode runs fp32 only")
            step = make(batch, n_sets, mode, args.seed, model_name=name, dtype=dtype)
            step(0)                  # a failure shows here, as 'not available', not in the middle of the timing
            step(1)                  # the graph: warm-up, then capture
            impls[impl] = step
            status[impl] = {"available": True, "reason": ("reference backend" if mode == "cpu" else "gpu backend")
                            + (", CUDA graph replay" if impl == "fastconv graph" else "") + fc_dtype_note}
        except Exception as exc:
            status[impl] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    amp = name == "resnet18" and mode == "gpu"
    restore = set_math_mode(dtype) if mode == "gpu" else (lambda: None)
    try:
        torch_dtype = dtype if (mode == "gpu" and dtype in ("fp16", "bf16")) else "fp32"
        impls["torch eager"] = _torch_step(batch, n_sets, mode, torch_dtype, model_name=name, channels_last=amp)
        status["torch eager"] = {"available": True, "reason": ("cuDNN" if mode == "gpu" else "PyTorch CPU")
                                 + (f", {torch_dtype} autocast, channels_last" if amp else "")}
        do_compile = args.compile if args.compile is not None else (mode == "gpu" and name == "seed")
        left = deadline - time.perf_counter()
        if not do_compile:
            status["torch.compile"] = {"available": False, "reason": (
                "not run on the CPU by default (compiling takes tens of seconds); pass --compile" if mode == "cpu"
                else f"not run for {name} by default (max-autotune compiles for minutes); pass --compile")}
        elif left < MIN_COMPILE_S and mode == "gpu":
            status["torch.compile"] = {"available": False, "reason": f"not started: {left:.0f} s of the time budget "
                                                                     f"left, under {MIN_COMPILE_S} s"}
        else:
            t0 = time.perf_counter()
            cmode = COMPILE_MODE if mode == "gpu" else None
            try:
                step = _torch_step(batch, n_sets, mode, torch_dtype, compiled=True, model_name=name,
                                   compile_mode=cmode, channels_last=amp)
                step(0)
                if mode == "gpu":
                    import torch
                    torch.cuda.synchronize()
                impls["torch.compile"] = step
                status["torch.compile"] = {"available": True, "compile_s": time.perf_counter() - t0,
                                           "reason": f"torch.compile(model, mode={cmode!r})"}
            except Exception as exc:
                status["torch.compile"] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
        clock = CudaClock() if mode == "gpu" else CpuClock()
        timings = time_alternating(impls, n_sets, clock, repeats=repeats, warmup=3,
                                   target_sample_s=2e-3 if mode == "gpu" else 1e-9,
                                   deadline=max(deadline, time.perf_counter() + 5))
    finally:
        restore()
    flops = model_step_flops(name, batch)
    rows = {}
    for impl in IMPLS:
        d = dict(status.get(impl, {"available": False, "reason": "not run"}))
        if impl in timings:
            t = timings[impl]
            d.update(median_s=t.median_s, timing=t.to_json(), images_per_s=batch / t.median_s,
                     flops_per_s=flops / t.median_s)
        rows[impl] = d
    eager = rows["torch eager"].get("median_s")
    tu, ts, ru, rs = report.units(mode)
    print(f"{'implementation':<16} {'step ' + tu:>12} {'images/s':>10} {ru:>9} {'vs eager':>9}")
    for impl, d in rows.items():
        if d.get("median_s"):
            vs = eager / d["median_s"] if eager else None
            print(f"{impl:<16} {d['median_s'] * ts:>12.1f} {d['images_per_s']:>10.0f} {d['flops_per_s'] / rs:>9.2f} "
                  f"{(f'{vs:.2f}x' if vs else '-'):>9}")
        else:
            print(f"{impl:<16} {'n/a':>12}  {d['reason']}")
    if rows["torch.compile"].get("compile_s"):
        print(f"(torch.compile: first call, compiling included, took {rows['torch.compile']['compile_s']:.1f} s; "
              f"not in the step time)")
    what = "conv fprop+wgrad, dense fprop+dgrad+wgrad" if name == "seed" else "3x the conv and dense forward"
    print(f"({flops / 1e6:.1f} MFLOP per step counted: {what}; 'vs eager' = torch eager time / this time)")
    fc_t, graph_t = rows["fastconv"].get("median_s"), rows["fastconv graph"].get("median_s")
    result = {"model": name, "batch": batch, "dtype": dtype, "flops_per_step": flops, "impls": rows,
              "ratio_fastconv_vs_eager": (eager / fc_t) if eager and fc_t else None,
              "ratio_graph_vs_eager": (eager / graph_t) if eager and graph_t else None,
              "ratio_graph_vs_fastconv_eager": (fc_t / graph_t) if fc_t and graph_t else None}
    return result, rows


def _plot(groups, path, title):
    """One bar per implementation and model: images/s (higher is better)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels, vals, colors = [], [], []
    palette = {"fastconv": "tab:blue", "fastconv graph": "tab:cyan", "torch eager": "tab:gray",
               "torch.compile": "tab:orange"}
    for group, rows in groups.items():
        for impl, d in rows.items():
            labels.append(f"{group}: {impl}")
            vals.append(d.get("images_per_s") or 0)
            colors.append(palette.get(impl, "tab:green"))
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.35 * len(labels)))
    ax.barh(labels, vals, color=colors)
    for i, v in enumerate(vals):
        ax.text(v, i, f" {v:,.0f}" if v else " n/a", va="center", fontsize=8)
    ax.set_xlabel("images / s (higher is better)")
    ax.set_title(title, fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
