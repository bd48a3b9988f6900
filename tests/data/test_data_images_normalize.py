"""normalize: uint8 NHWC -> float32 (x / 255 - mean) / std, the NumPy reference against a float64 run
with a derived bound, and the device kernel against the reference bit for bit."""
import numpy as np
import pytest

from fastconv.data.images import IMAGENET_MEAN, IMAGENET_STD, normalize
from fastconv.device import cuda_available


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


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU")
def test_device_kernel_equals_the_reference_bitwise():
    import cupy as cp
    x = _batch(1, (4, 9, 11, 3))
    ours = normalize(cp.asarray(x), IMAGENET_MEAN, IMAGENET_STD)
    assert ours.dtype == cp.float32
    assert np.array_equal(cp.asnumpy(ours), normalize(x, IMAGENET_MEAN, IMAGENET_STD))
