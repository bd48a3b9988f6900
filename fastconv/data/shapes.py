"""Synthetic coloured shapes: a data set that needs no download and no scikit-learn.

Each image is one shape at a random position and size, in a random colour on a random background
colour, plus Gaussian noise. Colour and position carry no class information, so a model has to
learn the outline. Masks are computed for a whole batch at once from coordinate grids.
"""
from __future__ import annotations

import numpy as np

from .._checks import _describe, check_float, check_int


# Each mask takes coordinates normalised to the shape's box: u (across) and v (down) are in [-1, 1]
# on the shape's extent, so one formula serves every position and size.
def _circle(u, v):
    return u * u + v * v <= 1.0


def _ring(u, v):
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= 0.55**2)


def _square(u, v):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.85  # a bit smaller than the circle: similar area


def _diamond(u, v):
    return np.abs(u) + np.abs(v) <= 1.0


def _triangle(u, v):
    # apex at the top (v = -1), base at v = 0.85 with half-width 1
    return (v <= 0.85) & (1.85 * np.abs(u) <= v + 1.0)


def _cross(u, v):
    au, av = np.abs(u), np.abs(v)
    return (np.minimum(au, av) <= 0.3) & (np.maximum(au, av) <= 1.0)


SHAPE_MASKS = {"circle": _circle, "square": _square, "triangle": _triangle, "cross": _cross,
               "ring": _ring, "diamond": _diamond}
DEFAULT_CLASSES = ("circle", "square", "triangle", "cross", "ring")
_CHUNK = 2048  # images per vectorised step: bounds the temporary (chunk, size, size) arrays


def _check_classes(classes) -> tuple[str, ...]:
    if isinstance(classes, str) or not isinstance(classes, (tuple, list)):
        raise TypeError(f"classes must be a tuple of shape names, got {_describe(classes)}")
    unknown = [c for c in classes if c not in SHAPE_MASKS]
    if unknown:
        raise ValueError(f"classes must be names from {sorted(SHAPE_MASKS)}, got unknown {unknown!r}")
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ValueError(f"classes must be at least 2 distinct shape names, got {tuple(classes)!r}")
    return tuple(classes)


def _draw(n: int, image_size: int, rng: np.random.Generator, noise: float, classes: tuple[str, ...]):
    size = image_size
    # balanced classes in random order, so every class appears once n >= len(classes)
    y = rng.permutation(np.arange(n) % len(classes)).astype(np.int64)
    radius = rng.uniform(0.2, 0.42, n) * size
    cx = rng.uniform(radius, size - radius)  # the whole shape stays inside the image
    cy = rng.uniform(radius, size - radius)
    fg, bg = rng.random((n, 3), np.float32), rng.random((n, 3), np.float32)
    # keep the shape visible: at least one channel differs from the background by 0.5
    close = np.abs(fg - bg).max(axis=1) < 0.5
    fg[close] = (bg[close] + 0.5) % 1.0
    grid = np.arange(size) + 0.5  # pixel centres
    x = np.empty((n, size, size, 3), np.float32)
    for start in range(0, n, _CHUNK):
        part = slice(start, start + _CHUNK)
        r = radius[part, None, None]
        u = (grid[None, None, :] - cx[part, None, None]) / r  # (B, 1, S), broadcast against v
        v = (grid[None, :, None] - cy[part, None, None]) / r  # (B, S, 1)
        labels = y[part]
        mask = np.zeros((len(labels), size, size), bool)
        for k, name in enumerate(classes):
            sel = labels == k
            if sel.any():
                mask[sel] = SHAPE_MASKS[name](u[sel], v[sel])
        img = x[part]
        if noise:
            rng.standard_normal(dtype=np.float32, out=img)
            img *= noise
        else:
            img.fill(0.0)
        for c in range(3):  # one channel at a time: much faster than a broadcast over (B, S, S, 3)
            img[..., c] += np.where(mask, fg[part, c, None, None], bg[part, c, None, None])
        np.clip(img, 0.0, 1.0, out=img)
    return x, y


def make_shapes(n: int, image_size: int = 32, seed: int = 0, noise: float = 0.05, classes=DEFAULT_CLASSES):
    """(x, y): n RGB images (n, image_size, image_size, 3) float32 in [0, 1] and int64 labels.

    y[i] indexes `classes` (any of circle, square, triangle, cross, ring, diamond); classes are
    balanced. noise is the standard deviation of the added Gaussian noise. Same seed, same images.
    """
    n = check_int(n, "n", 1)
    image_size = check_int(image_size, "image_size", 16)  # below 16 pixels rings and crosses blur together
    noise = check_float(noise, "noise", 0.0)
    classes = _check_classes(classes)
    rng = np.random.default_rng(check_int(seed, "seed", 0))
    return _draw(n, image_size, rng, noise, classes)


def load_shapes(n_train: int, n_test: int, image_size: int = 32, seed: int = 0, noise: float = 0.05,
                classes=DEFAULT_CLASSES):
    """((x_train, y_train), (x_test, y_test)) from make_shapes, each part balanced, drawn independently."""
    n_train, n_test = check_int(n_train, "n_train", 1), check_int(n_test, "n_test", 1)
    image_size = check_int(image_size, "image_size", 16)
    noise = check_float(noise, "noise", 0.0)
    classes = _check_classes(classes)
    seed = check_int(seed, "seed", 0)
    train = _draw(n_train, image_size, np.random.default_rng([seed, 0]), noise, classes)
    test = _draw(n_test, image_size, np.random.default_rng([seed, 1]), noise, classes)
    return train, test
