"""to_categorical / one_hot and train_test_split, with every error."""
import math

import numpy as np
import pytest

from fastconv.data import one_hot, to_categorical, train_test_split


def test_to_categorical_by_hand():
    out = to_categorical([2, 0, 1, 2])
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_array_equal(out, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(to_categorical(np.array([1]), num_classes=4), [[0, 1, 0, 0]])
    np.testing.assert_array_equal(to_categorical(np.array([[1], [0]])), [[0, 1], [1, 0]])  # a column, as Keras
    np.testing.assert_array_equal(to_categorical(np.array([1.0, 0.0])), [[0, 1], [1, 0]])  # whole floats
    assert to_categorical([], num_classes=3).shape == (0, 3)
    assert one_hot is to_categorical


TO_CATEGORICAL_ERRORS = [
    ("negative", lambda: to_categorical([0, -1]), ValueError, r"y must hold class ids >= 0, got the negative id -1"),
    ("too large", lambda: to_categorical([0, 3], num_classes=3), ValueError, r"y must hold class ids in \[0, 3\) for num_classes=3, got the id 3"),
    ("non-integer", lambda: to_categorical([0.0, 1.5]), ValueError, r"y must hold integer class ids, got the non-integer value 1.5"),
    ("nan", lambda: to_categorical([np.nan]), ValueError, r"non-integer value nan"),
    ("strings", lambda: to_categorical(["cat", "dog"]), TypeError, r"y must hold integer class ids, got array of shape \(2,\) and dtype <U3"),
    ("one-hot rank", lambda: to_categorical(np.eye(3)), ValueError, r"y must be a rank-1 array of class ids .* got array of shape \(3, 3\)"),
    ("scalar", lambda: to_categorical(3), ValueError, r"y must be a rank-1 array"),
    ("empty", lambda: to_categorical([]), ValueError, r"num_classes must be given when y is empty"),
    ("zero classes", lambda: to_categorical([0], num_classes=0), ValueError, r"num_classes must be >= 1, got 0"),
    ("classes type", lambda: to_categorical([0], num_classes="3"), TypeError, r"num_classes must be an int, got str '3'"),
]


@pytest.mark.parametrize("name,call,exc,message", TO_CATEGORICAL_ERRORS, ids=[c[0] for c in TO_CATEGORICAL_ERRORS])
def test_to_categorical_errors(name, call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def _labels(seed=0):
    # unbalanced: 50 / 30 / 15 / 5 samples
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(4), [50, 30, 15, 5]))


def test_split_covers_every_sample_once_and_stratifies():
    y = _labels()
    x = np.arange(len(y))  # a sample is its own index, so coverage is easy to check
    (x_train, y_train), (x_test, y_test) = train_test_split(x, y, test_size=0.2, seed=1)
    assert len(x_test) == 20 and len(x_train) == 80
    np.testing.assert_array_equal(np.sort(np.concatenate([x_train, x_test])), x)
    np.testing.assert_array_equal(y_train, y[x_train])  # pairs stay together
    np.testing.assert_array_equal(np.bincount(y_test, minlength=4), [10, 6, 3, 1])  # exactly 20% of each class
    assert x_test.tolist() != sorted(x_test.tolist())  # shuffled, not grouped by class


def test_split_stratifies_uneven_shares_within_one():
    y = _labels(3)
    for test_size in (0.1, 0.33, 0.5, 17):
        _, (_, y_test) = train_test_split(np.zeros((100, 2)), y, test_size=test_size, seed=2)
        n_test = test_size if isinstance(test_size, int) else math.ceil(test_size * 100)
        assert len(y_test) == n_test
        ideal = np.array([50, 30, 15, 5]) * n_test / 100
        assert np.all(np.abs(np.bincount(y_test, minlength=4) - ideal) < 1)


def test_split_with_one_hot_labels_keeps_them_one_hot():
    y = _labels()
    (_, y_train), (_, y_test) = train_test_split(np.zeros((100, 3, 3, 1)), np.eye(4, dtype=np.float32)[y], seed=0)
    assert y_train.shape == (80, 4) and y_test.dtype == np.float32
    np.testing.assert_array_equal(y_test.sum(0), [10, 6, 3, 1])


def test_split_determinism_and_unstratified():
    x, y = np.arange(100), _labels()
    a = train_test_split(x, y, seed=5)
    b = train_test_split(x, y, seed=5)
    c = train_test_split(x, y, seed=6)
    np.testing.assert_array_equal(a[1][0], b[1][0])
    assert not np.array_equal(a[1][0], c[1][0])
    (x_train, _), (x_test, _) = train_test_split(x, y, test_size=0.25, seed=0, stratify=False)
    assert len(x_test) == 25 and len(np.intersect1d(x_train, x_test)) == 0


SPLIT_ERRORS = [
    ("length", lambda: train_test_split(np.zeros(5), np.zeros(4, int)), ValueError, r"x and y must have the same number of samples, got 5 and 4"),
    ("zero", lambda: train_test_split(np.zeros(5), np.zeros(5, int), test_size=0.0), ValueError, r"test_size must be a fraction in \(0, 1\), got 0.0"),
    ("one", lambda: train_test_split(np.zeros(5), np.zeros(5, int), test_size=1.0), ValueError, r"test_size must be a fraction in \(0, 1\), got 1.0"),
    ("count", lambda: train_test_split(np.zeros(5), np.zeros(5, int), test_size=5), ValueError, r"test_size must be a number of samples in \[1, 4\] for 5 samples, got 5"),
    ("type", lambda: train_test_split(np.zeros(5), np.zeros(5, int), test_size="20%"), TypeError, r"test_size must be a fraction .* got str '20%'"),
    ("tiny", lambda: train_test_split(np.zeros(1), np.zeros(1, int)), ValueError, r"x must hold at least 2 samples to split, got 1"),
    ("seed", lambda: train_test_split(np.zeros(5), np.zeros(5, int), seed=-1), ValueError, r"seed must be >= 0, got -1"),
    ("float ids", lambda: train_test_split(np.zeros(2), np.array([0.5, 1.0])), ValueError, r"y must hold integer class ids"),
]


@pytest.mark.parametrize("name,call,exc,message", SPLIT_ERRORS, ids=[c[0] for c in SPLIT_ERRORS])
def test_split_errors(name, call, exc, message):
    with pytest.raises(exc, match=message):
        call()
