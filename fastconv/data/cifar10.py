"""CIFAR-10, "python version": the pickled batches of https://www.cs.toronto.edu/~kriz/cifar.html."""
from __future__ import annotations

import codecs
import importlib
import os
import pickle

import numpy as np

from .._checks import _describe

CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
_PIXELS = 32 * 32 * 3


def _numpy_global(name: str, *modules: str):
    # numpy 2 renamed numpy.core to numpy._core; resolve the name in whichever this numpy has
    for module in modules:
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


# The only globals a CIFAR batch (old Python 2 pickles, or ones written by numpy today) refers to.
_ALLOWED = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # how Python 3 pickles bytes at protocol 2
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    for _name in ("_reconstruct", "scalar"):
        _ALLOWED[(_module, _name)] = _numpy_global(_name, "numpy._core.multiarray", "numpy.core.multiarray")
for _module in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_module, "_frombuffer")] = _numpy_global("_frombuffer", "numpy._core.numeric", "numpy.core.numeric")


class _BatchUnpickler(pickle.Unpickler):
    """Refuses every global outside _ALLOWED, so a forged file cannot run code through pickle."""

    def find_class(self, module, name):
        found = _ALLOWED.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refusing the global {module}.{name}: a CIFAR-10 batch holds only "
                                         "arrays, lists and bytes")
        return found


def _load_batch(path: str):
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except OSError:  # unreadable (permissions, a directory): not corruption, so not rewritten as such
        raise
    except Exception as exc:  # garbage can fail inside pickle in many ways; all of them mean "corrupt"
        raise ValueError(f"{path}: not a CIFAR-10 python batch, unpickling failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(batch, dict):
        raise ValueError(f"{path}: a CIFAR-10 batch must be a pickled dict, got {type(batch).__name__}")
    data = batch.get(b"data", batch.get("data"))
    labels = batch.get(b"labels", batch.get("labels"))
    if data is None or labels is None:
        raise ValueError(f"{path}: a CIFAR-10 batch must have the keys b'data' and b'labels', got {list(batch)!r}")
    data = np.asarray(data)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise ValueError(f"{path}: b'data' must be uint8 of shape (N, {_PIXELS}), got {_describe(data)}")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{path}: b'labels' must be a list of int class ids, got {_describe(labels)}")
    if len(labels) != len(data):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= len(CIFAR10_CLASS_NAMES)):
        raise ValueError(f"{path}: labels must be class ids in [0, 10), got values in "
                         f"[{int(labels.min())}, {int(labels.max())}]")
    # rows are channel-major (1024 red, 1024 green, 1024 blue): to NHWC
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0
    return x, labels.astype(np.int64)


def load_cifar10(path):
    """((x_train, y_train), (x_test, y_test)) from the extracted cifar-10-batches-py directory
    (data_batch_1 ... data_batch_5, test_batch), or the directory that contains it.

    Images come back NHWC float32 (N, 32, 32, 3) in [0, 1], labels int64 (see CIFAR10_CLASS_NAMES).
    The batches are pickles: only load files you trust. Only those six files are opened, through an
    unpickler that refuses anything but arrays, lists and bytes, but pickle is not a safe format.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a directory path, got {_describe(path)}")
    directory = os.fspath(path)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"CIFAR-10 directory not found: {directory}")
    nested = os.path.join(directory, "cifar-10-batches-py")
    if not os.path.exists(os.path.join(directory, TEST_BATCH)) and os.path.isdir(nested):
        directory = nested  # pointed at the folder the archive was extracted into
    names = (*TRAIN_BATCHES, TEST_BATCH)
    missing = [n for n in names if not os.path.isfile(os.path.join(directory, n))]
    if missing:
        raise FileNotFoundError(f"CIFAR-10 batches missing from {directory}: {', '.join(missing)}")
    parts = [_load_batch(os.path.join(directory, n)) for n in TRAIN_BATCHES]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return train, _load_batch(os.path.join(directory, TEST_BATCH))
