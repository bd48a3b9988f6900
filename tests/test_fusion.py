"""Layer fusion (fastconv/models/fusion.py, fastconv/functional/fused.py): which layer sequences fuse,
the switch, summary(), and fused == unfused — the op's values and gradients, and the losses of 10
training steps from one seed (bitwise on the reference backend, float32 tolerance through the
kernels in the emulator)."""
from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv.functional import conv2d, max_pool2d, relu
from fastconv.functional.fused import conv2d_bias_relu_maxpool
from fastconv.layers import Activation, Add, Conv2D, Dense, Flatten, MaxPooling2D
from fastconv.models import fusion
from fastconv.models.zoo import seed_model
from fastconv.tensor import Tensor


@pytest.fixture(autouse=True)
def fusion_on():
    fusion.set_fusion(True)
    yield
    fusion.set_fusion("auto")


def two_block_cnn(input_shape=(14, 14, 1)):
    """conv 'same' 14x14 -> pool 7x7 -> conv 'valid' 5x5 (odd: the pool drops a row and a column) -> 2x2."""
    return fc.Sequential([Conv2D(6, 3, padding="same", activation="relu", input_shape=input_shape), MaxPooling2D(2),
                          Conv2D(8, 3, strides=1, activation="relu"), MaxPooling2D((2, 2), strides=(2, 2)),
                          Flatten(), Dense(3, activation="softmax")], name="two_block_cnn")


def functional_cnn():
    inputs = fc.Input((10, 10, 2))
    a = Conv2D(4, 3, padding="same", activation="relu")(inputs)
    shared = Conv2D(4, 3, padding="same", activation="relu")(a)          # read twice: never fused
    b = Add()([MaxPooling2D(2)(shared), MaxPooling2D(2)(Conv2D(4, 1, padding="same")(shared))])
    c = MaxPooling2D(2)(Conv2D(4, 3, strides=2, padding="same", activation="relu")(a))   # fused (5x5 -> 2x2)
    x = Flatten()(Add()([MaxPooling2D(2)(b), c]))
    return fc.Model(inputs, Dense(3, activation="softmax")(x))


def losses(make, x, y, steps=10, fused=True, optimizer="adam"):
    fc.set_seed(7)
    model = make()
    model.fusion = fused
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return [model.train_on_batch(x[i % 2 * 8:(i % 2 + 1) * 8], y[i % 2 * 8:(i % 2 + 1) * 8]) for i in range(steps)]


def data(shape, classes=3, n=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, *shape)).astype(np.float32), rng.integers(0, classes, n)


# ---- which sequences fuse ----------------------------------------------------------------------------
def test_plan_finds_conv_relu_maxpool_and_nothing_else():
    m = two_block_cnn()
    m.build((14, 14, 1))
    groups = fusion.plan(m)
    assert [tuple(type(n.layer).__name__ for n in g.nodes) for g in groups] == [("Conv2D", "MaxPooling2D")] * 2
    f = functional_cnn()
    assert [g.nodes[0].layer.strides for g in fusion.plan(f)] == [(2, 2)]   # the shared conv's output is read twice
    not_fusable = fc.Sequential([Conv2D(4, 3, activation="tanh", input_shape=(12, 12, 1)), MaxPooling2D(2),
                                 Conv2D(4, 3, padding="same"), Activation("relu"), MaxPooling2D(2),
                                 Conv2D(4, 1, activation="relu"), MaxPooling2D(2, strides=1), Flatten()])
    not_fusable.build((12, 12, 1))
    assert fusion.plan(not_fusable) == []


def test_switches_and_summary_marker():
    m = seed_model()
    text = m.summary(print_fn=None)
    assert "fused: conv2d" in text and "(Conv2D) + " in text and "-> conv2d_bias_relu_maxpool" in text
    m.fusion = False
    assert fusion.plan(m) == [] and "fused:" not in m.summary(print_fn=None)
    m.fusion = None
    fusion.set_fusion(False)
    assert fusion.plan(m) == []
    fusion.set_fusion(True)
    assert len(fusion.plan(m)) == 1
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        fusion.set_fusion("yes")


