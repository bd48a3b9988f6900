"""fit's CUDA-graph step (fastconv/models/step_capture.py): which conditions refuse a graph and with
which reason, the CPU path unchanged, the graph runner's bookkeeping (warm-up, capture once, replay
of the whole step with the optimizer update and dropout inside, per-step scalars written before each
replay, eager partial batches, loss read-back) on a NumPy stand-in for CuPy, and graph vs eager on
a GPU."""
import re
import sys
import types
import warnings

import numpy as np
import pytest

import fastconv as fc
from fastconv.backends.device import cuda_available
from fastconv.layers import Conv2D, Dense, Dropout, Flatten, MaxPooling2D
from fastconv.losses import Loss
from fastconv.models import step_capture
from fastconv.models.step_capture import CaptureDecision, GraphSteps, _captured_arrays, capture_decision, device_loss
from fastconv.optimizers import SGD, Adam
from fastconv.schedules import CosineDecay, StepDecay

CUDA_OK = lambda: (True, "fake CuPy")  # noqa: E731


def _model(dropout=0.0, loss="sparse_categorical_crossentropy", metrics=None, optimizer="sgd", seed=0):
    fc.set_seed(seed)
    layers = [Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)), MaxPooling2D(2), Flatten()]
    layers += [Dropout(dropout, name="drop")] if dropout else []
    model = fc.Sequential(layers + [Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


def _data(n=40, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, n)


# ---- the decision ----------------------------------------------------------------------------------
def test_cpu_model_refuses_with_the_device_named():
    d = capture_decision(_model(), graph=True)
    assert not d.use and any("on the cpu" in r and "'cuda'" in r for r in d.reasons), d.reasons


def test_graph_false_is_named_even_on_cuda():
    d = capture_decision(_model(), graph=False, device="cuda", support=CUDA_OK)
    assert not d.use and d.reasons == ["graph=False was passed to fit"]


def test_cuda_model_with_supported_cupy_uses_a_graph_and_says_what_differs():
    d = capture_decision(_model(metrics=["accuracy"]), graph=None, device="cuda", support=CUDA_OK)
    assert d.use and not d.reasons
    text = str(d)
    assert "CUDA graph replay" in text and "read back every" in text and "optimizer update is in the graph" in text
    assert "metrics read each step's output" in text


def test_missing_stream_capture_is_the_reason():
    d = capture_decision(_model(), device="cuda", support=lambda: (False, "CuPy 9 has no stream capture"))
    assert not d.use and d.reasons == ["CuPy 9 has no stream capture"]


def test_dropout_is_captured_and_the_decision_says_how():
    d = capture_decision(_model(dropout=0.3), device="cuda", support=CUDA_OK)
    assert d.use and not d.reasons
    assert "Dropout draws its masks from a device-side counter" in str(d)


def test_every_reason_is_listed_not_just_the_first(monkeypatch):
    monkeypatch.setenv("FASTCONV_SYNC", "1")
    d = capture_decision(_model(dropout=0.3), graph=False, device="cuda", support=CUDA_OK)
    assert len(d.reasons) == 2 and "graph=False" in d.reasons[0] and "FASTCONV_SYNC" in d.reasons[1]


def test_fastconv_sync_refuses(monkeypatch):
    monkeypatch.setenv("FASTCONV_SYNC", "1")
    d = capture_decision(_model(), device="cuda", support=CUDA_OK)
    assert not d.use and any("FASTCONV_SYNC=1" in r for r in d.reasons)


def test_unknown_loss_refuses_naming_it():
    class Hinge(Loss):
        def __call__(self, y_true, y_pred):
            raise AssertionError("not called by the decision")
    model = _model()
    model.loss = Hinge()
    d = capture_decision(model, device="cuda", support=CUDA_OK)
    assert not d.use and any("Hinge" in r for r in d.reasons)


def test_mse_and_one_hot_cross_entropy_are_capturable():
    for loss in ("mse", "categorical_crossentropy"):
        assert capture_decision(_model(loss=loss), device="cuda", support=CUDA_OK).use


@pytest.mark.parametrize("bad", [1, "yes", 0.0])
def test_graph_argument_is_checked(bad):
    x, y = _data()
    with pytest.raises(TypeError, match="graph must be True, False or None"):
        _model().fit(x, y, epochs=1, verbose=0, graph=bad)


# ---- the CPU path ----------------------------------------------------------------------------------
def test_cpu_default_and_graph_false_are_bitwise_identical():
    x, y = _data()
    runs = []
    for graph in (None, False, True):
        model = _model(dropout=0.25, metrics=["accuracy"], optimizer="adam")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            h = model.fit(x, y, epochs=2, batch_size=16, seed=3, verbose=0, graph=graph)
        # only an explicit graph=True, refused here, warns
        assert sum("fit(graph=True)" in str(w.message) for w in caught) == (graph is True)
        runs.append((model.get_weights(), h.history))
        assert not model.step_capture.use
    for weights, hist in runs[1:]:
        assert hist == runs[0][1]
        for a, b in zip(weights, runs[0][0]):
            np.testing.assert_array_equal(a, b)


def test_the_decision_reaches_explain_and_the_fit_log(capsys):
    x, y = _data()
    model = _model()
    with pytest.warns(RuntimeWarning, match=r"fit\(graph=True\): eager training steps \(no CUDA graph: the model is"):
        report = fc.explain(lambda: model.fit(x, y, epochs=1, batch_size=16, verbose=0, graph=True))
    notes = [e.text for e in report.events if e.kind == "note"]
    assert any(n.startswith("eager training steps (no CUDA graph: the model is on the cpu") for n in notes), notes
    with pytest.warns(RuntimeWarning):
        model.fit(x, y, epochs=1, batch_size=16, verbose=1, graph=True)
    assert "fit: eager training steps (no CUDA graph: the model is on the cpu" in capsys.readouterr().out


@pytest.mark.parametrize("loss", ["sparse_categorical_crossentropy", "categorical_crossentropy", "mse"])
def test_device_loss_matches_the_models_loss_and_gradient(loss):
    """The graph's loss skips check_labels' host read; it must compute exactly the eager loss."""
    x, y = _data(12)
    model = _model(loss=loss)
    model._ensure_built(x.shape[1:])
    labels = y if loss.startswith("sparse") else np.eye(3, dtype=np.float32)[y]
    results = []
    for use_device_loss in (False, True):
        for p in model.trainable_weights:
            p.grad = None
        if use_device_loss:
            out = model(fc.Tensor(x), training=True, return_logits=model._fused_softmax())
            value = device_loss(model, out, labels)
        else:
            value, out = model._loss_and_output(x, labels, training=True)
        value.backward()
        results.append((value.numpy(), [p.grad.copy() for p in model.trainable_weights]))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name,kwargs", [("seed", {}), ("lenet5", {}), ("vgg_small", {"dropout": 0.3}),
                                         ("resnet18", {"width": 4})])
