"""fit / evaluate on an ImageLoader over two gloo ranks (dist_image_worker.py): each rank decodes only its
share of every global batch (a folder) or its own shard files (tar shards), the shares are disjoint and
together are the one-process epoch of the double batch, the ranks end identical and match one process
to rounding, evaluate counts every sample once, and a resume continues exactly."""
import json
import os
import sys

import numpy as np
import pytest

pytest.importorskip("torch")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
from dist_image_worker import SEED, build, digest, loaders  # noqa: E402
from dist_launch import launch  # noqa: E402
from image_sets import make_folder, make_shards  # noqa: E402

from fastconv.data.images import CenterCrop, ImageLoader, TarShards, normalize  # noqa: E402

pytestmark = pytest.mark.slow
EPOCHS, BATCH, WORLD = 2, 4, 2
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist_image_worker.py")
F32 = float(np.finfo(np.float32).eps)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """27 training images (4 global batches of 8: the last has 3, split 1 / 2), 9 validation images,
    and the training images' twin as 3 tar shards of 9 (rank 0 reads shards 0 and 2, rank 1 shard 1)."""
    root = tmp_path_factory.mktemp("images")
    labels = np.arange(27) % 3
    return {"train": make_folder(root / "train", per_class=9, size=(20, 24)),
            "val": make_folder(root / "val", per_class=3, size=(16, 18), seed=1),
            "shards": make_shards(root / "shards", labels, shards=3, size=(16, 18)), "root": root}


def _run(sets, out, *args, world=WORLD, deadline_s=90, wait_for=None):
    command = [sys.executable, WORKER, str(out), "--train", sets["train"], "--val", sets["val"],
               "--epochs", str(EPOCHS), "--batch", str(BATCH), "--world", str(world), *map(str, args)]
    return launch([], world=world, deadline_s=deadline_s, wait_for=wait_for, command=command)


def _ok(ranks):
    for r, rank in enumerate(ranks):
        assert rank.returncode == 0, f"rank {r} exited with {rank.returncode}:\n{rank.stderr[-3000:]}"


def _result(out, rank):
    with np.load(f"{out}.rank{rank}.npz") as f:
        weights = [f[k] for k in f.files]
    with open(f"{out}.rank{rank}.json") as f:
        return weights, json.load(f)


@pytest.fixture(scope="module")
def folder_run(sets):
    out = sets["root"] / "folder"
    _ok(_run(sets, out))
    return [_result(out, r) for r in range(WORLD)]


@pytest.fixture(scope="module")
def shards_run(sets):
    """Tar shards, each rank's loader built with seed=None (fit must agree rank 0's)."""
    out = sets["root"] / "shards_run"
    ranks = _run({**sets, "train": sets["shards"]}, out, "--kind", "shards", "--seed-per-rank")
    _ok(ranks)
    return [_result(out, r) for r in range(WORLD)]


