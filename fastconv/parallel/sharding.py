"""Which samples each rank trains on: every global batch split over the ranks, without overlap.

Every rank draws the same epoch order (a permutation from (seed, epoch), as one-process fit) and
cuts it into global batches of batch_size × world_size; rank r takes the r-th of world_size
contiguous, nearly equal parts of each. So the union of the ranks' step-s batches is exactly the
batch a one-process run with batch_size × world_size takes at step s, and a resumed run lands on
the same samples. The last global batch may be short: its parts differ by at most one sample, and
a rank may get none (it then contributes zero gradients; buckets.py weights by sample counts).
"""
from __future__ import annotations

from ..data.shares import part, steps_per_epoch


def shard_batches(order, batch_size: int, rank: int, world_size: int, first: int = 0):
    """This rank's index array for each step from `first` on, of the epoch whose order is `order`."""
    global_batch = batch_size * world_size
    for s in range(first, steps_per_epoch(len(order), batch_size, world_size)):
        batch = order[s * global_batch:(s + 1) * global_batch]
        start, stop = part(len(batch), rank, world_size)
        yield batch[start:stop]
