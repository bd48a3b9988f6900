"""The emulated memory counters of every project kernel, recorded in benchmarks/counters/emulated.json.

Runs every kernel the plans launch (fastconv.backends.jit.all_kernel_names(), those the emulator
registers) once or more on the small problems of JOBS below, through the emulated backend with counters
on (fastconv.emulator.profile), and sums per kernel and per source line: global memory requests,
32-byte sectors and bytes requested (efficiency = bytes / (32 x sectors)), shared memory requests,
wavefronts and the conflict-free ideal (the excess is bank conflicts). Counters are exact functions
of the addresses the kernels compute; nothing here is a speed measurement.

    python scripts/record_counters.py            # print the table and compare with the file
    python scripts/record_counters.py --update   # rewrite the file on purpose (after a change)

tests/kernels/test_counter_ratchet.py recomputes them in CI and fails when a kernel's sector
efficiency drops or its bank-conflict wavefronts rise against the file.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))   # this checkout's fastconv, not another installed one
FILE = ROOT / "benchmarks" / "counters" / "emulated.json"
UPDATE = "python scripts/record_counters.py --update"
CATEGORIES = ("global load", "global store", "shared load", "shared store")


class _Counting:
    """Stands in for fastconv.emulator under the emulated backend's executor: each launch is profiled
    (the instrumented build runs the kernel, outputs included) and its sites are summed per kernel."""

    def __init__(self):
        from fastconv import emulator
        self.emulator = emulator
        self.raw: dict[str, dict] = {}     # kernel -> (code address token, space, op) -> counts

    def launch(self, kernel, grid, block, args, shared_bytes=0, order=None, seed=0):
        sites = self.emulator.profile(kernel, grid, block, args, shared_bytes=shared_bytes, order="forward",
                                      source_lines=False)
        per_site = self.raw.setdefault(kernel, {})
        for s in sites:
            if s["space"] not in ("global", "shared"):   # executed-instruction counts: not ratcheted
                continue
            got = per_site.setdefault((s["site"], s["space"], s["op"]), [0, 0, 0])
            got[0] += s["requests"]
            if s["space"] == "global":        # [requests, sectors, bytes]
                got[1] += s["sectors"]
                got[2] += s["bytes"]
            else:                              # [requests, wavefronts, ideal wavefronts]
                got[1] += s["wavefronts"]
                got[2] += s["ideal_wavefronts"]

    def kernels(self) -> dict[str, dict]:
        """kernel -> "file:line space op" -> counts; every launch's sites symbolized in one go."""
        raws = sorted({raw for sites in self.raw.values() for raw, _, _ in sites})
        lines = dict(zip(raws, (s["site"] for s in self.emulator.symbolize([{"site": r} for r in raws]))))
        out = {}
        for kernel, sites in self.raw.items():
            merged = out.setdefault(kernel, {})
            for (raw, space, op), values in sites.items():   # several code addresses can share a line
                key = f"{_site(lines[raw])} {space} {op}"
                merged[key] = [a + b for a, b in zip(merged.get(key, [0, 0, 0]), values)]
        return out


def _site(site: str) -> str:
    """A site's file:line from under csrc/ (the function name dropped): the same key in every checkout."""
    where = site.split(" (in ", 1)[0]
    return where.rsplit("/csrc/", 1)[-1] if "/csrc/" in where else where


# ---- the problems ------------------------------------------------------------------------------
def _data(rng, shape, dtype=np.float32):
    return rng.integers(-3, 4, shape).astype(dtype)


def _gemm_shaped(ops, rng, dtype, fused_only=False):
    """Every GEMM-shaped kernel of one (tile, vec, index, type) configuration: conv fprop / dgrad /
    wgrad (stride 1), the stride-phase dgrad (stride 2), the four GEMM layouts, and the fused
    conv + bias + ReLU + max-pool kernels with their backward (C = K = 8: vector loads allowed)."""
    one, pads = (1, 1), ((1, 1), (1, 1))
    x, w, b = _data(rng, (1, 6, 6, 8), dtype), _data(rng, (3, 3, 8, 8), dtype), _data(rng, (8,), dtype)
    y = _data(rng, (1, 6, 6, 8), dtype)
    if not fused_only:
        ops.conv2d_fprop(x, w, one, pads, one, 1, bias=b, activation="relu")
        ops.conv2d_dgrad(y, w, x.shape, one, pads, one, 1)
        ops.conv2d_wgrad(x, y, w.shape, one, pads, one, 1)
        ops.conv2d_dgrad(_data(rng, (1, 3, 3, 8), dtype), w, x.shape, (2, 2), pads, one, 1)
        a, bb = _data(rng, (8, 8), dtype), _data(rng, (8, 8), dtype)
        for ta in (False, True):
            for tb in (False, True):
                ops.gemm(a, bb, ta, tb)
    if ops.force_tile != "TileLarge":      # no 3x3/2 instantiation for TileLarge (fused_kernel_names)
        p, argmax = ops.conv2d_bias_relu_maxpool_fprop(x, w, b, one, pads, one, 1, (3, 3), (2, 2), pads)
        ops.relu_maxpool_bprop(p, argmax, p, y.shape, (3, 3), (2, 2), pads)
    p, argmax = ops.conv2d_bias_relu_maxpool_fprop(x, w, b, one, pads, one, 1)
    ops.relu_maxpool_bprop(p, argmax, p, y.shape)


