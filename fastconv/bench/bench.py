"""`fastconv bench`: fastconv against cuDNN / cuBLAS (GPU) or PyTorch CPU, shape by shape.

GPU mode: CUDA events, warm-up first, the median of many samples, inputs rotated over enough sets
to exceed L2 twice, fastconv and the baseline alternating in one process. CPU mode (no GPU, or
--device cpu): the NumPy reference against PyTorch CPU, fp32, small batches, a default --limit and
time budget so a run stays near a minute.
"""
from __future__ import annotations

import gc
import time

from . import ceilings as ce, report
from .env import collect_env, cpu_cache_bytes, device_mode, l2_bytes, limit_cpu_threads
from .input_pipeline import run_input_pipeline
from .roofline import Ceilings, achieved, datasheet_for, peak_key, percent_of_roofline, roofline
from .runners import CHECK_TOL, FastconvRunner, baseline_runner, make_inputs, rel_err, set_math_mode
from .suites import OP_KIND, expand_cases, load_suites
from .timing import CpuClock, CudaClock, rotation_sets, time_alternating
from .train_step import run_train_step

DEFAULT_SUITE = {"conv2d_fprop": "resnet50", "conv2d_dgrad": "resnet50", "conv2d_wgrad": "resnet50",
                 "maxpool": "all", "gemm": "gemm"}
# Per-mode defaults; the command line overrides each.
DEFAULTS = {
    "gpu": {"repeats": 30, "warmup": 3, "target_sample_s": 1e-3, "case_budget_s": 3.0, "limit": None,
            "time_budget": None, "max_gflop": None},
    "cpu": {"repeats": 15, "warmup": 1, "target_sample_s": 2e-3, "case_budget_s": 2.5, "limit": 6,
            "time_budget": 50.0, "max_gflop": 20.0},
}


def _csv(text):
    return [t.strip() for t in str(text).split(",") if t.strip()] if text else None


def plan(args, mode):
    """(cases, skipped notes) for the ops/suites/dtypes/batches asked for, --limit applied per op."""
    ops = _csv(args.op) or ["conv2d_fprop"]
    batches = [int(b) for b in _csv(args.batch)] if args.batch else None
    dtypes = _csv(args.dtype)
    shapes = _csv(args.shape)
    cases, skipped = [], []
    for op in ops:
        if op not in OP_KIND:
            raise ValueError(f"--op {op!r}: per-shape ops are {list(OP_KIND)} (train_step runs alone)")
        suites = [s for s in load_suites(args.suite or DEFAULT_SUITE[op]) if s.of_kind(OP_KIND[op])]
        if not suites:
            raise ValueError(f"no suite in {args.suite!r} has {OP_KIND[op]} problems for --op {op}")
        if mode == "cpu" and dtypes and any(d != "fp32" for d in dtypes):
            skipped.append((f"{op} {','.join(d for d in dtypes if d != 'fp32')}",
                            "the CPU mode compares fp32 only (the reference computes in float32/float64)"))
            dtypes_op = ["fp32"]
        else:
            dtypes_op = dtypes
        got, skip = expand_cases(suites, [op], batches, dtypes_op, shapes, cpu=(mode == "cpu"))
        skipped += skip
        limit = args.limit if args.limit is not None else DEFAULTS[mode]["limit"]
        if limit:   # the first `limit` problems, each with all its batches and dtypes
            keep = set(list(dict.fromkeys(c.problem.name for c in got))[:limit])
            got = [c for c in got if c.problem.name in keep]
        cases += got
    if dtypes:    # dtype first, then op: a time budget that runs out cuts the last dtype, not the last op
        cases.sort(key=lambda c: dtypes.index(c.dtype) if c.dtype in dtypes else len(dtypes))
    return cases, skipped


def _side(timing, case, ceilings, sheet):
    t = timing.median_s
    fl, by = achieved(case.flops, case.bytes, t)
    floor = roofline(case.flops, case.bytes, ceilings.peak(peak_key(case.op, case.dtype)), ceilings.bandwidth).floor_s
    d = {"available": True, "median_s": t, "timing": timing.to_json(), "flops_per_s": fl, "bytes_per_s": by,
         "pct_roofline": percent_of_roofline(floor, t)}
    if sheet:
        sfloor = roofline(case.flops, case.bytes, sheet.peak(peak_key(case.op, case.dtype)), sheet.bandwidth).floor_s
        d["pct_roofline_datasheet"] = percent_of_roofline(sfloor, t)
    return d


