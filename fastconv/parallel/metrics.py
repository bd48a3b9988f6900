"""Loss and metrics summed over ranks, so every rank reports the numbers of the whole data set.

Each built-in metric is a function of counts: Accuracy of (correct, total), Precision / Recall /
F1Score of the confusion matrix. Summing the counts over ranks and then computing the result is
exact; averaging the ranks' results would not be (ranks see different class mixes). evaluate()
gives each rank a contiguous share of the samples (sharding.part) and sums loss and counts.
"""
from __future__ import annotations

import numpy as np

from ..metrics import Accuracy, _ConfusionMetric
from .sharding import part


def evaluation_share(x, y, group):
    """This rank's contiguous share of (x, y) for evaluate()."""
    start, stop = part(len(x), group.rank, group.world_size)
    return x[start:stop], y[start:stop]


def reduce_loss(loss_sum: float, count: int, group) -> tuple[float, int]:
    total = group.all_reduce_host(np.array([loss_sum, count], np.float64), "the evaluation loss sum")
    return float(total[0]), int(total[1])


def reduce_metrics(metrics, group) -> None:
    """Replace each metric's counts, in place, by their sums over all ranks (same order on every rank)."""
    for m in metrics:
        what = f"the reduction of metric {m.name!r}"
        if isinstance(m, Accuracy):
            m.correct, m.total = (int(v) for v in group.all_reduce_host(np.array([m.correct, m.total], np.int64), what))
        elif isinstance(m, _ConfusionMetric):
            # a class count inferred from the ids seen may differ by rank: pad to the largest first
            k = int(group.all_reduce_host(np.array([len(m.confusion)], np.int64), what, op="max")[0])
            have = len(m.confusion)
            cm = np.pad(m.confusion, ((0, k - have), (0, k - have)))
            m.confusion = group.all_reduce_host(cm, what).astype(np.int64)
        else:
            raise TypeError(f"metric {m.name!r} ({type(m).__name__}) cannot be summed over ranks: data-parallel "
                            "fit and evaluate know Accuracy, Precision, Recall and F1Score; evaluate with "
                            "distributed=False on one rank instead")
