"""`fastconv bench --op train_step --model seed`: one training step (forward, backward, Adam) of the
seed model in fastconv, in PyTorch eager (cuDNN on a GPU) and in torch.compile, as images per second.

The three run in one process, alternating sample by sample over a rotation of input batches
(the same method as the per-shape ops; the CPU logic follows benchmarks/train_step_cpu.py).
torch.compile runs on the GPU by default; on the CPU only with --compile (compiling takes tens of
seconds there).
"""
from __future__ import annotations

import time

import numpy as np

from . import report

MODELS = ("seed",)
INPUT = (28, 28, 1)
CLASSES = 10


def seed_step_flops(batch: int) -> int:
    """FLOPs of one seed-model step (see benchmarks/NOTES.md): the conv's fprop and wgrad (its input
    needs no gradient: no dgrad), the dense layer's fprop, dgrad and wgrad; elementwise work,
    pooling, softmax and Adam are left out (memory-bound, a few per cent of the FLOPs).
    conv: 2 * B*26*26*64 * 3*3*1 = 778,752 B per pass; dense: 2 * B * 10816 * 10 = 216,320 B per pass."""
    conv = 2 * batch * 26 * 26 * 64 * 9
    dense = 2 * batch * 10816 * 10
    return 2 * conv + 3 * dense


def _fastconv_step(batch, n_sets, mode, seed=0):
    import fastconv as fc
    if mode == "gpu":
        from ..backends import backend_for
        backend_for("cuda")           # raises with the reason while there is no GPU backend
    fc.set_seed(seed)
    model = fc.models.seed_model(INPUT, CLASSES)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    xs = [rng.random((batch,) + INPUT, dtype=np.float32) for _ in range(n_sets)]
    ys = [rng.integers(0, CLASSES, batch) for _ in range(n_sets)]
    return lambda i: model.train_on_batch(xs[i], ys[i])


def _torch_step(batch, n_sets, mode, dtype, compiled=False, seed=0):
    import torch
    dev = "cuda" if mode == "gpu" else "cpu"
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(64 * 13 * 13, CLASSES)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    fwd = torch.compile(model) if compiled else model
    xs = [torch.rand(batch, 1, 28, 28, device=dev) for _ in range(n_sets)]
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


