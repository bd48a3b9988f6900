"""Weight initializers with Keras' names and fan rules (conv kernels: fan = R*S*C_in / R*S*K)."""
from __future__ import annotations

import numpy as np

from .random import rng


def _fans(shape):
    if len(shape) == 2:
        return shape[0], shape[1]
    if len(shape) == 4:
        receptive = shape[0] * shape[1]
        return receptive * shape[2], receptive * shape[3]
    size = int(np.prod(shape))
    return size, size


def glorot_uniform(shape, dtype=np.float32):
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng().uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(shape, dtype=np.float32):
    """Truncated normal (redrawn beyond two standard deviations), std sqrt(2 / fan_in), as Keras."""
    fan_in, _ = _fans(shape)
    std = np.sqrt(2.0 / fan_in) / 0.87962566103423978  # keeps the variance after truncation
    values = rng().standard_normal(size=shape)
    bad = np.abs(values) > 2
    while bad.any():
        values[bad] = rng().standard_normal(size=int(bad.sum()))
        bad = np.abs(values) > 2
    return (values * std).astype(dtype)


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def ones(shape, dtype=np.float32):
    return np.ones(shape, dtype)


INITIALIZERS = {"glorot_uniform": glorot_uniform, "he_normal": he_normal, "zeros": zeros, "ones": ones}


def get_initializer(identifier):
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in INITIALIZERS:
        return INITIALIZERS[identifier.lower()]
    raise ValueError(f"initializer must be a callable or one of {sorted(INITIALIZERS)}, got {identifier!r}")