def test_the_captured_region_never_reads_back_to_the_host(name, kwargs, monkeypatch):
    """A host read inside the capture would break it on a GPU; here Tensor.numpy / item raise while
    the graph's forward, loss, backward and optimizer update run (on the CPU) for the zoo models."""
    shape = (28, 28, 1) if name in ("seed", "lenet5") else (32, 32, 3)
    fc.set_seed(0)
    model = fc.models.ZOO[name](shape, 10, **kwargs)
    model.compile(optimizer=Adam(CosineDecay(0.01, 5)), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    assert capture_decision(model, device="cuda", support=CUDA_OK).use
    rng = np.random.default_rng(0)
    x, y = rng.random((2,) + shape, dtype=np.float32), rng.integers(0, 10, 2)
    model._ensure_built(shape)

    def host_read(self, *a):
        raise AssertionError("a host read inside the captured step")
    model.optimizer.begin_step(model.trainable_weights)   # outside the graph, before each replay
    before = [w.copy() for w in model.get_weights()]
    monkeypatch.setattr(fc.Tensor, "numpy", host_read)
    monkeypatch.setattr(fc.Tensor, "item", host_read)
    runner = types.SimpleNamespace(model=model, x=x, y=y, cp=np, device_sum=np.zeros((), np.float64))
    runner._forward_backward = lambda: GraphSteps._forward_backward(runner)
    GraphSteps._captured_step(runner)
    monkeypatch.undo()
    assert np.isfinite(runner.device_sum) and all(p.grad is not None for p in model.trainable_weights)
    changed = [not np.array_equal(a, b) for a, b in zip(model.get_weights(), before)]
    assert sum(changed) > len(model.trainable_weights) // 2   # the update ran inside the region


# ---- the graph runner on a NumPy stand-in for CuPy -------------------------------------------------
class _FakeGraph:
    """Replays what the capture recorded (GraphSteps._captured_step): forward/backward on the static
    buffers, the loss added to the device sum, the optimizer update with the scalars the last
    begin_step wrote, dropout counters advanced; grads and output written into the captured arrays."""

    def __init__(self, runner):
        self.runner, self.launches = runner, 0

    def launch(self, stream=None):
        r = self.runner
        params = r.model.trainable_weights
        for p in params:      # a real replay writes the captured arrays; NumPy's autograd would add to them
            p.grad = None
        out = r._captured_step()
        for saved, p in zip(r.grads, params):
            np.copyto(saved, p.grad)
        np.copyto(r.out.data, out.data)
        self.launches += 1


def _fake_cupy(runners):
    cp = types.ModuleType("cupy")
    cp.__version__ = "fake"
    cp.ndarray, cp.float64 = np.ndarray, np.float64
    cp.zeros, cp.empty, cp.copyto, cp.asarray = np.zeros, np.empty, np.copyto, np.asarray
    cp.asnumpy = lambda a, stream=None: np.asarray(a)

    class Stream:
        def __init__(self, non_blocking=False):
            self.captures = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def begin_capture(self):   # NumPy runs the ops now; a real capture runs nothing: undo its sum,
            r = runners[-1]        # its update of weights and slots and its advance of dropout counters
            self.saved = [(a, a.copy()) for a in [r.device_sum] + _captured_arrays(r.model)]
            r.x[...] = 0           # and the static input is not loaded yet
            self.captures += 1

        def end_capture(self):
            for a, saved in self.saved:
                a[...] = saved
            return _FakeGraph(runners[-1])

    class MemoryPool:
        malloc = None

    class _Using:
        def __init__(self, malloc):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    cp.cuda = types.SimpleNamespace(Stream=Stream, MemoryPool=MemoryPool, using_allocator=_Using)
    return cp


@pytest.fixture
def fake_graph(monkeypatch):
    """fit on the CPU model, through GraphSteps with the NumPy stand-in; yields the runners made."""
    runners = []
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(runners))
    monkeypatch.setattr(step_capture, "capture_decision",
                        lambda model, graph: CaptureDecision(graph is not False, ["graph=False"] * (graph is False)))
    def make(model, decision):
        runners.append(GraphSteps(model, decision))
        return runners[-1]
    monkeypatch.setattr(step_capture, "GraphSteps", make)
    return runners


