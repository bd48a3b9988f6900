"""load_cifar10 on small pickled batches written here, and every way a batch can be wrong."""
import os
import pickle

import numpy as np
import pytest

from fastconv.data import CIFAR10_CLASS_NAMES, load_cifar10


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_loads_all_batches_as_nhwc(tmp_path, helpers, protocol):
    batches = helpers.write_cifar(tmp_path, per_batch=3, protocol=protocol)
    (x_train, y_train), (x_test, y_test) = load_cifar10(tmp_path)
    assert x_train.shape == (15, 32, 32, 3) and x_test.shape == (3, 32, 32, 3)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    expected_labels = sum((batches[f"data_batch_{k}"][b"labels"] for k in range(1, 6)), [])
    np.testing.assert_array_equal(y_train, expected_labels)
    np.testing.assert_array_equal(y_test, batches["test_batch"][b"labels"])
    # rows are 1024 red, then 1024 green, then 1024 blue values, each plane row-major
    row = batches["data_batch_1"][b"data"][0]
    for channel in range(3):
        for r, c in ((0, 0), (1, 2), (31, 30)):
            assert x_train[0, r, c, channel] == np.float32(row[channel * 1024 + r * 32 + c] / 255.0)


def test_known_pixel_lands_where_expected(tmp_path, helpers):
    helpers.write_cifar(tmp_path)
    batch = helpers.cifar_batch(1, seed=0)
    batch[b"data"][:] = 0
    batch[b"data"][0, 1024 + 5 * 32 + 7] = 255  # green, row 5, column 7
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump(batch, f)
    _, (x_test, _) = load_cifar10(tmp_path)
    assert x_test.sum() == 1.0 and x_test[0, 5, 7, 1] == 1.0


def test_finds_the_extracted_folder_inside(tmp_path, helpers):
    helpers.write_cifar(tmp_path / "cifar-10-batches-py")
    (x_train, _), _ = load_cifar10(str(tmp_path))
    assert len(x_train) == 15
    assert len(CIFAR10_CLASS_NAMES) == 10 and CIFAR10_CLASS_NAMES[0] == "airplane"


def test_missing_directory_and_batches(tmp_path, helpers):
    with pytest.raises(FileNotFoundError, match=r"CIFAR-10 directory not found: .*nowhere"):
        load_cifar10(tmp_path / "nowhere")
    helpers.write_cifar(tmp_path)
    os.remove(tmp_path / "data_batch_4")
    os.remove(tmp_path / "test_batch")
    with pytest.raises(FileNotFoundError, match=r"batches missing from .*: data_batch_4, test_batch"):
        load_cifar10(tmp_path)
    with pytest.raises(TypeError, match=r"path must be a directory path"):
        load_cifar10(42)


def _dump(obj):
    return pickle.dumps(obj, protocol=2)


def _batch(**changes):
    batch = {b"labels": [1, 2], b"data": np.zeros((2, 3072), np.uint8)}
    batch.update({k.encode(): v for k, v in changes.items()})
    return batch


BAD = [
    ("garbage bytes", b"\x00not a pickle at all", r"unpickling failed"),
    ("truncated pickle", _dump(_batch())[:40], r"unpickling failed"),
    ("not a dict", _dump([1, 2, 3]), r"must be a pickled dict, got list"),
    ("missing data", _dump({b"labels": [1]}), r"must have the keys b'data' and b'labels'"),
    ("wrong size", _dump(_batch(data=np.zeros((2, 1000), np.uint8))), r"b'data' must be uint8 of shape \(N, 3072\), got array of shape \(2, 1000\)"),
    ("wrong dtype", _dump(_batch(data=np.zeros((2, 3072), np.float32))), r"b'data' must be uint8 .* dtype float32"),
    ("label count", _dump(_batch(labels=[1])), r"2 images but 1 labels"),
    ("label range", _dump(_batch(labels=[3, 10])), r"labels must be class ids in \[0, 10\), got values in \[3, 10\]"),
    ("label type", _dump(_batch(labels=["cat", "dog"])), r"b'labels' must be a list of int class ids"),
]


@pytest.mark.parametrize("name,content,message", BAD, ids=[b[0] for b in BAD])
def test_corrupt_batch_is_a_value_error_naming_the_file(tmp_path, helpers, name, content, message):
    helpers.write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_cifar10(tmp_path)
    assert "data_batch_3" in str(info.value)


class _Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):  # what a forged batch would do: call an arbitrary function on load
        return (os.mkdir, (self.target,))


def test_forged_pickle_cannot_run_code(tmp_path, helpers):
    helpers.write_cifar(tmp_path)
    target = str(tmp_path / "pwned")
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": _Payload(target), b"labels": []}))
    with pytest.raises(ValueError, match=r"test_batch.*refusing the global (posix|nt|os)\.mkdir"):
        load_cifar10(tmp_path)
    assert not os.path.exists(target)


def test_reads_the_numpy_1_module_names_of_the_published_files(tmp_path, helpers):
    # The published batches were pickled by Python 2 + numpy 1: 'numpy.core.multiarray', which numpy 2
    # renamed; protocol 2 spells globals as text lines, so the old name can be put back by hand.
    helpers.write_cifar(tmp_path)
    old = pickle.dumps(_batch(labels=[4, 5]), protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"cnumpy.core.multiarray\n_reconstruct" in old
    (tmp_path / "test_batch").write_bytes(old)
    _, (x_test, y_test) = load_cifar10(tmp_path)
    assert x_test.shape == (2, 32, 32, 3) and list(y_test) == [4, 5]
