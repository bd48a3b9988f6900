"""normalize: uint8 NHWC -> float32 / bf16 (x / 255 - mean) / std: the NumPy reference against a float64
run with a derived bound, and our kernel (csrc/ops/normalize.h) against the reference bit for bit, in
the emulator (every CI run) and on a GPU."""
import numpy as np
import pytest

from fastconv.backends import backend_status
from fastconv.data.images import IMAGENET_MEAN, IMAGENET_STD, normalize
from fastconv.data.images.normalize import coefficients
from fastconv.backends.device import cuda_available

needs_emu = pytest.mark.skipif(not backend_status()["emulated"][0], reason="fastconv._emu is not built")


def _batch(seed=0, shape=(3, 5, 7, 3)):
    x = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    x.flat[:2] = (0, 255)
    return x


def test_reference_matches_float64_within_its_rounding_bound():
    x = _batch()
    mean, std = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
    exact = (x / 255.0 - mean) / std
    y = normalize(x, IMAGENET_MEAN, IMAGENET_STD)
    assert y.dtype == np.float32 and y.shape == x.shape
    # scale and bias each rounded to float32 once (eps/2 relative), then a product and a sum each rounded
    eps = np.finfo(np.float32).eps
    scale, bias = np.abs(x / (255.0 * std)), np.abs(mean / std)
    bound = eps * (scale + 0.5 * bias + 0.5 * np.abs(exact)) + 0.5 * eps * scale
    assert np.all(np.abs(y - exact) <= bound), np.abs(y - exact).max()


def test_bf16_is_the_float32_result_rounded_to_nearest_even():
    x = _batch(2)
    bits = normalize(x, IMAGENET_MEAN, IMAGENET_STD, dtype="bf16")
    assert bits.dtype == np.uint16 and bits.shape == x.shape
    y32 = normalize(x, IMAGENET_MEAN, IMAGENET_STD).astype(np.float64)
    widened = (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    # nearest: within half a bf16 ulp (2^-8 relative) of the float32 value, and no other bf16 value closer
    ulp = np.exp2(np.floor(np.log2(np.maximum(np.abs(y32), 1e-30))) - 7)
    assert np.all(np.abs(widened - y32) <= ulp / 2)


def test_per_channel_values_by_hand():
    x = np.array([0, 51, 255], np.uint8).reshape(1, 1, 1, 3)
    y = normalize(x, (0.0, 0.1, 0.5), (1.0, 0.5, 0.25))
    assert np.allclose(y.ravel(), [0.0, (0.2 - 0.1) / 0.5, (1.0 - 0.5) / 0.25], rtol=1e-6, atol=1e-7)


def test_arguments_are_checked():
    with pytest.raises(TypeError, match=r"x must be a uint8 NHWC batch \(N, H, W, C\), got array of shape \(2, 3\)"):
        normalize(np.zeros((2, 3), np.uint8), IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(TypeError, match="dtype float32"):
        normalize(np.zeros((1, 2, 2, 3), np.float32), IMAGENET_MEAN, IMAGENET_STD)
    with pytest.raises(ValueError, match=r"one finite value per channel \(3\) and std > 0"):
        normalize(_batch(), (0.5, 0.5), (1, 1, 1))
    with pytest.raises(ValueError, match="std > 0"):
        normalize(_batch(), IMAGENET_MEAN, (1, 0, 1))
    with pytest.raises(ValueError, match=r"dtype must be one of \['float32', 'bf16'\], got 'fp16'"):
        normalize(_batch(), IMAGENET_MEAN, IMAGENET_STD, dtype="fp16")


@needs_emu
@pytest.mark.parametrize("dtype", ["float32", "bf16"])
@pytest.mark.parametrize("channels", [3, 1, 4])
def test_kernel_in_the_emulator_equals_the_reference_bitwise(dtype, channels):
    import fastconv as fc
    from fastconv.backends import emulated
    x = _batch(3, (2, 5, 7, channels))
    mean, std = np.linspace(0.3, 0.6, channels), np.linspace(0.2, 0.3, channels)
    report = fc.explain(lambda: emulated.ops().normalize_uint8(x, *coefficients(mean, std, channels), dtype))
    assert report.kernels == [{"float32": "fc::normalize_uint8_kernel<float>",
                               "bf16": "fc::normalize_uint8_kernel<__nv_bfloat16>"}[dtype]]
    want = normalize(x, mean, std, dtype)
    assert report.result.dtype == want.dtype and np.array_equal(report.result, want)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float32", "bf16"])
def test_device_kernel_equals_the_reference_bitwise(dtype):
    import cupy as cp
    x = _batch(1, (4, 9, 11, 3))
    ours = normalize(cp.asarray(x), IMAGENET_MEAN, IMAGENET_STD, dtype)
    assert np.array_equal(cp.asnumpy(ours), normalize(x, IMAGENET_MEAN, IMAGENET_STD, dtype))
