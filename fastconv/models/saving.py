"""One-file model saving: architecture, weights and optimizer state in a NumPy .npz archive.

The file is written to a temporary file in the same folder, flushed to disk and renamed over the
target, so a crash at any moment leaves either the old file or the new one, never half of one.
Loading uses allow_pickle=False: a model file cannot run code.
"""
from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from .. import layers as L
from .._atomic import atomic_open
from ..device import to_device
from ..losses import LOSSES
from ..metrics import get_metric
from ..optimizers import OPTIMIZERS

FORMAT = "fastconv-model"
VERSION = 1


def _layer_entry(layer):
    return {"class": type(layer).__name__, "config": layer.get_config()}


def model_config(model) -> dict:
    from .graph import Sequential
    model._ensure_built(None)
    if isinstance(model, Sequential):
        arch = {"class": "Sequential", "name": model.name, "input_shape": list(model.input_shape[1:]),
                "layers": [_layer_entry(l) for l in model.layers]}
    else:
        layers = model.layers
        index = {id(n): i for i, n in enumerate(model._nodes)}
        arch = {"class": "Model", "name": model.name, "layers": [_layer_entry(l) for l in layers],
                "nodes": [{"layer": layers.index(n.layer), "inputs": [index[id(i)] for i in n.inputs]}
                          for n in model._nodes],
                "output": index[id(model._output)]}
    cfg = {"format": FORMAT, "version": VERSION, "architecture": arch, "compile": None}
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


def _make_layer(entry):
    cls = L.LAYER_CLASSES.get(entry["class"])
    if cls is None:
        raise ValueError(f"unknown layer class {entry['class']!r} in the model file")
    return cls.from_config(entry["config"])


def model_from_config(cfg):
    from .graph import Model, Sequential
    if cfg.get("format") != FORMAT:
        raise ValueError(f"not a fastconv model file (format {cfg.get('format')!r})")
    if cfg.get("version", 0) > VERSION:
        raise ValueError(f"model file version {cfg['version']} is newer than this fastconv understands ({VERSION})")
    arch = cfg["architecture"]
    if arch["class"] == "Sequential":
        model = Sequential([_make_layer(e) for e in arch["layers"]], name=arch["name"])
        model.build(tuple(arch["input_shape"]))
    else:
        layers = [_make_layer(e) for e in arch["layers"]]
        tensors = []
        for node in arch["nodes"]:
            layer = layers[node["layer"]]
            if isinstance(layer, L.InputLayer):
                t = L.base.SymbolicTensor(layer.shape, layer)
                layer.built = True
            else:
                ins = [tensors[i] for i in node["inputs"]]
                t = layer(ins if len(ins) > 1 else ins[0])
            tensors.append(t)
        model = Model(tensors[0], tensors[arch["output"]], name=arch["name"])
    if cfg.get("data"):
        model.data_info = cfg["data"]
    comp = cfg.get("compile")
    if comp:
        opt = OPTIMIZERS[comp["optimizer"]["class"]].from_config(comp["optimizer"]["config"])
        loss = LOSSES[comp["loss"]["name"]](**comp["loss"]["config"])
        model.compile(optimizer=opt, loss=loss, metrics=[get_metric(m) for m in comp["metrics"]],
                      precision=comp.get("precision"))
    return model


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


def load_model(path):
    cfg, arrays = read_archive(path)
    try:
        model = model_from_config(cfg)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"model file {os.fspath(path)!r} has an invalid architecture ({exc!r})") from None
    restore_arrays(model, arrays, path)
    return model
