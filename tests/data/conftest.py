"""Writers for small IDX and CIFAR-10 files, so the readers are tested without any download."""
import gzip
import pickle
import struct
import types

import numpy as np
import pytest

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B, np.dtype("i4"): 0x0C,
             np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file's bytes, written field by field from the format description."""
    array = np.asarray(array)
    header = bytes([0, 0, IDX_CODES[array.dtype], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, gz=False):
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def mnist_arrays(n_train=6, n_test=4, seed=0):
    rng = np.random.default_rng(seed)
    return ((rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8)),
            (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8)))


def write_mnist(directory, arrays, gz=False):
    (xi, yi), (xt, yt) = arrays
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    for name, array in (("train-images-idx3-ubyte", xi), ("train-labels-idx1-ubyte", yi),
                        ("t10k-images-idx3-ubyte", xt), ("t10k-labels-idx1-ubyte", yt)):
        write_idx(directory / (name + suffix), array, gz=gz)
    return directory


def cifar_batch(n, seed):
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"testing batch", b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)]}


def write_cifar(directory, per_batch=3, protocol=pickle.HIGHEST_PROTOCOL):
    directory.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batches[name] = cifar_batch(per_batch, seed=i)
        with open(directory / name, "wb") as f:
            pickle.dump(batches[name], f, protocol=protocol)
    return batches


@pytest.fixture
def helpers():
    """The writers above, for the tests in this folder."""
    return types.SimpleNamespace(idx_bytes=idx_bytes, write_idx=write_idx, mnist_arrays=mnist_arrays,
                                 write_mnist=write_mnist, cifar_batch=cifar_batch, write_cifar=write_cifar)
