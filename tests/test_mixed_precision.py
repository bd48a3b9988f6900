"""Mixed-precision training: the dynamic loss scaler (fastconv/loss_scaling.py) on its own, and
model.compile(precision=...) / the global policy in train_on_batch and fit — fp32 master weights, fp16
with loss scaling (an overflowed step is skipped: weights, optimizer slots and step count bitwise
unchanged, the scale halves), bf16 without; the scale and the skipped steps in History, checkpoints
and the saved model; and bf16 / fp16 reaching fp32's accuracy on the digits (CPU reference)."""
from __future__ import annotations

import numpy as np
import pytest

import fastconv as fc
from fastconv import precision as policy
from fastconv.backends import backend_status
from fastconv.layers import Conv2D, Dense, Flatten, MaxPooling2D
from fastconv.loss_scaling import DynamicLossScaler
from fastconv.tensor import Tensor


@pytest.fixture(autouse=True)
def clean_policy(monkeypatch):
    monkeypatch.delenv(policy.ENV, raising=False)
    monkeypatch.setattr(policy, "_policy", None)


# ---- the scaler --------------------------------------------------------------------------------------
def test_defaults_growth_and_backoff():
    s = DynamicLossScaler()
    assert s.scale == 2.0 ** 15 and s.growth_interval == 2000
    for _ in range(1999):
        s.update(True)
    assert s.scale == 2.0 ** 15
    s.update(True)
    assert s.scale == 2.0 ** 16 and s.good_steps == 0
    s.update(False)
    assert s.scale == 2.0 ** 15 and s.skipped_steps == 1 and s.good_steps == 0


def test_an_overflow_resets_the_growth_count():
    s = DynamicLossScaler(initial_scale=8.0, growth_interval=3)
    s.update(True), s.update(True), s.update(False)
    assert s.scale == 4.0
    s.update(True), s.update(True)
    assert s.scale == 4.0           # only 2 good steps since the overflow
    s.update(True)
    assert s.scale == 8.0 and s.skipped_steps == 1


def test_scale_is_capped():
    s = DynamicLossScaler(initial_scale=4.0, growth_interval=1, max_scale=8.0)
    for _ in range(5):
        s.update(True)
    assert s.scale == 8.0


@pytest.mark.parametrize("kwargs,match", [({"initial_scale": 0}, "initial_scale must be > 0"),
                                          ({"backoff_factor": 1.0}, "backoff_factor must be < 1"),
                                          ({"growth_factor": 1.0}, "growth_factor must be > 1"),
                                          ({"growth_interval": 0}, "growth_interval must be >= 1"),
                                          ({"initial_scale": float("inf")}, "initial_scale must be finite")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynamicLossScaler(**kwargs)


def _params(rng, with_inf=False):
    ps = [Tensor(rng.standard_normal((3, 4)).astype(np.float32)), Tensor(rng.standard_normal(5).astype(np.float32)),
          Tensor(np.zeros(2, np.float32))]
    for p in ps[:2]:
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    ps[2].grad = None   # a parameter without a gradient is left out
    if with_inf:
        ps[1].grad[2] = np.inf
    return ps


def test_unscale_divides_finite_gradients_exactly():
    rng = np.random.default_rng(0)
    ps = _params(rng)
    before = [p.grad.copy() for p in ps[:2]]
    s = DynamicLossScaler(initial_scale=2.0 ** 10)
    assert s.unscale_and_check(ps)
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p.grad, b / np.float32(1024))   # a power of two: exact
    assert s.scale == 2.0 ** 10 and s.good_steps == 1


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_gradients_skip_and_halve(bad):
    rng = np.random.default_rng(1)
    ps = _params(rng, with_inf=True)
    ps[1].grad[2] = bad
    before = [p.grad.copy() for p in ps[:2]]
    s = DynamicLossScaler()
    assert not s.unscale_and_check(ps)
    for p, b in zip(ps, before):
        np.testing.assert_array_equal(p.grad, b)   # untouched (NaN == NaN here)
    assert s.scale == 2.0 ** 14 and s.skipped_steps == 1


# ---- training ------------------------------------------------------------------------------------------
def small_model(seed=0, **compile_kwargs):
    fc.set_seed(seed)
    model = fc.Sequential([Conv2D(8, 3, activation="relu", input_shape=(8, 8, 1), name="conv"), MaxPooling2D(2),
                           Flatten(), Dense(3, activation="softmax", name="dense")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", **compile_kwargs)
    return model


def small_data(seed=0, n=12):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, n)


def snapshot(model):
    slots = [{k: v.copy() for k, v in s.items()} for s in model.optimizer.slots]
    return model.get_weights(), slots, model.optimizer.iterations


def assert_same_state(a, b):
    (wa, sa, ia), (wb, sb, ib) = a, b
    assert ia == ib
    for x, y in zip(wa, wb):
        np.testing.assert_array_equal(x, y)
    assert len(sa) == len(sb)
    for x, y in zip(sa, sb):
        assert x.keys() == y.keys()
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_fp16_overflow_skips_the_step_and_halves_the_scale():
    model = small_model(precision="fp16")
    x, y = small_data()
    model.train_on_batch(x, y)                           # a normal step: Adam's slots exist now
    assert model.loss_scaler.scale == 2.0 ** 15 and model.loss_scaler.skipped_steps == 0
    before = snapshot(model)
    model.loss_scaler.scale = 2.0 ** 40                  # dy * 2^40 overflows fp16 (max 65504) in the backward
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)                             # the forward is fine; only the step is skipped
    assert_same_state(snapshot(model), before)
    assert model.loss_scaler.scale == 2.0 ** 39 and model.loss_scaler.skipped_steps == 1
    model.loss_scaler.scale = 2.0 ** 15
    model.train_on_batch(x, y)                           # and the next good step does update
    after = snapshot(model)
    assert after[2] == before[2] + 1
    assert not all(np.array_equal(a, b) for a, b in zip(after[0], before[0]))


def test_the_same_scale_under_fp32_does_not_overflow():
    """The skip above comes from fp16 rounding, not from the scale itself (fp32 grads hold 2^40 * dy)."""
    model = small_model(precision="fp16")
    x, y = small_data()
    model.train_on_batch(x, y)
    model.loss_scaler.scale = 2.0 ** 40
    with policy.using("fp32"):
        model.precision = None                           # now the global fp32 policy: no scaler is used
        before = snapshot(model)
        model.train_on_batch(x, y)
    assert snapshot(model)[2] == before[2] + 1


def test_fit_reports_the_scale_and_the_skipped_steps():
    model = small_model(precision="fp16")
    x, y = small_data(n=16)
    model.loss_scaler = DynamicLossScaler(initial_scale=2.0 ** 40, growth_interval=10**6)
    weights = model.get_weights()
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0, seed=0, shuffle=False)   # 2 steps, both overflow
    assert history.history["skipped_steps"] == [2]
    assert history.history["loss_scale"] == [2.0 ** 38]
    for a, b in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    assert model.optimizer.iterations == 0


