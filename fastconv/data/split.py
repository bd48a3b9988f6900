"""Random, optionally stratified, train/test split."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .._checks import _describe, check_int
from ..random import next_seed
from .labels import class_ids


def _test_count(test_size, n: int) -> int:
    # A float is a fraction of n (rounded up, as scikit-learn), an int a number of samples.
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(f"test_size must be a fraction in (0, 1) or a number of samples, got {_describe(test_size)}")
    if isinstance(test_size, numbers.Integral):
        n_test = int(test_size)
        if not 1 <= n_test < n:
            raise ValueError(f"test_size must be a number of samples in [1, {n - 1}] for {n} samples, got {n_test}")
        return n_test
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be a fraction in (0, 1), got {test_size}")
    n_test = math.ceil(test_size * n)
    if not 1 <= n_test < n:
        raise ValueError(f"test_size={test_size} of {n} samples leaves no train or no test samples")
    return n_test


def _stratified_test_counts(counts: np.ndarray, n_test: int, rng) -> np.ndarray:
    """How many of each class go to test: proportional, summing exactly to n_test.

    Floors first, then the leftover samples go to the classes with the largest remainders
    (ties broken at random, so no class is systematically favoured).
    """
    ideal = counts * (n_test / counts.sum())
    take = np.floor(ideal).astype(np.int64)
    left = n_test - int(take.sum())
    if left:
        order = np.lexsort((rng.random(len(counts)), -(ideal - take)))
        take[order[:left]] += 1
    return take


def train_test_split(x, y, test_size=0.2, seed: int | None = 0, stratify: bool = True):
    """Split into ((x_train, y_train), (x_test, y_test)).

    y may be class ids (N,) or one-hot rows (N, C); with stratify each class keeps its share in both
    parts. test_size is a fraction in (0, 1) or a number of samples. Both parts are shuffled.
    seed=None draws the split's seed from fc.set_seed's generator.
    Note the return layout matches the load_* functions, not scikit-learn's 4-tuple.
    """
    x, y = np.asanyarray(x), np.asanyarray(y)
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError(f"x and y must be arrays of samples, got {_describe(x)} and {_describe(y)}")
    n = len(x)
    if len(y) != n:
        raise ValueError(f"x and y must have the same number of samples, got {n} and {len(y)}")
    if n < 2:
        raise ValueError(f"x must hold at least 2 samples to split, got {n}")
    n_test = _test_count(test_size, n)
    rng = np.random.default_rng(next_seed() if seed is None else check_int(seed, "seed", 0))
    if stratify:
        ids = class_ids(y, "y")
        test_parts, train_parts = [], []
        classes, counts = np.unique(ids, return_counts=True)
        for cls, k in zip(classes, _stratified_test_counts(counts, n_test, rng)):
            members = rng.permutation(np.flatnonzero(ids == cls))
            test_parts.append(members[:k])
            train_parts.append(members[k:])
        test_idx = rng.permutation(np.concatenate(test_parts))
        train_idx = rng.permutation(np.concatenate(train_parts))
    else:
        order = rng.permutation(n)
        test_idx, train_idx = order[:n_test], order[n_test:]
    return (x[train_idx], y[train_idx]), (x[test_idx], y[test_idx])
