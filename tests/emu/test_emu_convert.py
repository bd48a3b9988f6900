"""half / bfloat16 conversions in the emulator, bit for bit: against NumPy float16, a NumPy bit-level
round-to-nearest-even reference for bfloat16, torch.bfloat16, and (where the CUDA headers are
installed) CUDA's own cuda_fp16.h / cuda_bf16.h host implementations compiled with g++."""
import os
import shutil
import subprocess

import numpy as np
import pytest

from fastconv import emulator

# float16 casts of values beyond 65504 overflow to inf on purpose
pytestmark = pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")

ALL16 = np.arange(65536, dtype=np.uint32).astype(np.uint16)


def launch_1d(name, inp, out):
    emulator.launch(name, (inp.size + 255) // 256, 256, (inp, out, inp.size))
    return out


def half_to_float(bits):
    return launch_1d("selftest.half_bits_to_float", bits, np.zeros(bits.size, np.float32))


def float_to_half(x):
    return launch_1d("selftest.float_to_half_bits", x, np.zeros(x.size, np.uint16))


def bf16_to_float(bits):
    return launch_1d("selftest.bf16_bits_to_float", bits, np.zeros(bits.size, np.float32))


def float_to_bf16(x):
    return launch_1d("selftest.float_to_bf16_bits", x, np.zeros(x.size, np.uint16))


def bf16_rne_reference(x):
    """float32 -> bfloat16 bits, round to nearest even, at the bit level; NaN -> 0x7fff (CUDA)."""
    u = x.view(np.uint32).astype(np.uint64)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(x), np.uint16(0x7FFF), r)


