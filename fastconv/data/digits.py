"""scikit-learn's 8x8 handwritten digits (1,797 images, ships inside scikit-learn: no download)."""
from __future__ import annotations

import numpy as np

from .split import train_test_split

DIGITS_CLASS_NAMES = tuple(str(d) for d in range(10))


def load_digits(test_size=0.2, seed: int = 0):
    """((x_train, y_train), (x_test, y_test)): NHWC float32 (N, 8, 8, 1) in [0, 1], int64 labels 0-9.

    A stratified split (test_size a fraction or a number of images), reproducible from seed.
    Needs scikit-learn: pip install fastconv[data].
    """
    try:
        from sklearn.datasets import load_digits as _sklearn_digits
    except ImportError as exc:  # only this data set needs scikit-learn, so it is imported here
        raise ImportError("load_digits needs scikit-learn, which ships the digits data: "
                          "pip install fastconv[data] (or pip install scikit-learn)") from exc
    bunch = _sklearn_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[..., None]  # pixel values are 0..16
    y = bunch.target.astype(np.int64)
    return train_test_split(x, y, test_size=test_size, seed=seed, stratify=True)
