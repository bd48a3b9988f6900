"""Data sets and input pipeline: loaders (NHWC float32 images in [0, 1], int64 labels), one-hot
labels, stratified splits and resumable mini-batches.

    from fastconv.data import load_digits, to_categorical
    (x_train, y_train), (x_test, y_test) = load_digits()
"""
from .batches import BatchIterator, batches
from .cifar10 import CIFAR10_CLASS_NAMES, load_cifar10
from .digits import load_digits
from .idx import read_idx
from .images import CenterCrop, ImageFolder, ImageLoader, RandomResizedCrop, TarShards
from .labels import one_hot, to_categorical
from .mnist import load_mnist
from .registry import DATASET_FORMS, load_dataset
from .shapes import SHAPE_MASKS, load_shapes, make_shapes
from .split import train_test_split

__all__ = ["load_digits", "make_shapes", "load_shapes", "load_mnist", "read_idx", "load_cifar10",
           "to_categorical", "one_hot", "train_test_split", "batches", "BatchIterator", "load_dataset",
           "DATASET_FORMS", "CIFAR10_CLASS_NAMES", "SHAPE_MASKS",
           # your own images, streamed from disk (fastconv.data.images, docs/images.md)
           "ImageFolder", "TarShards", "ImageLoader", "RandomResizedCrop", "CenterCrop"]
