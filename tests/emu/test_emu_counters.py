"""emulator.profile: memory counters per load/store site, checked against hand-computed values
for small outside kernels (the numbers Nsight Compute would report for the same addresses)."""
import numpy as np
import pytest

from fastconv import emulator

pytestmark = pytest.mark.skipif(not emulator.available(), reason="fastconv._emu is not built")

KERNELS = r"""
#include "common/index.h"

__global__ void copy(const float* x, float* y, int stride) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  y[i] = x[i * stride];
}

__global__ void copy4(const float4* x, float4* y) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  y[i] = x[i];
}

__global__ void copy_even_lanes(const float* x, float* y) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (threadIdx.x % 2 == 0) y[i] = x[i];
}

// fc::load_vec / store_vec (csrc/common/index.h): one 16-byte access per lane, as the GPU's LDG.128.
__global__ void vec4(const float* x, float* y) {
  float r[4];
  fc::load_vec<4>(x + 4 * threadIdx.x, r);
  fc::store_vec<4>(y + 4 * threadIdx.x, r);
}

template <int PAD>
__global__ void transpose32(const float* x, float* y) {
  __shared__ float tile[32][32 + PAD];
  tile[threadIdx.y][threadIdx.x] = x[threadIdx.y * 32 + threadIdx.x];
  __syncthreads();
  y[threadIdx.y * 32 + threadIdx.x] = tile[threadIdx.x][threadIdx.y];
}
"""
NAMES = ["copy", "copy4", "copy_even_lanes", "vec4", "transpose32<0>", "transpose32<1>"]


@pytest.fixture(scope="module")
def k():
    return dict(zip(NAMES, emulator.compile_kernel(KERNELS, NAMES, filename="counted.cu")))


def site(sites, space, op):
    found = [s for s in sites if s["space"] == space and s["op"] == op]
    assert len(found) == 1, sites
    return found[0]


@pytest.mark.parametrize("stride,sectors_per_request", [(1, 4), (32, 32)])
def test_fp32_copy_sectors_per_request(k, stride, sectors_per_request):
    x, y = np.arange(256 * stride, dtype=np.float32), np.zeros(256, np.float32)
    sites = emulator.profile(k["copy"], 2, 128, (x, y, stride))
    np.testing.assert_array_equal(y, x[::stride])           # it also ran
    load, store = site(sites, "global", "load"), site(sites, "global", "store")
    assert load["requests"] == 256 // 32 and load["lanes"] == 256 and load["bytes"] == 1024
    assert load["sectors"] == load["requests"] * sectors_per_request
    assert store["requests"] == 8 and store["sectors"] == 8 * 4    # the store is coalesced either way
    assert load["site"].startswith("counted.cu:6 ") and store["site"].startswith("counted.cu:6 ")


def test_128_bit_loads_move_16_sectors_per_request(k):
    x, y = np.arange(4 * 64, dtype=np.float32), np.zeros(4 * 64, np.float32)
    load = site(emulator.profile(k["copy4"], 1, 64, (x, y)), "global", "load")
    assert load["requests"] == 2 and load["bytes"] == 64 * 16 and load["sectors"] == 2 * 16


def test_vector_helpers_count_as_one_128_bit_access(k):
    """g++ used to split load_vec<4>'s copy into four 4-byte loads (25% efficiency each)."""
    x, y = np.arange(4 * 64, dtype=np.float32), np.zeros(4 * 64, np.float32)
    sites = emulator.profile(k["vec4"], 1, 64, (x, y))
    np.testing.assert_array_equal(y, x)
    load, store = site(sites, "global", "load"), site(sites, "global", "store")
    for s in (load, store):
        assert s["requests"] == 2 and s["lanes"] == 64 and s["bytes"] == 64 * 16 and s["sectors"] == 2 * 16


