"""compile / fit / evaluate / predict, shared by Sequential and functional models."""
from __future__ import annotations

import contextlib
import math
import numbers
import time

import numpy as np

from .._checks import _describe, check_bool, check_float, check_int
from ..callbacks import Callback, History
from ..data.labels import batch_class_ids
from ..data.shares import steps_per_epoch
from ..loss_scaling import DynamicLossScaler
from ..losses import get_loss
from ..metrics import get_metric
from ..optimizers import get_optimizer
from ..precision import check_precision, effective, using
from ..random import next_seed
from ..tensor import Tensor, no_grad


def _as_inputs(x, name="x"):
    if isinstance(x, Tensor):
        x = x.numpy()
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {x.dtype}")
    return x


def _check_xy(x, y, loss=None):
    x = _as_inputs(x, "x")
    if y is None:
        raise ValueError("y must be given (labels for every sample in x)")
    y = _as_inputs(y, "y")
    if len(y) != len(x):
        raise ValueError(f"x and y must have the same number of samples, got {len(x)} and {len(y)}")
    return x, y


def _image_loader(x):
    """x when it is a fastconv.data.images.ImageLoader (uint8 batches, normalised here), else None."""
    from ..data.images.loader import ImageLoader
    return x if isinstance(x, ImageLoader) else None


def _normalized(model, xb, loader):
    from ..data.images.normalize import normalize
    if not len(xb):   # a rank's empty share: no kernel launch with zero blocks
        return xb.astype(np.float32)
    if model.device == "cuda" and isinstance(xb, np.ndarray):
        import cupy
        xb = cupy.asarray(xb)   # uint8 crosses to the device: a quarter of float32's bytes
    return normalize(xb, loader.mean, loader.std)


def _check_verbose(verbose) -> int:
    """'auto' (a progress bar) or an int: 0 silent, >= 1 a progress bar."""
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    if isinstance(verbose, bool) or not isinstance(verbose, numbers.Integral):
        raise TypeError(f"verbose must be 'auto' or an int >= 0, got {_describe(verbose)}")
    if verbose < 0:
        raise ValueError(f"verbose must be 'auto' or an int >= 0, got {verbose}")
    return int(verbose)


