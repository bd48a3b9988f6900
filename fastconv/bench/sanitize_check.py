"""A small run of every fastconv GPU op for compute-sanitizer (memcheck, racecheck, synccheck, initcheck):

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 99 \\
        python -m fastconv.bench.sanitize_check

CuPy's memory pool is switched off first (cupy.cuda.set_allocator(None)): inside a pool an
out-of-bounds access lands in another live allocation and the sanitizer cannot see it. Shapes are
tiny and odd-sized (ragged tiles, padding, stride 2, groups) so every bounds check is exercised;
each result is compared with the NumPy reference.
Exit codes: 0 all ops ran and matched, 1 a mismatch or an error, 3 nothing to check (no fastconv
GPU backend yet), which benchmarks/gpu_check.sh reports as SKIP.
"""
from __future__ import annotations

import os
import sys

import numpy as np

os.environ.setdefault("PYTORCH_NO_CUDA_MEMORY_CACHING", "1")

SKIP = 3


def problems(rng):
    """(name, op, args, kwargs) with NumPy float32 inputs; the GPU call gets CuPy copies."""
    f = lambda *s: rng.standard_normal(s, dtype=np.float32)
    conv = [  # x shape, w shape, stride, padding, dilation, groups
        ((2, 9, 11, 3), (3, 3, 3, 5), (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
        ((1, 13, 10, 8), (3, 2, 4, 6), (2, 2), ((1, 0), (0, 1)), (1, 1), 2),
        ((3, 7, 7, 6), (3, 3, 1, 6), (2, 1), ((1, 1), (1, 1)), (1, 1), 6),          # depthwise
        ((1, 12, 12, 5), (3, 3, 5, 7), (1, 1), ((2, 2), (2, 2)), (2, 2), 1),        # dilated
    ]
    out = []
    from ..shapes import conv2d_output_shape
    for xs, ws, st, pad, dil, g in conv:
        x, w = f(*xs), f(*ws)
        ys = conv2d_output_shape(xs, ws, st, pad, dil)
        dy = f(*ys)
        out.append((f"conv2d_fprop {xs}x{ws} s{st} g{g}", "conv2d_fprop", (x, w, st, pad, dil, g), {}))
        out.append((f"conv2d_dgrad {xs}x{ws} s{st} g{g}", "conv2d_dgrad", (dy, w, xs, st, pad, dil, g), {}))
        out.append((f"conv2d_wgrad {xs}x{ws} s{st} g{g}", "conv2d_wgrad", (x, dy, ws, st, pad, dil, g), {}))
    pools = [((2, 9, 9, 3), (3, 3), (2, 2), ((1, 1), (1, 1))), ((1, 8, 7, 5), (2, 2), (2, 2), ((0, 0), (0, 0)))]
    for xs, pool, st, pad in pools:
        out.append((f"max_pool2d_fprop {xs} {pool}/{st}", "max_pool2d_fprop", (f(*xs), pool, st, pad), {}))
    for m, k, n in [(3, 37, 5), (17, 64, 33)]:
        out.append((f"dense_fprop {m}x{k}x{n}", "dense_fprop", (f(m, k), f(k, n)), {}))
        out.append((f"dense_bprop {m}x{k}x{n}", "dense_bprop", (f(m, n), f(m, k), f(k, n)), {}))
    x = f(5, 7, 3)
    out.append(("relu_fprop", "relu_fprop", (x,), {}))
    # the tensor-core kernels (csrc/*/*_tensor_op_sm80.h, the cast kernels, and the sm_90a wgmma GEMM on an H100)
    # through the precision routing; the reference rounds the operands alike (fp32 accumulation in both)
    xs, ws, st, pad = (2, 9, 7, 16), (3, 3, 16, 24), (2, 2), ((1, 1), (0, 1))
    x, w = f(*xs), f(*ws)
    ys = conv2d_output_shape(xs, ws, st, pad, (1, 1))
    dy = f(*ys)
    for prec in ("tf32", "bf16", "fp16"):
        kw = {"precision": prec}
        out.append((f"conv2d_fprop {prec} {xs}x{ws}", "conv2d_fprop", (x, w, st, pad, (1, 1), 1), kw))
        out.append((f"conv2d_dgrad {prec}", "conv2d_dgrad", (dy, w, xs, st, pad, (1, 1), 1), kw))
        out.append((f"conv2d_wgrad {prec}", "conv2d_wgrad", (x, dy, ws, st, pad, (1, 1), 1), kw))
        out.append((f"dense_fprop {prec} 33x40x24", "dense_fprop", (f(33, 40), f(40, 24)), kw))
        if prec != "tf32":   # the fused conv + 2x2 pool on tensor cores (C, K multiples of 8)
            out.append((f"conv2d_bias_relu_maxpool_fprop {prec}", "conv2d_bias_relu_maxpool_fprop",
                        (x, w, f(24), st, pad, (1, 1), 1), kw))
    # the fused conv + bias + ReLU + 2x2/2 max-pool forward (pooled output and its 1-byte argmax)
    out.append(("conv2d_bias_relu_maxpool_fprop", "conv2d_bias_relu_maxpool_fprop",
                (f(2, 10, 9, 4), f(3, 3, 4, 8), f(8), (1, 1), ((1, 1), (1, 1)), (1, 1), 1), {}))
    # ... with the ResNet stem's 3x3/2 pool (padding 1): the conv patch pooled in shared memory
    out.append(("conv2d_bias_relu_maxpool_fprop 3x3/2", "conv2d_bias_relu_maxpool_fprop",
                (f(2, 11, 10, 4), f(3, 3, 4, 8), f(8), (1, 1), ((1, 1), (1, 1)), (1, 1), 1, (3, 3), (2, 2),
                 ((1, 1), (1, 1))), {}))
    out.append(("batchnorm_relu_fprop_train", "batchnorm_relu_fprop_train", (f(37, 5), f(5), f(5), 1e-3), {}))
    return out


def _host(v):
    import cupy
    if isinstance(v, tuple):
        return tuple(_host(a) for a in v)
    return cupy.asnumpy(v) if isinstance(v, cupy.ndarray) else v


def main(argv=None) -> int:
    try:
        import cupy
        cupy.cuda.set_allocator(None)
        cupy.cuda.set_pinned_memory_allocator(None)
    except Exception as exc:
        print(f"SKIP: CuPy is not usable ({type(exc).__name__}: {exc})")
        return SKIP
    from ..backends import backend_for
    try:
        mod = backend_for("cuda")
    except Exception as exc:
        print(f"SKIP: no fastconv GPU backend to check ({exc})")
        return SKIP
    return check(mod, cupy.asarray, _host, cupy.cuda.runtime.deviceSynchronize)


def check(mod, to_device, to_host, sync=lambda: None) -> int:
    """Runs every problem on `mod`, compares with the reference, prints a line each; 0 or 1."""
    from ..backends import reference
    rng = np.random.default_rng(1234)
    bad = 0
    for name, op, args, kw in problems(rng):
        tol = 1e-4 if not kw.get("precision") else 2e-3   # reduced formats: the sums' order differs
        fn = getattr(mod, op, None)
        if fn is None:
            print(f"  -    {name}: the GPU backend has no {op}")
            continue
        dev_args = tuple(to_device(a) if isinstance(a, np.ndarray) else a for a in args)
        try:
            got = to_host(fn(*dev_args, **kw))
            sync()
        except Exception as exc:
            print(f"  FAIL {name}: {type(exc).__name__}: {exc}")
            bad += 1
            continue
        want = getattr(reference, op)(*args, **kw)
        got_t, want_t = (got, want) if isinstance(want, tuple) else ((got,), (want,))
        errs = []
        for g, w in zip(got_t, want_t):
            if w is None or g is None:
                continue
            g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
            denom = np.linalg.norm(w) or 1.0
            errs.append(float("nan") if not np.all(np.isfinite(g)) else float(np.linalg.norm(g - w) / denom))
        worst = max(errs) if errs else 0.0
        ok = worst == worst and worst < tol
        bad += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {name}: rel err {worst:.1e}")
    print(f"{'all ops matched the reference' if not bad else f'{bad} op(s) failed'}")
    return 1 if bad else 0

if __name__ == "__main__":
    sys.exit(main())
