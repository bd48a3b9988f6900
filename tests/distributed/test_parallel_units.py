"""The pieces of data-parallel training in one process: shards, the launch environment, argument
errors, the autograd hook, and a world of one gloo rank (bucket launches during backward, fit and
evaluate equal to the one-process path)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import fastconv as fc  # noqa: E402
from fastconv import parallel  # noqa: E402
from fastconv.parallel.buckets import GradientBuckets  # noqa: E402
from fastconv.parallel.sharding import shard_batches, steps_per_epoch  # noqa: E402
from fastconv.tensor import Tensor, leaf_grad_hook  # noqa: E402

from dist_launch import free_port  # noqa: E402
from dist_worker import SEED, build, data  # noqa: E402


# ---- shards --------------------------------------------------------------------------------------
@pytest.mark.parametrize("samples,batch,world", [(49, 4, 2), (48, 4, 2), (10, 3, 4), (5, 4, 3), (1, 1, 2)])
def test_shards_partition_each_one_process_batch_of_batch_times_world(samples, batch, world):
    order = np.random.default_rng(0).permutation(samples)
    steps = steps_per_epoch(samples, batch, world)
    per_rank = [list(shard_batches(order, batch, r, world)) for r in range(world)]
    assert all(len(p) == steps for p in per_rank)          # every rank takes every step (collectives match)
    for s in range(steps):
        parts = [per_rank[r][s] for r in range(world)]
        np.testing.assert_array_equal(np.concatenate(parts), order[s * batch * world:(s + 1) * batch * world])
        sizes = [len(p) for p in parts]
        assert max(sizes) - min(sizes) <= 1 and max(sizes) <= batch


def test_shards_resume_from_a_step():
    order = np.arange(40)
    assert [b.tolist() for b in shard_batches(order, 4, 1, 2, first=3)] == [[28, 29, 30, 31], [36, 37, 38, 39]]


# ---- environment and arguments -----------------------------------------------------------------
def test_missing_launch_variables_are_named():
    with pytest.raises(RuntimeError, match=r"\['MASTER_ADDR', 'MASTER_PORT'\] not set.*torchrun"):
        parallel.read_environment({"RANK": "0", "WORLD_SIZE": "2"})


@pytest.mark.parametrize("env,match", [({"RANK": "2"}, "RANK must be < WORLD_SIZE=2"),
                                       ({"RANK": "x"}, "RANK must be a non-negative integer"),
                                       ({"MASTER_PORT": "70000"}, "MASTER_PORT must be a TCP port")])
def test_bad_launch_variables_are_reported(env, match):
    base = {"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    with pytest.raises(ValueError, match=match):
        parallel.read_environment({**base, **env})


def test_bad_arguments_are_reported():
    (x, y), _ = data()
    with pytest.raises(TypeError, match="distributed must be None .* got str 'yes'"):
        build().fit(x, y, epochs=1, verbose=0, distributed="yes")
    with pytest.raises(ValueError, match="bucket_bytes must be >= 1"):
        parallel.DataParallel(bucket_bytes=0)
    with pytest.raises(TypeError, match="group must be a fastconv.parallel.ProcessGroup"):
        parallel.DataParallel(group="gloo")


def test_init_outside_a_launch_says_how_to_launch(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="torchrun --nproc_per_node"):
        parallel.init()


# ---- the autograd hook -----------------------------------------------------------------------------
def test_leaf_grad_hook_sees_each_leaf_once_with_its_whole_gradient():
    a = Tensor(np.array([1.0, 2.0], np.float32), requires_grad=True)
    b = Tensor(np.array([3.0, 4.0], np.float32), requires_grad=True)
    seen = []
    with leaf_grad_hook(lambda leaf: seen.append((leaf is a, leaf.grad.copy()))):
        ((a * b) + a * 2.0).sum().backward()        # a is used twice: its gradient is b + 2
    assert [flag for flag, _ in seen].count(True) == 1 and len(seen) == 2
    np.testing.assert_array_equal(next(g for flag, g in seen if flag), [5.0, 6.0])
    a.grad = None
    (a * b).sum().backward()                          # outside the block: no hook
    assert len(seen) == 2


# ---- one gloo rank in this process ------------------------------------------------------------------
@pytest.fixture
def world_of_one(monkeypatch):
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    group = parallel.init(backend="gloo", timeout_s=30, device="cpu")
    try:
        yield group
    finally:
        parallel.shutdown()


def test_buckets_are_launched_in_order_while_backward_runs(world_of_one):
    (x, y), _ = data()
    model = build()
    model._ensure_built(x.shape[1:])
    params = model.trainable_weights
    buckets = GradientBuckets(params, world_of_one, bucket_bytes=256)
    assert len(buckets.buckets) > 2
    events, hook, launch = [], buckets.hook, buckets._launch
    buckets.hook = lambda leaf: (events.append("grad"), hook(leaf))
    buckets._launch = lambda b: (events.append(b), launch(b))
    buckets.begin()
    loss, _ = model._loss_and_output(x[:8], y[:8], training=True)
    with leaf_grad_hook(buckets.hook):
        loss.backward()
    launches = [e for e in events if e != "grad"]
    assert launches == list(range(len(buckets.buckets)))           # all, in index order, during backward
    assert events.index(0) < len(events) - 1 - events[::-1].index("grad")   # the first before the last gradient
    local = [p.grad.copy() for p in params]
    buckets.finish(1.0)
    for p, g in zip(params, local):                                 # one rank: its own mean gradient
        np.testing.assert_array_equal(p.grad, g)


def test_fit_and_evaluate_on_one_rank_equal_the_one_process_path(world_of_one):
    (x, y), (xv, yv) = data()
    runs = []
    for distributed in (parallel.DataParallel(bucket_bytes=256), False):
        model = build()
        history = model.fit(x, y, epochs=2, batch_size=8, seed=SEED, verbose=0, validation_data=(xv, yv),
                            distributed=distributed)
        runs.append((model.get_weights(), history.history, model.evaluate(xv, yv, return_dict=True,
                                                                           distributed=distributed)))
    (w_dp, h_dp, e_dp), (w_one, h_one, e_one) = runs
    for a, b in zip(w_dp, w_one):       # backward seeded with n/8, then divided by it: powers of two, exact
        np.testing.assert_array_equal(a, b)
    assert h_dp["accuracy"] == h_one["accuracy"] and h_dp["val_f1"] == h_one["val_f1"]
    assert e_dp == e_one


def test_a_metric_without_counts_cannot_be_summed(world_of_one):
    class Custom(fc.metrics.Metric):
        def reset(self):
            self.value = 0.0

        def update(self, y_true, y_pred):
            self.value += 1.0

        def result(self):
            return self.value

    (x, y), _ = data()
    model = build()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=[Custom()])
    with pytest.raises(TypeError, match="cannot be summed over ranks"):
        model.evaluate(x, y)
