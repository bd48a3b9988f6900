"""Data sets by name, for the CLI's --dataset: 'digits', 'shapes', 'mnist:DIR', 'cifar10:DIR'."""
from __future__ import annotations

import os

from .._checks import _describe, check_int
from .cifar10 import CIFAR10_CLASS_NAMES, load_cifar10
from .digits import DIGITS_CLASS_NAMES, load_digits
from .mnist import load_mnist
from .shapes import DEFAULT_CLASSES, load_shapes

DATASET_FORMS = ("digits", "shapes", "mnist:DIR", "cifar10:DIR")
SHAPES_TRAIN, SHAPES_TEST, SHAPES_SIZE = 6000, 1000, 32  # small enough to train on a CPU in minutes


def _info(name, class_names, x_train) -> dict:
    return {"name": name, "num_classes": len(class_names), "class_names": list(class_names),
            "input_shape": tuple(int(d) for d in x_train.shape[1:])}


def load_dataset(spec: str, seed: int = 0):
    """-> ((x_train, y_train), (x_test, y_test), info); info has name, num_classes, class_names,
    input_shape. Images are NHWC float32 in [0, 1], labels int64 class ids.

    seed picks the digits split and the shapes images; MNIST and CIFAR-10 keep their published split.
    """
    if not isinstance(spec, str):
        raise TypeError(f"dataset must be a str, one of {', '.join(DATASET_FORMS)}, got {_describe(spec)}")
    seed = check_int(seed, "seed", 0)
    name, sep, arg = spec.partition(":")  # partition, not split: DIR may itself hold ':' (C:\data)
    name = name.strip().lower()
    if name in ("digits", "shapes") and not sep:
        if name == "digits":
            train, test = load_digits(seed=seed)
            class_names = DIGITS_CLASS_NAMES
        else:
            train, test = load_shapes(SHAPES_TRAIN, SHAPES_TEST, image_size=SHAPES_SIZE, seed=seed)
            class_names = DEFAULT_CLASSES
        return train, test, _info(name, class_names, train[0])
    if name in ("mnist", "cifar10"):
        if not arg.strip():
            raise ValueError(f"dataset {name} needs the directory holding its files, as '{name}:DIR', got {spec!r}")
        directory = os.path.expanduser(arg.strip())
        if name == "mnist":
            train, test = load_mnist(directory)
            # the IDX files carry no class names; Fashion-MNIST and friends also use ids 0-9
            count = max(10, int(max(train[1].max(initial=0), test[1].max(initial=0))) + 1)
            class_names = tuple(str(i) for i in range(count))
        else:
            train, test = load_cifar10(directory)
            class_names = CIFAR10_CLASS_NAMES
        return train, test, _info(name, class_names, train[0])
    if name in ("folder", "shards"):
        raise ValueError(f"{name}:... data sets stream from disk instead of loading into memory: use "
                         "fastconv.data.images.ImageLoader (fit accepts it) or `fastconv train --dataset {name}:...`")
    raise ValueError(f"dataset must be one of {', '.join(DATASET_FORMS)}, got {spec!r}")

