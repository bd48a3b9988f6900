"""Scheduling: barriers, shared memory, thread orders that expose races, divergence reported."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastconv import emulator
from fastconv.emulator import EmulatorError

ORDERS = [("forward", 0), ("reverse", 0), ("random", 1), ("random", 2)]
GEMM_SHAPES = [(37, 29, 45), (16, 16, 16), (1, 1, 1), (17, 33, 5)]  # odd sizes, partial tiles


def sgemm(name, a, b, order="forward", seed=0, tile=16, shared_bytes=0):
    (m, k), n = a.shape, b.shape[1]
    c = np.full((m, n), -7.0, np.float32)
    emulator.launch(name, grid=((n + tile - 1) // tile, (m + tile - 1) // tile), block=(tile, tile),
                    args=(a, b, c, m, n, k), order=order, seed=seed, shared_bytes=shared_bytes)
    return c


@pytest.mark.parametrize("order,seed", ORDERS)
@pytest.mark.parametrize("m,n,k", GEMM_SHAPES)
def test_tiled_sgemm_matches_numpy_in_every_order(m, n, k, order, seed):
    rng = np.random.default_rng(m * 100 + n)
    a = rng.integers(-4, 5, (m, k)).astype(np.float32)   # small integers: exact in any summation order
    b = rng.integers(-4, 5, (k, n)).astype(np.float32)
    np.testing.assert_array_equal(sgemm("selftest.sgemm_tiled", a, b, order, seed), a @ b)


@pytest.mark.parametrize("order", ["forward", "reverse", "random"])
def test_dynamic_shared_memory_sgemm(order):
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((21, 19)).astype(np.float32), rng.standard_normal((19, 13)).astype(np.float32)
    c = sgemm("selftest.sgemm_dynamic_smem", a, b, order, tile=8, shared_bytes=2 * 8 * 8 * 4)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-5)


def test_missing_barrier_in_sgemm_gives_a_wrong_answer():
    rng = np.random.default_rng(0)
    a = rng.integers(-4, 5, (37, 45)).astype(np.float32)
    b = rng.integers(-4, 5, (45, 29)).astype(np.float32)
    wrong = [o for o, s in ORDERS if not np.array_equal(sgemm("selftest.sgemm_tiled_missing_barrier", a, b, o, s), a @ b)]
    assert wrong, "the race (no barrier before the next tile overwrites shared memory) went unnoticed"


def test_reverse_order_catches_a_race_forward_order_misses():
    x = np.arange(256, dtype=np.float32) + 1
    want = np.concatenate([[x[0]], x[:-1]]).astype(np.float32)
    want[128] = x[128]                   # out[i] = in[i-1] within each block of 128

    def run(name, order, seed=0):
        out = np.zeros_like(x)
        emulator.launch(name, 2, 128, (x, out), order=order, seed=seed)
        return out

    for order in ("forward", "reverse", "random"):
        np.testing.assert_array_equal(run("selftest.neighbor_shift", order), want)
    # Without the barrier, forward order runs each thread's neighbour first and happens to work...
    np.testing.assert_array_equal(run("selftest.neighbor_shift_missing_barrier", "forward"), want)
    # ...reverse order reads the neighbour's slot before it is written: poison (NaN) comes out.
    rev = run("selftest.neighbor_shift_missing_barrier", "reverse")
    assert np.isnan(rev[1:128]).all() and np.isnan(rev[129:]).all()
    assert not np.array_equal(run("selftest.neighbor_shift_missing_barrier", "random", seed=5), want)


def test_order_defaults_to_the_environment(monkeypatch):
    x = np.arange(64, dtype=np.float32)
    out = np.zeros_like(x)
    monkeypatch.setenv("FASTCONV_EMU_ORDER", "reverse")
    emulator.launch("selftest.neighbor_shift_missing_barrier", 1, 64, (x, out))
    assert np.isnan(out[1:]).all()
    monkeypatch.setenv("FASTCONV_EMU_ORDER", "sideways")
    with pytest.raises(ValueError, match="order"):
        emulator.launch("selftest.neighbor_shift_missing_barrier", 1, 64, (x, out))


def test_random_order_is_reproducible_from_its_seed():
    x = np.arange(96, dtype=np.float32)
    runs = []
    for seed in (11, 11, 12):
        out = np.zeros_like(x)
        emulator.launch("selftest.neighbor_shift_missing_barrier", 1, 96, (x, out), order="random", seed=seed)
        runs.append(np.isnan(out))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


def test_uninitialized_shared_memory_reads_as_nan():
    s, d = np.zeros(64, np.float32), np.zeros(64, np.float32)
    emulator.launch("selftest.read_uninitialized_shared", 1, 64, (s, d, 0), shared_bytes=64 * 4)
    assert s[0] == 1 and d[0] == 1
    assert np.isnan(s[1:]).all() and np.isnan(d[1:]).all()
    # Every block starts with poisoned shared memory again: nothing leaks from the previous one.
    s[:], d[:] = 0, 0
    emulator.launch("selftest.read_uninitialized_shared", 1, 64, (s, d, -1), shared_bytes=64 * 4)
    assert np.isnan(s).all() and np.isnan(d).all()


def test_syncthreads_count_and_or():
    out = np.zeros(3, np.int32)
    for pred, want in [([1] * 40, [40, 1, 1]), ([0] * 40, [0, 0, 0]), ([0, 1] * 20, [20, 0, 1])]:
        emulator.launch("selftest.barrier_reductions", 1, 40, (np.array(pred, np.int32), out))
        np.testing.assert_array_equal(out, want)


def test_barrier_that_every_thread_reaches_passes():
    out = np.zeros(32, np.float32)
    emulator.launch("selftest.barrier_after_early_exit", 1, 32, (out, 32))
    np.testing.assert_array_equal(out, 2)


# Kernels that deadlock on a GPU (or are undefined there) must be reported, never hang: they run
# in a subprocess with a timeout so that a regression cannot hang the suite.
DIVERGENT = {
    "barrier_divergent_sites": ("selftest.barrier_divergent_sites", 1, 32, "out32"),
    "barrier_after_early_exit": ("selftest.barrier_after_early_exit", 1, 32, "out32,20"),
    "shfl_lanes_diverge": ("selftest.shfl_lanes_diverge", 1, 32, "in32,out32"),
    "shfl_mask_mismatch": ("selftest.shfl_mask_mismatch", 1, 32, "in32,out32"),
    "shfl_mask_without_caller": ("selftest.shfl_mask_without_caller", 1, 32, "in32,out32"),
    "second_block_diverges": ("selftest.barrier_after_early_exit", 2, 32, "out32,20"),
}


@pytest.fixture(scope="module")
def divergence_reports():
    script = textwrap.dedent(f"""
        import json, numpy as np
        from fastconv import emulator
        cases = {DIVERGENT!r}
        reports = {{}}
        for key, (name, grid, block, spec) in cases.items():
            vals = {{"out32": np.zeros(32, np.float32), "in32": np.arange(32, dtype=np.float32), "20": 20}}
            args = [vals[s] for s in spec.split(",")]
            try:
                emulator.launch(name, grid, block, args)
                reports[key] = None
            except emulator.EmulatorError as e:
                reports[key] = str(e)
        print(json.dumps(reports))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "FASTCONV_EMU_ORDER": "forward"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_barriers_at_different_call_sites_are_reported(divergence_reports):
    msg = divergence_reports["barrier_divergent_sites"]
    assert msg and "kernel 'selftest.barrier_divergent_sites' block (0,0,0)" in msg
    assert "different __syncthreads() call sites" in msg
    assert "races.cuh:" in msg and "16 threads" in msg


