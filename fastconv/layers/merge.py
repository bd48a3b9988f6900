"""Layers that join branches: Add (residual connections) and Concatenate."""
from __future__ import annotations

from .. import functional as F
from .base import Layer


class Add(Layer):
    def build(self, input_shape):
        if not isinstance(input_shape, list) or len(input_shape) < 2:
            raise ValueError(f"Add {self.name!r} must be called on a list of at least two inputs")
        if any(tuple(s) != tuple(input_shape[0]) for s in input_shape):
            raise ValueError(f"Add {self.name!r} needs inputs of one shape, got {[tuple(s) for s in input_shape]}")

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def call(self, xs, training=False):
        out = xs[0]
        for x in xs[1:]:
            out = F.add(out, x)
        return out

    def __call__(self, inputs, training=False):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"Add {self.name!r} must be called on a list of at least two inputs")
        return super().__call__(list(inputs), training=training)


class Concatenate(Layer):
    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = axis

    def build(self, input_shape):
        if not isinstance(input_shape, list) or len(input_shape) < 2:
            raise ValueError(f"Concatenate {self.name!r} must be called on a list of at least two inputs")
        ax = self.axis if self.axis < 0 else self.axis - 1  # config axis counts the batch axis
        ref = [d for i, d in enumerate(input_shape[0]) if i != ax % len(input_shape[0])]
        for s in input_shape[1:]:
            if len(s) != len(input_shape[0]) or [d for i, d in enumerate(s) if i != ax % len(s)] != ref:
                raise ValueError(f"Concatenate {self.name!r}: shapes {[tuple(s) for s in input_shape]} differ "
                                 f"outside axis {self.axis}")

    def compute_output_shape(self, input_shape):
        ax = (self.axis if self.axis < 0 else self.axis - 1) % len(input_shape[0])
        out = list(input_shape[0])
        out[ax] = sum(s[ax] for s in input_shape)
        return tuple(out)

    def call(self, xs, training=False):
        return F.concatenate(xs, axis=self.axis)

    def get_config(self):
        return {"name": self.name, "axis": self.axis}
