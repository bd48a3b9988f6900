"""racecheck=True: the instrumented build reports two accesses to the same bytes, at least one a
non-atomic write, by different threads of a block between two barriers (shared memory) or by
different blocks of a launch (global memory), whatever order the threads run in (blind spot 3);
a block reading another block's result without the writer's __threadfence() (blind spot 6). Each
planted bug is an outside kernel; its fixed twin must pass."""
import re

import numpy as np
import pytest

from fastconv import emulator
from fastconv.emulator import EmulatorError

pytestmark = pytest.mark.skipif(not emulator.available(), reason="fastconv._emu is not built")

RACES = r"""
__global__ void shared_counter(int* out, int atomic) {
  __shared__ int count;
  if (threadIdx.x == 0) count = 0;
  __syncthreads();
  if (atomic) atomicAdd(&count, 1);
  else count = count + 1;                       // planted: a non-atomic read-modify-write
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = count;
}

__global__ void neighbour(const float* x, float* y, int sync) {
  __shared__ float tile[64];
  tile[threadIdx.x] = x[threadIdx.x];
  if (sync) __syncthreads();                    // planted when sync == 0
  y[threadIdx.x] = tile[(threadIdx.x + 1) % 64];
}

__global__ void warp_exchange(const float* x, float* y, int sync) {
  __shared__ float lane[32];
  lane[threadIdx.x] = x[threadIdx.x];
  if (sync) __syncwarp();                       // orders the warp's own lanes
  y[threadIdx.x] = lane[31 - threadIdx.x];
}

__global__ void global_sum(float* total, const float* x, int atomic) {
  const float v = x[blockIdx.x * blockDim.x + threadIdx.x];
  if (threadIdx.x == 0) {
    if (atomic) atomicAdd(total, v);
    else *total += v;                           // planted: blocks are not ordered
  }
}

// "Last block done": each block publishes a partial sum, the last to finish adds them up.
__global__ void last_block_sum(const float* x, float* partial, unsigned* done, float* total, int fence) {
  if (threadIdx.x != 0) return;
  partial[blockIdx.x] = x[blockIdx.x];
  if (fence) __threadfence();                   // planted when fence == 0
  const unsigned ticket = atomicAdd(done, 1u);
  if (ticket == gridDim.x - 1) {
    float s = 0.0f;
    for (unsigned b = 0; b < gridDim.x; ++b) s += partial[b];
    *total = s;
  }
}
"""
NAMES = ["shared_counter", "neighbour", "warp_exchange", "global_sum", "last_block_sum"]


@pytest.fixture(scope="module")
def k():
    return dict(zip(NAMES, emulator.compile_kernel(RACES, NAMES, filename="races.cu")))


def line_of(text):
    return RACES.splitlines().index(next(l for l in RACES.splitlines() if text in l)) + 1


def raises_race(kernel, grid, block, args, order="forward"):
    with pytest.raises(EmulatorError) as err:
        emulator.launch(kernel, grid, block, args, order=order, racecheck=True)
    return str(err.value)


def test_the_plain_emulator_misses_what_racecheck_finds(k):
    """Without racecheck each thread runs to its barrier at once: the lost update never happens."""
    out = np.zeros(2, np.int32)
    for order in ("forward", "reverse", "random"):
        emulator.launch(k["shared_counter"], 2, 64, (out, 0), order=order)
        np.testing.assert_array_equal(out, 64)


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_shared_counter_race_names_both_threads_and_lines(k, order):
    msg = raises_race(k["shared_counter"], 2, 64, (np.zeros(2, np.int32), 0), order)
    assert "kernel 'shared_counter' block (" in msg and "data race in shared memory on static __shared__ " in msg, msg
    assert "shared_counter(int*, int)::count, byte offset 0" in msg, msg
    sites = re.findall(r"(read|write) by thread \((\d+),0,0\) at races\.cu:(\d+)", msg)
    assert len(sites) == 2 and sites[0][1] != sites[1][1], msg
    assert {int(s[2]) for s in sites} == {line_of("else count = count + 1")}, msg


def test_atomic_counter_passes_racecheck(k):
    out = np.zeros(3, np.int32)
    emulator.launch(k["shared_counter"], 3, 96, (out, 1), racecheck=True, order="random", seed=3)
    np.testing.assert_array_equal(out, 96)


