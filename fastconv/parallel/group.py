"""The process group data-parallel training runs on: torch.distributed, NCCL between GPUs, gloo on CPUs.

    group = fastconv.parallel.init()          # from torchrun's environment (environment.py)
    model = build_model()                     # after init: on 'cuda' the weights land on this rank's GPU
    model.fit(x, y, ...)                      # shards the data and all-reduces the gradients

We do not write collectives: torch.distributed is what people launch with torchrun, and it speaks
NCCL (NVLink, InfiniBand) and gloo (TCP, every CPU). Gradients go over the main group (NCCL on
GPUs). Small host-side values (each step's loss, metric counts, start-up checks) go over a gloo
group, which is the main group on CPUs and a second one beside NCCL on GPUs, so they never need a
device copy.

A collective that fails (a peer died: gloo sees the closed connection at once) or does not finish
within `timeout_s` (a peer hangs) raises DistributedError on the surviving ranks, naming the step
that waited; the dead rank's own output has the cause. NCCL's watchdog ends the process instead
when its timeout expires (TORCH_NCCL_ASYNC_ERROR_HANDLING, on by default).
"""
from __future__ import annotations

import contextlib
import datetime
from dataclasses import dataclass

import numpy as np

from .._checks import check_float
from .environment import read_environment

DEFAULT_TIMEOUT_S = 600.0   # first NCCL communicator set-up and kernel compiles can take minutes
BACKENDS = ("gloo", "nccl")


class DistributedError(RuntimeError):
    """A collective failed or timed out: another rank died, hung, or is running different code."""


