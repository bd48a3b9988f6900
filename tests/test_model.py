"""Sequential and functional models: the seed-model workflow, summary, saving, the zoo."""
import os

import numpy as np
import pytest

import fastconv as fc
from fastconv.layers import Add, BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D


def _blobs(n=96, seed=0):
    """Two classes of 8x8x1 images: bright top half or bright bottom half, with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.random((n, 8, 8, 1), dtype=np.float32) * 0.3
    x[y == 0, :4] += 0.7
    x[y == 1, 4:] += 0.7
    return x, y


def test_issue_example_runs_with_only_imports_changed():
    x_train, labels = _blobs()
    y_train = np.eye(10, dtype=np.float32)[labels]
    fc.set_seed(0)
    model = fc.Sequential([Conv2D(filters=64, kernel_size=(3, 3), activation='relu'),
                           MaxPooling2D(pool_size=(2, 2)), Flatten(), Dense(units=10, activation='softmax')])
    model.compile(optimizer='adam', loss='categorical_crossentropy', metrics=['accuracy'])
    history = model.fit(x_train, y_train, epochs=10, verbose=0)
    assert len(history.history["loss"]) == 10
    assert history.history["loss"][-1] < history.history["loss"][0] * 0.5
    assert history.history["accuracy"][-1] > 0.95
    probs = model.predict(x_train)
    assert probs.shape == (96, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    loss, acc = model.evaluate(x_train, y_train)
    assert acc > 0.95 and loss < history.history["loss"][0]


def test_sparse_labels_and_all_metrics():
    x, y = _blobs(64, seed=1)
    fc.set_seed(1)
    model = fc.models.seed_model((8, 8, 1), 2)
    model.compile(optimizer=fc.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "precision", "recall", "f1"])
    hist = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, verbose=0)
    for key in ("loss", "accuracy", "precision", "recall", "f1", "val_loss", "val_accuracy", "val_f1"):
        assert key in hist.history and len(hist.history[key]) == 3
    result = model.evaluate(x, y, return_dict=True)
    assert set(result) == {"loss", "accuracy", "precision", "recall", "f1"}


def test_fused_softmax_loss_equals_unfused_loss():
    x, y = _blobs(32, seed=2)
    onehot = np.eye(2, dtype=np.float32)[y]
    fc.set_seed(2)
    model = fc.models.seed_model((8, 8, 1), 2)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    fused = model.evaluate(x, onehot)
    probs = model.predict(x)
    manual = -np.mean(np.log(np.clip(probs[np.arange(32), y], 1e-7, 1)))
    np.testing.assert_allclose(fused, manual, rtol=1e-5)


def test_summary_lists_layers_shapes_and_params():
    model = fc.Sequential([Conv2D(64, 3, activation="relu", input_shape=(28, 28, 1)), MaxPooling2D(2),
                           Flatten(), Dense(10, activation="softmax")])
    text = model.summary(print_fn=None)
    assert "(None, 26, 26, 64)" in text and "(None, 13, 13, 64)" in text and "(None, 10816)" in text
    assert f"Total params: {640 + 108170:,}" in text


def _functional_residual():
    inputs = fc.Input((8, 8, 1))
    x = Conv2D(4, 3, padding="same", activation="relu")(inputs)
    y = Conv2D(4, 3, padding="same")(x)
    y = BatchNormalization()(y)
    x = Add()([x, y])
    x = Flatten()(MaxPooling2D(2)(x))
    x = Dropout(0.2)(x)
    return fc.Model(inputs, Dense(2, activation="softmax")(x))


def test_functional_model_trains_and_round_trips_through_save(tmp_path):
    x, y = _blobs(64, seed=3)
    fc.set_seed(3)
    model = _functional_residual()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "res.fastconv"
    model.save(path)
    loaded = fc.load_model(path)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.optimizer.iterations == model.optimizer.iterations
    for a, b in zip(loaded.optimizer.state_arrays().values(), model.optimizer.state_arrays().values()):
        np.testing.assert_array_equal(a, b)
    # training continues identically from the saved optimizer state
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_save_is_atomic_and_corrupt_files_are_reported(tmp_path, monkeypatch):
    x, y = _blobs(16)
    model = fc.models.seed_model((8, 8, 1), 2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path / "m.fastconv"
    model.save(path)
    good = path.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("simulated crash while writing")
    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.fastconv"]  # no temporary file left behind
    truncated = tmp_path / "t.fastconv"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        fc.load_model(truncated)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fc.load_model(tmp_path / "missing.fastconv")


@pytest.mark.parametrize("name,shape,classes,params", [
    ("seed", (28, 28, 1), 10, 640 + 108170),
    ("lenet5", (28, 28, 1), 10, None),
    ("vgg_small", (32, 32, 3), 10, None),
    ("resnet18", (32, 32, 3), 10, None),
    ("resnet50", (224, 224, 3), 1000, None),
])
def test_zoo_builds_with_expected_output_shape(name, shape, classes, params):
    model = fc.models.ZOO[name](input_shape=shape, num_classes=classes)
    model._ensure_built(shape)
    assert model.output_shape == (None, classes)
    if params:
        assert model.count_params() == params


def test_resnet_parameter_counts_match_the_published_architecture():
    # torchvision's resnet18/50 (same layers, no BN running stats counted) have 11,689,512 and 25,557,032
    # trainable parameters at 224x224 with 1000 classes.
    r18 = fc.models.resnet18((224, 224, 3), 1000)
    r50 = fc.models.resnet50((224, 224, 3), 1000)
    assert sum(t.size for t in r18.trainable_weights) == 11_689_512
    assert sum(t.size for t in r50.trainable_weights) == 25_557_032


def test_small_resnet18_forward_backward():
    fc.set_seed(4)
    model = fc.models.resnet18((16, 16, 3), 5, width=8)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(4).random((4, 16, 16, 3), dtype=np.float32)
    loss = model.train_on_batch(x, np.array([0, 1, 2, 3]))
    assert np.isfinite(loss)
    assert all(p.grad is not None for p in model.trainable_weights)


def test_callbacks_early_stopping_and_learning_rate_logger():
    x, y = _blobs(32, seed=5)
    fc.set_seed(5)
    model = fc.models.seed_model((8, 8, 1), 2)
    schedule = fc.schedules.StepDecay(0.01, step_size=2, gamma=0.5)   # 2 steps per epoch at batch 16
    model.compile(optimizer=fc.optimizers.SGD(schedule), loss="sparse_categorical_crossentropy")
    stop = fc.callbacks.EarlyStopping(monitor="loss", patience=1, min_delta=10.0)  # no epoch improves by 10
    hist = model.fit(x, y, epochs=10, batch_size=16, verbose=0, callbacks=[stop, fc.callbacks.LearningRateLogger()])
    assert len(hist.epoch) == 3 and stop.stopped_epoch == 2   # first epoch sets best; two more without gain
    np.testing.assert_allclose(hist.history["lr"], [0.005, 0.0025, 0.00125])
    with pytest.raises(ValueError, match="EarlyStopping monitors 'val_f1' but fit logged only"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[fc.callbacks.EarlyStopping(monitor="val_f1")])
