"""The fastconv command: train writes its outputs; info reports the compute paths."""
import json

import pytest

from fastconv.cli import main

pytest.importorskip("sklearn")


def test_train_writes_model_history_metrics_and_plots(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--quiet", "--out", str(out), "--seed", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test_accuracy", "precision", "recall", "f1", "train_seconds", "images_per_second", "device",
                "backend", "dataset", "epochs"):
        assert key in metrics
    assert metrics["dataset"] == "digits" and metrics["epochs"] == 2 and metrics["device"] == "cpu"
    assert 0.5 < metrics["test_accuracy"] <= 1.0  # two epochs already learn most digits
    history = json.loads((out / "history.json").read_text())
    assert len(history["loss"]) == 2 and history["loss"][1] < history["loss"][0]
    assert (out / "model.fastconv").stat().st_size > 0
    for png in ("training_curves.png", "confusion_matrix.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "F1 (macro)" in printed


def test_train_reports_bad_dataset(tmp_path, capsys):
    assert main(["train", "--dataset", f"mnist:{tmp_path / 'nowhere'}", "--quiet"]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_info_json_lists_compute_paths(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["compute_paths"]["reference"]["available"] is True
    for name in ("native", "jit", "emulated"):
        assert name in info["compute_paths"] and info["compute_paths"][name]["reason"]