def measure_case(case, fc_runner, base_runner, mode: str, ceilings: Ceilings, sheet, cfg: dict) -> dict:
    """One case: what it is, whether each side can run it, both sides' outputs compared on input set 0,
    then both timed alternating over rotated input sets."""
    r = _describe_case(case, ceilings, sheet)
    fc_ok, base_ok, why_not = _availability(r, case, fc_runner, base_runner, cfg)
    if why_not is None:
        cache, budget, clock, why_not = _cache_budget_clock(case, mode, cfg)
    if why_not:
        r.update(status="skipped", reason=why_not)
        return r
    set_bytes = case.input_bytes
    n_sets = rotation_sets(set_bytes, cache, budget)
    r["rotation"] = {"sets": n_sets, "set_bytes": set_bytes, "total_bytes": set_bytes * n_sets, "cache_bytes": cache}
    restore = set_math_mode(case.dtype) if mode == "gpu" else (lambda: None)
    prepared, sets = {}, None
    try:
        sets = make_inputs(case, n_sets, "cpu" if mode == "cpu" else "gpu", seed=cfg.get("seed", 0))
        prepared = _prepare(r, case, sets, fc_runner if fc_ok else None, base_runner if base_ok else None)
        prepared_info = {k: dict(p.info) for k, p in prepared.items()}
        r["check"] = _cross_check(r, case, prepared)
        if cfg.get("skip_timing"):
            return r
        timings = time_alternating({f"{k[0]}|{k[1]}": p.fn for k, p in prepared.items()}, n_sets, clock,
                                   repeats=cfg["repeats"], warmup=cfg["warmup"],
                                   target_sample_s=cfg["target_sample_s"],
                                   deadline=time.perf_counter() + cfg["case_budget_s"])
    except Exception as exc:
        oom = mode == "gpu" and _is_out_of_memory(exc)
        r.update(status="skipped" if oom else "error",
                 reason=f"out of memory ({n_sets} input sets of {set_bytes / 2**20:.0f} MiB)" if oom
                 else f"{type(exc).__name__}: {exc}")
        return r
    finally:
        restore()
        prepared.clear()
        del sets
        gc.collect()
        if mode == "gpu":
            import torch
            torch.cuda.empty_cache()
    _record_timings(r, timings, prepared_info, case, ceilings, sheet)
    return r


def _describe_case(case, ceilings, sheet) -> dict:
    """The case's result record before anything runs: its shape, work and roofline."""
    peak = peak_key(case.op, case.dtype)
    roof = roofline(case.flops, case.bytes, ceilings.peak(peak), ceilings.bandwidth)
    r = {"key": case.key, "suite": case.suite, "op": case.op, "problem": case.problem.name,
         "aliases": list(case.problem.aliases), "count": case.problem.count, "batch": case.batch, "dtype": case.dtype,
         "shape": case.shape_text(), "geometry": {k: v for k, v in case.geometry.items()},
         "flops": case.flops, "bytes": case.bytes, "intensity": roof.intensity,
         "roofline": {"floor_s": roof.floor_s, "compute_s": roof.compute_s, "memory_s": roof.memory_s,
                      "bound": roof.bound, "peak": peak},
         "status": "ok", "ratio": None, "check": None}
    if sheet:
        s = roofline(case.flops, case.bytes, sheet.peak(peak), sheet.bandwidth)
        r["roofline_datasheet"] = {"floor_s": s.floor_s, "bound": s.bound}
    return r


def _availability(r, case, fc_runner, base_runner, cfg) -> tuple[bool, bool, str | None]:
    """(fastconv can run, the baseline can, why the case is skipped or None); each side's reason goes in r."""
    fc_ok, fc_why = fc_runner.available(case)
    r["fastconv"] = {"available": fc_ok, "reason": fc_why}
    base_ok, base_why = base_runner.available(case) if base_runner is not None else (False, "--baseline none")
    r["baseline"] = {"name": base_runner.label_for(case.op) if base_runner else "none", "available": base_ok,
                     "reason": base_why}
    if cfg.get("max_gflop") and case.flops > cfg["max_gflop"] * 1e9:
        return fc_ok, base_ok, f"{case.flops / 1e9:.0f} GFLOP exceeds --max-gflop {cfg['max_gflop']:g} for this mode"
    if not fc_ok and not base_ok:
        return fc_ok, base_ok, f"neither side can run (fastconv: {fc_why}; baseline: {base_why})"
    return fc_ok, base_ok, None


def _cache_budget_clock(case, mode, cfg):
    """(cache bytes the rotated inputs must exceed, bytes they may take, clock, why the case does not fit or None)."""
    if mode != "gpu":
        return cpu_cache_bytes(), 512 * 2**20, CpuClock(), None
    import torch
    free, _ = torch.cuda.mem_get_info()
    if case.input_bytes * 3 + 4 * case.bytes > free * 0.8:
        why = f"does not fit: one input set is {case.input_bytes / 2**30:.1f} GiB, {free / 2**30:.0f} GiB free"
        return None, None, None, why
    return l2_bytes(cfg.get("gpu_props")), int(free * 0.2), CudaClock(), None


