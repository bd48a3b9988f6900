"""Layer fusion (fastconv/models/fusion.py, fastconv/functional/fused.py): which layer sequences fuse,
the switch, summary(), and fused == unfused — the op's values and gradients, and the losses of 10
training steps from one seed (bitwise on the reference backend, float32 tolerance through the
kernels in the emulator)."""
from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv.functional import conv2d, max_pool2d, relu
from fastconv.functional import batch_norm
from fastconv.functional.fused import batch_norm_relu, conv2d_bias_relu_maxpool
from fastconv.layers import Activation, Add, BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D, ReLU
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
                                 Conv2D(4, 3, padding="same"), ReLU(negative_slope=0.1), MaxPooling2D(2),
                                 Conv2D(4, 1, activation="relu"), MaxPooling2D(2, strides=1), Flatten()])
    not_fusable.build((12, 12, 1))
    assert fusion.plan(not_fusable) == []


def new_patterns_cnn(input_shape=(12, 12, 2)):
    """Conv -> Activation('relu') -> 2x2/2; Conv -> ReLU() -> 3x3/2 'same'; Conv(relu) -> 3x3/2 'valid';
    BatchNormalization -> Activation('relu') on an image and ReLU() on a Dense output."""
    return fc.Sequential([Conv2D(4, 3, padding="same", input_shape=input_shape), Activation("relu"), MaxPooling2D(2),
                          Conv2D(4, 3, padding="same"), ReLU(), MaxPooling2D(3, strides=2, padding="same"),
                          BatchNormalization(), Activation("relu"),
                          Conv2D(6, 1, activation="relu"), MaxPooling2D(3, strides=2),
                          Flatten(), Dense(6), BatchNormalization(), ReLU(), Dense(3, activation="softmax")],
                         name="new_patterns_cnn")


def kinds(groups):
    return [(g.op, tuple(type(n.layer).__name__ for n in g.nodes)) for g in groups]


def test_plan_fuses_activation_relu_layers_3x3_pools_and_batchnorm_relu():
    m = new_patterns_cnn()
    m.build((12, 12, 2))
    assert kinds(fusion.plan(m)) == [
        ("conv2d_bias_relu_maxpool", ("Conv2D", "Activation", "MaxPooling2D")),
        ("conv2d_bias_relu_maxpool", ("Conv2D", "ReLU", "MaxPooling2D")),
        ("batch_norm_relu", ("BatchNormalization", "Activation")),
        ("conv2d_bias_relu_maxpool", ("Conv2D", "MaxPooling2D")),
        ("batch_norm_relu", ("BatchNormalization", "ReLU"))]
    text = m.summary(print_fn=None)
    assert "(Conv2D) + activation" in text and "-> batch_norm_relu" in text


def test_plan_leaves_alone_what_must_not_fuse():
    def seq(*layers, shape=(12, 12, 2)):
        m = fc.Sequential(list(layers))
        m.build(shape)
        return fusion.plan(m)

    assert seq(Conv2D(4, 3), ReLU(negative_slope=0.1), MaxPooling2D(2)) == []            # leaky, not ReLU
    assert seq(Conv2D(4, 3, activation="relu"), Activation("relu"), MaxPooling2D(2)) == []   # relu twice
    assert seq(Conv2D(4, 3, activation="relu"), MaxPooling2D(3, strides=1)) == []           # 3x3/1: no kernel
    assert seq(Conv2D(4, 3, activation="relu"), MaxPooling2D(3, strides=3)) == []
    assert seq(Conv2D(4, 3), Activation("tanh"), MaxPooling2D(2)) == []
    assert seq(BatchNormalization(), Activation("tanh")) == []
    assert seq(BatchNormalization(), ReLU(negative_slope=0.2)) == []
    # Values read twice must be materialized: the conv output, the ReLU output, the batch norm output.
    inputs = fc.Input((8, 8, 2))
    z = Conv2D(2, 3, padding="same")(inputs)
    a = Activation("relu")(z)
    b = Conv2D(2, 3, padding="same")(inputs)
    r = ReLU()(b)
    n = BatchNormalization()(inputs)
    out = Add()([MaxPooling2D(2)(a), MaxPooling2D(2)(z), MaxPooling2D(2)(r), MaxPooling2D(2)(ReLU()(n)),
                 MaxPooling2D(2)(r), MaxPooling2D(2)(n)])
    f = fc.Model(inputs, Flatten()(out))
    assert fusion.plan(f) == []
    inputs = fc.Input((8, 8, 2))
    n = BatchNormalization()(inputs)
    f = fc.Model(inputs, n)                         # the batch norm is the output: nothing to fuse it with
    assert fusion.plan(f) == []