def test_missing_barrier_is_reported_and_the_barrier_fixes_it(k):
    x, y = np.arange(64, dtype=np.float32), np.zeros(64, np.float32)
    msg = raises_race(k["neighbour"], 1, 64, (x, y, 0))
    assert "data race in shared memory on static __shared__ neighbour(float const*, float*, int)::tile" in msg, msg
    assert f"races.cu:{line_of('tile[threadIdx.x] = x[')}" in msg and f"races.cu:{line_of('y[threadIdx.x] = tile[')}" in msg
    emulator.launch(k["neighbour"], 1, 64, (x, y, 1), racecheck=True)
    np.testing.assert_array_equal(y, np.roll(x, -1))


def test_syncwarp_orders_the_lanes_of_its_warp(k):
    x, y = np.arange(32, dtype=np.float32), np.zeros(32, np.float32)
    assert "data race in shared memory" in raises_race(k["warp_exchange"], 1, 32, (x, y, 0))
    emulator.launch(k["warp_exchange"], 1, 32, (x, y, 1), racecheck=True)
    np.testing.assert_array_equal(y, x[::-1])


def test_two_blocks_adding_to_one_global_element_race(k):
    x = np.arange(4 * 32, dtype=np.float32)
    total = np.zeros(1, np.float32)
    msg = raises_race(k["global_sum"], 4, 32, (total, x, 0))
    assert "data race in global memory on argument 0 (float*), element 0" in msg, msg
    blocks = re.findall(r"by block \((\d+),0,0\) thread \(0,0,0\) at races\.cu:(\d+)", msg)
    assert len(blocks) == 2 and blocks[0][0] != blocks[1][0], msg
    assert {int(b[1]) for b in blocks} == {line_of("else *total += v")}, msg
    emulator.launch(k["global_sum"], 4, 32, (total, x, 1), racecheck=True)
    assert total[0] == x[::32].sum()


def test_last_block_pattern_needs_a_threadfence(k):
    """Blind spot 6: without the fence the last block's read of another block's partial is
    reported; with it the pattern passes."""
    x = np.arange(1, 6, dtype=np.float32)
    partial, done, total = np.zeros(5, np.float32), np.zeros(1, np.uint32), np.zeros(1, np.float32)
    msg = raises_race(k["last_block_sum"], 5, 32, (x, partial, done, total, 0))
    assert "data race in global memory on argument 1 (float*)" in msg and "no __threadfence() after its write" in msg, msg
    assert f"races.cu:{line_of('partial[blockIdx.x] = x[')}" in msg and f"races.cu:{line_of('s += partial[b]')}" in msg
    done[...] = 0
    emulator.launch(k["last_block_sum"], 5, 32, (x, partial, done, total, 1), racecheck=True, order="reverse")
    assert total[0] == x.sum() and done[0] == 5


@pytest.mark.slow   # the first call builds the instrumented table of every registered kernel
def test_registered_kernels_run_under_racecheck():
    """racecheck=True with a registered name runs the same table's instrumented build: the selftest
    kernel without its barrier is reported in forward order, where the plain emulator passes it."""
    x = np.arange(256, dtype=np.float32)
    out = np.zeros(256, np.float32)
    emulator.launch("selftest.neighbor_shift_missing_barrier", 2, 128, (x, out), order="forward")
    msg = raises_race("selftest.neighbor_shift_missing_barrier", 2, 128, (x, out))
    assert "kernel 'selftest.neighbor_shift_missing_barrier' block (0,0,0)" in msg, msg
    assert "data race in shared memory on static __shared__ fc_selftest::neighbor_shift<false>(float const*, float*)::s" in msg
    assert re.search(r"write by thread \(0,0,0\) at \S*csrc/selftest/races\.cuh:16 .* read by thread \(1,0,0\) at "
                     r"\S*csrc/selftest/races\.cuh:18", msg), msg
    emulator.launch("selftest.neighbor_shift", 2, 128, (x, out), racecheck=True)
    np.testing.assert_array_equal(out, np.concatenate([[0], x[:127], [128], x[128:255]]))