def _prepare(r, case, sets, fc_runner, base_runner) -> dict:
    """{(side, label): prepared call} for the sides that can run (runner None: that side cannot); a
    fastconv setup that fails is recorded in r and leaves the baseline to run alone."""
    fc_prep = []
    if fc_runner is not None:
        try:
            fc_prep = fc_runner.setup(case, sets)
        except Exception as exc:
            r["fastconv"] = {"available": False, "reason": f"setup failed: {type(exc).__name__}: {exc}"}
    base_prep = base_runner.setup(case, sets) if base_runner is not None else []
    return {**{("fastconv", p.label): p for p in fc_prep}, **{("baseline", p.label): p for p in base_prep}}


def _cross_check(r, case, prepared) -> dict | None:
    """Both sides' outputs on set 0 (also each one's first warm-up call) compared, or the baseline's
    layouts with each other when it runs alone. A fastconv call that rejects the inputs (a dtype its
    kernels lack, say) is dropped from `prepared` and recorded in r."""
    outs = {}
    for key, p in list(prepared.items()):
        try:
            outs[key] = p.canonical(p.fn(0))
        except Exception as exc:
            if key[0] != "fastconv":
                raise
            r["fastconv"] = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
            del prepared[key]
    fc_keys = [k for k in prepared if k[0] == "fastconv"]
    base_keys = [k for k in prepared if k[0] == "baseline"]
    if fc_keys and base_keys:
        got, want, against = fc_keys[0], base_keys[0], base_keys[0][1]
    elif len(base_keys) > 1:
        got, want, against = base_keys[1], base_keys[0], f"{base_keys[1][1]} vs {base_keys[0][1]}"
    else:
        return None
    err, tol = rel_err(outs[got], outs[want]), CHECK_TOL[case.dtype]
    return {"rel_err": err, "tol": tol, "ok": bool(err == err and err <= tol), "against": against}


def _is_out_of_memory(exc) -> bool:
    import torch
    return isinstance(exc, torch.cuda.OutOfMemoryError)


def _record_timings(r, timings, prepared_info, case, ceilings, sheet) -> None:
    """Each side's fastest variant into r, the baseline's variants beside it, and the ratio."""
    fc_t = {k.split("|", 1)[1]: t for k, t in timings.items() if k.startswith("fastconv|")}
    base_t = {k.split("|", 1)[1]: t for k, t in timings.items() if k.startswith("baseline|")}
    if fc_t:
        label, t = min(fc_t.items(), key=lambda kv: kv[1].median_s)
        r["fastconv"].update(_side(t, case, ceilings, sheet), label=label, **prepared_info.get(("fastconv", label), {}))
    if base_t:
        variants = {k: dict(_side(t, case, ceilings, sheet), **prepared_info.get(("baseline", k), {}))
                    for k, t in base_t.items()}
        best = min(variants, key=lambda k: variants[k]["median_s"])
        r["baseline"].update(variants[best], best_variant=best, variants=variants)
    if fc_t and base_t:
        r["ratio"] = r["baseline"]["median_s"] / r["fastconv"]["median_s"]


def _measure_ceilings(args, mode, env):
    if args.ceilings:
        measured, details = ce.load(args.ceilings), {"loaded_from": args.ceilings}
    elif mode == "gpu":
        dtypes = _csv(args.dtype) or ["fp32", "tf32", "fp16", "bf16"]
        measured, details = ce.measure_gpu(dtypes=sorted(set(dtypes) | {"fp32"}), matmul_n=args.ceiling_n or 8192)
    else:
        measured, details = ce.measure_cpu(matmul_n=args.ceiling_n or 1024)
    gpu_name = env.get("gpu", {}).get("name")
    return measured, ce.ceilings_block(measured, details, gpu_name), ce.format_ceilings(measured, gpu_name, mode)


