"""The row kernels of csrc/ops/softmax.h (softmax, softmax + cross-entropy, cross-entropy) in the emulator,
through the launch plans, against the NumPy reference.

Row lengths around every threads-per-row choice of plans/loss.py launch_rows (D = 1, D not a multiple of 4
or 32, D = 1000, D > 1024 with several warps and a whole block per row), rows with -inf / +inf / NaN /
huge values, output buffers filled with NaN (an element no thread writes stays NaN), and every thread
order of the emulator, which must all give the same bits. Tolerances are derived, not chosen: the
float32 NumPy reference is run beside a float64 one on the same inputs, and the kernel must be within
a small multiple of the reference's own largest error (float64 results against long double).
"""
from __future__ import annotations

import numpy as np
import pytest

from fastconv.backends import reference as ref
from conftest import emulated_ops

ORDERS = (("forward", 0), ("reverse", 0), ("random", 1), ("random", 2))
# (N, D): D = 1; < 32 and not a multiple of 4; one warp; 33 (a warp, scalar loads); 100 (16-byte loads,
# part of the lanes idle); 1000 (the 1000-class head: a warp, 8 loads per lane); 1001 and 1030 (scalar,
# several warps); 4100 (16-byte loads, 256 threads per row); 20000 (a block of 1024 threads per row).
SHAPES = ((7, 1), (6, 3), (6, 10), (6, 32), (6, 33), (6, 100), (6, 1000), (6, 1001), (6, 1030), (6, 4100),
          (6, 20000))
# The kernel reduces in another order than NumPy's pairwise sums: a few roundings more or fewer.
ERROR_FACTOR = 4
DRAWS = 16


