"""MNIST (or Fashion-MNIST, KMNIST, ...) from the four IDX files in a local directory."""
from __future__ import annotations

import os

import numpy as np

from .._checks import _describe
from .idx import read_idx

MNIST_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
               "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def _find(directory: str, base: str) -> str:
    # Mirrors differ: '-idx3-ubyte' or '.idx3-ubyte', with or without '.gz'.
    dotted = base.replace("-idx", ".idx")
    candidates = [base, base + ".gz", dotted, dotted + ".gz"]
    for name in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"MNIST file {base} not found in {directory} (looked for {', '.join(candidates)})")


def _load_part(directory: str, part: str):
    images_path = _find(directory, MNIST_FILES[f"{part}_images"])
    labels_path = _find(directory, MNIST_FILES[f"{part}_labels"])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{images_path}: expected uint8 images of shape (N, rows, cols), got {_describe(images)}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise ValueError(f"{labels_path}: expected uint8 labels of shape (N,), got {_describe(labels)}")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels")
    x = (images.astype(np.float32) / 255.0)[..., None]
    return x, labels.astype(np.int64)


def load_mnist(path):
    """((x_train, y_train), (x_test, y_test)) from a directory holding train-images-idx3-ubyte,
    train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each raw or .gz).

    Images come back NHWC float32 (N, 28, 28, 1) in [0, 1], labels int64.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a directory path, got {_describe(path)}")
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"MNIST directory not found: {directory}")
    return _load_part(directory, "train"), _load_part(directory, "test")
