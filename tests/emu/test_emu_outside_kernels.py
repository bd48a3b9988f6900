"""Kernels written outside fastconv (emulator.compile_kernel), and the blind spots they exposed, each
with a planted bug: an off-by-one store of a value computed from the guard (blind spot 1), a write
past a static __shared__ array (2), and shared memory poisoned per function reached (5)."""
import re

import numpy as np
import pytest

from fastconv import emulator
from fastconv.backends import _emu_build
from fastconv.emulator import EmulatorError

pytestmark = pytest.mark.skipif(not emulator.available(), reason="fastconv._emu is not built")

OFF_BY_ONE = r"""
template <typename T>
__global__ void twice(const T* x, T* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) y[i] = T(2) * x[i];          // planted: <= instead of <
}
template <typename T>
__global__ void copy(const T* x, T* y, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i <= n) y[i] = x[i];                 // planted: a verbatim copy of x's guard into y's
}
"""

SHARED = r"""
__global__ void shared_past_end(float* out, int k) {
  __shared__ float a[32];
  __shared__ float b[32];
  a[threadIdx.x] = threadIdx.x;
  b[threadIdx.x] = 1.0f;
  __syncthreads();
  if (threadIdx.x == 3) a[k] = 2.0f * a[k];   // planted when k >= 32
  __syncthreads();
  out[threadIdx.x] = a[threadIdx.x] + b[threadIdx.x];
}

// A device function's own static shared memory, reached by the even blocks only; block 0 fills
// all of it, the others half: the other half must read as poison, not as block 0's values.
__device__ float helper_swap_halves() {
  __shared__ float partial[64];
  if (blockIdx.x == 0 || threadIdx.x < 32) partial[threadIdx.x] = 2.0f;
  __syncthreads();
  return partial[threadIdx.x ^ 32];
}
__global__ void half_written(float* out) {
  __shared__ float s[64];
  if (blockIdx.x == 1 || threadIdx.x < 32) s[threadIdx.x] = 1.0f;
  __syncthreads();
  float v = s[threadIdx.x];
  if (blockIdx.x % 2 == 0) v = helper_swap_halves();
  out[blockIdx.x * 64 + threadIdx.x] = v;
}
"""


OFF_BY_ONE_NAMES = ["twice<float>", "copy<float>", "twice<__half>", "copy<double>"]


@pytest.fixture(scope="module")
def off_by_one():
    return dict(zip(("twice_f32", "copy_f32", "twice_f16", "copy_f64"),
                    emulator.compile_kernel(OFF_BY_ONE, OFF_BY_ONE_NAMES, filename="off_by_one.cu")))


@pytest.fixture(scope="module")
def shared():
    k = emulator.compile_kernel(SHARED, ["shared_past_end", "half_written"], filename="shared.cu")
    return dict(zip(("past_end", "half_written"), k))


def test_an_outside_kernel_runs_and_is_cached(off_by_one):
    k = off_by_one["twice_f32"]
    assert k.signature == "twice<float>(const float*, float*, int)"
    x = np.arange(100, dtype=np.float32)
    y = np.zeros(100, np.float32)
    emulator.launch(k, 4, 32, (x, y, 99))            # n - 1: in bounds
    np.testing.assert_array_equal(y[:100], 2 * x)
    again = emulator.compile_kernel(OFF_BY_ONE, OFF_BY_ONE_NAMES, filename="off_by_one.cu")[0]
    assert again.module() is k.module()              # same source and names: the built module is reused


def test_compile_errors_carry_the_compiler_diagnostics():
    with pytest.raises(_emu_build.BuildError, match="undefined_identifier"):
        emulator.compile_kernel("__global__ void k(float* y) { y[0] = undefined_identifier; }", "k")


@pytest.mark.parametrize("source,name,match", [(b"x", "k", "source must be a non-empty str"),
                                               ("__global__ void k() {}", "k; int", "name must be"),
                                               ("__global__ void k() {}", [], "name must be")])