class _PoisonedNumpy:
    """numpy, except that new float arrays are filled with NaN, so an output element that no thread
    of a kernel writes reads back as NaN."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def empty(shape, dtype=np.float64, **kw):
        return np.full(shape, np.nan, dtype) if np.dtype(dtype).kind == "f" else np.empty(shape, dtype, **kw)

    @staticmethod
    def empty_like(a, dtype=None, **kw):
        return np.full_like(a, np.nan, dtype=dtype) if np.dtype(dtype or a.dtype).kind == "f" else np.empty_like(a, dtype)


def poisoned_ops(order, seed):
    ops = emulated_ops(order)
    ops.executor.seed = seed
    ops.xp = _PoisonedNumpy()
    return ops


def _special_rows(x):
    """Rows 1..5 of x (N >= 6) hold, in turn: a -inf, a +inf, a NaN, only -inf, and values of
    +-3e38 (x - max overflows to -inf in float32) beside ordinary ones. Row 0 stays ordinary."""
    d = x.shape[1]
    x[1, d // 2] = -np.inf
    x[2, d // 3] = np.inf
    x[3, (2 * d) // 3] = np.nan
    x[4] = -np.inf
    x[5, ::3] = 3e38
    x[5, 1::3] = -3e38
    return x


def _wider(dtype):
    return np.float64 if dtype == np.float32 else np.longdouble


def _widen(inputs, dtype):
    return {k: v.astype(_wider(dtype)) if isinstance(v, np.ndarray) and v.dtype.kind == "f" else v
            for k, v in inputs.items()}


def _reference_error(run, inputs, dtype):
    """Per output: the float32 (float64) reference's largest |error| against a float64 (long double)
    run on the same inputs, over its finite elements (where the reference is finite too: in float32
    a 0 * log(p) can be NaN where the wider run's is not)."""
    out = []
    for b, e in zip(run(ref, inputs), run(ref, _widen(inputs, dtype))):
        b, e = np.asarray(b), np.asarray(e)
        both = np.isfinite(b) & np.isfinite(e)
        out.append(float(np.max(np.abs(b[both] - e[both]), initial=0)))
    return out


def _check(run, make, dtype, what, rng):
    """make(rng) -> inputs; run(backend, inputs) -> tuple of arrays. The kernels in every thread order
    give the same bits, NaN and Inf where the reference (run wider) has them, and elsewhere are within
    ERROR_FACTOR x the reference's own error, taken as the largest over DRAWS inputs from make (one
    draw's error can be far below the typical worst, by luck), and never below one ulp of the largest
    exact value (what even a correctly rounded result may be off by)."""
    inputs = make(rng)
    exact = run(ref, _widen(inputs, dtype))
    own = _reference_error(run, inputs, dtype)
    for _ in range(DRAWS - 1):
        own = [max(a, b) for a, b in zip(own, _reference_error(run, make(rng), dtype))]
    results = [run(poisoned_ops(order, seed), inputs) for order, seed in ORDERS]
    for i, want in enumerate(exact):
        got = [np.asarray(r[i]) for r in results]
        for g, (order, seed) in zip(got[1:], ORDERS[1:]):   # the order threads run in changes no bit
            assert g.tobytes() == got[0].tobytes(), f"{what} output {i}: order {order} (seed {seed}) differs from forward"
        g, e = got[0], np.asarray(want)
        assert g.dtype == dtype and g.shape == e.shape, f"{what} output {i}: {g.dtype} {g.shape}"
        nan = np.isnan(e)
        assert np.array_equal(np.isnan(g), nan), f"{what} output {i}: NaN at {np.argwhere(np.isnan(g) != nan)[:8]}"
        inf = np.isinf(e)
        assert np.array_equal(g[inf], e[inf].astype(dtype)), f"{what} output {i}: an infinity differs"
        fin = ~(nan | inf)
        if not fin.any():
            continue
        bound = ERROR_FACTOR * max(own[i], float(np.spacing(np.abs(e[fin]).max().astype(dtype))))
        err = np.abs(g[fin].astype(e.dtype) - e[fin])
        assert err.max() <= bound, (f"{what} output {i}: max |error| {float(err.max()):.3g} > {bound:.3g} "
                                    f"(the reference's own {own[i]:.3g})")


def _logits(rng, n, d, dtype, special):
    x = rng.standard_normal((n, d)).astype(dtype) * dtype(3)
    return _special_rows(x) if special else x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, d", SHAPES)
def test_softmax_rows(n, d, dtype, rng):
    def make(rng):
        x = _logits(rng, n, d, dtype, special=True)
        return {"x": x, "y": ref.softmax_fprop(x.astype(np.float64)).astype(dtype),   # the special rows' NaNs too
                "dy": rng.standard_normal((n, d)).astype(dtype)}
    _check(lambda B, a: (B.softmax_fprop(a["x"]), B.softmax_bprop(a["dy"], a["y"])), make, dtype,
           f"softmax ({n}, {d}) {np.dtype(dtype).name}", rng)


def _onehot(ids, d, dtype):
    y = np.zeros((len(ids), d), dtype)   # not np.eye(d)[ids]: (20000, 20000) would be 3.2 GB
    y[np.arange(len(ids)), ids] = 1
    return y


def _labels(rng, n, d, dtype, kind):
    ids = rng.integers(0, d, n)
    if kind == "ids":
        return ids
    if kind == "onehot":
        return _onehot(ids, d, dtype)
    return ref.softmax_fprop(rng.standard_normal((n, d)).astype(dtype))


@pytest.mark.parametrize("kind", ["ids", "onehot", "soft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, d", SHAPES)
def test_softmax_cross_entropy_rows(n, d, dtype, kind, rng):
    def make(rng):
        x = _logits(rng, n, d, dtype, special=False)
        probs = ref.softmax_fprop(x)
        probs[0, 0] = 0
        probs[-1, -1] = np.nan
        return {"x": x, "labels": _labels(rng, n, d, dtype, kind), "probs": probs, "dloss": np.asarray(0.75, dtype)}
    _check(lambda B, a: (*B.softmax_cross_entropy_fprop(a["x"], a["labels"]),
                         B.softmax_cross_entropy_bprop(a["probs"], a["labels"], a["dloss"])),
           make, dtype, f"softmax_cross_entropy[{kind}] ({n}, {d}) {np.dtype(dtype).name}", rng)


@pytest.mark.parametrize("kind", ["ids", "onehot", "soft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n, d", SHAPES)
def test_cross_entropy_rows(n, d, dtype, kind, rng):
    def make(rng):
        probs = ref.softmax_fprop(_logits(rng, n, d, dtype, special=False))
        probs[0, 0], probs[0, -1] = 0, 1          # outside the clip range
        return {"probs": probs, "labels": _labels(rng, n, d, dtype, kind)}
    _check(lambda B, a: (B.cross_entropy_fprop(a["probs"], a["labels"]),), make, dtype,
           f"cross_entropy[{kind}] ({n}, {d}) {np.dtype(dtype).name}", rng)


@pytest.mark.parametrize("kind", ["ids", "onehot"])
@pytest.mark.parametrize("d", [10, 1000])
@pytest.mark.parametrize("row", [1, 2, 3, 4, 5])
def test_loss_rows_with_special_logits(row, d, kind, rng):
    """One special row of _special_rows at a time (the mean over rows would hide the others), with
    the class id at a special position so that the -inf / +inf / NaN reaches the loss."""
    def make(rng):
        x = _special_rows(_logits(rng, 6, d, np.float32, special=False))[row:row + 1]
        ids = np.array([int(np.argmax(~np.isfinite(x[0]) | (np.abs(x[0]) > 1e38)))])
        return {"x": x, "labels": ids if kind == "ids" else _onehot(ids, d, np.float32)}
    _check(lambda B, a: B.softmax_cross_entropy_fprop(a["x"], a["labels"]), make, np.float32,
           f"softmax_cross_entropy[{kind}] special row {row} (1, {d})", rng)


def test_zero_weight_beside_a_minus_inf_logit_adds_nothing(rng):
    """A one-hot row's zero weights are skipped, as class ids skip every other class: a masked (-inf)
    logit gives the same finite loss either way (the reference's one-hot 0 * -inf would give NaN)."""
    ids = np.array([0, 5, 36, 20])

    def make(rng):
        x = rng.standard_normal((4, 37)).astype(np.float32)
        x[np.arange(4), (ids + 7) % 37] = -np.inf
        return {"x": x, "ids": ids}
    x = make(rng)["x"]
    _check(lambda B, a: B.softmax_cross_entropy_fprop(a["x"], a["ids"]), make, np.float32,
           "softmax_cross_entropy[ids] with masked logits", rng)
    ops = emulated_ops()
    by_id, probs_id = ops.softmax_cross_entropy_fprop(x, ids)
    by_row, probs_row = ops.softmax_cross_entropy_fprop(x, _onehot(ids, 37, np.float32))
    assert np.isfinite(by_id) and by_id == by_row and np.array_equal(probs_id, probs_row)


def test_rows_of_no_classes_still_write_their_loss():
    """C = 0: no thread has an element, yet every row's loss is written (poisoned buffers would leave
    NaN): the empty sum, as in the reference."""
    probs = np.zeros((5, 0), np.float32)
    for labels in (probs, np.zeros(5, np.int64)):
        for order, seed in ORDERS:
            got = poisoned_ops(order, seed).cross_entropy_fprop(probs, labels)
            assert got == ref.cross_entropy_fprop(probs, probs) == 0


def _launches(ops):
    seen = []
    launch = ops.launch

    def record(kernel, grid, block, args, shared_bytes=0, **kw):
        seen.append((kernel, tuple(grid), tuple(block)))
        return launch(kernel, grid, block, args, shared_bytes, **kw)
    ops.launch = record
    return seen


@pytest.mark.parametrize("d, vec, threads", [(1000, 4, 32), (10, 1, 16), (1, 1, 1), (1001, 1, 128), (20000, 4, 1024)])
def test_row_layout_is_coalesced(d, vec, threads, rng):
    """16-byte loads where D and the pointers allow; a warp per row for a 1000-class head, part of a
    warp for short rows, several warps (up to a block) for long ones; 256 threads per block or more."""
    ops = emulated_ops()
    seen = _launches(ops)
    x = rng.standard_normal((3, d)).astype(np.float32)
    ops.softmax_fprop(x)
    (kernel, grid, block), = seen
    assert kernel == f"fc::softmax_fprop_rows<float, {vec}>"
    assert block[0] == threads and block[0] * block[1] == max(256, threads)


def test_misaligned_rows_take_scalar_loads(rng):
    """A view 4 bytes into its buffer cannot be read as 16-byte vectors: the plan takes V = 1 (the
    sums, in another order then, are checked against the derived bound like every other case)."""
    def make(rng):
        return {"x": rng.standard_normal(3 * 1000 + 1).astype(np.float32)[1:].reshape(3, 1000)}
    x = make(rng)["x"]
    assert x.ctypes.data % 16
    ops = emulated_ops()
    seen = _launches(ops)
    ops.softmax_fprop(x)
    assert [k for k, _, _ in seen] == ["fc::softmax_fprop_rows<float, 1>"]
    _check(lambda B, a: (B.softmax_fprop(a["x"]),), make, np.float32, "softmax, misaligned", rng)