class TrainingMixin:
    def __init__(self):
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.stop_training = False
        self.compiled = False
        self.precision = None      # compile(precision=...): this model's policy; None follows the global one
        self.loss_scaler = None    # fp16 training's DynamicLossScaler, made at the first fp16 step

    def compile(self, optimizer="adam", loss=None, metrics=None, precision=None) -> None:
        if loss is None:
            raise ValueError("loss must be given, e.g. loss='categorical_crossentropy'")
        self.optimizer = get_optimizer(optimizer)
        self.loss = get_loss(loss)
        if metrics is not None and not isinstance(metrics, (list, tuple)):
            raise TypeError(f"metrics must be a list, got {type(metrics).__name__}")
        self.metrics = [get_metric(m) for m in (metrics or [])]
        self.precision = None if precision is None else check_precision(precision, "compile(precision=...)")
        self.loss_scaler = None
        self.compiled = True

    def _require_compiled(self, what):
        if not self.compiled:
            raise RuntimeError(f"call model.compile(optimizer, loss, metrics) before model.{what}()")

    # ---- one step --------------------------------------------------------------------------
    def _fused_softmax(self) -> bool:
        return self.loss.fusable_with_softmax and getattr(self.output_layer, "activation", None) == "softmax"

    @property
    def device(self) -> str:
        weights = self.weights
        return weights[0].device if weights else "cpu"

    def _precision_scope(self):
        """The model's compile(precision=...) for its forward passes (the backward follows its forward)."""
        own = getattr(self, "precision", None)
        return using(own) if own else contextlib.nullcontext()

    def _active_loss_scaler(self):
        """fp16 trains with dynamic loss scaling (fastconv/loss_scaling.py); fp32, tf32 and bf16 need none."""
        if effective(getattr(self, "precision", None)) != "fp16":
            return None
        if self.loss_scaler is None:
            self.loss_scaler = DynamicLossScaler()
        return self.loss_scaler

    def _precision_logs(self) -> dict:
        """fp16 training reports the current loss scale and the steps skipped on overflow (so far)."""
        s = getattr(self, "loss_scaler", None)
        if s is None or effective(getattr(self, "precision", None)) != "fp16":
            return {}
        return {"loss_scale": s.scale, "skipped_steps": s.skipped_steps}

    def _loss_and_output(self, xb, yb, training):
        with self._precision_scope():
            return self._loss_and_output_here(xb, yb, training)

    def _loss_and_output_here(self, xb, yb, training):
        x = Tensor(xb.astype(np.float32, copy=False), device=self.device)
        if self._fused_softmax():
            out = self(x, training=training, return_logits=True)
            return self.loss.from_logits_loss(yb, out), out
        out = self(x, training=training)
        return self.loss(yb, out), out

    def train_on_batch(self, x, y) -> float:
        self._require_compiled("train_on_batch")
        x, y = _check_xy(x, y)
        self._ensure_built(x.shape[1:])
        params = self.trainable_weights
        for p in params:
            p.grad = None
        loss, out = self._loss_and_output(x, y, training=True)
        value = float(loss.item())
        if not math.isfinite(value):  # checked before the update, so the weights stay the last good ones
            raise FloatingPointError(f"the training loss became {value}; the weights were not updated. "
                                     "Lower the learning rate or check the inputs for NaN/Inf")
        scaler = self._active_loss_scaler()
        loss.backward(None if scaler is None else scaler.scale)
        if scaler is None or scaler.unscale_and_check(params):   # an overflowed fp16 step is skipped
            self.optimizer.step(params)
        for m in self.metrics:
            m.update(batch_class_ids(y), out.numpy())
        return value

    # ---- loops -----------------------------------------------------------------------------
    def fit(self, x, y=None, epochs=1, batch_size=32, validation_split=0.0, validation_data=None,
            shuffle=True, callbacks=None, verbose="auto", initial_epoch=0, seed=None,
            checkpoint_dir=None, checkpoint_every=None, resume=False, graph=None, distributed=None) -> History:
        """Keras' fit. The data order of epoch e is a permutation drawn from (seed, e), so a run is
        fixed by its seed (seed=None draws one from fc.set_seed's generator). With checkpoint_dir,
        the whole training state (weights, optimizer, data position, history) is written atomically
        every `checkpoint_every` steps and at each epoch end; resume=True continues from the last
        checkpoint and ends bitwise where an uninterrupted run ends. On 'cuda' the step is replayed
        from a CUDA graph (graph=None or True; graph=False: eager) and batches are prefetched on a
        side stream (fastconv/models/step_capture.py, fastconv/data/prefetch.py); model.step_capture
        says which path ran and why. Under torchrun (or distributed=True) each process trains on its
        share of every global batch of batch_size × world size and the gradients are all-reduced
        (fastconv/parallel/, docs/distributed.md). x may be a fastconv.data.images.ImageLoader
        (y=None): its uint8 batches cross to the device as uint8 and are normalised there; its seed
        fixes the order, and a resume replays the batches. Distributed, its batch_size is per rank and
        each rank reads only its share (ImageLoader.batches(..., rank, world_size))."""
        self._require_compiled("fit")
        run = _Fit(self, x, y, epochs, batch_size, validation_split, validation_data, shuffle, verbose,
                   initial_epoch, seed, checkpoint_every, resume, checkpoint_dir)
        self._ensure_built(run.loader.image_shape if run.loader is not None else run.x.shape[1:])
        run.join(distributed)
        run.restore(checkpoint_dir, resume)
        from .step_capture import make_steps
        if run.dp:
            run.dp.start(self, run.x, run.y, batch_size=run.batch_size, epochs=run.epochs, shuffle=run.shuffle,
                         seed=run.seed, position=run.position,
                         loader_seed=None if run.loader is None else run.loader.seed)
        runner = make_steps(self, graph, run.verbose, data_parallel=run.dp)
        cbs: list[Callback] = [*(callbacks or []), run.history]  # History last, as Keras: it sees what others log
        for cb in cbs:
            cb.set_model(self)
            cb.on_train_begin()
        self.stop_training = False
        for epoch in range(run.position["epoch"], run.epochs):
            run.epoch(epoch, runner, cbs)
            if self.stop_training:
                break
        for cb in cbs:
            cb.on_train_end()
        return run.history

    def evaluate(self, x, y=None, batch_size=32, verbose=0, return_dict=False, distributed=None):
        """distributed: None sums over the ranks of the group fit or fastconv.parallel.init() made, if any
        (each rank evaluates its share); False evaluates all of x on this process alone."""
        self._require_compiled("evaluate")
        loader = _image_loader(x)
        from ..parallel.data_parallel import evaluation_group
        group = evaluation_group(distributed)
        batch_size, verbose = check_int(batch_size, "batch_size", 1), _check_verbose(verbose)
        if loader is None:
            x, y = _check_xy(x, y)
            self._ensure_built(x.shape[1:])
            if group:
                from ..parallel.metrics import evaluation_share
                x, y = evaluation_share(x, y, group)
            batches = ((x[s:s + batch_size], y[s:s + batch_size]) for s in range(0, len(x), batch_size))
        else:   # the loader's own batch size and order (shuffle=False for a fixed validation set)
            self._ensure_built(loader.image_shape)   # with a group: this rank's share of epoch 0, every sample once
            shares = loader.batches(0, 0, group.rank if group else 0, group.world_size if group else 1)
            batches = ((_normalized(self, xb, loader), yb) for xb, yb in shares)
        for m in self.metrics:
            m.reset()
        loss_sum, count = 0.0, 0
        with no_grad():
            for xb, yb in batches:
                if not len(yb):   # a rank's empty share of a short last batch
                    continue
                count += len(xb)
                loss, out = self._loss_and_output(xb, yb, training=False)
                loss_sum += float(loss.item()) * len(xb)
                for m in self.metrics:
                    m.update(batch_class_ids(yb), out.numpy())
        if group:
            from ..parallel.metrics import reduce_loss, reduce_metrics
            loss_sum, count = reduce_loss(loss_sum, count, group)
            reduce_metrics(self.metrics, group)
        result = {"loss": loss_sum / max(count, 1), **{m.name: m.result() for m in self.metrics}}
        if verbose and (not group or group.rank == 0):
            print(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()))
        return result if return_dict else (list(result.values()) if self.metrics else result["loss"])

    def predict(self, x, batch_size=32, verbose=0) -> np.ndarray:
        x = _as_inputs(x, "x")
        batch_size, verbose = check_int(batch_size, "batch_size", 1), _check_verbose(verbose)
        self._ensure_built(x.shape[1:])
        outs = []
        with no_grad():
            for start in range(0, len(x), batch_size):
                xb = Tensor(x[start:start + batch_size].astype(np.float32, copy=False), device=self.device)
                with self._precision_scope():
                    outs.append(self(xb).numpy())
        if not outs:
            return np.zeros((0, *self.output_shape[1:]), np.float32)
        return np.concatenate(outs)