def test_compile_kernel_checks_its_arguments(source, name, match):
    with pytest.raises((TypeError, ValueError), match=match):
        emulator.compile_kernel(source, name)


def test_launch_rejects_what_is_not_a_kernel():
    with pytest.raises(TypeError, match="kernel must be a registered kernel's name"):
        emulator.launch(3, 1, 1, ())


# ---- blind spot 1: a store of a value computed from the guard is caught, whatever the value ----------
@pytest.mark.parametrize("kernel,dtype", [("twice_f32", np.float32), ("copy_f32", np.float32),
                                          ("twice_f16", np.float16), ("copy_f64", np.float64)])
@pytest.mark.parametrize("n", [64, 1000, 10])
def test_off_by_one_store_is_caught_naming_block_thread_and_element(off_by_one, kernel, dtype, n):
    """n = 64 float32 ends on a 256-byte boundary: y[n] lands on a read-only guard page and faults;
    n = 1000 and 10 leave y[n] in the rounding tail, checked by value (a signalling NaN, with a
    payload per argument) and located by a rerun."""
    x, y = np.ones(n, dtype), np.zeros(n, dtype)
    with pytest.raises(EmulatorError) as err:
        emulator.launch(off_by_one[kernel], n // 32 + 1, 32, (x, y, n))
    msg = str(err.value)
    block, thread = divmod(n, 32)
    assert f"block ({block},0,0): thread ({thread},0,0): out-of-bounds write to argument 1" in msg, msg
    assert f"{n} elements)" in msg and (f"element {n} " in msg or f"(elements {n}..{n})" in msg), msg
    if f"element {n} " in msg:   # the fault names the line
        assert "off_by_one.cu:5" in msg or "off_by_one.cu:10" in msg, msg
    np.testing.assert_array_equal(y, 0)


# ---- blind spot 2: static __shared__ arrays have guards ------------------------------------------
@pytest.mark.parametrize("k", [32, 33])
def test_write_past_a_static_shared_array_is_caught(shared, k):
    out = np.zeros(32, np.float32)
    emulator.launch(shared["past_end"], 2, 32, (out, 31))     # in bounds
    np.testing.assert_array_equal(out, np.arange(32) + 1 + (np.arange(32) == 31) * 31)
    with pytest.raises(EmulatorError) as err:
        emulator.launch(shared["past_end"], 2, 32, (out, k))
    msg = str(err.value)
    assert "kernel 'shared_past_end' block (0,0,0): thread (3,0,0): out-of-bounds write past the end of static __shared__ " \
           "array 'a' (128 bytes) of shared_past_end(float*, int)" in msg, msg
    first, last = map(int, re.search(r"bytes (\d+)\.\.(\d+) past its end", msg).groups())
    assert 4 * (k - 32) <= first <= last < 4 * (k - 31), msg     # within the element written


# ---- blind spot 5: each block poisons the static shared memory of the functions it reaches ----------
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_unwritten_static_shared_memory_reads_as_nan_in_every_block(shared, order):
    """The kernel's own array and its helper's (reached by even blocks only) are poisoned afresh in
    every block that reaches them: what blocks 0 and 1 wrote does not leak into later blocks."""
    out = np.zeros(6 * 64, np.float32)
    emulator.launch(shared["half_written"], 6, 64, (out,), order=order)
    out = out.reshape(6, 64)
    nan32 = np.full(32, np.nan, np.float32)
    np.testing.assert_array_equal(out[0], 2)
    np.testing.assert_array_equal(out[1], 1)
    for b in (2, 4):
        np.testing.assert_array_equal(out[b], np.concatenate([nan32, np.full(32, 2, np.float32)]))
    for b in (3, 5):
        np.testing.assert_array_equal(out[b], np.concatenate([np.ones(32, np.float32), nan32]))
