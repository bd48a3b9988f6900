"""Layer base class, symbolic tensors for the functional API, and Input.

A layer builds its weights on first call from the input shape (batch axis excluded). Called on a
SymbolicTensor it records a graph node instead of computing, which is how `fc.Model(inputs,
outputs)` graphs are written.
"""
from __future__ import annotations

import itertools
import re
from collections import defaultdict

import numpy as np

from ..backends.device import default_device
from ..initializers import get_initializer
from ..tensor import Tensor, as_tensor

_name_counters: defaultdict = defaultdict(itertools.count)


def _auto_name(cls_name: str) -> str:
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", cls_name).lower().replace("2_d", "2d")
    n = next(_name_counters[snake])
    return snake if n == 0 else f"{snake}_{n}"


class SymbolicTensor:
    """The output of a layer in a model being defined: a shape (batch excluded) and where it came from."""

    def __init__(self, shape, layer, inputs=()):
        self.shape = tuple(shape)
        self.layer = layer
        self.inputs = tuple(inputs)

    def __repr__(self):
        return f"SymbolicTensor(shape=(None, {', '.join(map(str, self.shape))}), layer={self.layer.name})"


class Layer:
    def __init__(self, name: str | None = None, input_shape=None, trainable: bool = True, dtype="float32"):
        self.name = name or _auto_name(type(self).__name__)
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.trainable = trainable
        self.dtype = np.dtype(dtype)
        self.built = False
        self.device = None  # set at build: the device of the first input (the default one for symbolic builds)
        self.params: dict[str, Tensor] = {}   # trained by the optimizer
        self.state: dict[str, Tensor] = {}    # saved but not trained (running statistics, counters)

    # ---- to be overridden ------------------------------------------------------------------
    def build(self, input_shape) -> None:
        pass

    def call(self, x, training: bool = False):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {"name": self.name}

    # ---- machinery ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict):
        return cls(**config)

    def add_weight(self, name, shape, initializer="zeros", trainable=True) -> Tensor:
        values = get_initializer(initializer)(tuple(shape), dtype=self.dtype)
        t = Tensor(values, requires_grad=trainable, device=self.device, name=f"{self.name}/{name}")
        (self.params if trainable else self.state)[name] = t
        return t

    def _build_once(self, input_shape, device=None) -> None:
        if not self.built:
            self.device = device or default_device()
            if self.input_shape is not None and tuple(self.input_shape) != tuple(input_shape):
                raise ValueError(f"layer {self.name!r} was declared with input_shape {self.input_shape} "
                                 f"but is called on inputs of shape {tuple(input_shape)}")
            many = isinstance(input_shape, list)  # merge layers get a list of shapes
            self.input_shape = [tuple(s) for s in input_shape] if many else tuple(input_shape)
            self.build(self.input_shape)
            self.built = True

    def __call__(self, inputs, training: bool = False):
        many = isinstance(inputs, (list, tuple))
        items = list(inputs) if many else [inputs]
        if any(isinstance(t, SymbolicTensor) for t in items):
            shapes = [t.shape for t in items]
            self._build_once(shapes if many else shapes[0])
            return SymbolicTensor(self.compute_output_shape(shapes if many else shapes[0]), self, items)
        tensors = [as_tensor(t, f"inputs of layer {self.name!r}") for t in items]
        shapes = [t.shape[1:] for t in tensors]
        self._build_once(shapes if many else shapes[0], tensors[0].device)
        if not many and tuple(self.input_shape) != shapes[0]:
            raise ValueError(f"layer {self.name!r} expects inputs of shape (batch, "
                             f"{', '.join(map(str, self.input_shape))}), got {tensors[0].shape}")
        return self.call(tensors if many else tensors[0], training=training)

    @property
    def weights(self) -> list[Tensor]:
        return list(self.params.values()) + list(self.state.values())

    @property
    def trainable_weights(self) -> list[Tensor]:
        return list(self.params.values()) if self.trainable else []

    def count_params(self) -> int:
        return sum(t.size for t in self.weights)

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r})"


class InputLayer(Layer):
    def __init__(self, shape, name: str | None = None, **kwargs):
        super().__init__(name=name, input_shape=shape, **kwargs)
        self.shape = tuple(int(d) for d in shape)

    def call(self, x, training=False):
        return x

    def get_config(self):
        return {"name": self.name, "shape": list(self.shape)}


def Input(shape, name: str | None = None) -> SymbolicTensor:
    """A model input of `shape` (batch axis excluded), as keras.Input."""
    shape = tuple(shape)
    if not shape or any(not isinstance(d, (int, np.integer)) or d <= 0 for d in shape):
        raise ValueError(f"shape must be a tuple of positive ints (batch axis excluded), got {shape!r}")
    layer = InputLayer(shape, name=name)
    layer.built = True
    return SymbolicTensor(shape, layer)
