"""One rank of the data-parallel tests, launched as torchrun launches one (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT in its environment), or alone with --world 1 for the one-process baseline."""
import argparse
import json
import os
import signal
import time

import numpy as np

import fastconv as fc
from fastconv import parallel
from fastconv.layers import BatchNormalization, Conv2D, Dense, Flatten, MaxPooling2D, SyncBatchNormalization

SAMPLES = 49        # with 2 ranks x batch 4: six global batches of 8, then one sample (rank 0 gets none)
VAL_SAMPLES = 23    # evaluate splits 11 / 12
CLASSES = 4
SEED = 5
BUCKET_BYTES = 256  # several buckets even for this small model


def data(extra=0, samples=SAMPLES):
    rng = np.random.default_rng(1)
    x = rng.random((samples + VAL_SAMPLES + extra, 8, 8, 2), dtype=np.float32)
    y = rng.integers(0, CLASSES, len(x))
    return (x[VAL_SAMPLES:], y[VAL_SAMPLES:]), (x[:VAL_SAMPLES], y[:VAL_SAMPLES])


def build(bn=None):
    """bn: None, 'plain' (BatchNormalization) or 'sync' (SyncBatchNormalization) after the first conv
    (not before a ReLU, so one-process runs do not fuse it and both compute the same ops)."""
    fc.set_seed(0)
    norm = {None: [], "plain": [BatchNormalization(momentum=0.9)], "sync": [SyncBatchNormalization(momentum=0.9)]}[bn]
    model = fc.Sequential([Conv2D(6, 3, activation="relu", input_shape=(8, 8, 2)), *norm, MaxPooling2D(2),
                           Conv2D(8, 2, activation="relu"), Flatten(), Dense(CLASSES, activation="softmax")])
    model.compile(optimizer=fc.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "precision", "f1"])
    return model


class Fault(fc.callbacks.Callback):
    """On one rank, after `at` training steps: SIGKILL itself, hang, or poison its weights with NaN."""

    def __init__(self, what, at):
        self.what, self.at, self.steps = what, at, 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps == self.at:
            if self.what == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            if self.what == "nan":
                self.model.trainable_weights[0].data[...] = np.nan
                return
            time.sleep(3600)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--fault", choices=["kill", "hang", "nan"], default=None)
    ap.add_argument("--fault-rank", type=int, default=1)
    ap.add_argument("--fault-at", type=int, default=10)
    ap.add_argument("--extra-on-rank1", type=int, default=0)
    ap.add_argument("--bn-on-rank1", action="store_true", help="rank 1 builds another model")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bn", choices=["plain", "sync"], default=None)
    ap.add_argument("--samples", type=int, default=SAMPLES)
    args = ap.parse_args()
    rank = int(os.environ.get("RANK", 0))
    if args.world > 1:
        parallel.init(timeout_s=args.timeout, device=args.device)
    (x, y), (xv, yv) = data(args.extra_on_rank1 if rank == 1 else 0, args.samples)
    with fc.using_device(args.device):
        model = build("plain" if args.bn_on_rank1 and rank == 1 else args.bn)
        model._ensure_built(x.shape[1:])
    callbacks = [Fault(args.fault, args.fault_at)] if args.fault and rank == args.fault_rank else []
    dp = parallel.DataParallel(bucket_bytes=BUCKET_BYTES) if args.world > 1 else False
    history = model.fit(x, y, epochs=args.epochs, batch_size=args.batch, seed=SEED, verbose=0,
                        validation_data=(xv, yv), callbacks=callbacks, checkpoint_dir=args.ckpt,
                        checkpoint_every=2 if args.ckpt else None, resume=args.resume, distributed=dp)
    evaluation = model.evaluate(xv, yv, return_dict=True)               # summed over ranks when there are several
    alone = model.evaluate(xv, yv, return_dict=True, distributed=False)  # this rank, all samples
    np.savez(f"{args.out}.rank{rank}.npz", *model.get_weights())
    with open(f"{args.out}.rank{rank}.json", "w") as f:
        json.dump({"history": history.history, "evaluate": evaluation, "evaluate_alone": alone,
                   "step_capture": str(model.step_capture)}, f)
    if args.world > 1:
        parallel.shutdown()   # every rank here before any leaves: no abort in torch's teardown at exit


if __name__ == "__main__":
    main()
