"""`fastconv train --dataset folder:DIR | shards:PATTERN` end to end (tiny crops, in-process decoding),
the class mapping it saves, its argument errors, and `fastconv info` naming the decoder."""
import json

import numpy as np
import pytest
from image_sets import make_folder, make_shards

import fastconv as fc
from fastconv.cli import main
from fastconv.data import load_dataset


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


def test_info_names_the_image_decoder(capsys):
    assert main(["info"]) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("image decoder: "))
    assert "Pillow" in line
