"""fit's training step, eager or replayed from a CUDA graph.

On the GPU a training step is many small launches (~3 us each from Python, ~1 us in a graph;
../shared/FACTS.md, beside the repository): the seed model's step calls 10 backend ops, ResNet-18's
139 (fastconv.explain, on the CPU), plus CuPy's elementwise kernels. After one eager warm-up step (lazy allocations, NVRTC
compiles, optimizer slots and its step-scalar buffer), fit captures the whole step of a full batch
(forward, loss, backward and the optimizer update) on a non-default CuPy stream into a CUDA graph
and replays it for every batch of that shape:

- inputs and labels are copied into static device buffers the graph reads;
- every array allocated during the capture comes from a private memory pool that lives as long as
  the graph, so no other allocation can reuse memory a replay writes (PyTorch's graph pools);
- the loss is added into a float64 device accumulator inside the graph and read back once per
  `LOG_EVERY` steps, at checkpoints and at the epoch end, never per step;
- the optimizer update is one multi-tensor launch inside the graph: it reads the step's scalars
  (the schedule's learning rate for step t, Adam's bias-corrected step size) from a device buffer
  that `optimizer.begin_step` writes, in stream order, before each replay, and its table of
  parameter, gradient and slot addresses is resident (csrc/ops/optimizer.h; fastconv/optimizers.py);
  the table is written after the capture (a capture cannot record a copy from pageable host memory);
- Dropout's counter lives on the device: the mask kernel reads it and the graph advances it, so
  each replay draws the next mask of the eager sequence (fastconv/layers/core.py);
- a weight, layer state or optimizer slot given a new array (e.g. restored slots) is captured again.

`capture_decision` says whether a graph is used and, when not, names every reason; fit logs it and
`fastconv.explain` records it. Batches of another shape (the last, partial one) run eagerly.
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..data.labels import batch_class_ids
from ..explain import note
from ..layers import Dropout
from ..losses import CategoricalCrossentropy, MeanSquaredError
from ..precision import effective
from ..tensor import Tensor

LOG_EVERY = 50   # graph steps between loss read-backs (each read waits for the GPU)


@dataclass
class CaptureDecision:
    use: bool
    reasons: list[str] = field(default_factory=list)   # why no graph (empty when use)
    notes: list[str] = field(default_factory=list)     # how the graph path differs from eager

    def __str__(self):
        if self.use:
            return "CUDA graph replay of the training step" + "".join(f"; {n}" for n in self.notes)
        return "eager training steps (no CUDA graph: " + "; ".join(self.reasons) + ")"


def graph_support() -> tuple[bool, str]:
    """Whether the installed CuPy can capture and replay CUDA graphs."""
    try:
        import cupy
    except ImportError as exc:
        return False, f"CuPy is not importable ({exc})"
    if not hasattr(cupy.cuda.Stream, "begin_capture") or not hasattr(cupy.cuda, "using_allocator"):
        return False, f"CuPy {cupy.__version__} has no stream capture (Stream.begin_capture needs CuPy >= 10)"
    return True, f"CuPy {cupy.__version__}"


def capture_decision(model, graph=None, device=None, support=graph_support) -> CaptureDecision:
    """Whether fit replays the step from a CUDA graph. graph: fit's argument (None = default: on
    when the model is on 'cuda'). `support` is swappable so tests can stand in for CuPy."""
    device = model.device if device is None else device
    if graph is not None and not isinstance(graph, bool):
        raise TypeError(f"graph must be True, False or None (default: on for 'cuda'), got {graph!r}")
    reasons = []
    if graph is False:
        reasons.append("graph=False was passed to fit")
    if device != "cuda":
        reasons.append(f"the model is on the {device}; CUDA graphs need the 'cuda' device")
    else:
        ok, why = support()
        if not ok:
            reasons.append(why)
    if os.environ.get("FASTCONV_SYNC", "").startswith("1"):
        reasons.append("FASTCONV_SYNC=1 synchronizes after every native launch (csrc/launch/registry.cu), "
                       "which a capture cannot contain")
    if effective(getattr(model, "precision", None)) == "fp16":
        reasons.append("fp16 training's dynamic loss scaling reads the gradients' finiteness on the host every "
                       "step to decide whether to skip it (fastconv/loss_scaling.py)")
    if not isinstance(model.loss, (CategoricalCrossentropy, MeanSquaredError)):
        reasons.append(f"loss {type(model.loss).__name__} has no host-free form here (only cross-entropy and "
                       "MSE are captured)")
    notes = [f"the loss is read back every {LOG_EVERY} steps and at epoch end (a non-finite loss is caught "
             "there, not before that step's update)",
             "the optimizer update is in the graph (its per-step scalars are written to the device before "
             "each replay)"]
    if any(isinstance(layer, Dropout) and layer.rate > 0 for layer in getattr(model, "layers", [])):
        notes.append("Dropout draws its masks from a device-side counter the graph advances")
    if model.metrics:
        notes.append("metrics read each step's output to the host after the replay")
    return CaptureDecision(not reasons, reasons, notes if not reasons else [])


def device_loss(model, out: Tensor, labels_dev):
    """The model's loss on device-resident labels, with no host read: the ops of
    fastconv.functional.softmax_cross_entropy / cross_entropy without check_labels (which copies the
    labels to the host; the graph path checks them on the host as each batch is loaded)."""
    from ..backends import backend_for
    loss = model.loss
    if not hasattr(loss, "sparse"):          # MSE reads its target on the device already
        return loss(labels_dev, out)
    B = backend_for(out.device)
    y = labels_dev if labels_dev.ndim == 1 else labels_dev.astype(out.dtype, copy=False)
    if model._fused_softmax() or loss.from_logits:
        value, probs = B.softmax_cross_entropy_fprop(out.data, y)
        return Tensor.from_op(value, (out,), lambda g: (B.softmax_cross_entropy_bprop(probs, y, g),))
    eps = 1e-7
    return Tensor.from_op(B.cross_entropy_fprop(out.data, y, eps), (out,),
                          lambda g: (B.cross_entropy_bprop(out.data, y, g, eps),))


class EagerSteps:
    """The plain path: model.train_on_batch per batch, the loss summed on the host every step."""

    graph = None
    stream = None       # the CuPy stream the steps run on (None: the current one)

    def __init__(self, model, decision: CaptureDecision):
        self.model, self.decision = model, decision
        self.loss_sum, self.seen = 0.0, 0

    def begin_epoch(self, loss_sum=0.0, seen=0):
        self.loss_sum, self.seen = float(loss_sum), int(seen)

    def step(self, xb, yb, yb_device=None):
        loss = self.model.train_on_batch(xb, yb)
        self.loss_sum += loss * len(yb)
        self.seen += len(yb)

    def totals(self, exact=True):
        """(loss sum, samples it covers) so far this epoch."""
        return self.loss_sum, self.seen


class GraphSteps(EagerSteps):
    """Full batches replay a captured graph; other shapes (and the warm-up) run eagerly."""

    def __init__(self, model, decision: CaptureDecision):
        super().__init__(model, decision)
        import cupy
        # Capture needs a stream other than the legacy default one; a blocking stream still orders
        # itself after (and before) work on the default stream, so evaluate() and user code need no sync.
        self.cp, self.stream = cupy, cupy.cuda.Stream(non_blocking=False)
        self.graph, self.pool, self.shape = None, None, None
        self.failed = None                     # the reason, once a capture failed (then eager for good)
        self.warm = set()                      # batch shapes that ran eagerly at least once
        self.device_sum = cupy.zeros((), cupy.float64)
        self.device_seen, self.pending = 0, 0  # samples in device_sum; graph steps since the last read

    def begin_epoch(self, loss_sum=0.0, seen=0):
        super().begin_epoch(loss_sum, seen)
        with self.stream:
            self.device_sum.fill(0)
        self.device_seen = self.pending = 0

    def step(self, xb, yb, yb_device=None):
        with self.stream:
            self._step(xb, yb, yb_device)

    def _step(self, xb, yb, yb_device):
        if not isinstance(yb, np.ndarray):     # labels already on the device: checks and metrics need a host copy
            yb, yb_device = self.cp.asnumpy(yb, stream=self.stream), yb
        shape = (tuple(xb.shape), tuple(yb.shape))
        if self.failed or (self.graph is None and shape not in self.warm) or \
                (self.graph is not None and shape != self.shape):
            if self.graph is not None:
                note(f"batch shape {shape[0]} is not the captured {self.shape[0]}: this step runs eagerly")
            elif not self.failed:
                note(f"eager warm-up step for batch shape {shape[0]} (lazy allocations and compiles) before capture")
            self.warm.add(shape)
            return super().step(xb, yb)
        _check_labels(self.model, yb, xb)
        if self.graph is not None and _addresses(_captured_arrays(self.model)) != self.addresses:
            # a weight, state or slot was given a new array (the graph would keep using the old one)
            note("a weight, state or optimizer slot array was replaced since the capture; capturing the step again")
            self.graph = self.pool = None
        if self.graph is None:
            self._capture(xb, yb)
            if self.graph is None:
                return super().step(xb, yb)
        cp = self.cp
        cp.copyto(self.x, xb if isinstance(xb, cp.ndarray) else cp.asarray(xb), casting="unsafe")
        cp.copyto(self.y, yb_device if yb_device is not None else cp.asarray(yb), casting="unsafe")
        params = self.model.trainable_weights
        self.model.optimizer.begin_step(params)   # this step's lr etc. into the buffer the graph's update reads
        self.graph.launch(stream=self.stream)
        for p, g in zip(params, self.grads):
            p.grad = g
        self.device_seen += len(yb)
        self.pending += 1
        if self.model.metrics:
            out = cp.asnumpy(self.out.data, stream=self.stream)
            for m in self.model.metrics:
                m.update(batch_class_ids(yb), out)
        if self.pending >= LOG_EVERY:
            self._read()

    def _capture(self, xb, yb):
        cp, model = self.cp, self.model
        self.x = cp.empty(xb.shape, np.float32)
        self.y = cp.empty(yb.shape, np.int64 if yb.ndim == 1 else np.float32)
        params = model.trainable_weights
        for p in params:
            p.grad = None
        # the loss accumulation runs only in the graph: run its kernels once now, so that CuPy compiles
        # and loads them outside the capture (adds zero)
        self.device_sum += cp.zeros((), np.float32).astype(cp.float64) * len(yb)
        pool = cp.cuda.MemoryPool()
        graph = error = None
        # the update's table (it holds the captured gradients' addresses) is written when this block ends
        with model.optimizer.capturing(), cp.cuda.using_allocator(pool.malloc):
            self.stream.begin_capture()
            try:
                out = self._captured_step()
            except Exception as exc:       # e.g. an op that reads a value back to the host
                error = exc
            try:
                graph = self.stream.end_capture()
            except Exception as exc:
                error = error or exc
        if error is not None:
            self.failed = f"the capture failed ({type(error).__name__}: {error}); the steps run eagerly"
            self.decision.use, self.decision.reasons = False, [self.failed]
            note(self.failed)
            return
        self.graph, self.pool, self.out, self.shape = graph, pool, out, (tuple(xb.shape), tuple(yb.shape))
        self.grads = [p.grad for p in params]   # live in the graph's pool; every replay rewrites them
        self.table = model.optimizer._table      # the captured update's table: keep it alive with the graph
        self.addresses = _addresses(_captured_arrays(model))
        note(f"captured the training step of batch shape {tuple(xb.shape)} into a CUDA graph")

    def _captured_step(self):
        """What the graph holds: forward, loss, backward, the loss into the device sum, the update
        (with the scalars the last begin_step wrote)."""
        out, loss = self._forward_backward()
        self.device_sum += loss.data.astype(self.cp.float64) * len(self.y)
        self.model.optimizer.apply_update(self.model.trainable_weights)
        return out

    def _forward_backward(self):
        model = self.model
        x = Tensor(self.x, device=model.device)
        with model._precision_scope():          # compile(precision=...), as the eager step
            out = model(x, training=True, return_logits=model._fused_softmax())
            loss = device_loss(model, out, self.y)
        loss.backward()
        return out, loss

    def _read(self):
        """Fold the device loss sum into the host one (waits for the GPU)."""
        if self.device_seen:
            value = float(self.cp.asnumpy(self.device_sum, stream=self.stream))
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"the training loss became {value} within the last {self.pending} graph-replayed steps "
                    "(the graph path reads the loss only every few steps, so those steps updated the weights; "
                    "fit(graph=False) checks every step before its update)")
            self.loss_sum += value
            self.seen += self.device_seen
            self.device_sum.fill(0)
        self.device_seen = self.pending = 0

    def totals(self, exact=True):
        if exact:
            with self.stream:
                self._read()
        return self.loss_sum, self.seen


def _captured_arrays(model):
    """The persistent arrays a captured step reads or writes by address: weights, layer state
    (Dropout's counter, batch-norm statistics) and the optimizer's slots."""
    slots = [a for s in model.optimizer.slots for a in s.values()]
    return [t.data for t in model.weights] + slots


def _addresses(arrays):
    """Where each array lives (CuPy: device pointer; NumPy: host address)."""
    return [a.data.ptr if hasattr(a.data, "ptr") else a.__array_interface__["data"][0] for a in arrays]


def _check_labels(model, yb, xb):
    """The host-side label checks check_labels does in the eager loss (class ids in range, shape)."""
    if hasattr(model.loss, "sparse"):
        from ..functional.losses import check_labels
        check_labels(np.asarray(yb), len(xb), int(model.output_shape[-1]))


def make_steps(model, graph, verbose=0, data_parallel=None):
    """The step runner fit uses, after deciding (and saying) whether a CUDA graph is used.
    data_parallel: fit's DataParallel (fastconv/parallel/), whose steps all-reduce the gradients."""
    decision = capture_decision(model, graph)
    if data_parallel is not None:
        from ..parallel.data_parallel import GRAPH_REASON
        decision = CaptureDecision(False, [*decision.reasons, GRAPH_REASON])
    model.step_capture = decision
    note(str(decision))
    if verbose and (graph or model.device == "cuda"):
        print(f"fit: {decision}")
    if graph is True and not decision.use:   # asked for by name: say so even when fit is quiet
        warnings.warn(f"fit(graph=True): {decision}", RuntimeWarning, stacklevel=3)
    if data_parallel is not None:
        from ..parallel.steps import DataParallelSteps
        return DataParallelSteps(model, decision, data_parallel)
    if decision.use:
        return GraphSteps(model, decision)
    return EagerSteps(model, decision)
