"""Training checkpoints: the model file plus the training position, in one atomically written file.

A checkpoint is only ever replaced by a complete newer one (temporary file, fsync, rename), so a
kill at any moment leaves the last good checkpoint in place.
"""
from __future__ import annotations

import json
import os

import numpy as np

from .. import random as fc_random
from .saving import atomic_savez, model_arrays, read_archive, restore_arrays

FILENAME = "checkpoint.fastconv"


class Checkpoint:
    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, FILENAME)

    def exists(self) -> bool:
        return os.path.exists(self.path)

    def save(self, model, train_state: dict) -> None:
        arrays = model_arrays(model)
        state = {**train_state, "rng": fc_random.rng().bit_generator.state}
        arrays["__train_state__"] = np.frombuffer(json.dumps(state, default=_jsonable).encode(), dtype=np.uint8)
        atomic_savez(self.path, arrays)

    def restore(self, model) -> dict:
        """Loads weights and optimizer state into `model` (same architecture); returns the train state."""
        cfg, arrays = read_archive(self.path, what="checkpoint")
        if "__train_state__" not in arrays:
            raise ValueError(f"checkpoint file {self.path!r} has no training state")
        state = json.loads(arrays.pop("__train_state__").tobytes().decode())
        restore_arrays(model, arrays, self.path)
        fc_random.rng().bit_generator.state = state.pop("rng")
        return state


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")
