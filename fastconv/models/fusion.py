"""Which layer sequences of a model run as one fused op (fastconv/functional/fused.py).

A rule matches nodes of the model graph, so Sequential and functional models fuse alike:

    conv2d_bias_relu_maxpool:  Conv2D(activation='relu', any padding/stride/dilation/groups, bias or not)
                               -> MaxPooling2D(pool_size=(2, 2), strides=(2, 2), padding='valid'),
                               where the pool is the only reader of the conv output and the conv is
                               not the model's output.

Fused groups compute what their layers compute (bitwise on the reference backend; see
tests/test_fusion.py). The default, "auto", fuses where the model's weights live on a kernel backend
(native, jit, emulated: csrc/fused/ runs there); the NumPy reference composes the fused op from the
very ops it replaces, so on it fusion would only rename the ops (and profiles of the reference path
keep their per-op rows). `fastconv.models.fusion.set_fusion(True | False | "auto")` sets it for every
model, `model.fusion = True | False` for one (None, the default, follows the global switch): A/B
checks. `model.summary()` lists the fused groups.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..functional.fused import FUSABLE_POOL, conv2d_bias_relu_maxpool
from ..layers.conv import Conv2D
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
        conv, pool = (n.layer for n in self.nodes)
        return conv2d_bias_relu_maxpool(x, conv.params["kernel"], conv.params.get("bias"), conv.strides,
                                        conv.padding, conv.dilation_rate, conv.groups, pool.pool_size, pool.strides,
                                        precision=getattr(conv, "precision", None))


def _conv_relu_maxpool(node, readers, output):
    pool = node.layer
    if type(pool) is not MaxPooling2D or len(node.inputs) != 1:
        return None
    if (tuple(pool.pool_size), tuple(pool.strides)) != FUSABLE_POOL or pool.padding != "valid":
        return None
    src = node.inputs[0]
    conv = src.layer
    if type(conv) is not Conv2D or conv.activation != "relu":
        return None
    if readers.get(id(src), 0) != 1 or src is output:
        return None   # someone else reads the conv output: it must be materialized
    return FusedGroup("conv2d_bias_relu_maxpool", (src, node))


RULES = (_conv_relu_maxpool,)


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