class _Fit:
    """One fit call in named steps: resolve its arguments, join the data-parallel group, restore a
    checkpoint, run each epoch. `position` (epoch, step, loss so far) is what a checkpoint resumes from."""

    def __init__(self, model, x, y, epochs, batch_size, validation_split, validation_data, shuffle, verbose,
                 initial_epoch, seed, checkpoint_every, resume, checkpoint_dir):
        self.model, self.loader = model, _image_loader(x)
        if self.loader is not None:
            if y is not None or validation_split:
                raise ValueError("fit(x=ImageLoader) takes its labels from the loader: y must be None and "
                                 "validation_split 0 (pass validation_data=ImageLoader(...) instead)")
            model.data_info = {"class_names": x.class_names, "input": "uint8 RGB",   # x is the loader
                               "image_shape": list(x.image_shape), "mean": list(x.mean), "std": list(x.std)}
        else:
            x, y = _check_xy(x, y)
        self.epochs = check_int(epochs, "epochs", 1)
        initial_epoch = check_int(initial_epoch, "initial_epoch", 0)
        if initial_epoch >= self.epochs:
            raise ValueError(f"initial_epoch must be < epochs ({self.epochs}), got {initial_epoch}")
        self.batch_size, self.verbose = check_int(batch_size, "batch_size", 1), _check_verbose(verbose)
        if not 0.0 <= check_float(validation_split, "validation_split") < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
        self.shuffle = check_bool(shuffle, "shuffle")
        check_bool(resume, "resume")
        self.seed = None if seed is None else check_int(seed, "seed", 0)
        self.checkpoint_every = checkpoint_every if checkpoint_every is None else \
            check_int(checkpoint_every, "checkpoint_every", 1)
        if resume and checkpoint_dir is None:
            raise ValueError("resume=True needs checkpoint_dir")
        if validation_split and validation_data is None:
            cut = int(len(x) * (1 - validation_split))  # the last samples, before shuffling, as Keras
            x, y, validation_data = x[:cut], y[:cut], (x[cut:], y[cut:])
        if self.loader is None and len(x) == 0:
            raise ValueError("x holds no training samples")
        self.x, self.y, self.validation_data = x, y, validation_data
        self.position = {"epoch": initial_epoch, "step": 0, "loss_sum": 0.0, "seen": 0}
        self.history, self.dp, self.ckpt = History(), None, None

    def join(self, distributed) -> None:
        """The data-parallel group, if any (dp None: this process trains alone), whose ranks take rank 0's
        seeds; then the steps per epoch."""
        from ..parallel.data_parallel import data_parallel
        self.dp = dp = data_parallel(self.model, distributed)
        if dp and self.loader is not None:   # each rank reads its share of global batches of loader.batch_size x ranks
            self.batch_size = self.loader.batch_size
            self.loader.seed = dp.agree_seed(self.loader.seed)   # rank 0's: a seed=None loader drew one per rank
        self.verbose = dp.verbose(self.verbose) if dp else self.verbose
        seed = next_seed() if self.seed is None else self.seed   # None follows fc.set_seed
        self.seed = dp.agree_seed(seed) if dp else seed
        self.world_size = dp.world_size if dp else 1
        self.steps = self.loader.steps_per_epoch(self.world_size) if self.loader is not None else \
            steps_per_epoch(len(self.x), self.batch_size, self.world_size)

    def restore(self, checkpoint_dir, resume) -> None:
        """The checkpoint to write, if any; with resume, the interrupted run's seeds, position and history."""
        if checkpoint_dir is None:
            return
        from ..parallel.data_parallel import check_resume_world
        from .checkpoint import Checkpoint
        self.ckpt = Checkpoint(checkpoint_dir)
        if not (resume and self.ckpt.exists()):
            return
        state = self.ckpt.restore(self.model)
        check_resume_world(state, self.world_size)
        self.seed, self.position = state["seed"], state["position"]
        self.history.history, self.history.epoch = state["history"], state["epochs_done"]
        if self.loader is not None and state.get("loader_seed") is not None:
            self.loader.seed = state["loader_seed"]   # the batches after a resume are the interrupted run's
        if state.get("loss_scaler") is not None:
            self.model.loss_scaler = DynamicLossScaler()
            self.model.loss_scaler.load_state(state["loss_scaler"])

    def save(self) -> None:
        if self.dp and not self.dp.writes:
            return
        scaler = self.model.loss_scaler
        self.ckpt.save(self.model, {"seed": self.seed, "position": self.position, "history": self.history.history,
                                    "epochs_done": self.history.epoch, "world_size": self.world_size,
                                    "loader_seed": None if self.loader is None else self.loader.seed,
                                    "loss_scaler": None if scaler is None else scaler.state()})

    def batches(self, epoch, first, runner):
        """This process's batches of an epoch from step `first` on, prefetched to the device."""
        from ..data.prefetch import prefetch
        dp, bs = self.dp, self.batch_size
        if self.loader is not None:
            source = dp.loader_batches(self.loader, epoch, first) if dp else self.loader.batches(epoch, first)
        else:
            n = len(self.x)
            order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
            slices = dp.shard(order, bs, first) if dp else \
                (order[s * bs:(s + 1) * bs] for s in range(first, self.steps))
            source = ((self.x[idx], self.y[idx]) for idx in slices)
        return prefetch(source, self.model.device, stream=runner.stream)

    def epoch(self, epoch, runner, cbs) -> None:
        """One epoch's steps, from where the position says (a resumed epoch starts part-way), then its end."""
        model, dp, ckpt, every = self.model, self.dp, self.ckpt, self.checkpoint_every
        for cb in cbs:
            cb.on_epoch_begin(epoch)
        for m in model.metrics:
            m.reset()
        first = self.position["step"] if self.position["epoch"] == epoch else 0
        bar = _progress(self.steps, f"Epoch {epoch + 1}/{self.epochs}", self.verbose, first)
        seen, loss_sum = (self.position["seen"], self.position["loss_sum"]) if first else (0, 0.0)
        start = time.perf_counter()
        runner.begin_epoch(loss_sum, seen)
        for step, ((xb, yb_device), (_, yb)) in enumerate(self.batches(epoch, first, runner), first):
            if self.loader is not None:   # on the steps' stream, which waits for this batch's copy
                with runner.stream if runner.stream is not None else contextlib.nullcontext():
                    xb = _normalized(model, xb, self.loader)
            try:
                runner.step(xb, yb, yb_device)
            except FloatingPointError as exc:
                where = f" The last good checkpoint is in {ckpt.path}." if ckpt and ckpt.exists() else ""
                raise FloatingPointError(f"epoch {epoch + 1}, step {step + 1}: {exc}.{where}") from None
            seen += len(yb)
            checkpoint_now = ckpt and every and (step + 1) % every == 0 and step + 1 < self.steps
            loss_sum, loss_seen = runner.totals(exact=bool(checkpoint_now))  # a graph reads the loss now and then
            # under data parallelism the global count (ranks' shares may differ: skipped images, tar shards)
            self.position = {"epoch": epoch, "step": step + 1, "loss_sum": loss_sum, "seen": loss_seen if dp else seen}
            logs = {**({"loss": loss_sum / loss_seen} if loss_seen else {}),
                    **{m.name: m.result() for m in model.metrics}, **model._precision_logs()}
            for cb in cbs:
                cb.on_train_batch_end(step, logs)
            if bar is not None:   # below 10 img/s (a 224x224 ResNet on the CPU) with two decimals, not "0"
                rate = (seen - first * self.batch_size) / (time.perf_counter() - start)
                bar.set_postfix({**{k: f"{v:.4f}" for k, v in logs.items()}, "img/s": f"{rate:.{0 if rate >= 10 else 2}f}"},
                                refresh=False)
                bar.update(1)
            if checkpoint_now:
                self.save()
        self.end_epoch(epoch, runner, cbs, bar)

    def end_epoch(self, epoch, runner, cbs, bar) -> None:
        """The epoch's logs (summed over ranks), validation, the callbacks, a checkpoint."""
        model, dp = self.model, self.dp
        loss_sum, seen = runner.totals()
        if dp:   # summed over ranks: every rank logs (and its callbacks decide on) the same numbers
            dp.reduce_metrics(model.metrics)
            dp.sync_state(model)
        logs = {"loss": loss_sum / seen, **{m.name: m.result() for m in model.metrics}, **model._precision_logs()}
        val = self.validation_data
        if val is not None:
            val = model.evaluate(*((val,) if _image_loader(val) is not None else val), batch_size=self.batch_size,
                                 verbose=0, return_dict=True, distributed=dp.group if dp else False)
            logs.update({f"val_{k}": v for k, v in val.items()})
        if bar is not None:
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()}, refresh=True)
            bar.close()
        for cb in cbs:
            cb.on_epoch_end(epoch, logs)
        self.position = {"epoch": epoch + 1, "step": 0, "loss_sum": 0.0, "seen": 0}
        if self.ckpt:
            self.save()


def _progress(total, desc, verbose, done=0):
    if verbose < 1:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=done, desc=desc, unit="batch", leave=True, dynamic_ncols=True)
