"""How an epoch's samples split into steps and over ranks: plain arithmetic, here rather than in
fastconv/parallel/ because the image loader needs it and fastconv.parallel imports this package."""
from __future__ import annotations

import math


def part(count: int, rank: int, world_size: int) -> tuple[int, int]:
    """[start, stop) of rank's share of `count` items split into world_size contiguous parts."""
    return count * rank // world_size, count * (rank + 1) // world_size


def steps_per_epoch(num_samples: int, batch_size: int, world_size: int = 1) -> int:
    """Global batches of batch_size x world_size in an epoch, the last one possibly short."""
    return math.ceil(num_samples / (batch_size * world_size))
