"""fit / evaluate on an ImageLoader: uint8 batches normalised on the way in, a resume that replays the
interrupted run's batches exactly, and the class mapping saved with the model."""
import itertools
import types

import numpy as np
import pytest
from image_sets import make_folder

import fastconv as fc
from fastconv.callbacks import Callback
from fastconv.data.images import CenterCrop, ImageFolder, ImageLoader, RandomResizedCrop, normalize


def _model():
    fc.set_seed(0)
    model = fc.models.seed_model((12, 12, 3), 3)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _weights(model):
    return [w.numpy().copy() for w in model.weights]


class _StopAt(Callback):
    def __init__(self, step):
        super().__init__()
        self.step, self.calls = step, 0

    def on_train_batch_end(self, batch, logs=None):
        self.calls += 1
        if self.calls == self.step:
            raise KeyboardInterrupt("simulated crash")


def test_fit_on_a_loader_trains_and_resumes_exactly(tmp_path):
    root = make_folder(tmp_path / "d", per_class=6, size=(20, 24))
    loader = lambda: ImageLoader(ImageFolder(root), RandomResizedCrop(12), batch_size=4, seed=11)
    _model().save(tmp_path / "init.fastconv")   # three copies with the same layer names, for the checkpoint
    reference = fc.load_model(tmp_path / "init.fastconv")
    history = reference.fit(loader(), epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and all(np.isfinite(history.history["loss"]))
    crashed = fc.load_model(tmp_path / "init.fastconv")
    with pytest.raises(KeyboardInterrupt):   # 5 batches an epoch: crash in epoch 2, after the step-6 checkpoint
        crashed.fit(loader(), epochs=2, verbose=0, checkpoint_dir=str(tmp_path / "ckpt"), checkpoint_every=2,
                    callbacks=[_StopAt(8)])
    resumed = fc.load_model(tmp_path / "init.fastconv")
    fresh = ImageLoader(ImageFolder(root), RandomResizedCrop(12), batch_size=4, seed=0)   # seed restored from the checkpoint
    resumed.fit(fresh, epochs=2, verbose=0, checkpoint_dir=str(tmp_path / "ckpt"), resume=True)
    assert fresh.seed == 11
    for a, b in zip(_weights(reference), _weights(resumed)):
        assert np.array_equal(a, b)


def test_fit_feeds_the_normalised_batches(tmp_path, monkeypatch):
    root = make_folder(tmp_path / "d", per_class=2, size=(20, 24))
    loader = ImageLoader(ImageFolder(root), CenterCrop(12, resize=14), batch_size=6, shuffle=False,
                         mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    seen = []
    model = _model()
    original = type(model).train_on_batch
    monkeypatch.setattr(type(model), "train_on_batch", lambda self, x, y: (seen.append((x, y)), original(self, x, y))[1])
    model.fit(loader, epochs=1, verbose=0, graph=False)
    (x, y), = seen
    xb, yb = next(loader.batches(0))
    assert x.dtype == np.float32 and np.array_equal(x, normalize(xb, loader.mean, loader.std))
    assert np.array_equal(y, yb)


def test_evaluate_and_the_saved_class_mapping(tmp_path):
    root = make_folder(tmp_path / "d", classes=("owl", "bat", "cow"), per_class=3, size=(20, 24))
    val = ImageLoader(ImageFolder(root), CenterCrop(12, resize=14), batch_size=4, shuffle=False)
    model = _model()
    history = model.fit(ImageLoader(ImageFolder(root), RandomResizedCrop(12), batch_size=4, seed=0), epochs=1,
                        verbose=0, validation_data=val)
    result = model.evaluate(val, return_dict=True)
    assert set(result) == {"loss", "accuracy"} and np.isclose(result["loss"], history.history["val_loss"][0])
    x = np.concatenate([normalize(xb, val.mean, val.std) for xb, _ in val.batches(0)])
    y = np.concatenate([yb for _, yb in val.batches(0)])
    assert np.isclose(model.evaluate(x, y, batch_size=4, return_dict=True)["loss"], result["loss"], rtol=1e-6)
    model.save(tmp_path / "m.fastconv")
    info = fc.load_model(tmp_path / "m.fastconv").data_info
    assert info["class_names"] == ["bat", "cow", "owl"] and info["image_shape"] == [12, 12, 3]
    assert info["mean"] == list(val.mean)


def test_fit_on_a_loader_refuses_y_and_validation_split(tmp_path):
    loader = ImageLoader(ImageFolder(make_folder(tmp_path / "d", per_class=1)), RandomResizedCrop(12))
    with pytest.raises(ValueError, match="y must be None and validation_split 0"):
        _model().fit(loader, np.zeros(3), verbose=0)
    with pytest.raises(ValueError, match="y must be None and validation_split 0"):
        _model().fit(loader, validation_split=0.2, verbose=0)


@pytest.mark.gpu
@pytest.mark.skipif(not __import__("fastconv.backends.device", fromlist=["cuda_available"]).cuda_available(),
                    reason="needs a CUDA GPU")
def test_on_the_gpu_loader_batches_normalised_on_the_device_equal_host_normalised_ones(tmp_path):
    from fastconv.backends.device import using_device
    root = make_folder(tmp_path / "d", per_class=3, size=(20, 24))
    val = ImageLoader(ImageFolder(root), CenterCrop(12, resize=14), batch_size=4, shuffle=False)
    with using_device("cuda"):
        model = _model()
    model.fit(ImageLoader(ImageFolder(root), RandomResizedCrop(12), batch_size=4, seed=0), epochs=1, verbose=0)
    on_device = model.evaluate(val, return_dict=True)   # uint8 copied, normalised by csrc/ops/normalize.h
    x = np.concatenate([normalize(xb, val.mean, val.std) for xb, _ in val.batches(0)])
    y = np.concatenate([yb for _, yb in val.batches(0)])
    on_host = model.evaluate(x, y, batch_size=4, return_dict=True)   # NumPy-normalised, the same kernels after
    assert np.isfinite(on_device["loss"]) and on_device == on_host


def test_progress_shows_images_per_second_even_below_one(tmp_path, monkeypatch):
    # a 224x224 ResNet on the CPU trains at < 1 img/s: the bar must show the rate, not "img/s=0"
    import fastconv.models.training as training
    clock = itertools.count(0.0, 10.0)   # every reading 10 s later: 4 images a step, so 0.4 img/s or less
    monkeypatch.setattr(training, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    shown, progress = [], training._progress

    def recording_progress(*args, **kwargs):   # what the bar is given, whenever tqdm chooses to draw it
        bar = progress(*args, **kwargs)
        set_postfix = bar.set_postfix
        bar.set_postfix = lambda values, **kw: (shown.append(dict(values)), set_postfix(values, **kw))[1]
        return bar
    monkeypatch.setattr(training, "_progress", recording_progress)
    root = make_folder(tmp_path / "d", per_class=2, size=(20, 24))
    _model().fit(ImageLoader(ImageFolder(root), RandomResizedCrop(12), batch_size=4, seed=0), epochs=1, verbose=1)
    rates = [float(values["img/s"]) for values in shown if "img/s" in values]
    assert len(rates) == 2 and all(0 < r < 1 for r in rates), shown
