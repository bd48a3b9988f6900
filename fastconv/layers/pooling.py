"""Pooling layers with Keras' arguments (pool_size, strides=None -> pool_size, padding)."""
from __future__ import annotations

from .. import functional as F
from .._checks import pair
from ..shapes import conv_output_hw, resolve_padding
from .base import Layer


class _Pool2D(Layer):
    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pair(pool_size, "pool_size")
        self.strides = self.pool_size if strides is None else pair(strides, "strides")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding.lower()

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"{type(self).__name__} {self.name!r} expects inputs (batch, height, width, channels), "
                             f"got (batch, {', '.join(map(str, input_shape))})")

    def compute_output_shape(self, input_shape):
        h, w, c = input_shape
        pads = resolve_padding(self.padding, (h, w), self.pool_size, self.strides)
        return (*conv_output_hw((h, w), self.pool_size, self.strides, pads, what="pool_size"), c)

    def get_config(self):
        return {"name": self.name, "pool_size": list(self.pool_size), "strides": list(self.strides),
                "padding": self.padding, "input_shape": self.input_shape}


class MaxPooling2D(_Pool2D):
    def call(self, x, training=False):
        return F.max_pool2d(x, self.pool_size, self.strides, self.padding)


class AveragePooling2D(_Pool2D):
    def call(self, x, training=False):
        return F.avg_pool2d(x, self.pool_size, self.strides, self.padding)


class GlobalAveragePooling2D(Layer):
    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"GlobalAveragePooling2D {self.name!r} expects (batch, height, width, channels) inputs")

    def compute_output_shape(self, input_shape):
        return (input_shape[-1],)

    def call(self, x, training=False):
        return F.global_avg_pool2d(x)

    def get_config(self):
        return {"name": self.name, "input_shape": self.input_shape}