def _split_k(ops, rng, dtype):
    x, dy = _data(rng, (2, 8, 8, 4), dtype), _data(rng, (2, 8, 8, 4), dtype)
    ops.conv2d_wgrad(x, dy, (1, 1, 4, 4), (1, 1), ((0, 0), (0, 0)), (1, 1), 1)


def _depthwise(ops, rng, dtype):
    x, w = _data(rng, (1, 6, 6, 4), dtype), _data(rng, (3, 3, 1, 4), dtype)
    pads, one = ((1, 1), (1, 1)), (1, 1)
    y = ops.conv2d_fprop(x, w, one, pads, one, 4)
    ops.conv2d_dgrad(y, w, x.shape, one, pads, one, 4)
    ops.conv2d_wgrad(x, y, w.shape, one, pads, one, 4)


def _pooling(ops, rng, dtype):
    x = _data(rng, (1, 6, 6, 4), dtype)
    for pool in ((2, 2), (16, 17)):            # uint8_t and uint16_t argmax
        xs = x if pool == (2, 2) else _data(rng, (1, 16, 17, 2), dtype)
        y, argmax = ops.max_pool2d_fprop(xs, pool, pool, ((0, 0), (0, 0)))
        ops.max_pool2d_bprop(y, argmax, xs.shape, pool, pool, ((0, 0), (0, 0)))
    xs = _data(rng, (1, 1, 65536, 1), dtype)   # a 65,536-element window: uint32_t argmax
    y, argmax = ops.max_pool2d_fprop(xs, (1, 65536), (1, 65536), ((0, 0), (0, 0)))
    ops.max_pool2d_bprop(y, argmax, xs.shape, (1, 65536), (1, 65536), ((0, 0), (0, 0)))
    pads = ((1, 1), (1, 1))
    y = ops.avg_pool2d_fprop(x, (3, 3), (2, 2), pads)
    ops.avg_pool2d_bprop(y, x.shape, (3, 3), (2, 2), pads)
    ops.global_avg_pool_bprop(ops.global_avg_pool_fprop(x), x.shape)


def _pointwise(ops, rng, dtype):
    """Activations, dropout, softmax (rows of width 8 take 4-wide loads in float32), the losses,
    dense's bias gradient (column reductions), batch norm with and without ReLU, the optimizers."""
    x, dy = _data(rng, (4, 8), dtype), _data(rng, (4, 8), dtype)
    ops.relu_bprop(dy, ops.relu_fprop(x))
    ops.sigmoid_bprop(dy, ops.sigmoid_fprop(x))
    mask = ops.dropout_mask(x.shape, 0.5, 3, 0, dtype=dtype)
    ops.dropout_bprop(dy, ops.dropout_fprop(x, mask))
    for axis in (-1, 0):                       # contiguous rows, and a strided axis
        ops.softmax_bprop(dy, ops.softmax_fprop(x, axis), axis)
    for width in (8, 7):                       # float32 rows of 8: 4-wide loads; of 7: scalar
        xs = _data(rng, (4, width), dtype)
        probs = ops.softmax_fprop(xs)
        ops.softmax_bprop(xs, probs)
        ids = rng.integers(0, width, 4)
        for labels in (ids, np.eye(width, dtype=dtype)[ids]):
            ops.softmax_cross_entropy_fprop(xs, labels)
            ops.softmax_cross_entropy_bprop(probs, labels)
            ops.cross_entropy_fprop(probs, labels)
            ops.cross_entropy_bprop(probs, labels)
    ops.mse_bprop(x, dy)
    ops.mse_fprop(x, dy)
    ops.dense_bprop(dy, x, _data(rng, (8, 8), dtype))
    xb, gamma, beta = _data(rng, (2, 3, 3, 8), dtype), _data(rng, (8,), dtype), _data(rng, (8,), dtype)
    var = np.abs(_data(rng, (8,), dtype)) + 1
    y, mean, invstd = ops.batchnorm_fprop_train(xb, gamma, beta, 1e-3)[:3]
    ops.batchnorm_bprop(xb, xb, gamma, mean, invstd)
    ops.batchnorm_fprop_infer(xb, gamma, beta, mean, var, 1e-3)
    y, mean, invstd = ops.batchnorm_relu_fprop_train(xb, gamma, beta, 1e-3)[:3]
    ops.batchnorm_relu_bprop(xb, y, xb, gamma, mean, invstd)
    ops.batchnorm_relu_fprop_infer(xb, gamma, beta, mean, var, 1e-3)
    from fastconv import optimizers
    params = [_data(rng, (300,), dtype), _data(rng, (5,), dtype)]
    grads = [np.ones_like(p) for p in params]
    for opt in (optimizers.SGD(0.1, momentum=0.9), optimizers.Adam(0.01)):
        slots = [opt._new_slots(p) for p in params]
        buf = ops.step_scalars()
        ops.set_step_scalars(buf, opt.step_scalars(0.1, 1))
        table = ops.multi_tensor_table([(p, g) + opt._slot_arrays(s) for p, g, s in zip(params, grads, slots)])
        opt._update_all(ops, table, buf)


