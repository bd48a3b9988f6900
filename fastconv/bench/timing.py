"""Timers: CUDA events on the GPU, perf_counter on the CPU; several implementations timed in one
process, alternating sample by sample, each over a rotation of input sets.

A sample is `inner` back-to-back calls, call j reading input set (j mod n_sets), between two clock
marks; the per-call time is the sample over inner. The median over samples is reported with the
25th/75th percentiles: a difference between two implementations inside that spread is noise.
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass


@dataclass
class Timing:
    samples_s: list          # per-call seconds, one entry per sample
    inner: int               # calls per sample
    n_sets: int              # input sets rotated through

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    @property
    def min_s(self) -> float:
        return min(self.samples_s)

    def quantile(self, q: float) -> float:
        xs = sorted(self.samples_s)
        if len(xs) == 1:
            return xs[0]
        pos = q * (len(xs) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)

    @property
    def spread(self) -> float:
        """(p75 - p25) / median."""
        return (self.quantile(0.75) - self.quantile(0.25)) / self.median_s if self.median_s > 0 else 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(median_s=self.median_s, min_s=self.min_s, p25_s=self.quantile(0.25), p75_s=self.quantile(0.75),
                 spread=self.spread, samples=len(self.samples_s))
        return d


def rotation_sets(set_bytes: int, cache_bytes: int, budget_bytes: int | None = None, factor: float = 2.0,
                  max_sets: int = 512) -> int:
    """How many input sets to rotate so that together they exceed `factor` x the cache (L2 on a GPU,
    the last-level cache on a CPU): at least 2, at most max_sets, fewer if the budget says so
    (then at least 1: a set larger than the budget cannot be replicated)."""
    if set_bytes <= 0:
        return 1
    n = max(2, math.ceil(factor * cache_bytes / set_bytes))
    n = min(n, max_sets)
    if budget_bytes is not None:
        n = min(n, max(1, budget_bytes // set_bytes))
    return int(n)


class CpuClock:
    name = "perf_counter"

    def mark(self):
        return time.perf_counter()

    def sync(self):
        pass

    def seconds(self, t0, t1) -> float:
        return t1 - t0


class CudaClock:
    """torch.cuda.Event pairs on the current stream; read after one synchronize at the end."""
    name = "cuda events"

    def __init__(self):
        import torch
        self.torch = torch

    def mark(self):
        ev = self.torch.cuda.Event(enable_timing=True)
        ev.record()
        return ev

    def sync(self):
        self.torch.cuda.synchronize()

    def seconds(self, t0, t1) -> float:
        return t0.elapsed_time(t1) / 1e3


def time_alternating(fns: dict, n_sets: int, clock, repeats: int = 30, warmup: int = 3,
                     target_sample_s: float = 1e-3, max_inner: int = 64, deadline: float | None = None) -> dict:
    """Time each fn(i) (i = input set index) and return name -> Timing.

    Warm-up calls first (module load, autotuning, handle creation stay out of the numbers), then one
    timed call each to size `inner` so a sample lasts about target_sample_s, then `repeats` rounds;
    each round times one sample of every fn, starting with a different fn each round, so drifting
    clocks and machine noise hit all of them alike. deadline (perf_counter time) cuts the rounds short
    (at least 3 are kept)."""
    names = list(fns)
    counters = {n: 0 for n in names}

    def call(name):
        fns[name](counters[name] % n_sets)
        counters[name] += 1

    for name in names:
        for _ in range(warmup):
            call(name)
    clock.sync()
    inner = {}
    for name in names:
        t0 = clock.mark()
        call(name)
        t1 = clock.mark()
        clock.sync()
        est = max(clock.seconds(t0, t1), 1e-7)
        inner[name] = int(max(1, min(max_inner, math.ceil(target_sample_s / est))))
    marks = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = clock.mark()
            for _ in range(inner[name]):
                call(name)
            marks[name].append((t0, clock.mark()))
        if deadline is not None and r >= 2 and time.perf_counter() > deadline:
            break
    clock.sync()
    return {n: Timing([clock.seconds(a, b) / inner[n] for a, b in marks[n]], inner[n], n_sets) for n in names}


def synced_rotation(fn, device: str, n_sets: int = 2):
    """A no-argument callable for pytest-benchmark: fn(i) over rotating input sets i, then a device
    synchronize, so the device's work is inside the timed call."""
    if device == "gpu":
        import torch
        sync = torch.cuda.synchronize
        sync()
    else:
        def sync():
            pass
    state = {"i": 0}

    def timed():
        fn(state["i"] % n_sets)
        state["i"] += 1
        sync()
    return timed
