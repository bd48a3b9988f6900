"""fit's training step under data parallelism (eager; see data_parallel.py for why no CUDA graph).

One step: forward on this rank's share of the global batch; its loss sum, sample count and weight
start their all-reduce over the gloo group at once (it overlaps backward); backward, seeded with the
weight (n / batch_size: 1 for a full share, so a full step's numbers are those of one-process
backward), copies each finished gradient into its bucket and starts the bucket's all-reduce
(buckets.py); then the gradients are divided by the summed weight and the optimizer steps. Seeding
the backward rather than scaling the gradients afterwards also weights what flows between ranks
inside backward (SyncBatchNormalization) consistently. Every rank sees the same global loss before the update,
so a non-finite loss stops every rank at the same step, with the weights untouched, like one-process fit.
"""
from __future__ import annotations

import math

import numpy as np

from ..data.labels import batch_class_ids
from ..models.step_capture import EagerSteps
from ..models.training import _check_xy
from ..tensor import leaf_grad_hook
from .buckets import GradientBuckets


class DataParallelSteps(EagerSteps):
    """totals() are over all ranks (every rank has the same)."""

    def __init__(self, model, decision, data_parallel):
        super().__init__(model, decision)
        self.group = data_parallel.group
        self.batch_size = data_parallel.batch_size
        self.buckets = GradientBuckets(model.trainable_weights, self.group, data_parallel.bucket_bytes)

    def step(self, xb, yb, yb_device=None):
        model = self.model
        params = model.trainable_weights
        for p in params:
            p.grad = None
        n = len(yb)
        share = n / self.batch_size
        self.buckets.begin()
        scaler = model._active_loss_scaler()
        value = 0.0
        if n:
            xb, yb = _check_xy(xb, yb)
            loss, out = model._loss_and_output(xb, yb, training=True)
            value = float(loss.item())
        totals = self.group.all_reduce_host(np.array([value * n, n, share], np.float64), "the step's loss sum",
                                            async_op=True)
        if n:
            with leaf_grad_hook(self.buckets.hook):
                loss.backward(share * (1.0 if scaler is None else scaler.scale))
        loss_sum, total, shares = totals()
        if not math.isfinite(loss_sum):   # the same on every rank: all stop before the update
            raise FloatingPointError(f"the training loss summed over all ranks became {loss_sum}; the weights "
                                     "were not updated. Lower the learning rate or check the inputs for NaN/Inf")
        self.buckets.finish(shares)
        if scaler is None or scaler.unscale_and_check(params):   # the gradients agree, so does the decision
            model.optimizer.step(params)
        if n:
            for m in model.metrics:
                m.update(batch_class_ids(yb), out.numpy())
        self.loss_sum += float(loss_sum)
        self.seen += int(total)