def test_fit_grows_the_scale_after_good_steps(capsys):
    model = small_model(precision="fp16")
    x, y = small_data(n=16)
    model.loss_scaler = DynamicLossScaler(growth_interval=2)
    history = model.fit(x, y, epochs=2, batch_size=4, verbose=1, seed=0)   # 8 good steps: 4 doublings
    assert history.history["skipped_steps"] == [0, 0]
    assert history.history["loss_scale"] == [2.0 ** 17, 2.0 ** 19]
    assert "loss_scale" in capsys.readouterr().err   # the progress line shows it


def test_global_fp16_policy_trains_with_a_scaler_and_bf16_without():
    x, y = small_data()
    fc.set_precision("fp16")
    model = small_model()
    history = model.fit(x, y, epochs=1, batch_size=6, verbose=0, seed=0)
    assert model.loss_scaler is not None and "loss_scale" in history.history
    fc.set_precision("bf16")
    model = small_model()
    history = model.fit(x, y, epochs=1, batch_size=6, verbose=0, seed=0)
    assert model.loss_scaler is None and "loss_scale" not in history.history
    assert set(history.history) == {"loss"}


def test_master_weights_stay_float32_and_follow_the_policy_numerics():
    """bf16 training computes differently from fp32 (rounded operands) but keeps float32 weights."""
    x, y = small_data()
    runs = {}
    for p in ("fp32", "bf16"):
        model = small_model(precision=p)
        losses = [model.train_on_batch(x, y) for _ in range(3)]
        runs[p] = (losses, model.get_weights())
        assert all(w.dtype == np.float32 for w in model.get_weights())
    assert runs["fp32"][0][0] != runs["bf16"][0][0]
    np.testing.assert_allclose(runs["bf16"][0], runs["fp32"][0], rtol=2e-2)


def test_scaler_state_survives_a_checkpoint(tmp_path):
    x, y = small_data(n=16)
    model = small_model(precision="fp16")
    model.loss_scaler = DynamicLossScaler(growth_interval=3)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0, seed=0, checkpoint_dir=tmp_path)
    state = model.loss_scaler.state()
    assert state["scale"] == 2.0 ** 16 and state["good_steps"] == 1
    resumed = small_model(precision="fp16")
    resumed.fit(x, y, epochs=1, batch_size=4, verbose=0, seed=0, checkpoint_dir=tmp_path, resume=True)
    assert resumed.loss_scaler.state() == state


