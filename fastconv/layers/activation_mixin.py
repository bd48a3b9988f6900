"""Layers with an `activation=` argument. The model may ask for the pre-softmax output so that
softmax + cross-entropy runs as one fused, numerically stable op."""
from __future__ import annotations

from .. import functional as F


class WithActivation:
    def _set_activation(self, activation):
        self.activation_fn = F.get_activation(activation)
        self.activation = activation if isinstance(activation, str) or activation is None else \
            getattr(activation, "__name__", "custom")

    def call(self, x, training=False):
        return self.activation_fn(self.pre_activation(x, training))

    def pre_activation(self, x, training=False):
        raise NotImplementedError