def test_auto_fuses_on_kernel_backends_only(monkeypatch):
    fusion.set_fusion("auto")
    m = seed_model()
    m.build((28, 28, 1))
    assert fusion.plan(m) == []                  # the reference composes the same ops: nothing to gain
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    if fc.backends.backend_name("cpu") == "emulated":
        assert len(fusion.plan(m)) == 1
    m.fusion = True
    monkeypatch.delenv("FASTCONV_BACKEND")
    assert len(fusion.plan(m)) == 1


# ---- the op: fused == unfused ----------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_op_equals_unfused_chain_bitwise_on_the_reference(dtype, bias):
    rng = np.random.default_rng(1)
    xs, ws = rng.standard_normal((2, 9, 8, 3)).astype(dtype), rng.standard_normal((3, 2, 3, 5)).astype(dtype)
    bs = rng.standard_normal(5).astype(dtype) if bias else None
    g = rng.standard_normal((2, 3, 2, 5)).astype(dtype)   # conv output 7 x 5 (odd): pooled 3 x 2

    def run(fused):
        x, w = Tensor(xs.copy(), requires_grad=True), Tensor(ws.copy(), requires_grad=True)
        b = Tensor(bs.copy(), requires_grad=True) if bias else None
        kw = dict(stride=(1, 2), padding=((0, 0), (0, 2)))
        y = (conv2d_bias_relu_maxpool(x, w, b, **kw) if fused
             else max_pool2d(relu(conv2d(x, w, b, **kw)), 2))
        (y * Tensor(g)).sum().backward()
        return [y.numpy(), x.grad, w.grad] + ([b.grad] if bias else [])

    for got, want in zip(run(True), run(False)):
        np.testing.assert_array_equal(got, want)


def test_fused_op_through_the_kernels_in_the_emulator(monkeypatch):
    emulator = pytest.importorskip("fastconv.emulator")
    if not emulator.available():
        pytest.skip("fastconv._emu is not built")
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    rng = np.random.default_rng(2)
    xs, ws = rng.integers(-2, 3, (2, 7, 9, 4)).astype(np.float32), rng.integers(-2, 3, (3, 3, 4, 8)).astype(np.float32)
    bs, g = rng.integers(-2, 3, 8).astype(np.float32), rng.integers(-2, 3, (2, 3, 4, 8)).astype(np.float32)

    def run(fused):
        x, w, b = (Tensor(a.copy(), requires_grad=True) for a in (xs, ws, bs))
        y = conv2d_bias_relu_maxpool(x, w, b, padding="same") if fused else max_pool2d(relu(conv2d(x, w, b, padding="same")), 2)
        (y * Tensor(g)).sum().backward()
        return y.numpy(), x.grad, w.grad, b.grad

    for got, want in zip(run(True), run(False)):   # small integers: every sum is exact
        np.testing.assert_array_equal(got, want)


# ---- models: 10 training steps, fused vs unfused ----------------------------------------------------------
@pytest.mark.parametrize("make, shape", [(lambda: seed_model((12, 12, 1), 3), (12, 12, 1)),
                                         (two_block_cnn, (14, 14, 1)), (functional_cnn, (10, 10, 2))],
                         ids=["seed_model", "two_block_cnn", "functional"])
def test_ten_training_steps_same_losses_reference(make, shape):
    x, y = data(shape)
    fused, unfused = losses(make, x, y, fused=True), losses(make, x, y, fused=False)
    assert fused == unfused                      # the reference composes the very same arrays: bitwise
    assert len(set(fused)) == len(fused)         # the weights moved every step


def test_ten_training_steps_same_losses_through_the_kernels(monkeypatch):
    emulator = pytest.importorskip("fastconv.emulator")
    if not emulator.available():
        pytest.skip("fastconv._emu is not built")
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    x, y = data((14, 14, 1))
    fused, unfused = losses(two_block_cnn, x, y, optimizer="sgd"), losses(two_block_cnn, x, y, fused=False,
                                                                           optimizer="sgd")
    np.testing.assert_allclose(fused, unfused, rtol=1e-5, atol=1e-6)


def test_inference_uses_the_fused_op_and_matches(monkeypatch):
    calls = []
    real = fusion.FusedGroup.__call__
    monkeypatch.setattr(fusion.FusedGroup, "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    m = two_block_cnn()
    x, _ = data((14, 14, 1), n=4)
    fused = m.predict(x)
    assert len(calls) == 2
    m.fusion = False
    np.testing.assert_array_equal(fused, m.predict(x))
    assert len(calls) == 2
