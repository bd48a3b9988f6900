"""ImageFolder: torchvision's layout, root/<class>/**/<image>, classes sorted by name -> indices 0..K-1.

Only the paths are held in memory; images are read when a batch needs them, so a folder far larger
than memory streams. The sample list is torchvision's make_dataset order (sorted walk of each class
folder, following symlinks), so index i names the same file in both.
"""
from __future__ import annotations

import copy
import os

import numpy as np

from ..._checks import _describe

# torchvision's IMG_EXTENSIONS: the files an ImageFolder considers; others are listed in `ignored`
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolder:
    """Samples (path, class index) of root/<class>/... . An empty class folder is an error naming it,
    unless allow_empty=True (the class then keeps its index, so the mapping matches a fuller copy)."""

    def __init__(self, root, allow_empty: bool = False):
        if not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"root must be a directory path, got {_describe(root)}")
        self.root = os.path.expanduser(os.fspath(root))
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"image folder not found: {self.root}")
        self.class_names = sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        if not self.class_names:
            raise ValueError(f"{self.root} has no class folders: expected root/<class name>/<images>")
        paths, labels, self.ignored, empty = [], [], [], []
        for index, name in enumerate(self.class_names):
            before = len(paths)
            for folder, _, files in sorted(os.walk(os.path.join(self.root, name), followlinks=True)):
                for file in sorted(files):
                    path = os.path.join(folder, file)
                    if file.lower().endswith(IMAGE_EXTENSIONS):
                        paths.append(path)
                        labels.append(index)
                    else:
                        self.ignored.append(path)
            if len(paths) == before:
                empty.append(name)
        if empty and not allow_empty:
            raise ValueError(f"{self.root}: class folder(s) with no images ({', '.join(empty)}); supported "
                             f"extensions are {', '.join(IMAGE_EXTENSIONS)}. Pass allow_empty=True to keep "
                             "them as classes with no samples")
        if not paths:
            raise ValueError(f"{self.root}: no images in any class folder")
        self.empty_classes = empty
        self.paths = paths
        self.labels = np.asarray(labels, np.int64)

    @property
    def class_to_idx(self) -> dict:
        return {name: i for i, name in enumerate(self.class_names)}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices) -> "ImageFolder":
        """The samples `indices` (kept in folder order) with the same classes: a validation split."""
        view = copy.copy(self)
        indices = np.sort(np.asarray(indices, np.int64))
        view.paths, view.labels = [self.paths[i] for i in indices], self.labels[indices]
        return view

    def split(self, fraction: float, seed: int = 0):
        """(train, validation) subsets, stratified by class: `fraction` of each class's images validate."""
        from ..split import train_test_split
        (train, _), (val, _) = train_test_split(np.arange(len(self)), self.labels, test_size=fraction, seed=seed)
        return self.subset(train), self.subset(val)

    def items(self, order):
        """(payload, label, name) for the sample indices in `order`: the payload is the path, which a
        loader worker reads, so the process assembling batches never touches image bytes."""
        for i in order:
            yield self.paths[i], int(self.labels[i]), self.paths[i]

    def epoch_items(self, seed: int, epoch: int, shuffle: bool):
        order = np.random.default_rng([seed, epoch]).permutation(len(self)) if shuffle else range(len(self))
        return self.items(order)

    def __repr__(self):
        return f"ImageFolder({self.root!r}, {len(self)} images, {self.num_classes} classes)"
