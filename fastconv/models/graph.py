"""Model graphs: the functional `Model(inputs, outputs)` and `Sequential`, their forward pass,
summary and weights. Training lives in training.py, the file format in saving.py and loading.py."""
from __future__ import annotations

import numpy as np

from .. import layers as L
from .._toposort import postorder
from ..backends.device import to_device
from ..layers.base import Input, InputLayer, Layer, SymbolicTensor
from ..tensor import Tensor
from . import fusion
from .saving import save_model
from .training import TrainingMixin


class Model(TrainingMixin):
    """A graph of layers from one input to one output, as keras.Model(inputs, outputs)."""

    def __init__(self, inputs=None, outputs=None, name: str | None = None):
        super().__init__()
        self.name = name or type(self).__name__.lower()
        self.fusion = None   # True/False: fuse layer runs or not (models/fusion.py); None: the global switch
        if inputs is not None or outputs is not None:
            self._set_graph(inputs, outputs)

    def _set_graph(self, inputs, outputs):
        inputs = inputs[0] if isinstance(inputs, (list, tuple)) and len(inputs) == 1 else inputs
        outputs = outputs[0] if isinstance(outputs, (list, tuple)) and len(outputs) == 1 else outputs
        if not isinstance(inputs, SymbolicTensor) or not isinstance(inputs.layer, InputLayer):
            raise TypeError(f"inputs must be one tensor made by fc.Input(shape), got {inputs!r}")
        if not isinstance(outputs, SymbolicTensor):
            raise TypeError(f"outputs must be one symbolic tensor made by calling layers on inputs, got {outputs!r}")
        self._nodes = postorder(outputs, lambda node: node.inputs)
        sources = [n for n in self._nodes if not n.inputs]
        if sources != [inputs]:
            raise ValueError("outputs must be computed from the given inputs alone "
                             f"(found inputs {[n.layer.name for n in sources]})")
        self._input, self._output = inputs, outputs
        layers = []
        for node in self._nodes:
            if node.layer not in layers:
                layers.append(node.layer)
        self.layers: list[Layer] = layers
        names = [l.name for l in layers]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"layer names must be unique within a model, found duplicates {sorted(dupes)}")

    # ---- forward --------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return getattr(self, "_output", None) is not None

    @property
    def input_shape(self):
        return (None, *self._input.shape)

    @property
    def output_shape(self):
        return (None, *self._output.shape)

    @property
    def output_layer(self) -> Layer:
        return self._output.layer

    def _ensure_built(self, input_shape):
        if not self.built:
            raise ValueError("the model has no inputs; create it with fc.Model(inputs, outputs)")

    def __call__(self, x, training: bool = False, return_logits: bool = False) -> Tensor:
        """Forward pass. With return_logits, the output layer's softmax is left off."""
        if isinstance(x, SymbolicTensor):
            raise TypeError("calling a whole model on a symbolic tensor is not supported; call its layers")
        if not isinstance(x, Tensor):
            x = Tensor(np.asarray(x, dtype=np.float32) if isinstance(x, (list, tuple)) else x)
        self._ensure_built(x.shape[1:])
        if tuple(x.shape[1:]) != tuple(self._input.shape):
            raise ValueError(f"model {self.name!r} expects inputs of shape (batch, "
                             f"{', '.join(map(str, self._input.shape))}), got {x.shape}")
        values = {id(self._input): x}
        fused = {id(g.output): g for g in fusion.plan(self)}   # fusion.py: which layer runs fuse
        inner = {id(n) for g in fused.values() for n in g.nodes[:-1]}
        for node in self._nodes[1:]:
            if id(node) in inner:
                continue   # computed inside its fused group (nothing else reads it)
            if id(node) in fused:
                values[id(node)] = fused[id(node)](values[id(fused[id(node)].input)], training=training)
                continue
            args = [values[id(i)] for i in node.inputs]
            arg = args if len(args) > 1 else args[0]
            if node is self._output and return_logits:
                values[id(node)] = node.layer.pre_activation(arg, training=training)
            else:
                values[id(node)] = node.layer(arg, training=training)
        return values[id(self._output)]

    # ---- weights ---------------------------------------------------------------------------
    @property
    def trainable_weights(self) -> list[Tensor]:
        return [t for layer in self.layers for t in layer.trainable_weights]

    @property
    def weights(self) -> list[Tensor]:
        if not self.built and self._declared_shape is not None:
            self.build(self._declared_shape)
        return [t for layer in self.layers for t in layer.weights]

    def get_weights(self) -> list[np.ndarray]:
        return [t.numpy().copy() for t in self.weights]

    def set_weights(self, values) -> None:
        weights = self.weights
        if len(values) != len(weights):
            raise ValueError(f"set_weights expects {len(weights)} arrays, got {len(values)}")
        for t, v in zip(weights, values):
            if tuple(np.shape(v)) != t.shape:
                raise ValueError(f"weight {t.name} has shape {t.shape}, got an array of shape {np.shape(v)}")
            t.data[...] = to_device(np.asarray(v), t.device)

    def count_params(self) -> int:
        return sum(t.size for t in self.weights)

    def save(self, path) -> None:
        """One file: architecture, weights and optimizer state, written atomically."""
        save_model(self, path)

    def architecture(self) -> dict:
        """The layers and how they connect, as the model file stores them (model_from_architecture)."""
        layers = self.layers
        index = {id(n): i for i, n in enumerate(self._nodes)}
        return {"class": "Model", "name": self.name, "layers": [_layer_entry(l) for l in layers],
                "nodes": [{"layer": layers.index(n.layer), "inputs": [index[id(i)] for i in n.inputs]}
                          for n in self._nodes],
                "output": index[id(self._output)]}

    def summary(self, print_fn=print) -> str:
        self._ensure_built(None)
        rows = [("Layer (type)", "Output Shape", "Param #")]
        shapes = {id(n): n.shape for n in self._nodes}
        for node in self._nodes:
            layer = node.layer
            own = getattr(layer, "precision", None)   # a per-layer precision override, when set
            rows.append((f"{layer.name} ({type(layer).__name__})" + (f" [{own}]" if own else ""),
                         str((None, *shapes[id(node)])), f"{layer.count_params():,}"))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        line = "-" * sum(widths)
        out = [f'Model: "{self.name}"', line, "".join(c.ljust(w) for c, w in zip(rows[0], widths)), "=" * sum(widths)]
        out += ["".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows[1:]]
        trainable = sum(t.size for t in self.trainable_weights)
        total = self.count_params()
        out += [g.describe() for g in fusion.plan(self)]   # e.g. "fused: conv2d (Conv2D) + ... -> op"
        out += fusion.loss_lines(self)                      # softmax + cross-entropy from the logits
        out += ["=" * sum(widths), f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                f"Non-trainable params: {total - trainable:,}", line]
        text = "\n".join(out)
        if print_fn is not None:
            print_fn(text)
        return text


