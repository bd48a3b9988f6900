"""Dense, Flatten, Dropout, Activation and ReLU."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .._checks import check_float, check_int
from ..precision import check_precision
from ..random import next_seed
from ..tensor import Tensor
from .activation_mixin import WithActivation
from .base import Layer


class Dense(WithActivation, Layer):
    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", precision=None, **kwargs):
        super().__init__(**kwargs)
        self.units = check_int(units, "units", 1)
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self._set_activation(activation)
        # None follows fastconv.set_precision; else 'fp32' / 'tf32' / 'bf16' / 'fp16' for this layer
        self.precision = None if precision is None else check_precision(precision, f"Dense {self.name!r} precision")

    def build(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(f"Dense {self.name!r} expects inputs (batch, features), got "
                             f"(batch, {', '.join(map(str, input_shape))}); put a Flatten() before it")
        self.add_weight("kernel", (input_shape[0], self.units), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.units,), self.bias_initializer)

    def compute_output_shape(self, input_shape):
        return (self.units,)

    def pre_activation(self, x, training=False):
        return F.dense(x, self.params["kernel"], self.params.get("bias"), precision=self.precision)

    def get_config(self):
        return {"name": self.name, "units": self.units, "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer, "bias_initializer": self.bias_initializer,
                "input_shape": self.input_shape, **({"precision": self.precision} if self.precision else {})}


class Flatten(Layer):
    def compute_output_shape(self, input_shape):
        return (int(np.prod(input_shape)),)

    def call(self, x, training=False):
        return F.flatten(x)

    def get_config(self):
        return {"name": self.name, "input_shape": self.input_shape}


class Dropout(Layer):
    """Inverted dropout. Each training call advances a counter, so masks differ from step to step
    but the whole sequence is fixed by `seed` (and is saved with the model). The counter stays on
    the layer's device: the mask kernel reads it and an in-place add advances it, with no host
    read, so a CUDA-graph replay of the step draws the next mask of the eager sequence."""

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_float(rate, "rate", 0.0, 1.0, high_open=True)
        self.seed = next_seed() if seed is None else check_int(seed, "seed", 0)
        self.state["offset"] = Tensor(np.zeros((), np.int64))

    def call(self, x, training=False):
        if not training or self.rate == 0.0:
            return x
        counter = self.state["offset"].data
        y = F.dropout(x, self.rate, self.seed, counter, training=True)   # draws from the counter's value now
        counter += x.size                                                 # then advances it, in stream order
        return y

    def get_config(self):
        return {"name": self.name, "rate": self.rate, "seed": self.seed, "input_shape": self.input_shape}


class Activation(WithActivation, Layer):
    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self._set_activation(activation)

    def pre_activation(self, x, training=False):
        return x

    def get_config(self):
        return {"name": self.name, "activation": self.activation, "input_shape": self.input_shape}


class ReLU(Layer):
    def __init__(self, negative_slope=0.0, **kwargs):
        super().__init__(**kwargs)
        self.negative_slope = check_float(negative_slope, "negative_slope", 0.0)

    def call(self, x, training=False):
        return F.relu(x) if self.negative_slope == 0.0 else F.leaky_relu(x, self.negative_slope)

    def get_config(self):
        return {"name": self.name, "negative_slope": self.negative_slope, "input_shape": self.input_shape}
