"""One seeded source of randomness for initializers, dropout seeds and data shuffling."""
from __future__ import annotations

import numpy as np

_rng = np.random.default_rng()


def set_seed(seed: int) -> None:
    """Make weight initialization, dropout masks and shuffling reproducible."""
    global _rng
    _rng = np.random.default_rng(seed)


def rng() -> np.random.Generator:
    return _rng


def next_seed() -> int:
    return int(_rng.integers(0, 2**31 - 1))
