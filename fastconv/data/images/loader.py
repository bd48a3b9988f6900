"""ImageLoader: uint8 NHWC batches from an ImageFolder or TarShards, decoded and augmented in worker processes.

    loader = ImageLoader(ImageFolder("train/"), RandomResizedCrop(224), batch_size=256, workers=8, seed=0)
    for x, y in loader:          # x (N, 224, 224, 3) uint8, y (N,) int64; one epoch per loop
        ...

- Deterministic: epoch e's sample order is drawn from (seed, e), and sample k of that epoch is augmented
  with a generator seeded by (seed, e, k), so the batches do not depend on the number of workers, and
  batches(e, start=b) replays batch b onwards exactly (fit's checkpoints resume mid-epoch this way).
- Sharded across ranks (data-parallel fit / evaluate): batches(e, start, rank, world_size) gives rank its
  share of each global batch of batch_size x world_size. From a folder every rank walks the same epoch
  order and decodes only its contiguous part of each global batch, with the augmentation of that
  sample's global position, so the ranks' step-s batches together are exactly the step-s batch of one
  process with batch_size x world_size. Tar shards are streams: rank r reads only its own shard files
  (TarShards.rank_items); ranks whose files hold fewer batches pad the epoch with empty batches, so
  every rank runs the same number of steps (steps_per_epoch).
- Bounded: `prefetch` batch slots in shared memory (multiprocessing RawArrays); a batch is handed to a
  worker only when a slot is free, and workers write their images straight into it. The process
  assembling batches holds paths (folders) or one shuffle buffer of encoded bytes (shards), never a
  decoded data set. memory_limit (bytes) refuses a configuration whose buffers would not fit (each
  worker process also holds the one image it is decoding, outside that count).
- Bad data: an image that cannot be decoded (corrupt, truncated, not an image, unsupported mode) or a
  file that cannot be read is skipped, counted in `skipped` with its path and the reason and warned
  about (on_error='skip'), or raises LoaderError naming it (on_error='raise'); a batch with skipped
  images is shorter. A worker that raises or dies ends the iteration with a LoaderError that carries
  its error or exit code; the loader never waits on a dead worker, nor longer than `timeout` seconds
  (if given) on a live one that is stuck.
"""
from __future__ import annotations

import itertools
import multiprocessing
import queue
import signal
import sys
import traceback
import warnings

import numpy as np

from ..._checks import _describe, check_bool, check_int
from ..shares import part as share, steps_per_epoch
from .decode import DecodeError
from .transforms import check_transform

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_POLL_SECONDS = 0.5   # how often a waiting loader checks that its workers are alive


class LoaderError(RuntimeError):
    """A sample that could not be loaded with on_error='raise', or a worker that failed or died."""


class SkippedImageWarning(UserWarning):
    pass


def _load_sample(payload, label, name, transform, rng):
    data = payload
    if not isinstance(payload, (bytes, bytearray)):
        with open(payload, "rb") as f:
            data = f.read()
    return transform(data, rng, name)


def _assemble(refs, key, first, transform, on_error, out):
    """Decode and augment the samples `refs` (positions first, first+1, ... of the stream `key`:
    (seed, epoch), or (seed, epoch, rank) for a rank's own shard files) into `out`; -> (count, labels, skipped)."""
    labels, skipped, n = [], [], 0
    for k, (payload, label, name) in enumerate(refs):
        rng = np.random.default_rng([*key, first + k])
        try:
            pixels = _load_sample(payload, label, name, transform, rng)
        except (DecodeError, OSError) as exc:
            reason = str(exc) if isinstance(exc, DecodeError) else f"unreadable: {type(exc).__name__}: {exc}"
            if on_error == "raise":
                raise LoaderError(reason if name in reason else f"{name}: {reason}") from None
            skipped.append((name, reason))
            continue
        if pixels.shape != out.shape[1:]:
            raise LoaderError(f"{name}: the transform returned shape {pixels.shape}, expected {out.shape[1:]}")
        out[n] = pixels
        labels.append(label)
        n += 1
    return n, np.asarray(labels, np.int64), skipped


def _worker(slots, shape, transform, on_error, tasks, results):
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the main process's to handle; it stops us
    views = [np.frombuffer(s, np.uint8).reshape(shape) for s in slots]
    while True:
        task = tasks.get()
        if task is None:
            return
        seq, slot, key, first, refs = task   # the seed travels with each task: fit may agree a new one
        try:
            count, labels, skipped = _assemble(refs, key, first, transform, on_error, views[slot])
            results.put(("ok", seq, slot, count, labels, skipped))
        except BaseException as exc:   # reported to the loader, which raises it; the worker lives on
            message = str(exc) if isinstance(exc, LoaderError) else f"{type(exc).__name__}: {exc}"
            results.put(("error", seq, slot, message, traceback.format_exc()))


