"""Batch normalization whose training statistics span the global batch of every rank.

Per-rank BatchNorm normalizes each rank's share with that share's statistics, so with small
per-GPU batches the statistics get noisy and training differs from one process on the global batch.
Here each channel's mean and variance are all-reduced in the forward pass (two passes, mean first
and then squared deviations from it, like the one-process kernel, so no cancellation), and the
backward all-reduces the two per-channel sums the input gradient needs,

    dx = gamma * invstd * (dy - (sum dy + xhat * sum dy*xhat) / M)     (sums and M over all ranks)

while gamma's and beta's gradients stay this rank's sums (the bucketed all-reduce adds them up like
every other parameter's). Sums travel in float64. The collectives go over the main group (NCCL on
GPUs) in the same order on every rank, between the gradient buckets already in flight.
"""
from __future__ import annotations

import numpy as np

from ..backends.device import array_module
from ..functional.batchnorm import check_batch_norm_args, update_running_stats
from ..tensor import Tensor


def _all_reduce(group, array, what):
    import torch.distributed as dist
    with group.guard(what), group.stream_scope():
        dist.all_reduce(group.as_torch(array), op=dist.ReduceOp.SUM)
    return array


def sync_batch_norm(x, gamma, beta, running_mean, running_var, group, momentum: float = 0.99,
                    epsilon: float = 1e-3) -> Tensor:
    """Training-mode batch_norm with statistics over every rank's batch; updates the running ones."""
    x, gamma, beta, epsilon = check_batch_norm_args(x, gamma, beta, running_mean, running_var, epsilon)
    xp, xd = array_module(x.device), x.data
    axes = tuple(range(xd.ndim - 1))
    dtype = xd.dtype.type
    stats = xp.concatenate([xd.sum(axis=axes, dtype=np.float64), xp.full(1, xd.size // xd.shape[-1], np.float64)])
    stats = _all_reduce(group, stats, "the all-reduce of SyncBatchNormalization's means")
    count = float(stats[-1])
    mean = (stats[:-1] / count).astype(xd.dtype)
    xc = xd - mean
    squares = _all_reduce(group, (xc * xc).sum(axis=axes, dtype=np.float64),
                          "the all-reduce of SyncBatchNormalization's variances")
    var = (squares / count).astype(xd.dtype)
    invstd = 1 / xp.sqrt(var + dtype(epsilon))
    y = xc * (gamma.data * invstd) + beta.data
    update_running_stats(running_mean, running_var, mean, invstd, epsilon, momentum)

    def backward(g):
        xhat = xc * invstd
        dbeta, dgamma = g.sum(axis=axes), (g * xhat).sum(axis=axes)
        sums = _all_reduce(group, xp.concatenate([dbeta, dgamma]).astype(np.float64),
                           "the all-reduce of SyncBatchNormalization's gradient sums")
        c = len(dbeta)
        total_dbeta, total_dgamma = sums[:c].astype(g.dtype), sums[c:].astype(g.dtype)
        dx = (gamma.data * invstd) * (g - (total_dbeta + xhat * total_dgamma) / dtype(count))
        return dx, dgamma, dbeta

    return Tensor.from_op(y, (x, gamma, beta), backward)
