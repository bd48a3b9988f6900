"""Data-parallel training for fit / evaluate on torch.distributed (docs/distributed.md).

    torchrun --nproc_per_node=8 train.py     # train.py: fastconv.parallel.init(); build; compile; fit
"""
from .buckets import DEFAULT_BUCKET_BYTES, GradientBuckets
from .data_parallel import DataParallel
from .environment import LaunchEnvironment, read_environment
from .group import DistributedError, ProcessGroup, current, init, shutdown
from .sharding import shard_batches, steps_per_epoch

__all__ = ["init", "shutdown", "current", "ProcessGroup", "DataParallel", "DistributedError", "GradientBuckets",
           "DEFAULT_BUCKET_BYTES", "LaunchEnvironment", "read_environment", "shard_batches", "steps_per_epoch"]
