"""fit / evaluate on two CPU processes over gloo, launched as torchrun launches them
(dist_launch.py, dist_worker.py): the ranks end bitwise identical, match one process training on
the double batch to rounding, report the same metrics, survive neither a killed nor a hung peer
silently, resume exactly, and refuse to start on different data."""
import json

import numpy as np
import pytest

pytest.importorskip("torch")

from dist_launch import launch  # noqa: E402
from dist_worker import SEED, build, data  # noqa: E402

pytestmark = pytest.mark.slow
EPOCHS, BATCH, WORLD = 3, 4, 2


def _result(out, rank):
    with np.load(f"{out}.rank{rank}.npz") as f:
        weights = [f[k] for k in f.files]
    with open(f"{out}.rank{rank}.json") as f:
        return weights, json.load(f)


def _ok(ranks):
    for r, rank in enumerate(ranks):
        assert rank.returncode == 0, f"rank {r} exited with {rank.returncode}:\n{rank.stderr[-3000:]}"


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    _ok(launch([out, "--epochs", EPOCHS, "--batch", BATCH]))
    return [_result(out, r) for r in range(WORLD)]


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """Rank 1 SIGKILLs itself after 10 steps (epoch 2, step 3; checkpoints every 2 steps)."""
    folder = tmp_path_factory.mktemp("killed")
    ranks = launch([folder / "run", "--epochs", EPOCHS, "--batch", BATCH, "--ckpt", folder / "ckpt",
                    "--fault", "kill", "--fault-at", 10, "--timeout", 20], deadline_s=90, wait_for=[0])
    return folder, ranks


def _one_process(batch_size, reverse_within_batch=False):
    """One process, batch `batch_size`: fit, or (reverse_within_batch) the same batches by
    train_on_batch with each batch's samples in reverse order, which changes only the order in which
    float32 gradient sums are formed."""
    (x, y), _ = data()
    model = build()
    if not reverse_within_batch:
        model.fit(x, y, epochs=EPOCHS, batch_size=batch_size, seed=SEED, verbose=0, distributed=False)
        return model
    for epoch in range(EPOCHS):
        order = np.random.default_rng([SEED, epoch]).permutation(len(x))   # fit's epoch order
        for s in range(0, len(x), batch_size):
            idx = order[s:s + batch_size][::-1]
            model.train_on_batch(x[idx], y[idx])
    return model


def test_both_ranks_end_bitwise_identical_with_the_same_logs(two_ranks):
    (w0, r0), (w1, r1) = two_ranks
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)
    assert r0["history"] == r1["history"]
    assert r0["evaluate"] == r1["evaluate"]
    assert "data-parallel" in r0["step_capture"]       # it says why no CUDA graph


def test_two_ranks_of_batch_b_match_one_process_of_batch_2b(two_ranks):
    weights, result = two_ranks[0]
    reference = _one_process(BATCH * WORLD)
    # Tolerance: the two runs differ only in the order float32 gradient sums are formed (per rank,
    # then across ranks, vs one sum). The same training with each batch's samples reversed differs
    # from `reference` in that way alone, so their difference measures this rounding; allow 4x it,
    # and at least 4 ulps of the largest weight.
    reordered = _one_process(BATCH * WORLD, reverse_within_batch=True)
    noise = max(float(np.abs(a - b).max()) for a, b in zip(reference.get_weights(), reordered.get_weights()))
    largest = max(float(np.abs(w).max()) for w in weights)
    atol = max(4 * noise, 4 * np.finfo(np.float32).eps * largest)
    initial = build().get_weights()
    for got, want, start in zip(weights, reference.get_weights(), initial):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
        assert np.abs(want - start).max() > 100 * atol    # it trained far beyond the tolerance
    (x, y), _ = data()
    # the epoch logs count the same samples: summed over ranks they are the one-process numbers
    solo = build()
    solo_history = solo.fit(x, y, epochs=EPOCHS, batch_size=BATCH * WORLD, seed=SEED, verbose=0,
                            validation_data=data()[1], distributed=False).history
    for key in ("accuracy", "precision", "f1", "val_accuracy", "val_precision", "val_f1"):
        assert result["history"][key] == solo_history[key], key
    # a batch loss is a float32 mean of at most 8 terms: relative rounding <= 8 eps per batch
    np.testing.assert_allclose(result["history"]["loss"], solo_history["loss"], rtol=8 * np.finfo(np.float32).eps)


def test_evaluate_sums_counts_over_ranks(two_ranks):
    for _, result in two_ranks:
        shared, alone = result["evaluate"], result["evaluate_alone"]   # 11 + 12 samples vs all 23 on one rank
        for key in ("accuracy", "precision", "f1"):
            assert shared[key] == alone[key], key
        # loss: float32 batch means of at most 23 terms, summed in float64: relative rounding <= 23 eps
        assert shared["loss"] == pytest.approx(alone["loss"], rel=23 * float(np.finfo(np.float32).eps))


