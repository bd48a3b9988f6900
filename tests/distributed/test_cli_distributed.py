"""`fastconv train --distributed` on two gloo ranks launched as torchrun launches them: rank 0 alone
writes the outputs, which say how many processes trained."""
import json
import os
import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("sklearn")   # the digits data ship with scikit-learn

from dist_launch import launch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
from image_sets import make_folder  # noqa: E402

pytestmark = pytest.mark.slow


def test_train_distributed_writes_once_from_rank_0(tmp_path):
    out = tmp_path / "run"
    ranks = launch(None, deadline_s=120, command=[sys.executable, "-m", "fastconv.cli", "train", "--distributed",
                                                  "--device", "cpu", "--epochs", "1", "--batch-size", "16",
                                                  "--quiet", "--out", str(out)])
    for r, rank in enumerate(ranks):
        assert rank.returncode == 0, f"rank {r}:\n{rank.stderr[-3000:]}"
    assert "2 processes" in ranks[0].stdout and ranks[1].stdout == ""
    result = json.loads((out / "metrics.json").read_text())
    assert result["processes"] == 2 and result["batch_size"] == 16
    assert result["test_accuracy"] > 0.5          # one epoch of digits with the seed model learns
    assert (out / "model.fastconv").exists()


def test_train_distributed_on_an_image_folder(tmp_path):
    out, root = tmp_path / "run", make_folder(tmp_path / "d", classes=("aa", "zz"), per_class=6, size=(20, 24))
    ranks = launch(None, deadline_s=120, command=[sys.executable, "-m", "fastconv.cli", "train", "--distributed",
                                                  "--device", "cpu", "--dataset", f"folder:{root}", "--val-split",
                                                  "0.5", "--image-size", "12", "--epochs", "1", "--batch-size", "2",
                                                  "--workers", "0", "--quiet", "--out", str(out)])
    for r, rank in enumerate(ranks):
        assert rank.returncode == 0, f"rank {r}:\n{rank.stderr[-3000:]}"
    assert "2 processes" in ranks[0].stdout and ranks[1].stdout == ""
    result = json.loads((out / "metrics.json").read_text())
    assert result["processes"] == 2 and result["train_samples"] == 6 and result["val_samples"] == 6
    assert json.loads((out / "classes.json").read_text()) == {"aa": 0, "zz": 1}