def test_explain_says_why_a_pool_or_batch_norm_was_not_fused():
    m = fc.Sequential([Conv2D(2, 3, activation="relu", input_shape=(8, 8, 1)), MaxPooling2D(3, strides=1),
                       BatchNormalization(), Flatten()])
    inputs = fc.Input((8, 8, 1))
    n = BatchNormalization()(inputs)
    f = fc.Model(inputs, Add()([ReLU()(n), n]))
    x = np.ones((1, 8, 8, 1), np.float32)
    text = str(fc.explain(lambda: m.predict(x))) + str(fc.explain(lambda: f.predict(x)))
    assert "the fused kernels take 2x2/2 'valid' or 3x3/2 pools, got pool_size (3, 3) strides (1, 1)" in text
    assert "not fused: the batch norm output is read elsewhere" in text


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


@pytest.mark.parametrize("pool_padding", ["valid", "same", 1])
def test_fused_3x3_pool_op_equals_unfused_chain(pool_padding, monkeypatch):
    """Bitwise on the reference (random floats) and through the kernels in the emulator (small integers)."""
    rng = np.random.default_rng(3)
    for backend in ("reference", "emulated"):
        if backend == "emulated":
            emulator = pytest.importorskip("fastconv.emulator")
            if not emulator.available():
                pytest.skip("fastconv._emu is not built")
            monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
            draw = lambda shape: rng.integers(-2, 3, shape).astype(np.float32)   # noqa: E731
        else:
            draw = lambda shape: rng.standard_normal(shape).astype(np.float32)   # noqa: E731
        xs, ws, bs = draw((2, 9, 10, 3)), draw((3, 3, 3, 5)), draw(5)   # conv output 9 x 10 ('same')

        def run(fused):
            x, w, b = (Tensor(a.copy(), requires_grad=True) for a in (xs, ws, bs))
            if fused:
                y = conv2d_bias_relu_maxpool(x, w, b, padding="same", pool_size=3, strides=2, pool_padding=pool_padding)
            else:
                y = max_pool2d(relu(conv2d(x, w, b, padding="same")), 3, 2, pool_padding)
            (y * Tensor(np.arange(y.size, dtype=np.float32).reshape(y.shape) % 5 - 2)).sum().backward()
            return y.numpy(), x.grad, w.grad, b.grad

        for got, want in zip(run(True), run(False)):
            np.testing.assert_array_equal(got, want)


def test_fused_op_with_a_pool_the_kernels_do_not_take_runs_unfused_and_says_so(monkeypatch):
    emulator = pytest.importorskip("fastconv.emulator")
    if not emulator.available():
        pytest.skip("fastconv._emu is not built")
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    rng = np.random.default_rng(6)
    xs, ws, bs = (rng.integers(-2, 3, s).astype(np.float32) for s in ((1, 7, 7, 2), (2, 2, 2, 3), (3,)))
    report = fc.explain(lambda: conv2d_bias_relu_maxpool(Tensor(xs), Tensor(ws), Tensor(bs), pool_size=3, strides=1))
    assert "conv2d -> relu -> max_pool2d run unfused" in str(report)
    assert not any("conv2d_bias_relu_maxpool" in k for k in report.kernels)
    assert any("max_pool2d_fprop" in k for k in report.kernels)
    want = max_pool2d(relu(conv2d(Tensor(xs), Tensor(ws), Tensor(bs))), 3, 1)
    np.testing.assert_array_equal(report.result.numpy(), want.numpy())


