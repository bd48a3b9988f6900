"""The `fastconv` command: train, info, bench, profile, tune."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time


def _train(args) -> int:
    code = _train_here(args)
    if args.distributed:   # every rank done (rank 0 writes the outputs) before any leaves the group
        from .parallel import shutdown
        shutdown()
    return code


def _train_here(args) -> int:
    import numpy as np

    from . import data, metrics, set_seed
    from .backends import backend_for, backend_name
    from .backends.device import check_device, using_device
    from .models import ZOO
    from .optimizers import Adam
    from .precision import get_precision
    from .plotting import plot_confusion_matrix, plot_history

    group = None
    if args.distributed:   # before the model: on 'cuda' its weights must land on this rank's GPU
        from .parallel import init
        group = init(device=args.device)
    device = group.device if group else check_device(args.device, "--device")
    writes = group is None or group.rank == 0   # rank 0 alone prints and writes the outputs
    backend = backend_name(device)
    if backend == "unavailable":
        backend_for(device)  # raises with the reason native and jit are unavailable
    set_seed(args.seed)
    from .data.images.train_cli import is_image_dataset
    if is_image_dataset(args.dataset):   # streamed from disk, not loaded into memory
        from .data.images.train_cli import train_images
        return train_images(args, device, backend)
    (x_train, y_train), (x_test, y_test), info = data.load_dataset(args.dataset, seed=args.seed)
    num_classes = info["num_classes"]
    with using_device(device):  # the model's weights are created on the chosen device
        model = ZOO[args.model](input_shape=x_train.shape[1:], num_classes=num_classes)
        model._ensure_built(x_train.shape[1:])
    model.compile(optimizer=Adam(args.lr), loss="categorical_crossentropy", metrics=["accuracy"],
                  precision=args.precision)
    compute = model.precision or get_precision()
    if writes:
        print(f"fastconv train: {info['name']} ({len(x_train)} train / {len(x_test)} test images of "
              f"{'x'.join(map(str, x_train.shape[1:]))}), model {args.model}, device {device}, backend {backend}, "
              f"precision {compute}" + (f", {group.world_size} processes" if group else ""))
    start = time.perf_counter()
    history = model.fit(x_train, data.to_categorical(y_train, num_classes), epochs=args.epochs,
                        batch_size=args.batch_size, verbose=0 if args.quiet else 1, seed=args.seed,
                        distributed=group or False)
    train_seconds = time.perf_counter() - start
    if not writes:
        return 0
    if "loss_scale" in history.history:   # fp16: dynamic loss scaling (fastconv/loss_scaling.py)
        print(f"fp16 loss scaling: final scale {history.history['loss_scale'][-1]:g}, "
              f"{history.history['skipped_steps'][-1]} step(s) skipped on overflow")
    pred = model.predict(x_test, batch_size=256).argmax(axis=-1)
    result = {
        "test_accuracy": metrics.accuracy(y_test, pred),
        "precision": metrics.precision(y_test, pred, average="macro"),
        "recall": metrics.recall(y_test, pred, average="macro"),
        "f1": metrics.f1_score(y_test, pred, average="macro"),
        "train_seconds": train_seconds,
        "images_per_second": len(x_train) * len(history.epoch) / train_seconds,
        "device": device, "backend": backend, "dataset": info["name"], "model": args.model,
        "compute_precision": compute, "epochs": len(history.epoch), "batch_size": args.batch_size, "learning_rate": args.lr, "seed": args.seed,
        "train_samples": int(len(x_train)), "test_samples": int(len(x_test)),
        "processes": group.world_size if group else 1,   # batch_size is per process
    }
    out = args.out or os.path.join("runs", datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    os.makedirs(out, exist_ok=True)
    model.save(os.path.join(out, "model.fastconv"))
    with open(os.path.join(out, "history.json"), "w") as f:
        json.dump({k: [float(v) for v in vs] for k, vs in history.history.items()}, f, indent=2)
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump({k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in result.items()}, f, indent=2)
    cm = metrics.confusion_matrix(y_test, pred, num_classes=num_classes)
    try:
        plot_history(history.history, os.path.join(out, "training_curves.png"))
        plot_confusion_matrix(cm, info["class_names"], os.path.join(out, "confusion_matrix.png"))
    except ImportError:
        print("(matplotlib is not installed: no PNGs written; pip install fastconv[plot])")
    print()
    print(metrics.classification_report(y_test, pred, class_names=[str(c) for c in info["class_names"]]))
    rows = [("test accuracy", f"{result['test_accuracy']:.4f}"), ("precision (macro)", f"{result['precision']:.4f}"),
            ("recall (macro)", f"{result['recall']:.4f}"), ("F1 (macro)", f"{result['f1']:.4f}"),
            ("train time", f"{train_seconds:.1f} s"), ("throughput", f"{result['images_per_second']:.0f} images/s"),
            ("outputs", out)]
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))
    return 0


def _info(args) -> int:
    from .info import collect_info, format_info
    info = collect_info()
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastconv", description="fastconv: CNN training on our own CUDA kernels")
    sub = parser.add_subparsers(dest="command", required=True)
    from .models import ZOO
    train = sub.add_parser("train", help="train a CNN on a bundled or local dataset and report test metrics")
    train.add_argument("--dataset", default="digits",
                       help="digits | shapes | mnist:DIR | cifar10:DIR | folder:DIR | shards:PATTERN (default digits)")
    train.add_argument("--image-size", type=int, default=224, help="folder/shards: training crop size (default 224)")
    train.add_argument("--val", default=None, help="folder/shards: validation set, folder:DIR or shards:PATTERN")
    train.add_argument("--val-split", type=float, default=0.1,
                       help="folder: fraction of each class to validate on when --val is not given (default 0.1)")
    train.add_argument("--workers", type=int, default=None, help="folder/shards: decoding processes (default: all cores)")
    train.add_argument("--model", default="seed", choices=sorted(ZOO), help="model from the zoo (default seed)")
    train.add_argument("--epochs", type=int, default=20)
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--lr", type=float, default=2e-3)
    train.add_argument("--device", default=None, help="cpu or cuda (default: cuda when a GPU is visible)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default=None, help="output folder (default runs/<timestamp>)")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--precision", default=None, choices=["fp32", "tf32", "bf16", "fp16"],
                       help="conv/dense compute format (default: $FASTCONV_PRECISION or fp32); fp16 uses loss scaling")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel over the processes torchrun launched (NCCL on cuda, gloo on cpu); "
                            "--batch-size is per process (docs/distributed.md)")
    train.set_defaults(func=_train)
    info = sub.add_parser("info", help="version, devices and which compute paths are available")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_info)
    from .bench.cli import add_bench_parser, add_profile_parser
    add_bench_parser(sub)
    add_profile_parser(sub)
    from .bench.tune import add_tune_parser
    add_tune_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("epochs", "batch_size", "image_size"):
        if getattr(args, name, None) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be a positive int, got {getattr(args, name)}")
    if hasattr(args, "val_split") and not 0 < args.val_split < 1:
        parser.error(f"--val-split must be in (0, 1), got {args.val_split}")
    if getattr(args, "workers", None) is not None and args.workers < 0:
        parser.error(f"--workers must be >= 0, got {args.workers}")
    if hasattr(args, "seed") and not 0 <= args.seed < 2**32:    # NumPy's global generator takes 32 bits
        parser.error(f"--seed must be an int in [0, 2**32), got {args.seed}")
    if hasattr(args, "lr") and not 0 < args.lr < float("inf"):
        parser.error(f"--lr must be positive and finite, got {args.lr}")
    try:
        return args.func(args)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as exc:
        print(f"fastconv {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