def run_bench(args) -> int:
    """`fastconv bench`: plan the cases, measure the ceilings, measure each case, report; 1 when a case
    failed or disagreed with the baseline."""
    mode, why = device_mode(args.device)
    alone = _run_alone(args, mode, why)
    if alone is not None:
        return alone
    cfg = _config(args, mode)
    cases, skipped = plan(args, mode)
    threads = _announce(args, mode, why, cfg)
    env = collect_env(mode)
    env["threads"] = threads
    if mode == "gpu":
        cfg["gpu_props"] = env.get("gpu")
    measured, ceil_block, ceil_text = _measure_ceilings(args, mode, env)
    print(ceil_text)
    missing = sorted({peak_key(c.op, c.dtype) for c in cases} - {k for k, v in measured.peak_flops.items() if v})
    if missing:
        raise ValueError(f"the ceilings have no {missing} peak (from {measured.source}); drop --ceilings to measure")
    sheet = datasheet_for(env.get("gpu", {}).get("name")) if mode == "gpu" else None
    fc_runner = FastconvRunner(mode)
    base_runner = baseline_runner(args.baseline, mode)
    print(f"{len(cases)} cases; {cfg['repeats']} samples each, median reported; clock: "
          f"{'CUDA events' if mode == 'gpu' else 'perf_counter'}; "
          f"ratio = baseline time / fastconv time (> 1: fastconv faster)")
    for what, why_not in skipped:
        print(f"  (not run: {what}: {why_not})")
    results, out_of_time = _run_cases(cases, cfg, lambda case: measure_case(case, fc_runner, base_runner, mode,
                                                                             measured, sheet, cfg), mode)
    print()
    for line in report.summarize(results):
        print(line)
    run = {"kind": "ops", "config": {"suite": args.suite, "op": args.op, "dtype": args.dtype, "batch": args.batch,
                                     "baseline": args.baseline, "limit": args.limit, "mode": mode,
                                     "repeats": cfg["repeats"], "time_budget": cfg["time_budget"],
                                     "not_run_time_budget": out_of_time, "not_run": [list(s) for s in skipped]},
           "results": results}
    report.write_outputs(args, report.document(env, ceil_block, [run]), lambda path: report.plot_results(
        results, ceil_block, path, f"fastconv bench {args.op or 'conv2d_fprop'} on "
        f"{env.get('gpu', {}).get('name') if mode == 'gpu' else 'CPU: ' + env.get('cpu', '')} "
        f"({env['date'][:10]}, {str((env.get('git') or {}).get('commit'))[:10]})", mode))
    failed = [r for r in results if r["status"] == "error" or (r.get("check") or {}).get("ok") is False]
    return 1 if failed else 0


def _run_alone(args, mode, why) -> int | None:
    """The exit code of the ops that are not per-shape (they run alone), or None for per-shape ops."""
    if (args.op or "").strip() == "input_pipeline":   # host decoding: no device, no ceilings
        return run_input_pipeline(args)
    if (args.op or "").strip() == "train_step":
        return run_train_step(args, mode, why)
    if args.op and "train_step" in _csv(args.op):
        raise ValueError("--op train_step runs alone (it is a model step, not a per-shape op)")
    return None


def _config(args, mode) -> dict:
    """The mode's defaults, overridden by the command line."""
    cfg = dict(DEFAULTS[mode])
    for k in ("repeats", "time_budget", "max_gflop"):
        if getattr(args, k, None) is not None:
            cfg[k] = getattr(args, k)
    cfg["seed"] = args.seed
    cfg["skip_timing"] = False
    return cfg


def _announce(args, mode, why, cfg):
    """Print what this mode compares; on the CPU, limit the math libraries' threads first (returned)."""
    if mode != "cpu":
        print(f"fastconv bench: GPU mode ({why})")
        return None
    threads = limit_cpu_threads(1 if args.threads is None else args.threads)
    limit = cfg["limit"] if args.limit is None else args.limit
    print(f"fastconv bench: CPU mode ({why}): the NumPy reference backend against PyTorch CPU, fp32, "
          f"batch = each suite's cpu_batch unless --batch, first {limit} "
          f"shapes per op unless --limit, about {cfg['time_budget']:.0f} s at most; {threads} (--threads)")
    return threads


def _run_cases(cases, cfg, measure, mode) -> tuple[list, int]:
    """(results, cases not run for want of time): each case measured and printed as a table row, one
    table per group."""
    results, start, current, out_of_time = [], time.perf_counter(), None, 0
    for case in cases:
        if cfg["time_budget"] and time.perf_counter() - start > cfg["time_budget"]:
            out_of_time += 1
            continue
        r = measure(case)
        results.append(r)
        title = report.group_title(r)
        if title != current:
            current = title
            base_name = r["baseline"]["name"]
            print(f"\n== {title} | baseline {base_name} ==")
            print(report.table_header(mode, base_name))
        print(report.table_row(r, mode), flush=True)
        if (r.get("fastconv") or {}).get("kernel"):
            print(f"    fastconv kernel: {r['fastconv']['kernel']}")
        if r["status"] != "ok":
            print(f"    {r['status']}: {r.get('reason')}")
    if out_of_time:
        print(f"\n({out_of_time} cases not run: the {cfg['time_budget']:.0f} s time budget was used; "
              f"raise --time-budget or narrow with --limit/--shape)")
    return results, out_of_time