OPTIMIZERS = {
    "sgd": lambda: "sgd",
    "adam": lambda: "adam",
    "sgd-momentum-wd-step-decay": lambda: SGD(StepDecay(0.1, step_size=2, gamma=0.5), momentum=0.9, weight_decay=0.01),
    "sgd-nesterov-cosine": lambda: SGD(CosineDecay(0.05, 9, alpha=0.1), momentum=0.8, nesterov=True),
    "adam-cosine": lambda: Adam(CosineDecay(0.01, 9)),
    "adamw-step-decay": lambda: Adam(StepDecay(0.01, step_size=3, gamma=0.3), weight_decay=0.05),
}


@pytest.mark.parametrize("dropout", [0.0, 0.4])
@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_graph_runner_matches_eager_steps(fake_graph, optimizer, dropout):
    """40 samples, batch 16: per epoch a warm-up or replayed full batch, then an eager 8-sample batch.
    The update and dropout run inside the replay; schedules change lr every step or two, so a replay
    that used a stale learning rate or an old mask would not match bitwise."""
    x, y = _data()
    eager = _model(metrics=["accuracy"], optimizer=OPTIMIZERS[optimizer](), dropout=dropout)
    h_eager = eager.fit(x, y, epochs=3, batch_size=16, seed=5, verbose=0, graph=False)
    graphed = _model(metrics=["accuracy"], optimizer=OPTIMIZERS[optimizer](), dropout=dropout)
    report = fc.explain(lambda: graphed.fit(x, y, epochs=3, batch_size=16, seed=5, verbose=0))
    h_graph = report.result
    notes = [e.text for e in report.events if e.kind == "note"]
    assert sum("eager warm-up step for batch shape (16, 8, 8, 1)" in n for n in notes) == 1
    assert sum("captured the training step of batch shape (16, 8, 8, 1)" in n for n in notes) == 1
    assert sum("batch shape (8, 8, 8, 1) is not the captured (16, 8, 8, 1)" in n for n in notes) == 3   # per epoch
    (runner,) = fake_graph
    assert runner.stream.captures == 1 and runner.graph.launches == 5   # 6 full batches: 1 eager warm-up, 5 replays
    assert runner.failed is None and graphed.optimizer.iterations == eager.optimizer.iterations == 9
    for a, b in zip(graphed.get_weights(), eager.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert h_graph.history["accuracy"] == h_eager.history["accuracy"]
    np.testing.assert_allclose(h_graph.history["loss"], h_eager.history["loss"], rtol=1e-12)


def test_graph_runner_reads_the_loss_only_every_log_every_steps(fake_graph, monkeypatch):
    monkeypatch.setattr(step_capture, "LOG_EVERY", 3)
    reads, real_read = [], GraphSteps._read

    def counting_read(self):
        reads.append(self.pending)
        real_read(self)
    monkeypatch.setattr(GraphSteps, "_read", counting_read)
    x, y = _data(16 * 8)
    logged = []

    class Log(fc.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            logged.append(logs.get("loss"))
    h = _model().fit(x, y, epochs=1, batch_size=16, seed=5, verbose=0, graph=True, callbacks=[Log()])
    # step 1 is the eager warm-up (its loss read at once), steps 2-8 are replays: reads after 3, 3, and 1 at the end
    assert reads == [3, 3, 1]
    assert logged[1] == logged[2] == logged[0] and logged[3] != logged[2]   # batch logs carry the last read mean
    assert h.history["loss"][0] != logged[-1]


def test_a_replaced_weight_array_is_captured_again(fake_graph):
    x, y = _data(16 * 4)

    class Rebind(fc.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:   # after the capture (step 2): a new array for the first kernel, same values
                w = self.model.trainable_weights[0]
                w.data = w.data.copy()
    eager = _model()
    eager.fit(x, y, epochs=1, batch_size=16, seed=5, verbose=0, graph=False)
    model = _model()
    model.fit(x, y, epochs=1, batch_size=16, seed=5, verbose=0, callbacks=[Rebind()])
    (runner,) = fake_graph
    assert runner.stream.captures == 2
    for a, b in zip(model.get_weights(), eager.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_replaced_optimizer_slots_are_captured_again(fake_graph):
    """Restoring optimizer state gives the slots new arrays; the captured update would keep writing
    the old ones, so the runner captures again (and the result stays eager's, bitwise)."""
    x, y = _data(16 * 4)

    class Restore(fc.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                opt = self.model.optimizer
                opt.load_state_arrays(opt.state_arrays(), self.model.trainable_weights)
    eager = _model(optimizer="adam")
    eager.fit(x, y, epochs=1, batch_size=16, seed=5, verbose=0, graph=False)
    model = _model(optimizer="adam")
    report = fc.explain(lambda: model.fit(x, y, epochs=1, batch_size=16, seed=5, verbose=0, callbacks=[Restore()]))
    (runner,) = fake_graph
    assert runner.stream.captures == 2
    assert any("optimizer slot array was replaced" in e.text for e in report.events if e.kind == "note")
    for a, b in zip(model.get_weights(), eager.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_dropout_counter_advances_in_place_through_the_reference_masks():
    """What a replay relies on: the layer reads and advances one counter array (never replaced, never
    read on the host), and step k's mask is the reference mask at offset k * size."""
    from fastconv.backends import reference as ref
    layer = Dropout(0.35, seed=21)
    x = np.random.default_rng(0).random((6, 10)).astype(np.float32) + 0.5
    counter = None
    for k in range(3):
        y = layer(fc.Tensor(x), training=True)
        if counter is None:
            counter = layer.state["offset"].data
        assert layer.state["offset"].data is counter and int(counter) == (k + 1) * x.size
        np.testing.assert_array_equal(y.data, x * ref.dropout_mask(x.shape, 0.35, 21, k * x.size))


@pytest.mark.parametrize("offset, message", [(np.zeros((1,), np.int64), "0-d int64 array, got an array of shape (1,)"),
                                             (np.zeros((), np.int32), "and dtype int32"), (-1, "offset")])
def test_dropout_offset_is_checked(offset, message):
    x = fc.Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=re.escape(message)):
        fc.functional.dropout(x, 0.5, 1, offset)


def test_a_failed_capture_falls_back_to_eager_with_the_reason(fake_graph, monkeypatch):
    def host_read(self):
        raise RuntimeError("operation not permitted when stream is capturing")
    monkeypatch.setattr(GraphSteps, "_forward_backward", host_read)
    x, y = _data()
    eager = _model()
    eager.fit(x, y, epochs=2, batch_size=16, seed=5, verbose=0, graph=False)
    model = _model()
    report = fc.explain(lambda: model.fit(x, y, epochs=2, batch_size=16, seed=5, verbose=0))
    (runner,) = fake_graph
    assert runner.graph is None and runner.stream.captures == 1   # tried once, then eager for good
    assert "the capture failed (RuntimeError: operation not permitted when stream is capturing)" in runner.failed
    assert not model.step_capture.use and model.step_capture.reasons == [runner.failed]
    assert any("the capture failed" in e.text for e in report.events if e.kind == "note")
    for a, b in zip(model.get_weights(), eager.get_weights()):
        np.testing.assert_array_equal(a, b)


# ---- on a GPU --------------------------------------------------------------------------------------


def _gpu_fit(graph, optimizer="sgd", dropout=0.0, steps=10, batch=32, seed=11):
    from fastconv.backends.device import using_device
    x, y = _data(steps * batch, seed=2)
    with using_device("cuda"):
        model = _model(dropout=dropout, optimizer=optimizer, metrics=["accuracy"], seed=seed)
        h = model.fit(x, y, epochs=1, batch_size=batch, seed=seed, verbose=0, graph=graph)
    assert model.device == "cuda"
    return model, h


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU")
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_gpu_graph_matches_eager_over_10_steps(optimizer):
    eager, h_eager = _gpu_fit(False, optimizer)
    graphed, h_graph = _gpu_fit(True, optimizer)
    assert graphed.step_capture.use, graphed.step_capture.reasons
    assert graphed.optimizer.iterations == eager.optimizer.iterations == 10
    # the same kernels on the same inputs in the same order: equal up to the loss sum's grouping
    for a, b in zip(graphed.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_graph.history["loss"], h_eager.history["loss"], rtol=1e-5)
    assert h_graph.history["accuracy"] == h_eager.history["accuracy"]


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU")
def test_gpu_lr_schedule_under_graph_replay_matches_eager():
    from fastconv.optimizers import SGD
    from fastconv.schedules import StepDecay
    runs = []
    for graph in (False, True):
        model, h = _gpu_fit(graph, optimizer=SGD(StepDecay(0.1, step_size=3, gamma=0.5), momentum=0.9))
        runs.append((model, h))
    assert runs[1][0].step_capture.use
    for a, b in zip(runs[1][0].get_weights(), runs[0][0].get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU")
def test_gpu_whole_step_with_dropout_adam_and_cosine_matches_eager_over_10_steps():
    """Dropout, Adam and a cosine schedule all inside the replayed graph: each replay must draw the
    next mask of the eager sequence and use step t's learning rate and bias correction."""
    runs = [_gpu_fit(graph, optimizer=Adam(CosineDecay(0.01, 10, alpha=0.1)), dropout=0.3) for graph in (False, True)]
    (eager, h_eager), (graphed, h_graph) = runs
    assert graphed.step_capture.use, graphed.step_capture.reasons
    assert graphed.optimizer.iterations == eager.optimizer.iterations == 10
    (i,) = [i for i, layer in enumerate(graphed.layers) if isinstance(layer, Dropout)]
    counters = [int(m.layers[i].state["offset"].numpy()) for m in (eager, graphed)]
    assert counters == [10 * 32 * 36] * 2     # advanced by batch x 36 features per step, graph as eager
    for a, b in zip(graphed.get_weights(), eager.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h_graph.history["loss"], h_eager.history["loss"], rtol=1e-5)
    assert h_graph.history["accuracy"] == h_eager.history["accuracy"]


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU")
def test_gpu_prefetch_does_not_change_results():
    """fit on the GPU (batches through the prefetcher) vs train_on_batch on host arrays: bitwise."""
    from fastconv.backends.device import using_device
    fitted, _ = _gpu_fit(False, steps=6)
    x, y = _data(6 * 32, seed=2)
    with using_device("cuda"):
        manual = _model(metrics=["accuracy"], seed=11)
        order = np.random.default_rng([11, 0]).permutation(len(x))
        for s in range(6):
            idx = order[s * 32:(s + 1) * 32]
            manual.train_on_batch(x[idx], y[idx])
    for a, b in zip(fitted.get_weights(), manual.get_weights()):
        np.testing.assert_array_equal(a, b)



@pytest.mark.parametrize("precision, refused", [("fp16", True), ("bf16", False), ("tf32", False)])
def test_fp16_loss_scaling_refuses_capture_and_other_precisions_do_not(precision, refused):
    model = _model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", precision=precision)
    d = capture_decision(model, device="cuda", support=CUDA_OK)
    assert d.use is not refused
    assert any("loss scaling" in r and "host" in r for r in d.reasons) is refused, d.reasons
