"""Losses as differentiable ops. Each returns the batch mean as a 0-d Tensor."""
from __future__ import annotations

from .._checks import check_rank
from ..backends.device import to_device
from ..tensor import Tensor, as_tensor
from ._util import backend, float_input


def check_labels(labels, n: int, num_classes: int, name: str = "labels"):
    """Integer class ids (N,) or one-hot / probability rows (N, C); returns the raw array."""
    y = as_tensor(labels, name).numpy()
    if y.ndim == 1:
        if y.dtype.kind not in "iu":
            raise TypeError(f"{name} of rank 1 must hold integer class ids, got dtype {y.dtype}")
        if y.shape[0] != n:
            raise ValueError(f"{name} must have {n} entries to match the batch, got {y.shape[0]}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ValueError(f"{name} must be class ids in [0, {num_classes}), got values in "
                             f"[{int(y.min())}, {int(y.max())}]")
        return y
    if y.ndim == 2:
        if y.shape != (n, num_classes):
            raise ValueError(f"{name} must have shape ({n}, {num_classes}) (one-hot), got {tuple(y.shape)}")
        return y
    raise ValueError(f"{name} must be class ids (N,) or one-hot (N, C), got shape {tuple(y.shape)}")


def _logits_like(x, name):
    x = float_input(x, name)
    check_rank(x.data, 2, name, "batch, classes")
    return x


def softmax_cross_entropy(logits, labels) -> Tensor:
    """Fused, numerically stable softmax + cross-entropy from logits."""
    logits = _logits_like(logits, "logits")
    y = to_device(check_labels(labels, *logits.shape), logits.device)
    if y.ndim == 2:
        y = y.astype(logits.dtype, copy=False)
    B = backend(logits)
    loss, probs = B.softmax_cross_entropy_fprop(logits.data, y)
    return Tensor.from_op(loss, (logits,), lambda g: (B.softmax_cross_entropy_bprop(probs, y, g),))


def cross_entropy(probs, labels, eps: float = 1e-7) -> Tensor:
    """Keras' categorical cross-entropy on probabilities (clipped to [eps, 1 - eps])."""
    probs = _logits_like(probs, "probs")
    y = to_device(check_labels(labels, *probs.shape), probs.device)
    if y.ndim == 2:
        y = y.astype(probs.dtype, copy=False)
    B = backend(probs)
    loss = B.cross_entropy_fprop(probs.data, y, eps)
    return Tensor.from_op(loss, (probs,), lambda g: (B.cross_entropy_bprop(probs.data, y, g, eps),))


def mean_squared_error(pred, target) -> Tensor:
    pred = float_input(pred, "pred")
    t = as_tensor(target, "target").data
    if tuple(t.shape) != pred.shape:
        raise ValueError(f"target must have the prediction's shape {pred.shape}, got {tuple(t.shape)}")
    t = to_device(t, pred.device).astype(pred.dtype, copy=False)
    B = backend(pred)
    return Tensor.from_op(B.mse_fprop(pred.data, t), (pred,), lambda g: (B.mse_bprop(pred.data, t, g),))


