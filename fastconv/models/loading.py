"""Loading a model file written by saving.py: the architecture rebuilt, compiled as it was, weights and
optimizer state restored."""
from __future__ import annotations

import os

from ..losses import LOSSES
from ..metrics import get_metric
from ..optimizers import OPTIMIZERS
from .graph import model_from_architecture
from .saving import FORMAT, VERSION, read_archive, restore_arrays


def model_from_config(cfg):
    if cfg.get("format") != FORMAT:
        raise ValueError(f"not a fastconv model file (format {cfg.get('format')!r})")
    if cfg.get("version", 0) > VERSION:
        raise ValueError(f"model file version {cfg['version']} is newer than this fastconv understands ({VERSION})")
    model = model_from_architecture(cfg["architecture"])
    if cfg.get("data"):
        model.data_info = cfg["data"]
    comp = cfg.get("compile")
    if comp:
        opt = OPTIMIZERS[comp["optimizer"]["class"]].from_config(comp["optimizer"]["config"])
        loss = LOSSES[comp["loss"]["name"]](**comp["loss"]["config"])
        model.compile(optimizer=opt, loss=loss, metrics=[get_metric(m) for m in comp["metrics"]],
                      precision=comp.get("precision"))
    return model


def load_model(path):
    cfg, arrays = read_archive(path)
    try:
        model = model_from_config(cfg)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"model file {os.fspath(path)!r} has an invalid architecture ({exc!r})") from None
    restore_arrays(model, arrays, path)
    return model