def _reduced_precision(ops, rng, dtype):
    """The casts, the uint8 image normalization, and every tensor-core kernel (tf32 / fp16 / bf16
    operands, float32 or operand-type outputs; Tile128 on a GEMM wide enough to choose it)."""
    from fastconv.backends.plans.cast import to_compute
    x = rng.standard_normal((4, 8)).astype(np.float32)
    for precision in ("tf32", "fp16", "bf16"):
        to_compute(ops, x, precision)
    img = rng.integers(0, 256, (1, 2, 4, 3)).astype(np.uint8)
    for out in ("float32", "bf16"):
        ops.normalize_uint8(img, np.ones(3, np.float32), np.zeros(3, np.float32), out)
    one, pads = (1, 1), ((1, 1), (1, 1))
    ops.force_tensor_op_tile = "Tile64"          # what these sizes choose; a tuning file must not change it
    for precision in ("tf32", "fp16", "bf16"):
        x = to_compute(ops, _data(rng, (1, 4, 4, 8)), precision)
        w = to_compute(ops, _data(rng, (3, 3, 8, 8)), precision)
        a, b = to_compute(ops, _data(rng, (16, 16)), precision), to_compute(ops, _data(rng, (16, 16)), precision)
        outs = (None,) if precision == "tf32" else (None, x.dtype)
        for out in outs:
            ops.gemm_tensor_op(a, b, out_dtype=out)
            y = ops.conv2d_fprop_tensor_op(x, w, one, pads, one, 1, out_dtype=out)
            dy = to_compute(ops, y, precision) if y.dtype != x.dtype else y
            ops.conv2d_dgrad_tensor_op(dy, w, x.shape, one, pads, one, 1, out_dtype=out)
            ops.conv2d_dgrad_tensor_op(to_compute(ops, _data(rng, (1, 2, 2, 8)), precision), w, x.shape, (2, 2), pads,
                                       one, 1, out_dtype=out)
            if precision != "tf32":   # the fused conv + 2x2 pool (f16 / bf16 only)
                ops.conv2d_bias_relu_maxpool_tensor_op(x, w, None, one, pads, one, 1, out_dtype=out)
        ops.conv2d_wgrad_tensor_op(x, dy, w.shape, one, pads, one, 1)
        if precision != "tf32":
            a2, b2 = to_compute(ops, _data(rng, (16, 6)), precision), to_compute(ops, _data(rng, (6, 6)), precision)
            ops.gemm_tensor_op(a2, b2)                     # 4-byte copies: K, N not multiples of 8
    a2, b2 = _data(rng, (16, 6)), _data(rng, (6, 6))
    ops.gemm_tensor_op(a2, b2)                             # tf32 with 4-byte copies
    ops.force_tensor_op_tile = "Tile128"
    for precision, out in (("fp16", None), ("bf16", "operand")):
        a, b = to_compute(ops, _data(rng, (16, 16)), precision), to_compute(ops, _data(rng, (16, 16)), precision)
        ops.gemm_tensor_op(a, b, out_dtype=a.dtype if out else None)


