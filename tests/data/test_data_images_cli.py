"""`fastconv train --dataset folder:DIR | shards:PATTERN` end to end (tiny crops, in-process decoding),
the class mapping it saves, its argument errors, and `fastconv info` naming the decoder."""
import json

import numpy as np
import pytest
from image_sets import encode, make_folder, make_shards, smooth_image

import fastconv as fc
from fastconv.cli import main
from fastconv.data import load_dataset
from fastconv.data.images import CenterCrop, ImageFolder, normalize


def _train(*extra, out):
    return main(["train", "--image-size", "12", "--epochs", "1", "--batch-size", "4", "--workers", "0",
                 "--quiet", "--out", str(out), *extra])


def test_train_on_a_folder_writes_the_model_and_its_class_mapping(tmp_path, capsys):
    root = make_folder(tmp_path / "d", classes=("zz", "aa"), per_class=6, size=(20, 24))
    assert _train("--dataset", f"folder:{root}", "--val-split", "0.5", out=tmp_path / "run") == 0
    printed = capsys.readouterr().out
    assert "(6 train / 6 validation images, 2 classes, 12x12 crops)" in printed and "Pillow" in printed.split("decoder ", 1)[1]
    assert json.loads((tmp_path / "run" / "classes.json").read_text()) == {"aa": 0, "zz": 1}
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["val_samples"] == 6 and 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["skipped_images"] == 0
    model = fc.load_model(tmp_path / "run" / "model.fastconv")
    assert model.data_info["class_names"] == ["aa", "zz"] and model.input_shape[1:] == (12, 12, 3)


def _predict(model, data):
    """The saved model's class probabilities for encoded images, through the eval transform it was validated with."""
    info = model.data_info
    x = np.stack([CenterCrop(info["image_shape"][0])(d) for d in data])
    return model.predict(normalize(x, info["mean"], info["std"]), batch_size=len(data))


def test_a_zoo_resnet_trains_from_a_folder_and_its_saved_model_predicts_new_images(tmp_path, capsys):
    # item 6 of issue 17 at a CI-sized crop: a zoo ResNet from a folder through the CLI, then the saved model alone
    root = make_folder(tmp_path / "d", classes=("tulip", "daisy"), per_class=4, size=(40, 52))
    assert main(["train", "--dataset", f"folder:{root}", "--model", "resnet18", "--image-size", "32", "--epochs", "1",
                 "--batch-size", "4", "--val-split", "0.5", "--seed", "3", "--workers", "0", "--device", "cpu",
                 "--quiet", "--out", str(tmp_path / "run")]) == 0
    assert "model resnet18" in capsys.readouterr().out
    model = fc.load_model(tmp_path / "run" / "model.fastconv")
    assert model.data_info["class_names"] == ["daisy", "tulip"] and model.input_shape[1:] == (32, 32, 3)
    assert json.loads((tmp_path / "run" / "classes.json").read_text()) == {"daisy": 0, "tulip": 1}
    # the CLI validated its in-memory model on the same split: the saved one must score the same through the
    # eval transform (Resize + CenterCrop, the saved normalisation)
    _, val = ImageFolder(root).split(0.5, seed=3)
    probs = _predict(model, [open(p, "rb").read() for p in val.paths])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["model"] == "resnet18" and metrics["image_size"] == 32 and metrics["images_per_second"] > 0
    assert np.mean(probs.argmax(-1) == val.labels) == metrics["val_accuracy"]
    new = _predict(model, [encode(smooth_image(np.random.default_rng(9), 45, 61))])   # an image it never saw
    assert new.shape == (1, 2) and np.all(new >= 0) and abs(float(new.sum()) - 1) < 1e-5


def test_train_on_shards_with_a_validation_folder(tmp_path, capsys):
    pattern = make_shards(tmp_path / "s", np.arange(10) % 2, shards=2, size=(20, 24))
    val = make_folder(tmp_path / "v", classes=("0", "1"), per_class=2, size=(20, 24))
    assert _train("--dataset", f"shards:{pattern}", "--val", f"folder:{val}", out=tmp_path / "run") == 0
    assert "(10 train / 4 validation images, 2 classes" in capsys.readouterr().out


def test_train_argument_errors(tmp_path, capsys):
    pattern = make_shards(tmp_path / "s", [0, 1], shards=1)
    assert _train("--dataset", f"shards:{pattern}", out=tmp_path / "run") == 2
    assert "shards have no split: pass --val" in capsys.readouterr().err
    root = make_folder(tmp_path / "d", classes=("a", "b"), per_class=2)
    other = make_folder(tmp_path / "o", classes=("a", "c"), per_class=2)
    assert _train("--dataset", f"folder:{root}", "--val", f"folder:{other}", out=tmp_path / "run") == 2
    assert "--val has the classes ['a', 'c'], --dataset ['a', 'b']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _train("--dataset", f"folder:{root}", "--val-split", "1.5", out=tmp_path / "run")
    assert "--val-split must be in (0, 1)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="stream from disk"):
        load_dataset(f"folder:{root}")


def test_info_names_the_image_decoder_and_resize(capsys, monkeypatch):
    assert main(["info"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "Pillow" in next(l for l in lines if l.startswith("image decoder: "))
    assert next(l for l in lines if l.startswith("image resize: ")) == "image resize: fastconv._host (Pillow's arithmetic)"
    monkeypatch.setenv("FASTCONV_RESIZE", "pillow")
    assert main(["info"]) == 0
    assert "image resize: Pillow" in capsys.readouterr().out.splitlines()
