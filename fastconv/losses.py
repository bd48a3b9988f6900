"""Keras-level losses. When the model ends in softmax and the loss is a cross-entropy on
probabilities, the model calls `from_logits_loss` with the pre-softmax output: the same
function, computed stably in one fused op."""
from __future__ import annotations

from . import functional as F


class Loss:
    name = "loss"
    fusable_with_softmax = False

    def __call__(self, y_true, y_pred):
        raise NotImplementedError

    def get_config(self) -> dict:
        return {}


class CategoricalCrossentropy(Loss):
    name = "categorical_crossentropy"
    sparse = False

    def __init__(self, from_logits: bool = False):
        self.from_logits = bool(from_logits)
        self.fusable_with_softmax = not self.from_logits

    def _check(self, y_true, n_classes):
        shape = getattr(y_true, "shape", ())
        if self.sparse and len(shape) != 1:
            raise ValueError(f"{self.name} expects integer class ids of shape (batch,), got labels of shape {shape}; "
                             "use 'categorical_crossentropy' for one-hot labels")
        if not self.sparse and len(shape) != 2:
            raise ValueError(f"{self.name} expects one-hot labels of shape (batch, {n_classes}), got shape {shape}; "
                             "use 'sparse_categorical_crossentropy' for integer labels")

    def __call__(self, y_true, y_pred):
        self._check(y_true, y_pred.shape[-1])
        return F.softmax_cross_entropy(y_pred, y_true) if self.from_logits else F.cross_entropy(y_pred, y_true)

    def from_logits_loss(self, y_true, logits):
        self._check(y_true, logits.shape[-1])
        return F.softmax_cross_entropy(logits, y_true)

    def get_config(self):
        return {"from_logits": self.from_logits}


class SparseCategoricalCrossentropy(CategoricalCrossentropy):
    name = "sparse_categorical_crossentropy"
    sparse = True


class MeanSquaredError(Loss):
    name = "mean_squared_error"

    def __call__(self, y_true, y_pred):
        return F.mean_squared_error(y_pred, y_true)


LOSSES = {"categorical_crossentropy": CategoricalCrossentropy,
          "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
          "mean_squared_error": MeanSquaredError, "mse": MeanSquaredError}


def get_loss(identifier) -> Loss:
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in LOSSES:
        return LOSSES[identifier.lower()]()
    raise ValueError(f"loss must be a Loss or one of {sorted(LOSSES)}, got {identifier!r}")