def _sm90a(ops, rng, dtype):
    """The sm_90a kernels in the emulator: the wgmma GEMM (BN 128 and 256), the wgmma conv fprop (every BM x BN
    tile), each operand type and output, and the wgmma conv wgrad (with its split-k); one tile each. Their operands
    arrive by TMA and wgmma, which the counters do not see: what is counted is the epilogue's global traffic (and
    the bias)."""
    from fastconv.backends.plans.cast import to_compute
    from fastconv.backends.plans.conv2d_sm90 import conv2d_fprop_sm90, sm90_conv_tiles
    from fastconv.backends.plans.conv2d_wgrad_sm90 import conv2d_wgrad_sm90
    for precision in ("bf16", "fp16"):
        a, b = to_compute(ops, _data(rng, (128, 64)), precision), to_compute(ops, _data(rng, (64, 256)), precision)
        x, w = to_compute(ops, _data(rng, (1, 4, 8, 16)), precision), to_compute(ops, _data(rng, (3, 3, 16, 8)), precision)
        dy = to_compute(ops, _data(rng, (1, 4, 8, 8)), precision)
        conv2d_wgrad_sm90(ops, x, dy, (3, 3, 16, 8), (1, 1), ((1, 1), (1, 1)))
        for out in (None, a.dtype):
            for bn in (128, 256):
                ops.force_wgmma_bn = bn
                ops.gemm_wgmma(a, b, out_dtype=out)
            for bm, bn in sm90_conv_tiles("__nv_bfloat16" if precision == "bf16" else "__half"):
                conv2d_fprop_sm90(ops, x, w, (1, 1), ((1, 1), (1, 1)), out_dtype=out, bm=bm, bn=bn)


def jobs():
    """(name, knobs, run(ops, rng, dtype), dtype): together they launch every emulated plan kernel."""
    from fastconv import emulator
    from fastconv.backends.kernel_table import GEMM_CONFIGS, kernel_name
    registered = set(emulator.kernels())
    out = []
    for tile, vec, index, t in GEMM_CONFIGS:
        knobs = {"force_splits": 1}
        if t == "float":
            knobs.update(force_tile=tile, force_vec=vec, force_index64=index == "int64_t")
        # a configuration the emulator build does not register: run only the fused kernels it has
        name = kernel_name("conv2d_fprop_implicit_gemm", tile=tile, vec=vec, index=index, t=t)
        fused_only = name not in registered
        out.append((f"gemm-shaped {tile} vec{vec} {index} {t}", knobs,
                    functools.partial(_gemm_shaped, fused_only=fused_only), np.dtype(t.replace("float", "float32"))))
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        split_k = {"force_splits": 2, "force_tile": "TileSmall", "force_vec": 1}
        out += [(f"split-k wgrad {name}", split_k, _split_k, dtype),
                (f"depthwise {name}", {}, _depthwise, dtype), (f"pooling {name}", {}, _pooling, dtype),
                (f"pointwise {name}", {}, _pointwise, dtype)]
    return out + [("reduced precision", {}, _reduced_precision, np.float32), ("sm_90a", {}, _sm90a, np.float32)]


def record() -> dict:
    """{kernel: {category: totals, "sites": {...}}} for every kernel the JOBS launch, sorted."""
    from fastconv.backends import emulated
    counting = _Counting()
    for name, knobs, run, dtype in jobs():
        ops = emulated.ops(order="forward")
        ops.executor.emulator = counting      # the executor's calls go to the profiler instead
        for k, v in knobs.items():
            setattr(ops, k, v)
        run(ops, np.random.default_rng(0), dtype)
    return {kernel: _summary(sites) for kernel, sites in sorted(counting.kernels().items())}


def _summary(sites: dict) -> dict:
    totals = defaultdict(lambda: [0, 0, 0])
    for key, values in sites.items():
        cat = " ".join(key.split()[-2:])
        totals[cat] = [a + b for a, b in zip(totals[cat], values)]
    out = {}
    for cat in CATEGORIES:
        if cat in totals:
            r, x, y = totals[cat]
            out[cat] = ({"requests": r, "sectors": x, "bytes": y} if cat.startswith("global")
                        else {"requests": r, "wavefronts": x, "ideal_wavefronts": y})
    out["sites"] = dict(sorted(sites.items()))
    return out


# ---- comparing ---------------------------------------------------------------------------------
def efficiency(c: dict) -> Fraction:
    """Global memory: bytes requested / bytes moved (32 per sector); 1 when nothing moved."""
    return Fraction(c["bytes"], 32 * c["sectors"]) if c["sectors"] else Fraction(1)


def conflicts(c: dict) -> int:
    """Shared memory: wavefronts beyond one per phase (bank conflicts)."""
    return c["wavefronts"] - c["ideal_wavefronts"]