def test_compile_precision_is_saved(tmp_path):
    model = small_model(precision="bf16")
    model.save(tmp_path / "m.fastconv")
    assert fc.load_model(tmp_path / "m.fastconv").precision == "bf16"


@pytest.mark.skipif(not backend_status()["emulated"][0], reason="fastconv._emu is not built")
@pytest.mark.parametrize("prec", ["bf16", "fp16"])
def test_training_through_the_emulated_tensor_cores_tracks_the_reference(prec, monkeypatch):
    """Three steps of the same model under `prec`: the kernels (the tensor-core fused conv + pool and dense GEMMs,
    fallbacks named in explain) against the reference's rounding oracle."""
    def tc_model():   # C = 8 into the second conv and even dense sizes: the tensor-core plans apply
        fc.set_seed(0)
        model = fc.Sequential([Conv2D(8, 3, padding="same", activation="relu", input_shape=(6, 6, 1)),
                               Conv2D(8, 3, activation="relu"), MaxPooling2D(2), Flatten(),
                               Dense(4, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", precision=prec)
        return model

    rng = np.random.default_rng(3)
    x, y = rng.random((8, 6, 6, 1), dtype=np.float32), rng.integers(0, 4, 8)
    ref_model = tc_model()
    ref_losses = [ref_model.train_on_batch(x, y) for _ in range(3)]
    monkeypatch.setenv("FASTCONV_BACKEND", "emulated")
    emu_model = tc_model()
    report = fc.explain(lambda: [emu_model.train_on_batch(x, y) for _ in range(3)])
    assert any(k.startswith("fc::gemm_tensor_op<") for k in report.kernels)
    # the C = 8 conv + ReLU + pool runs fused on tensor cores (the first conv's C = 1 cannot)
    assert any(k.startswith("fc::conv2d_bias_relu_maxpool2x2_tensor_op<") for k in report.kernels)
    assert "C=1 is not a multiple of 8" in str(report)
    np.testing.assert_allclose(report.result, ref_losses, rtol=1e-4)
    for a, b in zip(emu_model.get_weights(), ref_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_bf16_and_fp16_reach_fp32_accuracy_on_the_digits():
    from fastconv.data import load_digits, to_categorical
    (x, y), (xt, yt) = load_digits()
    acc = {}
    for p in ("fp32", "bf16", "fp16"):
        fc.set_seed(0)
        model = fc.Sequential([Conv2D(16, 3, activation="relu"), MaxPooling2D(2), Flatten(),
                               Dense(10, activation="softmax")])
        model.compile(optimizer=fc.optimizers.Adam(0.01), loss="categorical_crossentropy", metrics=["accuracy"],
                      precision=p)
        model.fit(x, to_categorical(y, 10), epochs=3, batch_size=32, verbose=0, seed=0)
        acc[p] = model.evaluate(xt, to_categorical(yt, 10))[1]
    assert acc["fp32"] > 0.85, acc
    assert abs(acc["bf16"] - acc["fp32"]) < 0.05 and abs(acc["fp16"] - acc["fp32"]) < 0.05, acc


@pytest.mark.gpu
@pytest.mark.parametrize("prec", ["tf32", "bf16", "fp16"])
def test_gpu_mixed_precision_training_tracks_the_reference(prec):
    """On a GPU (skipped without one): three steps of a model whose conv and dense layers take the
    tensor-core plans, against the CPU reference's rounding oracle under the same policy."""
    from fastconv.backends.device import cuda_available
    if not cuda_available():
        pytest.skip("needs an NVIDIA GPU")

    def build():
        fc.set_seed(0)
        model = fc.Sequential([Conv2D(16, 3, padding="same", activation="relu", input_shape=(8, 8, 8)),
                               MaxPooling2D(2), Flatten(), Dense(16, activation="relu"),
                               Dense(4, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", precision=prec)
        return model

    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((16, 8, 8, 8)).astype(np.float32), rng.integers(0, 4, 16)
    cpu = build()
    cpu_losses = [cpu.train_on_batch(x, y) for _ in range(3)]
    with fc.using_device("cuda"):
        gpu = build()
    assert gpu.device == "cuda"
    report = fc.explain(lambda: [gpu.train_on_batch(x, y) for _ in range(3)])
    assert any(k.startswith("fc::conv2d_fprop_tensor_op<") for k in report.kernels), report.kernels
    assert any(k.startswith("fc::gemm_tensor_op<") for k in report.kernels), report.kernels
    np.testing.assert_allclose(report.result, cpu_losses, rtol=1e-3)
    for a, b in zip(gpu.get_weights(), cpu.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-3)