@pytest.mark.parametrize("training", [True, False], ids=["train", "infer"])
def test_fused_batch_norm_relu_equals_unfused_chain(training, monkeypatch):
    """Values, gradients and running statistics: bitwise on the reference; float32 tolerance in the emulator."""
    rng = np.random.default_rng(4)
    xs = (rng.standard_normal((3, 4, 5, 6)) * 2 + 0.5).astype(np.float32)
    gs, bs, g = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32), \
        rng.standard_normal((3, 4, 5, 6)).astype(np.float32)

    def run(fused):
        x, gamma, beta = (Tensor(a.copy(), requires_grad=True) for a in (xs, gs, bs))
        mean, var = Tensor(np.full(6, 0.1, np.float32)), Tensor(np.full(6, 2.0, np.float32))
        args = (x, gamma, beta, mean, var, training, 0.9, 1e-3)
        y = batch_norm_relu(*args) if fused else relu(batch_norm(*args))
        (y * Tensor(g)).sum().backward()
        return y.numpy(), x.grad, gamma.grad, beta.grad, mean.numpy(), var.numpy()

    for got, want in zip(run(True), run(False)):
        np.testing.assert_array_equal(got, want)
    emulator = pytest.importorskip("fastconv.emulator")
    if not emulator.available():
        pytest.skip("fastconv._emu is not built")
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    ref_values = run(False)
    report = fc.explain(lambda: run(True))
    assert any("batchnorm_relu" in k for k in report.kernels)
    assert not any("activation_fprop_kernel" in k for k in report.kernels)   # ReLU inside the normalize pass
    if training:   # the ReLU mask folded into batch norm's backward (inference: a ReLU mask, then the affine grads)
        assert not any("activation_bprop_kernel" in k for k in report.kernels)
    for got, want in zip(report.result, ref_values):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ---- softmax + cross-entropy -------------------------------------------------------------------------------
def test_softmax_categorical_crossentropy_trains_from_logits_with_the_fused_kernels(monkeypatch):
    m = fc.Sequential([Flatten(input_shape=(3, 3, 2)), Dense(4, activation="softmax")])
    assert fusion.loss_lines(m) == []                      # not compiled yet
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    assert "softmax + CategoricalCrossentropy -> softmax_cross_entropy" in m.summary(print_fn=None)
    other = fc.Sequential([Flatten(input_shape=(3, 3, 2)), Dense(4, activation="softmax")])
    other.compile(optimizer="sgd", loss="mse")
    assert fusion.loss_lines(other) == []
    emulator = pytest.importorskip("fastconv.emulator")
    if not emulator.available():
        pytest.skip("fastconv._emu is not built")
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    fc.set_seed(1)
    m = fc.Sequential([Flatten(input_shape=(3, 3, 2)), Dense(4, activation="softmax")])
    m.compile(optimizer="sgd", loss="categorical_crossentropy")
    x, labels = data((3, 3, 2), classes=4, n=8)
    y = np.eye(4, dtype=np.float32)[labels]
    report = fc.explain(lambda: m.train_on_batch(x, y))
    names = [k.split("<")[0] for k in report.kernels]
    assert "fc::softmax_xent_fprop_rows" in names and "fc::softmax_xent_bprop_rows" in names
    assert "fc::softmax_fprop_rows" not in names and "fc::cross_entropy_fprop_rows" not in names


# ---- models: 10 training steps, fused vs unfused ----------------------------------------------------------
@pytest.mark.parametrize("make, shape", [(lambda: seed_model((12, 12, 1), 3), (12, 12, 1)),
                                         (two_block_cnn, (14, 14, 1)), (functional_cnn, (10, 10, 2)),
                                         (new_patterns_cnn, (12, 12, 2))],
                         ids=["seed_model", "two_block_cnn", "functional", "new_patterns"])
def test_ten_training_steps_same_losses_reference(make, shape):
    x, y = data(shape)
    fused, unfused = losses(make, x, y, fused=True), losses(make, x, y, fused=False)
    assert fused == unfused                      # the reference composes the very same arrays: bitwise
    assert len(set(fused)) == len(fused)         # the weights moved every step


def test_ten_training_steps_new_patterns_same_losses_through_the_kernels(monkeypatch):
    """Conv -> ReLU layers -> 2x2 and 3x3/2 pools, BatchNormalization -> ReLU, in the emulator."""
    emulator = pytest.importorskip("fastconv.emulator")
    if not emulator.available():
        pytest.skip("fastconv._emu is not built")
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    make = lambda: new_patterns_cnn((10, 10, 2))   # noqa: E731  (tiny: the emulator runs a fiber per thread)
    x, y = data((10, 10, 2))
    report = fc.explain(lambda: losses(make, x, y, optimizer="sgd"))
    fused = report.result
    assert any("maxpool3x3s2_fprop" in k for k in report.kernels)
    assert any("batchnorm_relu_apply_kernel" in k for k in report.kernels)
    unfused = losses(make, x, y, fused=False, optimizer="sgd")
    np.testing.assert_allclose(fused, unfused, rtol=1e-5, atol=1e-6)
    assert len(set(fused)) == len(fused)


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
