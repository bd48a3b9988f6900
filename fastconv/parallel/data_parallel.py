"""fit's data parallelism: what fit(distributed=...) changes, gathered in one object.

    fit(..., distributed=None)   # on when launched by torchrun with WORLD_SIZE > 1, or after parallel.init()
    fit(..., distributed=True)   # required: init() from the environment, error when it is missing
    fit(..., distributed=fastconv.parallel.DataParallel(bucket_bytes=1 << 20))   # with options

Every rank runs the whole fit loop on its share of each global batch (sharding.py): same epochs,
same steps, same callbacks with the same epoch logs (loss and metrics summed over ranks), so a
callback's decision (EarlyStopping) is the same everywhere. Weights and optimizer state start from
rank 0's (broadcast after the start-up check, agreement.py) and stay identical because every rank
applies the same update to the same all-reduced gradients. Rank 0 alone prints and writes
checkpoints; resume reads the checkpoint on every rank (checkpoint_dir must be visible to all of
them: a shared filesystem on many nodes) and must use the same world size.

BatchNorm normalizes with each rank's own batch statistics (as DDP without SyncBatchNorm); the
moving averages it keeps for inference are rank 0's, broadcast at every epoch end.

No CUDA graph: the step's collectives run through torch.distributed on torch's view of CuPy's
stream, outside the CuPy stream capture that step_capture.py replays; capturing NCCL calls would
need them inside that capture with their buffers in the graph's private pool, which torch's
process group does not offer for a foreign stream capture. The step runs eagerly and says so.
"""
from __future__ import annotations

from .._checks import check_int
from .agreement import check_agreement, fingerprint
from .buckets import DEFAULT_BUCKET_BYTES
from .environment import launched_world_size
from .group import ProcessGroup, current, init
from .metrics import reduce_metrics
from .sharding import shard_batches

GRAPH_REASON = ("data-parallel training all-reduces gradients through torch.distributed between backward and "
                "the update, outside the CuPy stream capture the graph replays (docs/distributed.md)")


class DataParallel:
    def __init__(self, group: ProcessGroup | None = None, bucket_bytes: int = DEFAULT_BUCKET_BYTES):
        if group is not None and not isinstance(group, ProcessGroup):
            raise TypeError(f"group must be a fastconv.parallel.ProcessGroup from init(), got {type(group).__name__}")
        self.group = group
        self.bucket_bytes = check_int(bucket_bytes, "bucket_bytes", 1)

    @property
    def rank(self) -> int:
        return self.group.rank

    @property
    def world_size(self) -> int:
        return self.group.world_size

    @property
    def writes(self) -> bool:
        """Whether this rank prints and writes checkpoints (rank 0)."""
        return self.group.rank == 0

    def bind(self, model) -> "DataParallel":
        self.group = self.group or current() or init()
        device = model.device
        if device != self.group.device:
            raise ValueError(f"the model's weights are on '{device}' but the process group was initialized for "
                             f"'{self.group.device}'; call fastconv.parallel.init() before building the model")
        if device == "cuda":
            gpu = model.trainable_weights[0].data.device.id
            if gpu != self.group.local_rank:
                raise ValueError(f"rank {self.rank}'s weights are on GPU {gpu} but LOCAL_RANK is "
                                 f"{self.group.local_rank}; call fastconv.parallel.init() before building the model "
                                 "so each rank's weights land on its own GPU")
        return self

    def verbose(self, verbose: int) -> int:
        return verbose if self.writes else 0

    def agree_seed(self, seed: int) -> int:
        """Rank 0's seed (a seed=None run draws one per rank)."""
        return self.group.broadcast_object(seed, "the broadcast of the data-order seed")

    def start(self, model, x, y, batch_size: int, **settings) -> None:
        """Check that all ranks agree, then start every rank from rank 0's weights and optimizer state.
        x, y: the in-memory arrays, or an ImageLoader and None (batch_size is then the loader's)."""
        self.batch_size = batch_size
        _check_sync_batchnorm_shares(model, x, y, batch_size, self.world_size)
        check_agreement(self.group, fingerprint(model, x, y, world_size=self.world_size, batch_size=batch_size,
                                                **settings))
        self.sync_state(model, trainable=True)

    def sync_state(self, model, trainable: bool = False) -> None:
        """Rank 0's layer state (BatchNorm moving averages); with trainable, its weights and optimizer slots too."""
        arrays = [t.data for t in (model.weights if trainable else _state_weights(model))]
        if trainable:
            arrays += [a for slots in model.optimizer.slots for a in slots.values()]
        self.group.broadcast_arrays(arrays, "the broadcast of rank 0's weights" if trainable
                                    else "the broadcast of rank 0's layer state")

    def shard(self, order, batch_size: int, first: int):
        return shard_batches(order, batch_size, self.rank, self.world_size, first)

    def loader_batches(self, loader, epoch: int, first: int = 0):
        """This rank's batches of an ImageLoader (its share of each global batch, or its own tar shards)."""
        return loader.batches(epoch, first, self.rank, self.world_size)

    def reduce_metrics(self, metrics) -> None:
        reduce_metrics(metrics, self.group)


