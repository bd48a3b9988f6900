"""fastconv.deterministic(True) on a GPU: every kernel, the backward passes included, is bitwise
reproducible run to run (the emulator's version of this check, under three thread orders, is in
tests/test_explain.py). Marked `gpu`; run by benchmarks/gpu_check.sh."""
import contextlib

import numpy as np
import pytest

import fastconv as fc
from fastconv.backends.device import cuda_available
from fastconv.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU")]


def _train(precision=None, optimizer="adam", steps=6, batch=64, seed=5):
    from fastconv.backends.device import using_device
    rng = np.random.default_rng(1)
    x = rng.standard_normal((steps * batch, 16, 16, 8)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    with _deterministic(), using_device("cuda"):
        fc.set_seed(seed)
        model = fc.Sequential([
            Conv2D(32, 3, padding="same", activation="relu", input_shape=(16, 16, 8)), MaxPooling2D(2),
            Conv2D(64, 3, strides=2, padding="same"), BatchNormalization(), Flatten(),
            Dropout(0.25), Dense(10, activation="softmax")])
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", precision=precision)
        history = model.fit(x, y, epochs=1, batch_size=batch, seed=seed, verbose=0)
    return [np.asarray(w) for w in model.get_weights()], history.history["loss"]


@contextlib.contextmanager
def _deterministic():
    old = fc.deterministic()
    fc.deterministic(True)
    try:
        yield
    finally:
        fc.deterministic(old)


@pytest.mark.parametrize("precision", [None, "bf16", "tf32"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_training_is_bitwise_reproducible_run_to_run(precision, optimizer):
    w1, loss1 = _train(precision, optimizer)
    w2, loss2 = _train(precision, optimizer)
    assert loss1 == loss2
    for a, b in zip(w1, w2):
        assert a.tobytes() == b.tobytes()


def test_split_k_wgrad_is_bitwise_reproducible():
    import cupy as cp

    from fastconv.backends import backend_for
    B = backend_for("cuda")
    rng = np.random.default_rng(3)
    # a shape whose wgrad reduction dimension (N*P*Q = 8*28*28) makes the plans split k
    x = cp.asarray(rng.standard_normal((8, 28, 28, 64)).astype(np.float32))
    dy = cp.asarray(rng.standard_normal((8, 28, 28, 64)).astype(np.float32))
    args = ((3, 3, 64, 64), (1, 1), ((1, 1), (1, 1)), (1, 1), 1)
    first = cp.asnumpy(B.conv2d_wgrad(x, dy, *args))
    for _ in range(3):
        assert cp.asnumpy(B.conv2d_wgrad(x, dy, *args)).tobytes() == first.tobytes()