# NumPy gives host arrays 16-byte alignment (cudaMalloc 256), so a kernel's 16-byte vector accesses straddle a
# different number of 32-byte sectors from one run to the next: recordings of unchanged vec-4 kernels moved 1-4%.
# A drop in sector efficiency counts as worse beyond this fraction of the recorded efficiency.
SECTOR_SLACK = Fraction(5, 100)


def _worse(cat: str, old: dict | None, new: dict) -> int:
    """+1 when `new` is worse than `old` (None: not recorded, counted as perfect), -1 better, 0 same."""
    if cat.startswith("global"):
        a, b = efficiency(old) if old else Fraction(1), efficiency(new)
        return (b < a * (1 - SECTOR_SLACK)) - (b > a)
    a, b = conflicts(old) if old else 0, conflicts(new)
    return (b > a) - (b < a)


def describe(cat: str, c: dict | None) -> str:
    if c is None:
        return "not recorded"
    if cat.startswith("global"):
        per_request = c["sectors"] / max(c["requests"], 1)
        return (f"{c['requests']} requests, {c['sectors']} sectors ({per_request:.2f}/request), "
                f"efficiency {float(efficiency(c)):.1%}")
    return (f"{c['requests']} requests, {c['wavefronts']} wavefronts, {conflicts(c)} from bank conflicts")


def _site_lines(kernel: str, cat: str, old: dict, new: dict) -> list[str]:
    """The current run's sites of one category, worst first, beside the recorded numbers of the same line."""
    rows = []
    for key, v in new[kernel]["sites"].items():
        if not key.endswith(cat):
            continue
        was = old.get(kernel, {}).get("sites", {}).get(key)
        if cat.startswith("global"):
            badness, now = -Fraction(v[2], 32 * v[1]) if v[1] else 0, f"{v[1]} sectors for {v[2]} bytes"
            then = f"{was[1]} sectors for {was[2]} bytes" if was else "not recorded"
        else:
            badness, now = -(v[1] - v[2]), f"{v[1] - v[2]} conflict wavefronts of {v[1]}"
            then = f"{was[1] - was[2]} of {was[1]}" if was else "not recorded"
        rows.append((badness, f"      {key[:-len(cat)].strip()}: {now} (recorded: {then})"))
    return [r for _, r in sorted(rows)]


def compare(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """(regressions, improvements) of `new` against the recorded `old`, one message each."""
    bad, better = [], []
    for kernel in sorted(set(old) | set(new)):
        if kernel not in new:
            bad.append(f"{kernel}: recorded, but no problem launched it (removed? then run {UPDATE})")
            continue
        if kernel not in old:
            bad.append(f"{kernel}: launched but not recorded: run {UPDATE}")
            continue
        for cat in CATEGORIES:
            if cat not in new[kernel]:
                continue
            was, now = old[kernel].get(cat), new[kernel][cat]
            verdict = _worse(cat, was, now)
            what = "sector efficiency" if cat.startswith("global") else "bank-conflict wavefronts"
            if verdict > 0:
                bad.append("\n".join([f"{kernel}: {cat} {what} got worse: now {describe(cat, now)}; "
                                      f"recorded {describe(cat, was)}"] + _site_lines(kernel, cat, old, new)))
            elif verdict < 0:
                better.append(f"{kernel}: {cat} {what} improved: now {describe(cat, now)}; recorded "
                              f"{describe(cat, was)}")
    return bad, better


def load(path: Path = FILE) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def dumps(data: dict) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def table(data: dict) -> str:
    lines = [f"{'kernel':<80} {'gld eff':>8} {'gst eff':>8} {'shld conf':>10} {'shst conf':>10}"]
    for kernel, c in data.items():
        cells = [f"{float(efficiency(c[cat])):.0%}" if cat in c else "-" for cat in CATEGORIES[:2]]
        cells += [str(conflicts(c[cat])) if cat in c else "-" for cat in CATEGORIES[2:]]
        lines.append(f"{kernel:<80} {cells[0]:>8} {cells[1]:>8} {cells[2]:>10} {cells[3]:>10}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--update", action="store_true", help=f"rewrite {FILE.relative_to(ROOT)}")
    args = parser.parse_args(argv)
    new = record()
    print(table(new))
    if args.update:
        FILE.parent.mkdir(parents=True, exist_ok=True)
        FILE.write_text(dumps(new))
        print(f"wrote {FILE.relative_to(ROOT)} ({len(new)} kernels)")
        return 0
    bad, better = compare(load(), new)
    for line in better:
        print("improved (the file can be tightened with --update):", line)
    for line in bad:
        print("WORSE:", line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