def test_a_killed_rank_ends_the_other_with_a_clear_error(killed):
    _, (rank0, rank1) = killed
    assert rank1.returncode == -9
    assert rank0.returncode is not None, "rank 0 hung after its peer died"
    assert rank0.returncode != 0
    assert "DistributedError" in rank0.stderr and "rank 0 of 2" in rank0.stderr, rank0.stderr[-3000:]
    assert rank0.seconds < 60


def test_a_hung_rank_ends_the_other_within_the_timeout(tmp_path):
    rank0, _ = launch([tmp_path / "run", "--fault", "hang", "--fault-at", 3, "--timeout", 5],
                      deadline_s=60, wait_for=[0])
    assert rank0.returncode is not None, "rank 0 waited past the deadline for a hung peer"
    assert rank0.returncode != 0
    assert "DistributedError" in rank0.stderr and "timeout 5 s" in rank0.stderr, rank0.stderr[-3000:]


def test_a_non_finite_loss_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    ranks = launch([tmp_path / "run", "--fault", "nan", "--fault-at", 3, "--timeout", 20], deadline_s=60)
    for rank in ranks:       # rank 1's weights turn NaN after step 3: step 4's summed loss is NaN everywhere
        assert rank.returncode not in (0, None)
        assert "FloatingPointError: epoch 1, step 4: the training loss summed over all ranks became nan" \
            in rank.stderr, rank.stderr[-3000:]


def test_resume_after_a_killed_rank_ends_where_the_uninterrupted_run_ends(killed, two_ranks):
    folder, _ = killed
    out = folder / "resumed"
    _ok(launch([out, "--epochs", EPOCHS, "--batch", BATCH, "--ckpt", folder / "ckpt", "--resume"]))
    for rank in range(WORLD):
        weights, result = _result(out, rank)
        for a, b in zip(weights, two_ranks[rank][0]):
            np.testing.assert_array_equal(a, b)
        # metric counts are not part of a checkpoint (one-process fit neither): the resumed epoch's
        # metrics count from the resume on, but its loss is summed from the checkpoint on, exactly
        assert result["history"]["loss"] == two_ranks[rank][1]["history"]["loss"]
        assert result["history"]["val_accuracy"] == two_ranks[rank][1]["history"]["val_accuracy"]


def test_resume_with_another_world_size_is_refused(killed):
    folder, _ = killed
    (alone,) = launch([folder / "alone", "--epochs", EPOCHS, "--ckpt", folder / "ckpt", "--resume"], world=1,
                      deadline_s=60)
    assert alone.returncode not in (0, None)
    assert "written by a run of 2 process(es) but this run has 1" in alone.stderr, alone.stderr[-3000:]


def test_ranks_with_different_models_or_data_are_stopped_at_start(tmp_path):
    ranks = launch([tmp_path / "run", "--extra-on-rank1", 1, "--bn-on-rank1", "--timeout", 20], deadline_s=60)
    for rank in ranks:
        assert rank.returncode not in (0, None)
        assert "disagree" in rank.stderr and "samples: rank 0 49, rank 1 50" in rank.stderr, rank.stderr[-3000:]
        assert "  model: rank 0 " in rank.stderr and "  data: rank 0 " in rank.stderr


def test_sync_batchnorm_on_two_ranks_matches_batchnorm_on_one_process_of_the_double_batch(tmp_path):
    samples = 48                                    # every rank has a share in every step (SyncBN needs it)
    out = tmp_path / "run"
    _ok(launch([out, "--epochs", 2, "--batch", BATCH, "--bn", "sync", "--samples", samples]))
    (w0, _), (w1, _) = _result(out, 0), _result(out, 1)
    for a, b in zip(w0, w1):
        np.testing.assert_array_equal(a, b)         # moving statistics included
    (x, y), _ = data(samples=samples)
    runs = []
    for reverse in (False, True):                   # the tolerance as in the test above
        model = build("plain")
        for epoch in range(2):
            order = np.random.default_rng([SEED, epoch]).permutation(len(x))
            for s in range(0, len(x), BATCH * WORLD):
                idx = order[s:s + BATCH * WORLD]
                model.train_on_batch(x[idx[::-1] if reverse else idx], y[idx[::-1] if reverse else idx])
        runs.append(model.get_weights())
    noise = max(float(np.abs(a - b).max()) for a, b in zip(*runs))
    atol = max(4 * noise, 4 * np.finfo(np.float32).eps * max(float(np.abs(w).max()) for w in w0))
    for got, want in zip(w0, runs[0]):
        np.testing.assert_allclose(got, want, rtol=0, atol=atol)
