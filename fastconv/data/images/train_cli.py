"""`fastconv train --dataset folder:DIR | shards:PATTERN`: train a zoo model on your own images.

Training batches: RandomResizedCrop(--image-size) + flip; validation: Resize + CenterCrop. The
validation set is --val (folder:DIR or shards:PATTERN) or, for a folder, a stratified --val-split of it.
"""
from __future__ import annotations

import datetime
import json
import os
import time

import numpy as np

from .decode import decoder_name
from .folder import ImageFolder
from .loader import ImageLoader
from .normalize import normalize
from .shards import TarShards
from .transforms import CenterCrop, RandomResizedCrop

IMAGE_DATASET_FORMS = ("folder:DIR", "shards:PATTERN")


def is_image_dataset(spec) -> bool:
    return isinstance(spec, str) and spec.partition(":")[0].strip().lower() in ("folder", "shards")


def open_source(spec: str, what: str = "--dataset", class_names=None):
    kind, _, arg = spec.partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind not in ("folder", "shards") or not arg:
        raise ValueError(f"{what} must be one of {', '.join(IMAGE_DATASET_FORMS)}, got {spec!r}")
    return ImageFolder(arg) if kind == "folder" else TarShards(arg, class_names=class_names)


def _sources(args):
    train = open_source(args.dataset)
    if args.val:
        val = open_source(args.val, "--val", class_names=train.class_names if isinstance(train, ImageFolder) else None)
        if list(val.class_names) != list(train.class_names):
            raise ValueError(f"--val has the classes {val.class_names}, --dataset {train.class_names}: they must match")
        return train, val
    if not isinstance(train, ImageFolder):
        raise ValueError("shards have no split: pass --val shards:PATTERN (or folder:DIR) for validation")
    return train.split(args.val_split, seed=args.seed)


def train_images(args, device: str, backend: str) -> int:
    from ... import metrics
    from ...backends.device import using_device
    from ...models import ZOO
    from ...optimizers import Adam
    from ...precision import get_precision
    from ...parallel import current
    from ...plotting import plot_confusion_matrix, plot_history

    group = current() if getattr(args, "distributed", False) else None   # cli's init() made it
    writes = group is None or group.rank == 0   # rank 0 alone prints, validates and writes the outputs
    train_source, val_source = _sources(args)
    size = args.image_size
    workers = (os.cpu_count() or 1) if args.workers is None else args.workers
    train = ImageLoader(train_source, RandomResizedCrop(size), batch_size=args.batch_size, seed=args.seed,
                        workers=workers)
    val = ImageLoader(val_source, CenterCrop(size), batch_size=args.batch_size, shuffle=False, workers=workers)
    classes = train.class_names
    with using_device(device):
        model = ZOO[args.model](input_shape=train.image_shape, num_classes=len(classes))
        model._ensure_built(train.image_shape)
    model.compile(optimizer=Adam(args.lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  precision=args.precision)
    if writes:
        print(f"fastconv train: {args.dataset} ({train.num_samples} train / {val.num_samples} validation images, "
              f"{len(classes)} classes, {size}x{size} crops), model {args.model}, device {device}, backend {backend}, "
              f"precision {model.precision or get_precision()}, decoder {decoder_name()}, {workers} loader workers"
              + (f", {group.world_size} processes" if group else ""))
    try:
        start = time.perf_counter()   # under --distributed each rank reads its share (docs/distributed.md)
        history = model.fit(train, epochs=args.epochs, verbose=0 if args.quiet else 1, seed=args.seed,
                            distributed=group or False)
        train_seconds = time.perf_counter() - start
        if not writes:
            return 0
        truth, pred = [], []
        for xb, yb in val.batches(0):
            pred.append(model.predict(normalize(xb, val.mean, val.std), batch_size=len(xb)).argmax(axis=-1))
            truth.append(yb)
    finally:
        train.close()
        val.close()
    y_val, pred = np.concatenate(truth), np.concatenate(pred)
    result = {
        "val_accuracy": metrics.accuracy(y_val, pred), "precision": metrics.precision(y_val, pred, average="macro"),
        "recall": metrics.recall(y_val, pred, average="macro"), "f1": metrics.f1_score(y_val, pred, average="macro"),
        "train_seconds": train_seconds, "images_per_second": train.num_samples * len(history.epoch) / train_seconds,
        "device": device, "backend": backend, "dataset": args.dataset, "model": args.model, "image_size": size,
        "epochs": len(history.epoch), "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
        "train_samples": train.num_samples, "val_samples": val.num_samples,
        "skipped_images": len(train.skipped) + len(val.skipped), "decoder": decoder_name(),
        "processes": group.world_size if group else 1,   # batch_size is per process
    }
    out = args.out or os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    model.save(os.path.join(out, "model.fastconv"))   # holds the class names and normalisation (model.data_info)
    with open(os.path.join(out, "classes.json"), "w") as f:
        json.dump({name: i for i, name in enumerate(classes)}, f, indent=2)
    with open(os.path.join(out, "history.json"), "w") as f:
        json.dump({k: [float(v) for v in vs] for k, vs in history.history.items()}, f, indent=2)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in result.items()}, f, indent=2)
    if train.skipped or val.skipped:
        print(f"skipped {len(train.skipped) + len(val.skipped)} unreadable image(s), e.g. "
              f"{(train.skipped or val.skipped)[0][0]}")
    try:
        plot_history(history.history, os.path.join(out, "training_curves.png"))
        plot_confusion_matrix(metrics.confusion_matrix(y_val, pred, num_classes=len(classes)), classes,
                              os.path.join(out, "confusion_matrix.png"))
    except ImportError:
        print("(matplotlib is not installed: no PNGs written; pip install fastconv[plot])")
    print()
    print(metrics.classification_report(y_val, pred, class_names=classes))
    print(f"validation accuracy {result['val_accuracy']:.4f}, F1 (macro) {result['f1']:.4f}, "
          f"{result['images_per_second']:.0f} images/s, outputs in {out}")
    return 0
