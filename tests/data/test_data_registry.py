"""load_dataset, the CLI's --dataset: every form, and errors that name what went wrong."""
import numpy as np
import pytest

from fastconv.data import load_dataset


def test_digits():
    pytest.importorskip("sklearn")
    (x_train, y_train), (x_test, _), info = load_dataset("digits", seed=1)
    assert info == {"name": "digits", "num_classes": 10, "class_names": [str(d) for d in range(10)],
                    "input_shape": (8, 8, 1)}
    assert x_train.shape[1:] == info["input_shape"] and len(x_test) == 360 and y_train.max() == 9


def test_shapes_default_size():
    (x_train, y_train), (x_test, y_test), info = load_dataset("Shapes")
    assert x_train.shape == (6000, 32, 32, 3) and x_test.shape == (1000, 32, 32, 3)
    assert info["name"] == "shapes" and info["num_classes"] == 5 and info["input_shape"] == (32, 32, 3)
    assert info["class_names"] == ["circle", "square", "triangle", "cross", "ring"]
    assert set(np.unique(y_test)) == set(range(5))


def test_mnist_dir(tmp_path, helpers):
    directory = helpers.write_mnist(tmp_path / "mnist", helpers.mnist_arrays(), gz=True)
    (x_train, _), (x_test, _), info = load_dataset(f"mnist:{directory}")
    assert x_train.shape == (6, 28, 28, 1) and x_test.shape == (4, 28, 28, 1)
    assert info["name"] == "mnist" and info["num_classes"] == 10 and info["input_shape"] == (28, 28, 1)


def test_cifar10_dir(tmp_path, helpers):
    helpers.write_cifar(tmp_path, per_batch=2)
    (x_train, _), _, info = load_dataset(f"cifar10:{tmp_path}")
    assert x_train.shape == (10, 32, 32, 3)
    assert info["num_classes"] == 10 and info["class_names"][-1] == "truck" and info["input_shape"] == (32, 32, 3)


@pytest.mark.parametrize("spec", ["imagenet", "digits:extra", "mnist", "cifar10:  ", ""])
def test_bad_spec_lists_the_valid_forms(spec):
    with pytest.raises(ValueError, match=r"digits.*shapes.*mnist:DIR.*cifar10:DIR|needs the directory") as info:
        load_dataset(spec)
    assert repr(spec) in str(info.value)


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_missing_directory_is_named(tmp_path, name):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_dataset(f"{name}:{tmp_path / 'nowhere'}")


def test_spec_and_seed_types():
    with pytest.raises(TypeError, match=r"dataset must be a str, one of digits, shapes, mnist:DIR, cifar10:DIR, got int 3"):
        load_dataset(3)
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -1"):
        load_dataset("shapes", seed=-1)