def _same_weights(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_ranks_decode_disjoint_shares_that_together_are_the_one_process_double_batch(folder_run, sets):
    (_, r0), (_, r1) = folder_run
    double, _ = loaders(sets["train"], sets["val"], "folder", BATCH * WORLD)
    for epoch in range(EPOCHS):
        steps0 = [s for s in r0["steps"] if s["epoch"] == epoch]
        steps1 = [s for s in r1["steps"] if s["epoch"] == epoch]
        reference = list(double.batches(epoch))
        assert len(steps0) == len(steps1) == len(reference) == 4
        for s0, s1, (x, y) in zip(steps0, steps1, reference):
            # bitwise the same pixels (the same crop of the same image), rank 0's part first
            assert s0["images"] + s1["images"] == [digest(i) for i in x]
            assert s0["labels"] + s1["labels"] == y.tolist()
            assert not set(s0["images"]) & set(s1["images"])
        assert [len(s["images"]) for s in steps0] == [4, 4, 4, 1]   # 27 = 3 x 8 + 3, split 1 / 2
        assert [len(s["images"]) for s in steps1] == [4, 4, 4, 2]


def _one_process(sets, reverse_within_batch=False):
    """One process with the double batch: fit, or the same batches by train_on_batch with each batch's
    samples reversed, which changes only the order in which float32 gradient sums are formed."""
    model = build()
    train, _ = loaders(sets["train"], sets["val"], "folder", BATCH * WORLD)
    if not reverse_within_batch:
        model.fit(train, epochs=EPOCHS, seed=SEED, verbose=0, distributed=False)
        return model
    for epoch in range(EPOCHS):
        for x, y in train.batches(epoch):
            model.train_on_batch(normalize(x[::-1], train.mean, train.std), y[::-1])
    return model


def test_ranks_end_identical_and_match_one_process_of_the_double_batch(folder_run, sets):
    (w0, r0), (w1, r1) = folder_run
    _same_weights(w0, w1)
    assert r0["history"] == r1["history"]
    reference = _one_process(sets)
    # tolerance as in test_data_parallel_fit.py: 4x the difference reordering float32 sums makes
    reordered = _one_process(sets, reverse_within_batch=True)
    noise = max(float(np.abs(a - b).max()) for a, b in zip(reference.get_weights(), reordered.get_weights()))
    atol = max(4 * noise, 4 * F32 * max(float(np.abs(w).max()) for w in w0))
    for got, want, start in zip(w0, reference.get_weights(), build().get_weights()):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
        assert np.abs(want - start).max() > 100 * atol      # it trained far beyond the tolerance
    solo = build()
    train, val = loaders(sets["train"], sets["val"], "folder", BATCH * WORLD)
    history = solo.fit(train, epochs=EPOCHS, seed=SEED, verbose=0, validation_data=val, distributed=False).history
    for key in ("accuracy", "precision", "f1", "val_accuracy", "val_precision", "val_f1"):   # summed counts
        assert r0["history"][key] == history[key], key
    # a batch loss is a float32 mean of at most 8 terms: relative rounding <= 8 eps per batch
    np.testing.assert_allclose(r0["history"]["loss"], history["loss"], rtol=8 * F32)


def test_evaluate_on_a_loader_counts_every_sample_once_over_the_ranks(folder_run):
    (_, r0), (_, r1) = folder_run
    assert r0["evaluate"] == r1["evaluate"]
    for result in (r0, r1):
        shared, alone = result["evaluate"], result["evaluate_alone"]   # 4 + 5 samples vs all 9 on one rank
        for key in ("accuracy", "precision", "f1"):
            assert shared[key] == alone[key], key
        # float32 batch means of at most 9 terms, summed in float64: relative rounding <= 9 eps
        assert shared["loss"] == pytest.approx(alone["loss"], rel=9 * F32)


def test_tar_shards_each_rank_streams_only_its_own_shard_files(shards_run, sets):
    (w0, r0), (w1, r1) = shards_run
    _same_weights(w0, w1)
    assert r0["loader_seed"] == r1["loader_seed"]          # drawn per rank, agreed at start-up
    files = TarShards(sets["shards"]).shards

    def centre_crops(paths):   # the pixels of every sample of these shard files (CenterCrop: no randomness)
        pattern = paths[0] if len(paths) == 1 else "{" + ",".join(paths) + "}"
        loader = ImageLoader(TarShards(pattern), CenterCrop(12), batch_size=BATCH, shuffle=False)
        return sorted(digest(i) for x, _ in loader.batches(0) for i in x)

    own = [centre_crops(files[0::2]), centre_crops(files[1::2])]
    for epoch in range(EPOCHS):
        seen = [sorted(d for s in r["steps"] if s["epoch"] == epoch for d in s["images"]) for r in (r0, r1)]
        assert seen == own                                 # each rank: all of its files, once, and nothing else
        assert not set(seen[0]) & set(seen[1])
        # 18 and 9 samples: 5 steps on both ranks, rank 1's last two empty
        assert [len(s["images"]) for s in r1["steps"] if s["epoch"] == epoch] == [4, 4, 1, 0, 0]
        assert [len(s["images"]) for s in r0["steps"] if s["epoch"] == epoch] == [4, 4, 4, 4, 2]
    assert r0["history"] == r1["history"] and len(r0["history"]["loss"]) == EPOCHS


def test_resume_after_a_killed_rank_continues_exactly(folder_run, sets):
    folder = sets["root"] / "resume"
    # rank 1 dies after step 7 (epoch 2, step 3); rank 0 checkpointed after step 6 (epoch 2, step 2)
    rank0, rank1 = _run(sets, folder / "killed", "--ckpt", folder / "ckpt", "--kill-at", 7, "--timeout", 15,
                        wait_for=[0])
    assert rank1.returncode == -9
    assert rank0.returncode not in (0, None) and "DistributedError" in rank0.stderr, rank0.stderr[-3000:]
    out = folder / "resumed"
    _ok(_run(sets, out, "--ckpt", folder / "ckpt", "--resume", "--workers", 2))   # workers change nothing
    for rank in range(WORLD):
        weights, result = _result(out, rank)
        _same_weights(weights, folder_run[rank][0])
        assert result["history"]["loss"] == folder_run[rank][1]["history"]["loss"]
        assert result["history"]["val_accuracy"] == folder_run[rank][1]["history"]["val_accuracy"]
        resumed = [(s["epoch"], s["step"]) for s in result["steps"]]
        assert resumed == [(1, 2), (1, 3)]                  # only the steps after the checkpoint
        assert result["steps"] == [s for s in folder_run[rank][1]["steps"] if (s["epoch"], s["step"]) in resumed]
