"""Start-up checks that every rank is about to train the same model on the same data.

A rank that loads another data set, builds a different model or resumes from another checkpoint
would not hang at once: collectives of equal sizes would just mix unrelated numbers. So before the
first step every rank gathers a fingerprint (weight shapes, optimizer, loss, data size and a digest
of the labels and of a strided sample of the inputs, batch size, seed, resume position) and any
difference is an error on every rank that names the field and the ranks' values.
"""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

SAMPLED_ROWS = 64   # rows of x hashed: catches another data set without reading all of it


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(np.ascontiguousarray(p).tobytes() if hasattr(p, "dtype") else json.dumps(p, default=str).encode())
    return h.hexdigest()[:16]


def fingerprint(model, x, y, **settings) -> dict:
    """x, y: in-memory arrays, or an ImageLoader with y None."""
    layers = [(type(layer).__name__, [(k, list(t.shape), str(t.dtype))
                                      for k, t in {**layer.params, **layer.state}.items()]) for layer in model.layers]
    optimizer = model.optimizer
    config = json.dumps(optimizer.get_config(), sort_keys=True, default=str)
    return {"model": _digest(layers), "optimizer": f"{type(optimizer).__name__} {config}",
            "optimizer state": f"{optimizer.iterations} steps, {len(optimizer.slots)} slot sets",
            "loss": model.loss.name, "metrics": [m.name for m in model.metrics],
            **(_arrays(x, y) if y is not None else _loader(x)), **settings}


def _arrays(x, y) -> dict:
    stride = max(1, len(x) // SAMPLED_ROWS)
    return {"samples": len(x), "sample shape": list(x.shape[1:]), "label shape": list(y.shape[1:]),
            "data": _digest(np.asarray(y), np.asarray(x[::stride]))}


def _loader(loader) -> dict:
    """An ImageLoader's data without reading an image: sample count, classes, the labels in source
    order (with the file names of a folder, or the shard files), and what shapes each batch."""
    source = loader.source
    if hasattr(source, "paths"):   # relative: the ranks of many nodes may mount the folder at other roots
        names = [os.path.relpath(p, source.root) for p in source.paths]
    else:
        names = [os.path.basename(p) for p in source.shards]
    return {"samples": loader.num_samples, "sample shape": list(loader.image_shape),
            "classes": loader.class_names, "data": _digest(np.asarray(source.labels), names),
            "loader": f"batch_size {loader.batch_size}, shuffle {loader.shuffle}, {loader.transform!r}, "
                      f"mean {loader.mean}, std {loader.std}"}


def check_agreement(group, mine: dict) -> None:
    """Raise ValueError on every rank when any rank's fingerprint differs from rank 0's."""
    group.barrier("the start-up barrier (every rank must reach fit)")
    everyone = group.all_gather_object(mine, "the start-up check of models and data")
    differing = [k for k in mine if any(f.get(k) != everyone[0].get(k) for f in everyone)]
    if differing:
        lines = [f"  {k}: " + ", ".join(f"rank {r} {f.get(k)!r}" for r, f in enumerate(everyone)) for k in differing]
        raise ValueError("the ranks of this data-parallel run disagree (every rank must build the same model, "
                         "load the same data and resume the same checkpoint):\n" + "\n".join(lines))