def _check_sync_batchnorm_shares(model, x, y, batch_size, world_size):
    """SyncBatchNormalization's collectives run inside forward, so every rank must run one each step."""
    from ..layers.normalization import SyncBatchNormalization
    if not any(isinstance(layer, SyncBatchNormalization) for layer in model.layers):
        return
    if y is None and x._streams_per_rank(world_size):   # an ImageLoader on tar shards: each rank its own files
        steps, counts = x.steps_per_epoch(world_size), x.source.rank_counts(world_size)
        if any(-(-n // batch_size) < steps for n in counts):
            raise ValueError(f"with SyncBatchNormalization every rank needs a sample in every step, but the ranks' "
                             f"shard files hold {counts} samples: with batch_size {batch_size} some run out before "
                             f"the others' {steps} steps; use shards of equal sizes (per rank) or BatchNormalization")
        return
    num_samples = x.num_samples if y is None else len(x)
    tail = num_samples % (batch_size * world_size)
    if 0 < tail < world_size:
        raise ValueError(f"with SyncBatchNormalization every rank needs a sample in every step, but the last global "
                         f"batch of each epoch has {tail} sample(s) for {world_size} ranks; use a batch_size or a "
                         f"number of samples (now {num_samples}) that leaves none or at least {world_size}")


def _state_weights(model):
    trainable = {id(t) for t in model.trainable_weights}
    return [t for t in model.weights if id(t) not in trainable]


def check_resume_world(state: dict, world_size: int) -> None:
    saved = state.get("world_size", 1)
    if saved != world_size:
        raise ValueError(f"the checkpoint was written by a run of {saved} process(es) but this run has {world_size}; "
                         "resume with the same number (each rank's share of the data depends on it)")


def data_parallel(model, distributed) -> DataParallel | None:
    """fit's distributed= argument -> a DataParallel bound to the model, or None (one process)."""
    if distributed is False:
        return None
    if distributed is None:
        if current() is None and launched_world_size() <= 1:
            return None
        return DataParallel().bind(model)
    if distributed is True:
        return DataParallel().bind(model)
    if isinstance(distributed, ProcessGroup):
        return DataParallel(distributed).bind(model)
    if isinstance(distributed, DataParallel):
        return distributed.bind(model)
    raise TypeError("distributed must be None (auto: on under torchrun), True, False, a ProcessGroup or a "
                    f"DataParallel, got {type(distributed).__name__} {distributed!r}")


def evaluation_group(distributed) -> ProcessGroup | None:
    """evaluate's distributed= argument -> the group to sum over, or None. None: the group fit or init()
    made, if any (never initializes one)."""
    if distributed is False:
        return None
    if distributed is None:
        return current()
    if distributed is True:
        return current() or init()
    if isinstance(distributed, ProcessGroup):
        return distributed
    if isinstance(distributed, DataParallel):
        return distributed.group or current() or init()
    raise TypeError("distributed must be None (auto: on after fastconv.parallel.init()), True, False, a "
                    f"ProcessGroup or a DataParallel, got {type(distributed).__name__} {distributed!r}")
