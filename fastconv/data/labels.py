"""Class ids <-> one-hot rows."""
from __future__ import annotations

import numpy as np

from .._checks import _describe, check_int


def class_ids(y, name: str = "y") -> np.ndarray:
    """Integer class ids as a rank-1 int64 array; one-hot or probability rows are argmax-ed.

    A single column (N, 1) is one sigmoid output or a 0/1 label: class 1 where it is above 0.5.
    Float ids are accepted when every value is whole (labels read from text files often are).
    """
    y = np.asarray(y)
    if y.ndim == 2:
        if y.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric one-hot rows, got {_describe(y)}")
        if y.shape[1] == 0:
            raise ValueError(f"{name} must have at least one column, got {_describe(y)}")
        if y.shape[1] == 1:  # argmax over one column would always say class 0
            return (y[:, 0] > 0.5).astype(np.int64)
        return y.argmax(axis=-1).astype(np.int64)
    if y.ndim != 1:
        raise ValueError(f"{name} must be a rank-1 array of class ids or a rank-2 array of one-hot rows, "
                         f"got {_describe(y)}")
    return _ids_from_rank1(y, name)


def batch_class_ids(y):
    """A training batch's labels as the metrics take them: ids stay, rows are argmax-ed. No checks and any
    array module (NumPy or CuPy): fit checked the labels once, and this runs on every batch."""
    return y if y.ndim == 1 else y.argmax(axis=-1)


def _ids_from_rank1(y: np.ndarray, name: str) -> np.ndarray:
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            bad = y[~np.isfinite(y) | (y != np.round(y))][0]
            raise ValueError(f"{name} must hold integer class ids, got the non-integer value {float(bad)!r}")
    elif y.dtype.kind not in "biu":
        raise TypeError(f"{name} must hold integer class ids, got {_describe(y)}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{name} must hold class ids >= 0, got the negative id {int(y.min())}")
    return y


def to_categorical(y, num_classes: int | None = None) -> np.ndarray:
    """Integer class ids (N,) -> float32 one-hot rows (N, num_classes), as Keras.

    A column vector (N, 1) is accepted too, as Keras does. num_classes defaults to max(y) + 1.
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"y must be a rank-1 array of class ids (or a column (N, 1)), got {_describe(y)}")
    ids = _ids_from_rank1(y, "y")
    if num_classes is None:
        if ids.size == 0:
            raise ValueError("num_classes must be given when y is empty (it cannot be inferred), got None")
        num_classes = int(ids.max()) + 1
    num_classes = check_int(num_classes, "num_classes", 1)
    if ids.size and ids.max() >= num_classes:
        raise ValueError(f"y must hold class ids in [0, {num_classes}) for num_classes={num_classes}, "
                         f"got the id {int(ids.max())}")
    out = np.zeros((ids.size, num_classes), np.float32)
    out[np.arange(ids.size), ids] = 1.0
    return out


one_hot = to_categorical