def test_threads_that_exit_while_others_wait_are_reported(divergence_reports):
    msg = divergence_reports["barrier_after_early_exit"]
    assert msg and "kernel 'selftest.barrier_after_early_exit'" in msg
    assert "waited at by 20 thread(s)" in msg and "12 thread(s) exited" in msg and "(20,0,0)" in msg


def test_warp_collective_with_lanes_that_exit_is_reported(divergence_reports):
    msg = divergence_reports["shfl_lanes_diverge"]
    assert msg and "__shfl_sync" in msg and "lanes 16-31 exited" in msg and "mask 0xffffffff" in msg


def test_warp_collective_with_different_masks_is_reported(divergence_reports):
    msg = divergence_reports["shfl_mask_mismatch"]
    assert msg and "__shfl_down_sync" in msg and "lanes 5 wait at another warp collective" in msg


def test_mask_without_the_calling_lane_is_reported(divergence_reports):
    msg = divergence_reports["shfl_mask_without_caller"]
    assert msg and "does not include the calling lane 0" in msg and "thread (0,0,0)" in msg


def test_error_names_the_failing_block(divergence_reports):
    assert "block (0,0,0)" in divergence_reports["second_block_diverges"]
    msg = None
    try:
        emulator.launch("selftest.barrier_after_early_exit", 3, 32, (np.zeros(32, np.float32), 20), order="reverse")
    except EmulatorError as e:
        msg = str(e)
    assert msg and "block (2,0,0)" in msg   # reverse order runs the last block first
