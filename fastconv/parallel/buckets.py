"""Gradients all-reduced in buckets of a few MB, each launched while backward is still running.

Parameters are packed, last layer first (backward finishes them first), into flat fp32 buffers of
about `bucket_bytes`. When backward completes a parameter's gradient (the autograd hook
fastconv.tensor.leaf_grad_hook), it is copied into its place in its bucket; when every gradient of
a bucket is in, and every bucket before it has been launched, the bucket's asynchronous all-reduce
(sum) starts, so the exchange overlaps the rest of backward. Buckets are launched strictly in index
order, the same on every rank, which collectives require. finish() launches what is left (a
parameter backward did not reach contributes zeros), waits, divides by the ranks' summed weight
and points each parameter's .grad at its slice of the bucket (a view: no copy back). The caller
seeds each rank's backward with its weight (steps.py: its share of a full batch), so the result is
the gradient of the mean loss over the whole global batch even when the last batch splits unevenly.

The buffers are fp32 whatever the gradients' dtype, so bf16/fp16 gradients are summed in fp32. On
the GPU they are CuPy arrays handed to NCCL through DLPack, without a copy.
"""
from __future__ import annotations

import numpy as np

from .._checks import check_int
from ..backends.device import array_module

DEFAULT_BUCKET_BYTES = 4 << 20   # a few MB: big enough to reach link bandwidth, small enough to start early


class _Bucket:
    def __init__(self, indices, params, xp, group):
        self.indices = indices
        self.slices, start = [], 0
        for i in indices:
            self.slices.append(slice(start, start + params[i].size))
            start += params[i].size
        self.flat = xp.zeros(start, np.float32)
        self.tensor = group.as_torch(self.flat)
        self.work = None


class GradientBuckets:
    def __init__(self, params, group, bucket_bytes: int = DEFAULT_BUCKET_BYTES):
        bucket_bytes = check_int(bucket_bytes, "bucket_bytes", 1)
        self.params, self.group = list(params), group
        if not self.params:
            raise ValueError("data-parallel training needs at least one trainable weight")
        xp = array_module(self.params[0].device)
        groups, current, size = [], [], 0
        for i in reversed(range(len(self.params))):
            nbytes = 4 * self.params[i].size
            if current and size + nbytes > bucket_bytes:
                groups.append(current)
                current, size = [], 0
            current.append(i)
            size += nbytes
        groups.append(current)
        self.buckets = [_Bucket(g, self.params, xp, group) for g in groups]
        self.where = {id(self.params[i]): (b, k) for b, bucket in enumerate(self.buckets)
                      for k, i in enumerate(bucket.indices)}
        self.begin()

    def begin(self) -> None:
        """A new step."""
        self.missing = [len(b.indices) for b in self.buckets]
        self.arrived = [[False] * len(b.indices) for b in self.buckets]
        self.launched = 0

    def hook(self, leaf) -> None:
        """The autograd hook: `leaf`'s gradient of this backward is complete."""
        entry = self.where.get(id(leaf))
        if entry is None or leaf.grad is None:
            return
        b, k = entry
        bucket = self.buckets[b]
        if self.arrived[b][k]:
            raise RuntimeError("a parameter's gradient arrived twice in one data-parallel step "
                               "(backward ran twice before the update)")
        bucket.flat[bucket.slices[k]] = leaf.grad.reshape(-1)
        self.arrived[b][k] = True
        self.missing[b] -= 1
        while self.launched < len(self.buckets) and self.missing[self.launched] == 0:
            self._launch(self.launched)

    def _launch(self, b) -> None:
        import torch.distributed as dist
        bucket = self.buckets[b]
        with self.group.guard(f"the all-reduce of gradient bucket {b}"), self.group.stream_scope():
            bucket.work = dist.all_reduce(bucket.tensor, op=dist.ReduceOp.SUM, async_op=True)
        self.launched += 1

    def finish(self, total_weight) -> None:
        """Launch the rest, wait for all, divide by the ranks' summed weight (world_size for full
        batches) and set every parameter's .grad to its slice."""
        for b in range(self.launched, len(self.buckets)):
            bucket = self.buckets[b]
            for k, done in enumerate(self.arrived[b]):
                if not done:        # not reached by this backward (or no samples on this rank)
                    bucket.flat[bucket.slices[k]] = 0
            self._launch(b)
        inv = np.float32(1.0 / float(total_weight))
        for b, bucket in enumerate(self.buckets):
            with self.group.guard(f"the all-reduce of gradient bucket {b}"), self.group.stream_scope():
                bucket.work.wait()
            bucket.work = None
            bucket.flat *= inv
            for i, sl in zip(bucket.indices, bucket.slices):
                p = self.params[i]
                p.grad = bucket.flat[sl].reshape(p.shape).astype(p.dtype, copy=False)
