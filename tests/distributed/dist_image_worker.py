"""One rank of the data-parallel ImageLoader tests (launched by dist_launch.launch(command=...)), or the
one-process baseline with --world 1: fit and evaluate on an image folder or tar shards made by the test.
Besides the weights it records a digest of every image each training step saw, so the test can check
which samples each rank decoded."""
import argparse
import hashlib
import json
import os
import signal

import numpy as np

import fastconv as fc
from fastconv import parallel
from fastconv.data.images import CenterCrop, ImageFolder, ImageLoader, RandomResizedCrop, TarShards

SEED, LOADER_SEED, SIZE, CLASSES = 5, 11, 12, 3


def build():
    fc.set_seed(0)
    model = fc.models.seed_model((SIZE, SIZE, 3), CLASSES)
    model.compile(optimizer=fc.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "precision", "f1"])
    return model


def loaders(train, val, kind, batch, seed=LOADER_SEED, workers=0):
    """Training loader (random crops from a folder; centre crops from shards, so a sample's pixels
    name it whichever rank reads it) and the validation loader."""
    if kind == "folder":
        train_loader = ImageLoader(ImageFolder(train), RandomResizedCrop(SIZE), batch_size=batch, seed=seed,
                                   workers=workers)
    else:
        train_loader = ImageLoader(TarShards(train, buffer=4), CenterCrop(SIZE), batch_size=batch, seed=seed,
                                   workers=workers)
    return train_loader, ImageLoader(ImageFolder(val), CenterCrop(SIZE), batch_size=batch, shuffle=False)


def digest(image) -> str:
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()[:16]


class Recorder:
    """Wraps loader.batches: the digests and labels of each batch fit trains on, per (epoch, step)."""

    def __init__(self, loader):
        self.steps, self.batches = [], loader.batches

    def __call__(self, epoch, start=0, *args):
        for step, (x, y) in enumerate(self.batches(epoch, start, *args), start):
            self.steps.append({"epoch": epoch, "step": step, "images": [digest(i) for i in x],
                               "labels": y.tolist()})
            yield x, y


class Kill(fc.callbacks.Callback):
    def __init__(self, at):
        self.at, self.steps = at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--train", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--kind", choices=["folder", "shards"], default="folder")
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--kill-at", type=int, default=0)
    ap.add_argument("--seed-per-rank", action="store_true", help="each rank's loader draws its own seed")
    args = ap.parse_args()
    rank = int(os.environ.get("RANK", 0))
    if args.world > 1:
        parallel.init(timeout_s=args.timeout)
    train, val = loaders(args.train, args.val, args.kind, args.batch, None if args.seed_per_rank else LOADER_SEED,
                         args.workers)
    recorder = Recorder(train)
    train.batches = recorder
    model = build()
    callbacks = [Kill(args.kill_at)] if args.kill_at and rank == 1 else []
    with train:
        history = model.fit(train, epochs=args.epochs, seed=SEED, verbose=0, validation_data=val,
                            callbacks=callbacks, checkpoint_dir=args.ckpt, checkpoint_every=2 if args.ckpt else None,
                            resume=args.resume, distributed=args.world > 1)
    evaluation = model.evaluate(val, return_dict=True)                     # summed over the ranks
    alone = model.evaluate(val, return_dict=True, distributed=False)       # this rank, every sample
    np.savez(f"{args.out}.rank{rank}.npz", *model.get_weights())
    with open(f"{args.out}.rank{rank}.json", "w") as f:
        json.dump({"history": history.history, "evaluate": evaluation, "evaluate_alone": alone,
                   "steps": recorder.steps, "loader_seed": train.seed}, f)
    if args.world > 1:
        parallel.shutdown()   # every rank here before any leaves: no abort in torch's teardown at exit


if __name__ == "__main__":
    main()
