"""Warp intrinsics and atomics against NumPy models of the CUDA semantics."""
import numpy as np
import pytest

from fastconv import emulator


def shfl_model(vals, width, mode, b):
    """CUDA C++ Programming Guide, "Warp Shuffle Functions", for one 32-lane warp: each lane's
    result; `b` is the per-lane srcLane (idx) or the delta / lane mask."""
    out = np.empty_like(vals)
    for lane in range(32):
        seg = lane - lane % width          # first lane of this lane's width-segment
        if mode == "idx":
            src = seg + b[lane] % width
        elif mode == "up":                 # lanes below delta in their segment keep their value
            src = lane - b if lane % width >= b else lane
        elif mode == "down":               # lanes whose source leaves the segment keep theirs
            src = lane + b if lane % width + b < width else lane
        else:                              # xor: reading a later segment keeps one's own value
            src = lane ^ b
            src = src if src < seg + width else lane
        out[lane] = vals[src]
    return out


@pytest.mark.parametrize("width", [32, 16, 8, 4, 2, 1])
def test_shuffles(width):
    rng = np.random.default_rng(width)
    nthreads = 64
    x = rng.integers(-50, 50, nthreads).astype(np.float32)
    src = rng.integers(0, 64, nthreads).astype(np.int32)     # beyond width: taken modulo width
    down, xr, up, idx = (np.zeros(nthreads, np.float32) for _ in range(4))
    emulator.launch("selftest.warp_shuffles", 1, nthreads, (x, src, width, down, xr, up, idx))
    for w in range(nthreads // 32):
        sl = slice(32 * w, 32 * w + 32)
        v = x[sl].copy()
        d, xx, u = v.copy(), v.copy(), v.copy()
        off = width // 2
        while off > 0:
            d = d + shfl_model(d, width, "down", off)
            xx = xx + shfl_model(xx, width, "xor", off)
            off //= 2
        off = 1
        while off < width:
            o = shfl_model(u, width, "up", off)
            u = np.where(np.arange(32) % width >= off, u + o, u)
            off *= 2
        np.testing.assert_array_equal(down[sl], d)
        np.testing.assert_array_equal(xr[sl], xx)
        np.testing.assert_array_equal(up[sl], u)
        np.testing.assert_array_equal(idx[sl], shfl_model(v, width, "idx", src[sl]))
        # and the plain meanings: segment sums, inclusive scans
        seg_sum = v.reshape(-1, width).sum(axis=1)
        np.testing.assert_array_equal(xr[sl], np.repeat(seg_sum, width))
        np.testing.assert_array_equal(down[sl][::width], seg_sum)
        np.testing.assert_array_equal(up[sl], np.cumsum(v.reshape(-1, width), axis=1).ravel())


def test_64bit_shuffles():
    rng = np.random.default_rng(1)
    d = rng.standard_normal(64)
    q = rng.integers(-2**62, 2**62, 64, dtype=np.int64)
    od, oq = np.zeros_like(d), np.zeros_like(q)
    emulator.launch("selftest.warp_shuffle_64bit", 2, 32, (d, q, od, oq))
    lanes = np.arange(64)
    np.testing.assert_array_equal(od, d[(lanes // 32) * 32 + 31 - lanes % 32])
    np.testing.assert_array_equal(oq, q[lanes ^ 7])


@pytest.mark.parametrize("block", [64, 48])   # 48: the second warp has 16 lanes
def test_votes(block):
    rng = np.random.default_rng(block)
    pred = rng.integers(0, 2, block).astype(np.int32)
    pred[32:40] = 1
    ballot, even, active = (np.zeros(block, np.uint32) for _ in range(3))
    anyv, allv = np.zeros(block, np.int32), np.zeros(block, np.int32)
    emulator.launch("selftest.warp_votes", 1, block, (pred, ballot, anyv, allv, even, active))
    for w in range((block + 31) // 32):
        lanes = np.arange(32 * w, min(32 * w + 32, block))
        p = pred[lanes]
        bits = int(sum(int(v) << i for i, v in enumerate(p)))
        np.testing.assert_array_equal(ballot[lanes], bits)
        np.testing.assert_array_equal(anyv[lanes], int(p.any()))
        np.testing.assert_array_equal(allv[lanes], int(p.all()))
        np.testing.assert_array_equal(active[lanes], (1 << len(lanes)) - 1 if len(lanes) < 32 else 0xFFFFFFFF)
        even_bits = bits & 0x55555555
        np.testing.assert_array_equal(even[lanes], np.where(np.arange(len(lanes)) % 2 == 0, even_bits, 0))


@pytest.mark.parametrize("order", ["forward", "reverse", "random"])
def test_block_reduction_with_shuffles_shared_memory_and_atomics(order):
    x = np.arange(1, 5001, dtype=np.float32) % 17
    total, count = np.zeros(1, np.float32), np.zeros(1, np.int32)
    emulator.launch("selftest.warp_reduce_sum", 5, 256, (x, x.size, total, count), order=order)
    assert total[0] == x.sum() and count[0] == x.size


def test_atomics():
    rng = np.random.default_rng(7)
    n, nbins = 3000, 37
    keys = rng.integers(0, nbins, n).astype(np.int32)
    vals = rng.integers(-1000, 1000, n).astype(np.float32)
    hist, shared_hist = np.zeros(nbins, np.int32), np.zeros(nbins, np.int32)
    fsum, dsum = np.zeros(1, np.float32), np.zeros(1, np.float64)
    usum = np.zeros(1, np.uint64)
    imax, imin, cas_max = np.array([-2**31], np.int32), np.array([2**31 - 1], np.int32), np.array([-2**31], np.int32)
    ucount = np.zeros(1, np.uint32)
    emulator.launch("selftest.atomics", 1, 128, (keys, vals, n, hist, fsum, dsum, usum, imax, imin, cas_max, ucount,
                                                 shared_hist, nbins), order="random", seed=3)
    np.testing.assert_array_equal(hist, np.bincount(keys, minlength=nbins))
    np.testing.assert_array_equal(shared_hist, hist)
    assert fsum[0] == vals.sum() and dsum[0] == vals.sum() and usum[0] == keys.sum()
    assert imax[0] == vals.max() and imin[0] == vals.min() and cas_max[0] == vals.max() and ucount[0] == n


def test_atomic_exchange_returns_every_old_value_once():
    n = 200
    slot, olds = np.array([-1], np.int32), np.zeros(n, np.int32)
    emulator.launch("selftest.atomic_exchange", 2, 128, (slot, olds, n), order="random", seed=9)
    assert sorted(olds.tolist() + [int(slot[0])]) == list(range(-1, n))
