"""Which layer sequences of a model run as one fused op (fastconv/functional/fused.py).

A rule matches nodes of the model graph, so Sequential and functional models fuse alike. A ReLU
below is Conv2D(activation='relu') itself, or an Activation('relu') / ReLU() layer (negative_slope 0)
right after a Conv2D(activation=None) or BatchNormalization:

    conv2d_bias_relu_maxpool:  Conv2D + ReLU (any padding/stride/dilation/groups, bias or not)
                               -> MaxPooling2D(2x2 stride 2 'valid', or 3x3 stride 2 any padding)
    batch_norm_relu:           BatchNormalization -> Activation('relu') / ReLU()

Also listed by summary() (loss_lines): a compiled model whose output layer ends in softmax and whose
loss is a cross-entropy on probabilities computes the loss from the logits with the fused
softmax_cross_entropy op (models/training.py _fused_softmax; csrc/ops/softmax.h on kernel backends),
in training and evaluation alike; predict() still applies the softmax.

Every node inside a group but its last must have the next node as its only reader and must not be
the model's output: its value is never materialized.

Fused groups compute what their layers compute (bitwise on the reference backend; see
tests/test_fusion.py). The default, "auto", fuses where the model's weights live on a kernel backend
(native, jit, emulated: csrc/conv/conv2d_bias_relu_maxpool*.h and csrc/norm/batchnorm_relu.h run there); the NumPy reference composes the fused op from the
very ops it replaces, so on it fusion would only rename the ops (and profiles of the reference path
keep their per-op rows). `fastconv.models.fusion.set_fusion(True | False | "auto")` sets it for every
model, `model.fusion = True | False` for one (None, the default, follows the global switch): A/B
checks. `model.summary()` lists the fused groups.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..explain import note
from ..functional.fused import batch_norm_relu, conv2d_bias_relu_maxpool, fusable_pool
from ..layers.conv import Conv2D
from ..layers.core import Activation, ReLU
from ..layers.normalization import BatchNormalization
from ..layers.pooling import MaxPooling2D

_mode = "auto"


def set_fusion(enabled) -> None:
    """True, False or "auto" (fuse on kernel backends) for every model whose `fusion` is None."""
    global _mode
    if enabled not in (True, False, "auto"):
        raise ValueError(f"set_fusion takes True, False or 'auto', got {enabled!r}")
    _mode = enabled


def fusion_enabled(model=None) -> bool:
    own = getattr(model, "fusion", None)
    mode = _mode if own is None else bool(own)
    if mode == "auto":
        from ..backends import backend_name
        return model is not None and backend_name(model.device) != "reference"
    return mode


@dataclass(frozen=True)
class FusedGroup:
    """Nodes computed by one fused op; `output` is the node whose value it produces."""
    op: str
    nodes: tuple

    @property
    def output(self):
        return self.nodes[-1]

    @property
    def input(self):
        return self.nodes[0].inputs[0]

    def describe(self) -> str:
        layers = " + ".join(f"{n.layer.name} ({type(n.layer).__name__})" for n in self.nodes)
        return f"fused: {layers} -> {self.op}"

    def __call__(self, x, training=False):
        layers = [n.layer for n in self.nodes]
        if self.op == "batch_norm_relu":
            bn = layers[0]
            return batch_norm_relu(x, bn.params.get("gamma", bn.state.get("gamma")),
                                   bn.params.get("beta", bn.state.get("beta")), bn.state["moving_mean"],
                                   bn.state["moving_variance"], training, bn.momentum, bn.epsilon)
        conv, pool = layers[0], layers[-1]   # (conv, pool) or (conv, relu layer, pool)
        return conv2d_bias_relu_maxpool(x, conv.params["kernel"], conv.params.get("bias"), conv.strides,
                                        conv.padding, conv.dilation_rate, conv.groups, pool.pool_size, pool.strides,
                                        pool.padding, precision=getattr(conv, "precision", None))


def _is_relu(layer) -> bool:
    if type(layer) is Activation:
        return layer.activation == "relu"
    return type(layer) is ReLU and layer.negative_slope == 0.0


def _private(node, readers, output) -> bool:
    """Only one reader and not the model's output: a fused group may keep the value to itself."""
    return readers.get(id(node), 0) == 1 and node is not output


def _single_input(node, kind):
    return node.inputs[0] if type(node.layer) is kind and len(node.inputs) == 1 else None


def _conv_relu_chain(node, readers, output):
    """The nodes (conv,) or (conv, relu layer) computing relu(conv2d(...)) ending at `node`, or None."""
    layer = node.layer
    if type(layer) is Conv2D:
        return (node,) if layer.activation == "relu" else None
    if not _is_relu(layer) or len(node.inputs) != 1:
        return None
    src = node.inputs[0]
    if type(src.layer) is not Conv2D or src.layer.activation is not None:
        return None
    if not _private(src, readers, output):
        note(f"{src.layer.name} + {layer.name} not fused: the conv output is read elsewhere")
        return None
    return (src, node)


def _conv_relu_maxpool(node, readers, output):
    src = _single_input(node, MaxPooling2D)
    chain = None if src is None else _conv_relu_chain(src, readers, output)
    if chain is None:
        return None
    pool = node.layer
    if not _private(src, readers, output):
        note(f"{pool.name} not fused with {src.layer.name}: its input is read elsewhere, so it must be materialized")
        return None
    if not fusable_pool(pool.pool_size, pool.strides, pool.padding, tuple(src.shape[:2])):
        note(f"{pool.name} not fused with {src.layer.name}: the fused kernels take 2x2/2 'valid' or 3x3/2 pools, "
             f"got pool_size {tuple(pool.pool_size)} strides {tuple(pool.strides)} padding {pool.padding!r}")
        return None
    return FusedGroup("conv2d_bias_relu_maxpool", (*chain, node))


def _batch_norm_relu(node, readers, output):
    if not _is_relu(node.layer) or len(node.inputs) != 1:
        return None
    src = node.inputs[0]
    if type(src.layer) is not BatchNormalization:
        return None
    if not _private(src, readers, output):
        note(f"{src.layer.name} + {node.layer.name} not fused: the batch norm output is read elsewhere")
        return None
    return FusedGroup("batch_norm_relu", (src, node))


RULES = (_conv_relu_maxpool, _batch_norm_relu)


def plan(model) -> list[FusedGroup]:
    """The fused groups of a built model (none when fusion is off for it)."""
    nodes = getattr(model, "_nodes", None)
    if not nodes or not fusion_enabled(model):
        return []
    readers = {}
    for node in nodes:
        for i in node.inputs:
            readers[id(i)] = readers.get(id(i), 0) + 1
    groups, taken = [], set()
    for node in nodes:
        for rule in RULES:
            g = rule(node, readers, model._output)
            if g is not None and not taken & {id(n) for n in g.nodes}:
                groups.append(g)
                taken |= {id(n) for n in g.nodes}
                break
    return groups


def loss_lines(model) -> list[str]:
    """summary() lines for the softmax + cross-entropy fusion the training loop applies (see above)."""
    fused = getattr(model, "_fused_softmax", None)
    if not getattr(model, "compiled", False) or fused is None or not fused():
        return []
    layer = model.output_layer
    return [f"fused: {layer.name} ({type(layer).__name__}) softmax + {type(model.loss).__name__} "
            f"-> softmax_cross_entropy (loss from logits)"]
