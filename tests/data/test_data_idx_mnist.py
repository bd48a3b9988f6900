"""read_idx and load_mnist on small IDX files written here, raw and gzip, and every corruption."""
import gzip

import numpy as np
import pytest

from fastconv.data import load_mnist, read_idx

RNG = np.random.default_rng(0)
ARRAYS = {
    "uint8": RNG.integers(0, 256, (3, 4, 5), dtype=np.uint8),
    "int8": RNG.integers(-128, 128, (7,), dtype=np.int8),
    "int16": RNG.integers(-30000, 30000, (2, 3), dtype=np.int16),
    "int32": RNG.integers(-2**31, 2**31 - 1, (4, 2), dtype=np.int32),
    "float32": RNG.standard_normal((2, 2, 2)).astype(np.float32),
    "float64": RNG.standard_normal((5,)),
}


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("kind", sorted(ARRAYS))
def test_read_idx_round_trips_every_dtype(tmp_path, helpers, kind, gz):
    array = ARRAYS[kind]
    path = helpers.write_idx(tmp_path / ("a.idx" + (".gz" if gz else "")), array, gz=gz)
    out = read_idx(path)
    assert out.dtype == array.dtype and out.dtype.isnative and out.shape == array.shape
    np.testing.assert_array_equal(out, array)
    out[...] = 0  # writable, not a view on the file's bytes


def test_read_idx_known_bytes(tmp_path):
    # magic 0x00000C02: int32, 2 dims (2, 1), big-endian values 1 and 258
    (tmp_path / "k").write_bytes(bytes([0, 0, 0x0C, 2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 2]))
    np.testing.assert_array_equal(read_idx(str(tmp_path / "k")), [[1], [258]])


def test_read_idx_sniffs_gzip_without_the_extension(tmp_path, helpers):
    path = tmp_path / "no-extension"
    path.write_bytes(gzip.compress(helpers.idx_bytes(ARRAYS["uint8"])))
    np.testing.assert_array_equal(read_idx(path), ARRAYS["uint8"])


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gzip"])
def test_load_mnist_shapes_ranges_and_values(tmp_path, helpers, gz):
    arrays = helpers.mnist_arrays()
    arrays[0][0][0, 0, 0], arrays[0][0][0, 0, 1] = 255, 0  # both ends of the pixel range
    (x_train, y_train), (x_test, y_test) = load_mnist(helpers.write_mnist(tmp_path / "mnist", arrays, gz=gz))
    assert x_train.shape == (6, 28, 28, 1) and x_test.shape == (4, 28, 28, 1)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert x_train[0, 0, 0, 0] == 1.0 and x_train[0, 0, 1, 0] == 0.0
    assert 0.0 <= x_train.min() and x_train.max() <= 1.0
    np.testing.assert_allclose(x_train[..., 0], arrays[0][0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y_train, arrays[0][1])
    np.testing.assert_array_equal(y_test, arrays[1][1])


def test_load_mnist_accepts_dotted_names(tmp_path, helpers):
    (xi, yi), (xt, yt) = helpers.mnist_arrays()
    for name, array in (("train-images.idx3-ubyte", xi), ("train-labels.idx1-ubyte", yi),
                        ("t10k-images.idx3-ubyte", xt), ("t10k-labels.idx1-ubyte", yt)):
        helpers.write_idx(tmp_path / name, array)
    (x_train, _), _ = load_mnist(tmp_path)
    assert x_train.shape == (6, 28, 28, 1)


# ---- errors -------------------------------------------------------------------------------------
def test_missing_directory_and_file_are_named(tmp_path, helpers):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_mnist(tmp_path / "nowhere")
    helpers.write_mnist(tmp_path / "m", helpers.mnist_arrays())
    (tmp_path / "m" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte not found in .*m"):
        load_mnist(tmp_path / "m")
    with pytest.raises(FileNotFoundError, match=r"IDX file not found: .*absent"):
        read_idx(tmp_path / "absent")


def _header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)


CORRUPT = [
    ("too short", b"\x00\x00", r"too short for the 4-byte magic number"),
    ("bad magic", b"\x12\x34\x08\x01" + bytes(8), r"bad magic number 0x12340801"),
    ("unknown dtype", _header(0x0A, [2]) + bytes(2), r"unknown IDX dtype code 0x0A"),
    ("zero dims", bytes([0, 0, 8, 0]), r"declares 0 dimensions"),
    ("truncated header", bytes([0, 0, 8, 3, 0, 0, 0, 2]), r"truncated IDX header: 3 dimensions need 16 bytes"),
    ("truncated data", _header(0x08, [2, 3]) + bytes(5), r"truncated IDX data: shape \(2, 3\) of uint8 needs 6 bytes, found 5"),
    ("truncated int32", _header(0x0C, [2]) + bytes(7), r"needs 8 bytes, found 7"),
    ("trailing bytes", _header(0x08, [2]) + bytes(3), r"1 unexpected bytes after the IDX data"),
    ("corrupt gzip", gzip.compress(_header(0x08, [4]) + bytes(4))[:-6], r"corrupt gzip data"),
]


@pytest.mark.parametrize("name,content,message", CORRUPT, ids=[c[0] for c in CORRUPT])
def test_corrupt_idx_is_a_value_error_naming_the_file(tmp_path, name, content, message):
    path = tmp_path / "broken-idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_file_inside_mnist_names_it(tmp_path, helpers):
    directory = helpers.write_mnist(tmp_path / "m", helpers.mnist_arrays())
    (directory / "train-images-idx3-ubyte").write_bytes(b"PK\x03\x04 a zip, not idx")
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: not an IDX file: bad magic"):
        load_mnist(directory)


def test_image_label_count_mismatch(tmp_path, helpers):
    (xi, yi), test = helpers.mnist_arrays()
    directory = helpers.write_mnist(tmp_path / "m", ((xi, yi[:-1]), test))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte holds 6 images but .*train-labels-idx1-ubyte holds 5 labels"):
        load_mnist(directory)


def test_swapped_files_are_rejected(tmp_path, helpers):
    (xi, yi), test = helpers.mnist_arrays()
    directory = helpers.write_mnist(tmp_path / "m", ((yi, xi), test))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: expected uint8 images of shape \(N, rows, cols\)"):
        load_mnist(directory)
    directory = helpers.write_mnist(tmp_path / "f", ((xi.astype(np.float32), yi), test))
    with pytest.raises(ValueError, match=r"expected uint8 images.*float32"):
        load_mnist(directory)


def test_path_types(tmp_path):
    with pytest.raises(TypeError, match=r"file must be a path, got int 3"):
        read_idx(3)
    with pytest.raises(TypeError, match=r"path must be a directory path, got NoneType"):
        load_mnist(None)
    with pytest.raises(ValueError, match=r"IDX file must be a file, got the directory"):
        read_idx(tmp_path)
