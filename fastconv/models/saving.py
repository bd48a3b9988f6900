"""One-file model saving: architecture, weights and optimizer state in a NumPy .npz archive.

The file is written to a temporary file in the same folder, flushed to disk and renamed over the
target, so a crash at any moment leaves either the old file or the new one, never half of one.
Reading uses allow_pickle=False: a model file cannot run code. Loading a model (which needs the model
classes, and the model classes need save_model) is loading.py.
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .._atomic import atomic_open
from ..backends.device import to_device

FORMAT = "fastconv-model"
VERSION = 1


def model_config(model) -> dict:
    model._ensure_built(None)
    cfg = {"format": FORMAT, "version": VERSION, "architecture": model.architecture(), "compile": None}
    if getattr(model, "data_info", None):   # what the model was trained on: class names, input normalisation
        cfg["data"] = model.data_info
    if model.compiled:
        cfg["compile"] = {"optimizer": {"class": type(model.optimizer).__name__.lower(),
                                        "config": model.optimizer.get_config()},
                          "loss": {"name": model.loss.name, "config": model.loss.get_config()},
                          "metrics": [m.name for m in model.metrics], "precision": model.precision}
    return cfg


def atomic_savez(path, arrays: dict) -> None:
    """np.savez to `path`, replacing it whole or not at all (fastconv/_atomic.py)."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def model_arrays(model) -> dict:
    """Everything a model file holds, as named arrays."""
    arrays = {"__config__": np.frombuffer(json.dumps(model_config(model)).encode(), dtype=np.uint8)}
    for layer in model.layers:
        for key, t in {**layer.params, **layer.state}.items():
            arrays[f"w/{layer.name}/{key}"] = t.numpy()
    if model.compiled and model.optimizer.slots:
        for key, value in model.optimizer.state_arrays().items():
            arrays[f"opt/{key}"] = value
    return arrays


def save_model(model, path) -> None:
    atomic_savez(path, model_arrays(model))


def read_archive(path, what="model") -> tuple[dict, dict]:
    """(config, arrays) of a file written by atomic_savez, or a clear error."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{what} file {path!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        cfg = json.loads(arrays.pop("__config__").tobytes().decode())
    except (zipfile.BadZipFile, ValueError, KeyError, OSError, EOFError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} file {path!r} is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    return cfg, arrays


def restore_arrays(model, arrays, path) -> None:
    """Copy weights (and optimizer state, when the model is compiled) from `arrays` into `model`."""
    path = os.fspath(path)
    for layer in model.layers:
        for key, t in {**layer.params, **layer.state}.items():
            name = f"w/{layer.name}/{key}"
            if name not in arrays:
                raise ValueError(f"file {path!r} is missing weight {name!r} (a different architecture?)")
            if arrays[name].shape != t.shape:
                raise ValueError(f"weight {name!r} in {path!r} has shape {arrays[name].shape}, "
                                 f"the architecture needs {t.shape}")
            t.data[...] = to_device(arrays[name], t.device)
    opt_arrays = {k[4:]: v for k, v in arrays.items() if k.startswith("opt/")}
    if opt_arrays and model.compiled:
        model.optimizer.load_state_arrays(opt_arrays, model.trainable_weights)