def interesting_floats(seed=0):
    """Random float32 bit patterns over every exponent, values at and next to every float16 and
    bfloat16 rounding midpoint (ties), the overflow thresholds, subnormals, zeros, infinities."""
    rng = np.random.default_rng(seed)
    rand = rng.integers(0, 2**32, 200000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    h = ALL16.view(np.float16)
    finite = np.sort(np.unique(h[np.isfinite(h)].astype(np.float64)))
    mids = ((finite[:-1] + finite[1:]) / 2).astype(np.float32)     # exact: 12 significant bits
    assert np.array_equal(mids.astype(np.float64), (finite[:-1] + finite[1:]) / 2)
    bf_ties = ((rng.integers(0, 2**16, 20000, dtype=np.uint64).astype(np.uint32) << 16) | 0x8000).view(np.float32)
    edges = np.array([65504, 65519.996, 65520, 65520.004, 2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001, 2.0**-26, 2.0**-14,
                      3.3895314e38, 3.3961776e38, 3.4028235e38, 1e-45, 1e-40, 0.0, -0.0, np.inf, -np.inf], np.float32)
    near = np.concatenate([np.nextafter(mids, np.float32(np.inf)), np.nextafter(mids, np.float32(-np.inf))])
    out = np.concatenate([rand, mids, -mids, near, bf_ties, edges, -edges, finite.astype(np.float32)])
    return out.astype(np.float32)


def test_half_to_float_all_bit_patterns():
    out = half_to_float(ALL16)
    want = ALL16.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    np.testing.assert_array_equal(out.view(np.uint32)[~nan], want.view(np.uint32)[~nan])   # -0, subnormals, inf
    np.testing.assert_array_equal(out.view(np.uint32)[nan], 0x7FFFFFFF)                     # CUDA's canonical NaN


def test_float_to_half_round_trips_every_half():
    h = ALL16.view(np.float16)
    keep = ~np.isnan(h)
    np.testing.assert_array_equal(float_to_half(h[keep].astype(np.float32)), ALL16[keep])


def test_float_to_half_rounds_to_nearest_even():
    x = interesting_floats()
    out = float_to_half(x)
    nan = np.isnan(x)
    np.testing.assert_array_equal(out[~nan], x[~nan].astype(np.float16).view(np.uint16))
    np.testing.assert_array_equal(out[nan], 0x7FFF)


def test_bf16_to_float_all_bit_patterns():
    out = bf16_to_float(ALL16)
    np.testing.assert_array_equal(out.view(np.uint32), ALL16.astype(np.uint32) << 16)   # exact, payloads kept


def test_float_to_bf16_rounds_to_nearest_even():
    x = interesting_floats(1)
    np.testing.assert_array_equal(float_to_bf16(x), bf16_rne_reference(x))


def test_bf16_against_torch():
    torch = pytest.importorskip("torch")
    x = interesting_floats(2)
    keep = ~np.isnan(x)
    want = torch.from_numpy(x[keep]).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(float_to_bf16(x)[keep], want)
    back = torch.from_numpy(ALL16.view(np.int16).copy()).view(torch.bfloat16).float().numpy()
    finite = ~np.isnan(back)
    np.testing.assert_array_equal(bf16_to_float(ALL16)[finite], back[finite])


def test_packed_pairs():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.standard_normal(500).astype(np.float32) * 100, interesting_floats()[:500]])
    x = x[~np.isnan(x)]
    x = x[: x.size // 2 * 2]
    npairs = x.size // 2
    h2, b2 = np.zeros(npairs, np.uint32), np.zeros(npairs, np.uint32)
    hb, bb = np.zeros(x.size, np.float32), np.zeros(x.size, np.float32)
    emulator.launch("selftest.pack_pairs", (npairs + 127) // 128, 128, (x, h2, b2, hb, bb, npairs))
    hbits, bbits = x.astype(np.float16).view(np.uint16).astype(np.uint32), bf16_rne_reference(x).astype(np.uint32)
    np.testing.assert_array_equal(h2, hbits[0::2] | (hbits[1::2] << 16))    # low half = first value
    np.testing.assert_array_equal(b2, bbits[0::2] | (bbits[1::2] << 16))
    np.testing.assert_array_equal(hb, x.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(bb.view(np.uint32), bbits << 16)


def test_half_and_bf16_arrays():
    rng = np.random.default_rng(4)
    x = rng.standard_normal(1000).astype(np.float16)
    y = rng.standard_normal(1000).astype(np.float16)
    want = (np.float32(0.5) * x.astype(np.float32) + y.astype(np.float32)).astype(np.float16)
    emulator.launch("selftest.half_axpy", 4, 256, (0.5, x, y, 1000))
    np.testing.assert_array_equal(y, want)
    xb = bf16_rne_reference(rng.standard_normal(1000).astype(np.float32))
    yb = bf16_rne_reference(rng.standard_normal(1000).astype(np.float32))
    f = lambda b: (b.astype(np.uint32) << 16).view(np.float32)
    want = bf16_rne_reference(np.float32(0.5) * f(xb) + f(yb))
    emulator.launch("selftest.bf16_axpy", 4, 256, (0.5, xb, yb, 1000))
    np.testing.assert_array_equal(yb, want)


ORACLE = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cstdio>
#include <cstring>
#include <vector>
// stdin: n, n float32, 65536 uint16. stdout: n half bits, n bf16 bits, 65536 f32 (from half), 65536 f32 (from bf16)
int main() {
  unsigned n;
  if (fread(&n, 4, 1, stdin) != 1) return 1;
  std::vector<float> x(n);
  std::vector<unsigned short> bits(65536), h(n), b(n);
  std::vector<float> hf(65536), bf(65536);
  if (fread(x.data(), 4, n, stdin) != n || fread(bits.data(), 2, 65536, stdin) != 65536) return 1;
  for (unsigned i = 0; i < n; ++i) {
    __half hv = __float2half(x[i]);
    __nv_bfloat16 bv = __float2bfloat16(x[i]);
    std::memcpy(&h[i], &hv, 2);
    std::memcpy(&b[i], &bv, 2);
  }
  for (unsigned i = 0; i < 65536; ++i) {
    __half hv; __nv_bfloat16 bv;
    std::memcpy(&hv, &bits[i], 2);
    std::memcpy(&bv, &bits[i], 2);
    hf[i] = __half2float(hv);
    bf[i] = __bfloat162float(bv);
  }
  fwrite(h.data(), 2, n, stdout); fwrite(b.data(), 2, n, stdout);
  fwrite(hf.data(), 4, 65536, stdout); fwrite(bf.data(), 4, 65536, stdout);
  return 0;
}
"""


def cuda_include():
    for d in [os.path.join(os.environ[v], "include") for v in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(v)] + \
             ["/usr/local/cuda/include"]:
        if os.path.isfile(os.path.join(d, "cuda_fp16.h")) and os.path.isfile(os.path.join(d, "cuda_bf16.h")):
            return d
    return None


@pytest.mark.skipif(cuda_include() is None or shutil.which("g++") is None, reason="needs the CUDA headers and g++")
def test_conversions_match_cuda_headers(tmp_path):
    """CUDA's cuda_fp16.hpp / cuda_bf16.hpp host code (which mirrors the device conversions), run on
    the same inputs, must give the same bits, NaNs included."""
    src, exe = tmp_path / "oracle.cpp", tmp_path / "oracle"
    src.write_text(ORACLE)
    subprocess.run(["g++", "-std=c++17", "-O1", f"-I{cuda_include()}", str(src), "-o", str(exe)], check=True, timeout=120)
    x = interesting_floats(5)
    x = np.concatenate([x, np.array([np.nan, -np.nan], np.float32), np.uint32([0x7F800001, 0xFFC01234]).view(np.float32)])
    stdin = np.uint32(x.size).tobytes() + x.tobytes() + ALL16.tobytes()
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, check=True, timeout=120).stdout
    n = x.size
    h = np.frombuffer(out, np.uint16, n, 0)
    b = np.frombuffer(out, np.uint16, n, 2 * n)
    hf = np.frombuffer(out, np.uint32, 65536, 4 * n)
    bf = np.frombuffer(out, np.uint32, 65536, 4 * n + 4 * 65536)
    np.testing.assert_array_equal(float_to_half(x), h)
    np.testing.assert_array_equal(float_to_bf16(x), b)
    np.testing.assert_array_equal(half_to_float(ALL16).view(np.uint32), hf)
    np.testing.assert_array_equal(bf16_to_float(ALL16).view(np.uint32), bf)
