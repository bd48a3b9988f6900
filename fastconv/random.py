"""One seeded source of randomness for initializers, dropout seeds, data shuffling and splits."""
from __future__ import annotations

import random
import sys

import numpy as np

from ._checks import check_int

_rng = np.random.default_rng()


def set_seed(seed: int) -> None:
    """Make a run reproducible, as keras.utils.set_random_seed does: weight initialization,
    Dropout seeds, fit's shuffling and every data split or batch order drawn without its own
    seed follow this generator. Python's `random`, NumPy's global generator and, when it is
    already imported, torch's (fastconv.torch modules initialize through it) are seeded too,
    so a script's own draws repeat as well."""
    global _rng
    seed = check_int(seed, "seed", 0)
    if seed > 2**32 - 1:     # NumPy's global generator takes 32-bit seeds
        raise ValueError(f"seed must be <= {2**32 - 1}, got {seed}")
    _rng = np.random.default_rng(seed)
    random.seed(seed)
    np.random.seed(seed)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def rng() -> np.random.Generator:
    return _rng


def next_seed() -> int:
    """A seed for a new stream (a Dropout layer, a fit, a shuffle) drawn from the generator."""
    return int(_rng.integers(0, 2**31 - 1))