def test_a_partial_warp_and_a_divergent_branch(k):
    x, y = np.arange(64, dtype=np.float32), np.zeros(64, np.float32)
    load = site(emulator.profile(k["copy"], 1, 20, (x, y, 1)), "global", "load")
    assert load["requests"] == 1 and load["lanes"] == 20 and load["sectors"] == 3      # 80 bytes from 0
    load = site(emulator.profile(k["copy_even_lanes"], 1, 64, (x, y)), "global", "load")
    assert load["requests"] == 2 and load["lanes"] == 32 and load["sectors"] == 2 * 4  # 16 lanes span 128 bytes


@pytest.mark.parametrize("pad,read_wavefronts", [(0, 32), (1, 1)])
def test_shared_transpose_bank_conflicts(k, pad, read_wavefronts):
    """Reading a 32x32 float tile down a column: without padding every lane hits the same bank (32
    wavefronts per request); with one float of padding each lane has its own bank."""
    x, y = np.arange(1024, dtype=np.float32), np.zeros(1024, np.float32)
    sites = emulator.profile(k[f"transpose32<{pad}>"], 1, (32, 32), (x, y))
    np.testing.assert_array_equal(y.reshape(32, 32), x.reshape(32, 32).T)
    write, read = site(sites, "shared", "store"), site(sites, "shared", "load")
    assert write["requests"] == 32 and write["wavefronts"] == write["ideal_wavefronts"] == 32
    assert read["requests"] == 32 and read["ideal_wavefronts"] == 32 and read["wavefronts"] == 32 * read_wavefronts


@pytest.mark.slow   # builds the instrumented table of every registered kernel on first use
def test_registered_kernels_are_profiled_too():
    """selftest.sgemm_tiled<16> on 32x32x32, 2x2 blocks of 16x16 threads, two k-steps: a warp is two
    16-thread rows. A's tile load: two rows of 64 contiguous bytes = 4 sectors per request. The
    unpadded Bs tile's store covers 32 consecutive words (a +1 pad made it 2-way conflicted: banks
    17r+tx and 17r+17+tx meet), and its read Bs[k][tx] is the same 16 words for both rows."""
    a, b = np.ones((32, 32), np.float32), np.ones((32, 32), np.float32)
    c = np.zeros((32, 32), np.float32)
    sites = emulator.profile("selftest.sgemm_tiled", (2, 2), (16, 16), (a, b, c, 32, 32, 32))
    np.testing.assert_array_equal(c, 32)
    by_line = {(s["site"].split(" ")[0].rsplit("/", 1)[-1], s["space"], s["op"]): s for s in sites}
    load_a = by_line[("sgemm_tiled.cuh:24", "global", "load")]
    assert load_a["requests"] == 4 * 8 * 2 and load_a["sectors"] == 4 * load_a["requests"]
    store_b = by_line[("sgemm_tiled.cuh:25", "shared", "store")]
    assert store_b["requests"] == 64 and store_b["ideal_wavefronts"] == 64 and store_b["wavefronts"] == 64
    store_a = by_line[("sgemm_tiled.cuh:24", "shared", "store")]
    assert store_a["wavefronts"] == store_a["ideal_wavefronts"] == 64


def test_format_counters_shows_efficiency_and_conflicts(k):
    x, y = np.arange(256 * 32, dtype=np.float32), np.zeros(256, np.float32)
    table = emulator.format_counters(emulator.profile(k["copy"], 2, 128, (x, y, 32)))
    load = next(line for line in table.splitlines() if " global " in line and " load " in line)
    assert "32.00" in load and "12%" in load          # 4 useful bytes of every 32-byte sector moved
    x, y = np.arange(1024, dtype=np.float32), np.zeros(1024, np.float32)
    table = emulator.format_counters(emulator.profile(k["transpose32<0>"], 1, (32, 32), (x, y)))
    read = next(line for line in table.splitlines() if " shared " in line and " load " in line)
    assert read.split()[-2:] == ["32.00", str(32 * 32 - 32)]