class Sequential(Model):
    """A plain stack of layers, as keras.Sequential. Builds on first use from the data's shape,
    or at once when the first layer has input_shape= or the list starts with fc.Input(shape)."""

    def __init__(self, layers=None, name: str | None = None):
        super().__init__(name=name)
        self._pending: list[Layer] = []
        self._declared_shape = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer) -> None:
        if isinstance(layer, SymbolicTensor) and isinstance(layer.layer, InputLayer):
            if self._pending:
                raise ValueError("fc.Input(...) can only be the first entry of a Sequential model")
            self._declared_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential layers must be fastconv Layer instances, got {type(layer).__name__}")
        if self.built:
            raise ValueError("layers cannot be added after the model is built (it was called, fit or its "
                             "weights were read)")
        self._pending.append(layer)
        self.layers = list(self._pending)
        if len(self._pending) == 1 and layer.input_shape is not None and self._declared_shape is None:
            self._declared_shape = layer.input_shape

    def build(self, input_shape) -> None:
        if not self._pending:
            raise ValueError("a Sequential model needs at least one layer")
        x = inputs = Input(tuple(input_shape), name=f"{self.name}_input")
        for layer in self._pending:
            x = layer(x)
        self._set_graph(inputs, x)
        self.layers = list(self._pending)  # as Keras: Sequential.layers has no InputLayer

    def _ensure_built(self, input_shape):
        if self.built:
            return
        shape = self._declared_shape or input_shape
        if shape is None:
            raise ValueError(f"model {self.name!r} is not built yet: call it on data, fit it, or give the first "
                             "layer input_shape=... (or start the layer list with fc.Input(shape))")
        self.build(shape)

    @property
    def weights(self) -> list[Tensor]:
        if not self.built and self._declared_shape is not None:
            self.build(self._declared_shape)
        return [t for layer in self.layers for t in layer.weights]

    def architecture(self) -> dict:
        return {"class": "Sequential", "name": self.name, "input_shape": list(self.input_shape[1:]),
                "layers": [_layer_entry(l) for l in self.layers]}


def _layer_entry(layer):
    return {"class": type(layer).__name__, "config": layer.get_config()}


def _make_layer(entry):
    cls = L.LAYER_CLASSES.get(entry["class"])
    if cls is None:
        raise ValueError(f"unknown layer class {entry['class']!r} in the model file")
    return cls.from_config(entry["config"])


def model_from_architecture(arch):
    """A model of new layers from Model.architecture()'s description."""
    if arch["class"] == "Sequential":
        model = Sequential([_make_layer(e) for e in arch["layers"]], name=arch["name"])
        model.build(tuple(arch["input_shape"]))
        return model
    layers = [_make_layer(e) for e in arch["layers"]]
    tensors = []
    for node in arch["nodes"]:
        layer = layers[node["layer"]]
        if isinstance(layer, L.InputLayer):
            t = SymbolicTensor(layer.shape, layer)
            layer.built = True
        else:
            ins = [tensors[i] for i in node["inputs"]]
            t = layer(ins if len(ins) > 1 else ins[0])
        tensors.append(t)
    return Model(tensors[0], tensors[arch["output"]], name=arch["name"])
