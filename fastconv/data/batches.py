"""Mini-batches over (x, y), reshuffled every epoch, with a resumable state."""
from __future__ import annotations

import math

import numpy as np

from .._checks import _describe, check_bool, check_int
from ..random import next_seed

_STATE_KEYS = ("seed", "epoch", "position", "num_samples", "shuffle")


class BatchIterator:
    """Iterating yields one epoch of (xb, yb) batches (xb alone when y is None), the last one partial.

    Epoch e's order is a pure function of (seed, e), so the state is just (seed, epoch, position):
    state_dict() / load_state_dict() resume a run at the exact next sample. position counts samples
    already handed out in the current epoch, so a resume may even change batch_size. seed=None draws
    a seed once from fc.set_seed's generator, which state_dict() records. One iteration at a time: a second `for` loop continues
    where the previous one stopped.
    """

    def __init__(self, x, y=None, batch_size: int = 32, shuffle: bool = True, seed: int | None = None):
        x = np.asanyarray(x)
        if x.ndim == 0 or len(x) == 0:
            raise ValueError(f"x must be an array holding at least one sample, got {_describe(x)}")
        if y is not None:
            y = np.asanyarray(y)
            if y.ndim == 0 or len(y) != len(x):
                raise ValueError(f"x and y must have the same number of samples, got {len(x)} and "
                                 f"{len(y) if y.ndim else _describe(y)}")
        check_bool(shuffle, "shuffle")
        self.x, self.y = x, y
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.shuffle = bool(shuffle)
        self.seed = next_seed() if seed is None else check_int(seed, "seed", 0)   # None follows fc.set_seed
        self.epoch = 0
        self.position = 0

    @property
    def num_samples(self) -> int:
        return len(self.x)

    def __len__(self) -> int:
        """Batches per epoch."""
        return math.ceil(self.num_samples / self.batch_size)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The sample order of one epoch."""
        if not self.shuffle:
            return np.arange(self.num_samples)
        return np.random.default_rng([self.seed, epoch]).permutation(self.num_samples)

    def __iter__(self):
        if self.position >= self.num_samples:  # the last batch was taken but the loop never asked for more
            self.epoch, self.position = self.epoch + 1, 0
        order = self.epoch_order(self.epoch)
        while self.position < self.num_samples:
            start = self.position
            stop = min(start + self.batch_size, self.num_samples)
            # without shuffling a slice gives views, not copies
            idx = order[start:stop] if self.shuffle else slice(start, stop)
            self.position = stop  # counted before the yield: a state saved after this batch skips it
            yield self.x[idx] if self.y is None else (self.x[idx], self.y[idx])
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        """JSON-friendly state: seed, epoch, position (samples done in this epoch), num_samples, shuffle."""
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position,
                "num_samples": self.num_samples, "shuffle": self.shuffle}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {_describe(state)}")
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise ValueError(f"state must have the keys {list(_STATE_KEYS)}, got one missing {missing}")
        if state["num_samples"] != self.num_samples:
            raise ValueError(f"state was saved for {state['num_samples']} samples but this iterator has "
                             f"{self.num_samples}; it cannot resume a different data set")
        if bool(state["shuffle"]) != self.shuffle:
            raise ValueError(f"state was saved with shuffle={bool(state['shuffle'])} but this iterator has "
                             f"shuffle={self.shuffle}")
        seed = check_int(state["seed"], "state['seed']", 0)
        epoch = check_int(state["epoch"], "state['epoch']", 0)
        position = check_int(state["position"], "state['position']", 0)
        if position > self.num_samples:
            raise ValueError(f"state['position'] must be <= num_samples={self.num_samples}, got {position}")
        self.seed, self.epoch, self.position = seed, epoch, position

    def __repr__(self) -> str:
        return (f"BatchIterator(num_samples={self.num_samples}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, seed={self.seed}, epoch={self.epoch}, position={self.position})")


def batches(x, y=None, batch_size: int = 32, shuffle: bool = True, seed: int | None = None) -> BatchIterator:
    """A BatchIterator over (x, y); iterate it once per epoch."""
    return BatchIterator(x, y, batch_size=batch_size, shuffle=shuffle, seed=seed)