class ImageLoader:
    """Batches (x uint8 (N, H, W, 3), y int64 (N,)) of `source` through `transform`; workers=0 decodes in
    this process. mean/std (per channel, for [0, 1] pixels) are what fit and normalize() apply."""

    def __init__(self, source, transform, batch_size: int = 64, shuffle: bool = True, seed: int | None = None,
                 workers: int = 0, prefetch: int | None = None, on_error: str = "skip",
                 memory_limit: int | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 start_method: str | None = None, timeout: float | None = None):
        if not all(hasattr(source, a) for a in ("epoch_items", "class_names", "__len__")):
            raise TypeError(f"source must be an ImageFolder or TarShards, got {_describe(source)}")
        self.source = source
        self.transform = check_transform(transform)
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.shuffle = check_bool(shuffle, "shuffle")
        self.seed = int(np.random.default_rng().integers(2**63 - 1)) if seed is None else check_int(seed, "seed", 0)
        self.workers = check_int(workers, "workers", 0)
        self.prefetch = max(2, 2 * self.workers) if prefetch is None else check_int(prefetch, "prefetch", 1)
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        self.on_error = on_error
        self.mean, self.std = _channels(mean, "mean"), _channels(std, "std")
        if min(self.std) <= 0:
            raise ValueError(f"std must be > 0 per channel, got {self.std}")
        self.start_method = start_method or ("fork" if sys.platform.startswith("linux") else "spawn")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout!r}")
        self.timeout = timeout
        if memory_limit is not None:
            memory_limit = check_int(memory_limit, "memory_limit", 1)
            need = self.buffer_bytes()
            if need > memory_limit:
                raise ValueError(f"memory_limit={memory_limit} bytes is below the {need} bytes this loader's "
                                 "buffers need (batch slots, the batch handed out, a shard shuffle buffer); "
                                 "lower batch_size, prefetch or the shards' buffer")
        self.memory_limit = memory_limit
        self.skipped: list[tuple[str, str]] = []
        self.epoch, self.position = 0, 0   # __iter__'s place: epoch, batches done in it
        self._pool = None

    # ---- sizes ----------------------------------------------------------------------------
    @property
    def class_names(self):
        return list(self.source.class_names)

    @property
    def num_samples(self) -> int:
        return len(self.source)

    @property
    def image_shape(self):
        return tuple(self.transform.output_shape)

    def __len__(self) -> int:
        """Batches per epoch (a batch with skipped images is shorter, but still counts)."""
        return steps_per_epoch(self.num_samples, self.batch_size)

    def steps_per_epoch(self, world_size: int = 1) -> int:
        """Batches per epoch on each of world_size ranks (batches(..., world_size=...) yields this many)."""
        world_size = check_int(world_size, "world_size", 1)
        if world_size == 1:
            return len(self)
        if self._streams_per_rank(world_size):
            return max(steps_per_epoch(n, self.batch_size) for n in self.source.rank_counts(world_size))
        return steps_per_epoch(self.num_samples, self.batch_size, world_size)

    def _streams_per_rank(self, world_size) -> bool:
        """Whether each rank reads its own part of the source (tar shards) rather than its part of every batch."""
        return world_size > 1 and hasattr(self.source, "rank_items")

    def buffer_bytes(self) -> int:
        """Host memory this loader's own buffers take at most, decoded images and encoded bytes."""
        batch = self.batch_size * int(np.prod(self.image_shape))
        slots = self.prefetch if self.workers else 1
        encoded = getattr(self.source, "mean_sample_bytes", 0)
        in_flight = (getattr(self.source, "buffer", 0) + slots * self.batch_size) * encoded
        return (slots + 1) * batch + int(in_flight)

    # ---- iteration ------------------------------------------------------------------------
    def _batch_refs(self, epoch, start, rank=0, world_size=1):
        """(key, first position, sample refs) of this rank's batches from batch `start` on."""
        steps = self.steps_per_epoch(world_size) if world_size > 1 else None   # None: until the items end
        if self._streams_per_rank(world_size):   # this rank's own shard files, padded to the common step count
            items = self.source.rank_items(self.seed, epoch, self.shuffle, rank, world_size)
            key, size, parts, part = (self.seed, epoch, rank), self.batch_size, 1, 0
        else:
            items = self.source.epoch_items(self.seed, epoch, self.shuffle)
            key, size, parts, part = (self.seed, epoch), self.batch_size * world_size, world_size, rank
        items = itertools.islice(items, start * size, None)
        for b in itertools.count(start) if steps is None else range(start, steps):
            refs = list(itertools.islice(items, size))
            if not refs and steps is None:
                return
            lo, hi = share(len(refs), part, parts)
            yield key, b * size + lo, refs[lo:hi]

    def batches(self, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1):
        """The batches of epoch `epoch` from batch `start` on: the same batches whatever the workers.
        With world_size > 1, rank's share of each step (module docstring); a share may be empty."""
        epoch, start = check_int(epoch, "epoch", 0), check_int(start, "start", 0)
        world_size = check_int(world_size, "world_size", 1)
        rank = check_int(rank, "rank", 0)
        if rank >= world_size:
            raise ValueError(f"rank must be < world_size={world_size}, got {rank}")
        if self._streams_per_rank(world_size):
            self.source.check_ranks(world_size)
        if self.workers == 0:
            for key, first, refs in self._batch_refs(epoch, start, rank, world_size):
                out = np.empty((len(refs), *self.image_shape), np.uint8)
                count, labels, skipped = _assemble(refs, key, first, self.transform, self.on_error, out)
                self._note_skipped(skipped)
                yield out[:count], labels
            return
        yield from self._parallel(epoch, start, rank, world_size)

    def __iter__(self):
        if self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0
        for batch in self.batches(self.epoch, self.position):
            self.position += 1   # counted before the yield: a state saved after this batch skips it
            yield batch
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                "num_samples": self.num_samples, "batch_size": self.batch_size, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {_describe(state)}")
        for key in ("num_samples", "batch_size", "shuffle"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"state was saved with {key}={state.get(key)!r} but this loader has "
                                 f"{getattr(self, key)!r}; it cannot resume a different configuration")
        self.seed = check_int(state["seed"], "state['seed']", 0)
        self.epoch = check_int(state["epoch"], "state['epoch']", 0)
        self.position = check_int(state["position"], "state['position']", 0)

    def _note_skipped(self, skipped):
        for name, reason in skipped:
            self.skipped.append((name, reason))
            warnings.warn(f"skipped {reason if name in reason else f'{name}: {reason}'}", SkippedImageWarning,
                          stacklevel=3)

    # ---- worker processes -----------------------------------------------------------------
    def _start(self):
        if self._pool is not None:
            return self._pool
        ctx = multiprocessing.get_context(self.start_method)
        shape = (self.batch_size, *self.image_shape)
        slots = [ctx.RawArray("B", int(np.prod(shape))) for _ in range(self.prefetch)]
        tasks, results = ctx.Queue(), ctx.Queue()
        procs = [ctx.Process(target=_worker, args=(slots, shape, self.transform, self.on_error, tasks, results),
                             daemon=True, name=f"fastconv-loader-{i}")
                 for i in range(self.workers)]
        for p in procs:
            p.start()
        views = [np.frombuffer(s, np.uint8).reshape(shape) for s in slots]
        self._pool = (procs, tasks, results, views)
        return self._pool

    def _result(self, results, procs):
        waited = 0.0
        while True:
            try:
                return results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                waited += _POLL_SECONDS
                dead = [p for p in procs if not p.is_alive()]
                if dead:
                    self.close()
                    raise LoaderError(f"loader worker {dead[0].name} (pid {dead[0].pid}) died with exit code "
                                      f"{dead[0].exitcode}; the iteration cannot continue") from None
                if self.timeout is not None and waited >= self.timeout:
                    self.close()
                    raise LoaderError(f"no batch came back from the loader workers within timeout={self.timeout} s; "
                                      "they were stopped") from None

    def _parallel(self, epoch, start, rank, world_size):
        procs, tasks, results, views = self._start()
        free, pending, issued, received, done = list(range(len(views)))[::-1], {}, 0, 0, False
        refs = self._batch_refs(epoch, start, rank, world_size)
        try:
            while True:
                while free and not done:
                    nxt = next(refs, None)
                    if nxt is None:
                        done = True
                        break
                    tasks.put((issued, free.pop(), *nxt))
                    issued += 1
                if received == issued and done:
                    return
                while received not in pending:
                    msg = self._result(results, procs)
                    pending[msg[1]] = msg
                msg = pending.pop(received)
                received += 1
                if msg[0] == "error":
                    free.append(msg[2])
                    raise LoaderError(f"{msg[3]}\n(in a loader worker; its traceback:)\n{msg[4]}")
                _, _, slot, count, labels, skipped = msg
                x = views[slot][:count].copy()   # the slot is refilled as soon as it is free
                free.append(slot)
                self._note_skipped(skipped)
                yield x, labels
        finally:   # stopped early or failed: wait for the batches in flight, so no worker writes a reused slot
            if self._pool is not None:
                try:
                    for _ in range(issued - received - len(pending)):
                        self._result(results, procs)
                except LoaderError:
                    pass

    def close(self):
        """Stop the worker processes (they also stop with this process)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        procs, tasks, results, _ = pool
        for p in procs:
            if p.is_alive():
                tasks.put(None)
        for p in procs:
            p.join(timeout=2)
            if p.is_alive():
                p.terminate()
                p.join(timeout=2)
        tasks.cancel_join_thread()
        results.cancel_join_thread()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_pool"] = None
        return state

    def __repr__(self):
        return (f"ImageLoader({self.source!r}, {self.transform!r}, batch_size={self.batch_size}, "
                f"workers={self.workers}, seed={self.seed})")


def _channels(value, name):
    values = np.asarray(value, np.float64).ravel()
    if values.size != 3 or not np.all(np.isfinite(values)):
        raise ValueError(f"{name} must be 3 finite numbers (R, G, B), got {value!r}")
    return tuple(float(v) for v in values)