@dataclass
class ProcessGroup:
    rank: int
    world_size: int
    local_rank: int
    device: str           # 'cpu' or 'cuda' (this rank's GPU is cupy's current device)
    backend: str          # of the main group, which carries the gradients
    timeout_s: float
    control: object = None   # the gloo group for host values; None: the default (gloo) group

    @property
    def timeout(self) -> datetime.timedelta:
        return datetime.timedelta(seconds=self.timeout_s)

    @contextlib.contextmanager
    def guard(self, what: str):
        """Turn torch.distributed's failure inside this block into a DistributedError that says what waited."""
        try:
            yield
        except RuntimeError as exc:   # DistBackendError, DistNetworkError and gloo's errors are RuntimeErrors
            if isinstance(exc, DistributedError):
                raise
            raise DistributedError(
                f"rank {self.rank} of {self.world_size}: {what} failed or timed out (timeout {self.timeout_s:g} s). "
                f"Another rank probably exited or hung; its own output has the cause. "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from exc

    # ---- host values over the gloo group -----------------------------------------------------
    def all_reduce_host(self, values, what: str, op: str = "sum", async_op: bool = False):
        """Sum (or max) a NumPy array over ranks. async_op: returns a callable that waits and
        returns the result, so the exchange overlaps what runs meanwhile."""
        import torch
        import torch.distributed as dist
        t = torch.from_numpy(np.ascontiguousarray(values).copy())
        reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
        with self.guard(what):
            work = dist.all_reduce(t, op=reduce_op, group=self.control, async_op=True)

        def wait():
            with self.guard(what):
                work.wait()
            return t.numpy()
        return wait if async_op else wait()

    def all_gather_object(self, obj, what: str) -> list:
        import torch.distributed as dist
        out = [None] * self.world_size
        with self.guard(what):
            dist.all_gather_object(out, obj, group=self.control)
        return out

    def broadcast_object(self, obj, what: str):
        """Rank 0's obj on every rank."""
        import torch.distributed as dist
        box = [obj]
        with self.guard(what):
            dist.broadcast_object_list(box, src=0, group=self.control)
        return box[0]

    def barrier(self, what: str) -> None:
        """All ranks reach this point within the timeout, or every rank that did hears which did not."""
        import torch.distributed as dist
        with self.guard(what):
            dist.monitored_barrier(group=self.control, timeout=self.timeout, wait_all_ranks=True)

    # ---- device arrays over the main group -----------------------------------------------------
    def as_torch(self, array):
        """A torch tensor sharing `array`'s memory (NumPy: from_numpy; CuPy: DLPack), no copy."""
        import torch
        if isinstance(array, np.ndarray):
            return torch.from_numpy(array)
        return torch.from_dlpack(array)

    def stream_scope(self):
        """torch's current stream = CuPy's current one, so a collective waits for the kernels that
        wrote its buffer and work.wait() makes the following kernels wait for it (no host sync)."""
        if self.device != "cuda":
            return contextlib.nullcontext()
        import cupy
        import torch
        ptr = cupy.cuda.get_current_stream().ptr
        if ptr == 0:          # the legacy default stream, which is torch's default stream too
            return contextlib.nullcontext()
        return torch.cuda.stream(torch.cuda.ExternalStream(ptr))

    def broadcast_arrays(self, arrays, what: str) -> None:
        """Overwrite each array, in place, with rank 0's."""
        import torch.distributed as dist
        with self.guard(what), self.stream_scope():
            works = [dist.broadcast(self.as_torch(a), src=0, async_op=True) for a in arrays if a.size]
            for w in works:
                w.wait()


_current: ProcessGroup | None = None


def current() -> ProcessGroup | None:
    """The group init() made, or None."""
    return _current


def init(backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S, device: str | None = None) -> ProcessGroup:
    """Join the job torchrun launched: read RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT,
    pick this rank's device (on 'cuda', GPU LOCAL_RANK becomes CuPy's and torch's current device) and
    initialize torch.distributed (backend None: 'nccl' on 'cuda', 'gloo' on 'cpu'). Call it before
    building the model, so its weights are created on this rank's GPU. A second call returns the
    same group."""
    global _current
    if _current is not None:
        return _current
    from ..backends.device import check_device
    import torch
    import torch.distributed as dist
    env = read_environment()
    device = check_device(device, "device")
    if backend is None:
        backend = "nccl" if device == "cuda" else "gloo"
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {list(BACKENDS)} or None, got {backend!r}")
    if backend == "nccl" and device != "cuda":
        raise ValueError("backend='nccl' needs device='cuda' (NCCL reduces GPU memory); use 'gloo' on the CPU")
    timeout_s = check_float(timeout_s, "timeout_s", 0.0, low_open=True)
    if device == "cuda":
        import cupy
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' with torch.distributed needs a CUDA build of torch "
                               f"(this torch {torch.__version__} sees no GPU)")
        cupy.cuda.Device(env.local_rank).use()
        torch.cuda.set_device(env.local_rank)
    timeout = datetime.timedelta(seconds=timeout_s)
    if dist.is_initialized():
        if dist.get_world_size() != env.world_size or dist.get_rank() != env.rank:
            raise RuntimeError(f"torch.distributed is already initialized as rank {dist.get_rank()} of "
                               f"{dist.get_world_size()}, but the environment says rank {env.rank} of {env.world_size}")
        backend = dist.get_backend()
    else:
        dist.init_process_group(backend, init_method="env://", rank=env.rank, world_size=env.world_size,
                                timeout=timeout)
    control = None if backend == "gloo" else dist.new_group(backend="gloo", timeout=timeout)
    _current = ProcessGroup(env.rank, env.world_size, env.local_rank, device, backend, timeout_s, control)
    return _current


def shutdown(barrier: bool = True) -> None:
    """Leave the group (destroy_process_group); init() may be called again afterwards. Call it at the end of
    a script: a process that exits with the group alive can abort in torch's teardown ('terminate called
    without an active exception'), above all once rank 0, which hosts the rendezvous store, has gone.
    barrier: first wait (within the group's timeout) until every rank is here, so none leaves early."""
    global _current
    import torch.distributed as dist
    if dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()
    _current = None
