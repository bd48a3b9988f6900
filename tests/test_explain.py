"""fastconv.explain, the emulated backend as a whole-model path, and determinism.

Training through FASTCONV_BACKEND=emulated runs the very kernels and launch plans the GPU uses
(csrc/ in the CPU emulator) under the whole layer / autograd / optimizer stack, so this file is
where the GPU training path is checked end to end without a GPU."""
import numpy as np
import pytest

import fastconv as fc
import fastconv.functional as F
from fastconv.backends import backend_status

pytestmark = pytest.mark.skipif(not backend_status()["emulated"][0], reason="fastconv._emu is not built")


def _train(steps, backend, monkeypatch, order="forward", seed=0):
    if backend:
        monkeypatch.setenv("FASTCONV_BACKEND", backend)
    else:
        monkeypatch.delenv("FASTCONV_BACKEND", raising=False)
    monkeypatch.setenv("FASTCONV_EMU_ORDER", order)
    fc.set_seed(seed)
    model = fc.Sequential([fc.layers.Conv2D(8, 3, activation="relu", input_shape=(8, 8, 1)),
                           fc.layers.MaxPooling2D(2), fc.layers.Flatten(), fc.layers.Dropout(0.25),
                           fc.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x = rng.random((6, 8, 8, 1), dtype=np.float32)
    y = rng.integers(0, 3, 6)
    losses = [model.train_on_batch(x, y) for _ in range(steps)]
    return losses, model.get_weights()


def test_explain_names_the_reference_on_cpu():
    x = np.random.default_rng(0).random((2, 6, 6, 3), dtype=np.float32)
    w = np.random.default_rng(1).random((3, 3, 3, 4), dtype=np.float32)
    report = fc.explain(lambda: F.relu(F.conv2d(x, w)))
    assert report.ops == [("conv2d_fprop", "reference"), ("relu_fprop", "reference")]
    assert report.kernels == []
    assert "the tensors are on the CPU" in str(report)
    assert report.result.shape == (2, 4, 4, 4)


@pytest.mark.parametrize("channels,load", [(3, "scalar loads"), (4, "16-byte loads")])
def test_explain_names_kernels_and_reasons(channels, load, monkeypatch):
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    rng = np.random.default_rng(channels)
    x = rng.random((2, 6, 6, channels), dtype=np.float32)
    w = rng.random((3, 3, channels, 4), dtype=np.float32)
    report = fc.explain(lambda: F.conv2d(x, w))
    assert report.ops == [("conv2d_fprop", "emulated")]
    assert len(report.kernels) == 1 and report.kernels[0].startswith("fc::conv2d_fprop_implicit_gemm<")
    text = str(report)
    assert load in text and "32-bit index arithmetic is safe" in text


def test_training_through_the_kernels_tracks_the_reference(monkeypatch):
    ref_losses, ref_weights = _train(3, None, monkeypatch)
    emu_losses, emu_weights = _train(3, "emulated", monkeypatch)
    np.testing.assert_allclose(emu_losses, ref_losses, rtol=1e-5)
    for a, b in zip(emu_weights, ref_weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_kernels_are_bitwise_deterministic_under_shuffled_thread_orders(monkeypatch):
    fc.deterministic(True)
    try:
        losses_a, weights_a = _train(2, "emulated", monkeypatch, order="forward")
        losses_b, weights_b = _train(2, "emulated", monkeypatch, order="random")
        losses_c, weights_c = _train(2, "emulated", monkeypatch, order="reverse")
    finally:
        fc.deterministic(False)
    assert losses_a == losses_b == losses_c
    for a, b, c in zip(weights_a, weights_b, weights_c):
        assert np.array_equal(a, b) and np.array_equal(a, c)


def test_deterministic_flag_validates():
    assert fc.deterministic() is False
    with pytest.raises(TypeError, match="enabled must be True, False or None"):
        fc.deterministic("yes")
