"""BatchNormalization over the channel (last) axis, Keras defaults (momentum 0.99, epsilon 1e-3)."""
from __future__ import annotations

from .. import functional as F
from .._checks import check_float
from .base import Layer


class BatchNormalization(Layer):
    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, **kwargs):
        super().__init__(**kwargs)
        if axis not in (-1,):
            raise ValueError(f"axis must be -1 (channels last, NHWC), got {axis!r}")
        self.axis = axis
        self.momentum = check_float(momentum, "momentum", 0.0, 1.0)
        self.epsilon = check_float(epsilon, "epsilon", 0.0, low_open=True)
        self.center, self.scale = center, scale

    def build(self, input_shape):
        c = input_shape[-1]
        self.add_weight("gamma", (c,), "ones", trainable=self.scale)
        self.add_weight("beta", (c,), "zeros", trainable=self.center)
        self.add_weight("moving_mean", (c,), "zeros", trainable=False)
        self.add_weight("moving_variance", (c,), "ones", trainable=False)

    def call(self, x, training=False):
        gamma = self.params.get("gamma", self.state.get("gamma"))
        beta = self.params.get("beta", self.state.get("beta"))
        return F.batch_norm(x, gamma, beta, self.state["moving_mean"], self.state["moving_variance"],
                            training=training, momentum=self.momentum, epsilon=self.epsilon)

    def get_config(self):
        return {"name": self.name, "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale, "input_shape": self.input_shape}


class SyncBatchNormalization(BatchNormalization):
    """BatchNormalization whose training statistics span every rank's batch while a data-parallel
    process group is active (fastconv/parallel/sync_batchnorm.py); otherwise BatchNormalization.
    Not fused with a following ReLU."""

    def call(self, x, training=False):
        from ..parallel.group import current
        group = current()
        if not training or group is None or group.world_size == 1:
            return super().call(x, training=training)
        from ..parallel.sync_batchnorm import sync_batch_norm
        gamma = self.params.get("gamma", self.state.get("gamma"))
        beta = self.params.get("beta", self.state.get("beta"))
        return sync_batch_norm(x, gamma, beta, self.state["moving_mean"], self.state["moving_variance"], group,
                               momentum=self.momentum, epsilon=self.epsilon)
