"""make_shapes / load_shapes: deterministic, in range, every class present, and learnable."""
import time

import numpy as np
import pytest

from fastconv.data import SHAPE_MASKS, load_shapes, make_shapes


def test_same_seed_same_images_other_seed_other_images():
    x1, y1 = make_shapes(64, seed=3)
    x2, y2 = make_shapes(64, seed=3)
    x3, _ = make_shapes(64, seed=4)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(x1, x3)


def test_shapes_dtypes_ranges_and_balanced_classes():
    x, y = make_shapes(103, image_size=20, seed=1)
    assert x.shape == (103, 20, 20, 3) and x.dtype == np.float32
    assert y.shape == (103,) and y.dtype == np.int64
    assert x.min() >= 0.0 and x.max() <= 1.0
    counts = np.bincount(y, minlength=5)
    assert len(counts) == 5 and counts.min() >= 20 and counts.max() <= 21  # every class, balanced


def test_custom_classes_and_clean_two_colour_images_without_noise():
    classes = ("diamond", "ring", "cross")
    x, y = make_shapes(30, image_size=16, seed=2, noise=0.0, classes=classes)
    assert set(y.tolist()) == {0, 1, 2}
    for image in x:  # background and shape colour only, and the shape is really drawn
        colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
        assert len(colours) == 2 and counts.min() >= 6
    assert set(SHAPE_MASKS) >= {"circle", "square", "triangle", "cross", "ring", "diamond"}


def test_load_shapes_gives_independent_balanced_parts():
    (x_train, y_train), (x_test, y_test) = load_shapes(50, 20, image_size=16, seed=0)
    assert x_train.shape == (50, 16, 16, 3) and x_test.shape == (20, 16, 16, 3)
    assert np.bincount(y_train).tolist() == [10] * 5 and np.bincount(y_test).tolist() == [4] * 5
    assert not np.array_equal(x_train[:20], x_test)
    again = load_shapes(50, 20, image_size=16, seed=0)
    np.testing.assert_array_equal(again[1][0], x_test)


def test_ten_thousand_images_are_generated_vectorised():
    start = time.perf_counter()
    x, _ = make_shapes(10_000, seed=0)
    assert x.shape == (10_000, 32, 32, 3)
    assert time.perf_counter() - start < 10.0  # about 1 s; a per-pixel Python loop would take minutes


def _silhouettes(x, size=12):
    """Colour- and position-free features: the shape's mask, cropped to its box, resampled to size x size."""
    border = np.concatenate([x[:, 0], x[:, -1], x[:, :, 0], x[:, :, -1]], axis=1)
    background = np.median(border, axis=1)
    masks = np.abs(x - background[:, None, None, :]).max(axis=-1) > 0.25
    steps = (np.arange(size) + 0.5) / size
    features = np.empty((len(x), size * size), np.float32)
    for i, m in enumerate(masks):
        rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        r = rows[0] + (steps * (rows[-1] + 1 - rows[0])).astype(int)
        c = cols[0] + (steps * (cols[-1] + 1 - cols[0])).astype(int)
        features[i] = m[np.ix_(r, c)].ravel()
    return features


def test_classes_are_learnable():
    # A nearest-centroid classifier on silhouettes: the outline alone tells the classes apart.
    (x_train, y_train), (x_test, y_test) = load_shapes(1500, 500, seed=0)
    f_train, f_test = _silhouettes(x_train), _silhouettes(x_test)
    centroids = np.stack([f_train[y_train == k].mean(axis=0) for k in range(5)])
    distances = ((f_test[:, None, :] - centroids[None]) ** 2).sum(-1)
    accuracy = np.mean(distances.argmin(axis=1) == y_test)
    assert accuracy > 0.95, accuracy  # chance is 0.2; it is 1.0 with seed 0


SHAPES_ERRORS = [
    ("n", lambda: make_shapes(0), ValueError, r"n must be >= 1, got 0"),
    ("n type", lambda: make_shapes(10.0), TypeError, r"n must be an int, got float 10.0"),
    ("size", lambda: make_shapes(4, image_size=8), ValueError, r"image_size must be >= 16, got 8"),
    ("noise", lambda: make_shapes(4, noise=-0.1), ValueError, r"noise must be >= 0.0, got -0.1"),
    ("unknown class", lambda: make_shapes(4, classes=("circle", "star")), ValueError, r"classes must be names from \[.*\], got unknown \['star'\]"),
    ("one class", lambda: make_shapes(4, classes=("circle",)), ValueError, r"classes must be at least 2 distinct shape names"),
    ("duplicate", lambda: make_shapes(4, classes=("ring", "ring")), ValueError, r"at least 2 distinct shape names, got \('ring', 'ring'\)"),
    ("classes str", lambda: make_shapes(4, classes="circle"), TypeError, r"classes must be a tuple of shape names, got str 'circle'"),
    ("seed", lambda: make_shapes(4, seed=-1), ValueError, r"seed must be >= 0, got -1"),
    ("n_test", lambda: load_shapes(10, 0), ValueError, r"n_test must be >= 1, got 0"),
]


@pytest.mark.parametrize("name,call,exc,message", SHAPES_ERRORS, ids=[c[0] for c in SHAPES_ERRORS])
def test_make_shapes_errors(name, call, exc, message):
    with pytest.raises(exc, match=message):
        call()
