"""load_digits: scikit-learn's 8x8 digits as NHWC float32 in [0, 1], split by class."""
import sys

import numpy as np
import pytest

from fastconv.data import load_digits

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def test_shapes_ranges_and_every_image_once():
    (x_train, y_train), (x_test, y_test) = load_digits()
    assert x_train.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train.min() == 0.0 and x_train.max() == 1.0  # pixel values 0..16, divided by 16
    raw = sklearn_datasets.load_digits()
    ours = np.concatenate([x_train, x_test]).reshape(len(raw.images), -1) * 16
    key = lambda rows: sorted(r.astype(np.uint8).tobytes() for r in rows)  # noqa: E731
    assert key(ours) == key(raw.data)


def test_split_is_stratified_and_seeded():
    (_, y_train), (_, y_test) = load_digits(test_size=0.25, seed=3)
    totals = np.bincount(np.concatenate([y_train, y_test]), minlength=10)
    assert np.all(np.abs(np.bincount(y_test, minlength=10) - totals * len(y_test) / totals.sum()) < 1)
    again = load_digits(test_size=0.25, seed=3)
    other = load_digits(test_size=0.25, seed=4)
    np.testing.assert_array_equal(again[1][1], y_test)
    assert not np.array_equal(other[1][0], again[1][0])


def test_without_scikit_learn_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install fastconv\[data\]"):
        load_digits()