def run_train_step(args, mode: str, why: str) -> int:
    from .env import collect_env
    from .runners import set_math_mode
    from .timing import CpuClock, CudaClock, time_alternating
    model = args.model or "seed"
    if model not in MODELS:
        raise ValueError(f"--model must be one of {list(MODELS)} for --op train_step, got {model!r}")
    dtype = (args.dtype or "fp32").split(",")[0]
    batch = int((args.batch or "128").split(",")[0])
    repeats = args.repeats or (30 if mode == "gpu" else 10)
    do_compile = args.compile if args.compile is not None else (mode == "gpu")
    n_sets = 4
    threads = None
    if mode == "cpu":
        from .env import limit_cpu_threads
        threads = limit_cpu_threads(1 if args.threads is None else args.threads)
    env = collect_env(mode)
    env["threads"] = threads
    where = env.get("gpu", {}).get("name") if mode == "gpu" else f"CPU ({env['cpu']}, torch {env['torch']}, " \
        f"{env.get('torch_threads')} threads)"
    print(f"fastconv bench --op train_step: {model} model, batch {batch}, {dtype}, {where} [{why}]")
    impls, status = {}, {}
    try:
        if mode == "cpu" and dtype != "fp32":
            raise RuntimeError("the CPU mode runs fp32 only")
        step = _fastconv_step(batch, n_sets, mode, args.seed)
        step(0)                      # a failure shows here, as 'not available', not in the middle of the timing
        impls["fastconv"] = step
        status["fastconv"] = {"available": True, "reason": "reference backend" if mode == "cpu" else "gpu backend"}
    except Exception as exc:
        status["fastconv"] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    restore = set_math_mode(dtype) if mode == "gpu" else (lambda: None)
    try:
        impls["torch eager"] = _torch_step(batch, n_sets, mode, dtype)
        status["torch eager"] = {"available": True, "reason": "cuDNN" if mode == "gpu" else "PyTorch CPU"}
        if do_compile:
            t0 = time.perf_counter()
            try:
                step = _torch_step(batch, n_sets, mode, dtype, compiled=True)
                step(0)
                if mode == "gpu":
                    import torch
                    torch.cuda.synchronize()
                impls["torch.compile"] = step
                status["torch.compile"] = {"available": True, "compile_s": time.perf_counter() - t0,
                                           "reason": "torch.compile(model), default mode"}
            except Exception as exc:
                status["torch.compile"] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
        else:
            status["torch.compile"] = {"available": False, "reason": "not run on the CPU by default (compiling takes "
                                                                     "tens of seconds); pass --compile"}
        clock = CudaClock() if mode == "gpu" else CpuClock()
        timings = time_alternating(impls, n_sets, clock, repeats=repeats, warmup=3,
                                   target_sample_s=2e-3 if mode == "gpu" else 1e-9,
                                   deadline=time.perf_counter() + (60 if mode == "gpu" else 20))
    finally:
        restore()
    flops = seed_step_flops(batch)
    rows = {}
    for name in ("fastconv", "torch eager", "torch.compile"):
        d = dict(status.get(name, {"available": False, "reason": "not run"}))
        if name in timings:
            t = timings[name]
            d.update(median_s=t.median_s, timing=t.to_json(), images_per_s=batch / t.median_s,
                     flops_per_s=flops / t.median_s)
        rows[name] = d
    eager = rows["torch eager"].get("median_s")
    tu, ts, ru, rs = report.units(mode)
    print(f"{'implementation':<16} {'step ' + tu:>12} {'images/s':>10} {ru:>9} {'vs eager':>9}")
    for name, d in rows.items():
        if d.get("median_s"):
            vs = eager / d["median_s"] if eager else None
            print(f"{name:<16} {d['median_s'] * ts:>12.1f} {d['images_per_s']:>10.0f} {d['flops_per_s'] / rs:>9.2f} "
                  f"{(f'{vs:.2f}x' if vs else '-'):>9}")
        else:
            print(f"{name:<16} {'n/a':>12}  {d['reason']}")
    if rows["torch.compile"].get("compile_s"):
        print(f"(torch.compile: first call, compiling included, took {rows['torch.compile']['compile_s']:.1f} s; "
              f"not in the step time)")
    print(f"({flops / 1e6:.1f} MFLOP per step counted: conv fprop+wgrad, dense fprop+dgrad+wgrad; "
          f"'vs eager' = eager time / this time)")
    fc_t = rows["fastconv"].get("median_s")
    result = {"model": model, "batch": batch, "dtype": dtype, "flops_per_step": flops, "impls": rows,
              "ratio_fastconv_vs_eager": (eager / fc_t) if eager and fc_t else None}
    doc = report.document(env, None, [{"kind": "train_step", "config": {"model": model, "batch": batch, "dtype": dtype,
                                                                        "repeats": repeats, "mode": mode},
                                       "results": [result]}])
    if args.json:
        report.write_json(args.json, doc)
        print(f"wrote {args.json}")
    if args.plot:
        try:
            _plot(rows, args.plot, f"{model} training step, batch {batch}, {dtype}, {where}")
            print(f"wrote {args.plot}")
        except ImportError:
            print("(matplotlib is not installed: no plot written)")
    return 0


def _plot(rows, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(rows)
    vals = [rows[n].get("images_per_s") or 0 for n in names]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(names, vals, color=["tab:blue", "tab:gray", "tab:orange"][:len(names)])
    for i, n in enumerate(names):
        ax.text(vals[i], i, f" {vals[i]:,.0f}" if vals[i] else " n/a", va="center", fontsize=8)
    ax.set_xlabel("images / s (higher is better)")
    ax.set_title(title, fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
