"""BatchIterator: every sample once per epoch, a new order every epoch, exact resume from its state."""
import json

import numpy as np
import pytest

from fastconv.data import BatchIterator, batches

X = np.arange(103)
Y = X * 2  # y follows x, so pairing is checkable


def _epoch(it):
    return [xb.copy() for xb, _ in it]


def test_every_sample_once_per_epoch_with_a_partial_last_batch():
    it = batches(X, Y, batch_size=10, seed=0)
    assert isinstance(it, BatchIterator) and len(it) == 11
    seen = []
    for xb, yb in it:
        np.testing.assert_array_equal(yb, xb * 2)
        seen.append(xb)
    assert [len(b) for b in seen] == [10] * 10 + [3]
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), X)
    assert it.epoch == 1 and it.position == 0


def test_each_epoch_reshuffles_and_the_seed_fixes_the_orders():
    a, b = batches(X, Y, 16, seed=7), batches(X, Y, 16, seed=7)
    first, second = np.concatenate(_epoch(a)), np.concatenate(_epoch(a))
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(np.concatenate(_epoch(b)), first)
    np.testing.assert_array_equal(np.concatenate(_epoch(b)), second)
    assert not np.array_equal(np.concatenate(_epoch(batches(X, Y, 16, seed=8))), first)


def test_without_shuffle_the_order_is_kept_and_x_alone_is_fine():
    it = batches(X, batch_size=50, shuffle=False)
    out = list(it)
    assert [len(b) for b in out] == [50, 50, 3]
    np.testing.assert_array_equal(np.concatenate(out), X)
    assert np.shares_memory(out[0], X)  # slices, no copies


def test_state_resume_gives_the_same_remaining_order():
    reference = batches(X, Y, 10, seed=3)
    _epoch(reference)  # epoch 0
    gen = iter(reference)
    for _ in range(4):
        next(gen)
    state = json.loads(json.dumps(reference.state_dict()))  # must survive a JSON file
    assert state == {"seed": 3, "epoch": 1, "position": 40, "num_samples": 103, "shuffle": True}
    rest = [xb for xb, _ in gen] + _epoch(reference)  # the rest of epoch 1, then epoch 2

    resumed = batches(X, Y, 10, seed=99)
    resumed.load_state_dict(state)
    again = _epoch(resumed) + _epoch(resumed)
    assert len(again) == len(rest) == 7 + 11
    for a, b in zip(again, rest):
        np.testing.assert_array_equal(a, b)


def test_resume_with_another_batch_size_continues_at_the_next_sample():
    it = batches(X, Y, 10, seed=1)
    gen = iter(it)
    done = np.concatenate([next(gen)[0] for _ in range(3)])
    other = batches(X, Y, 25)
    other.load_state_dict(it.state_dict())
    rest = np.concatenate(_epoch(other))
    np.testing.assert_array_equal(np.concatenate([done, rest]), it.epoch_order(0))


def test_seed_none_is_recorded_so_the_run_can_resume():
    it = batches(X, Y, 10)
    assert isinstance(it.state_dict()["seed"], int)
    twin = batches(X, Y, 10)
    twin.load_state_dict(it.state_dict())
    for a, b in zip(_epoch(it), _epoch(twin)):
        np.testing.assert_array_equal(a, b)


def test_taking_exactly_the_last_batch_then_iterating_starts_the_next_epoch():
    it = batches(X, Y, 10, seed=2)
    gen = iter(it)
    for _ in range(11):
        next(gen)  # never asks for a 12th batch, so the epoch does not close itself
    assert it.position == 103
    np.testing.assert_array_equal(np.concatenate(_epoch(it)), it.epoch_order(1))
    assert it.epoch == 2


BATCH_ERRORS = [
    ("batch size", lambda: batches(X, Y, 0), ValueError, r"batch_size must be >= 1, got 0"),
    ("batch size type", lambda: batches(X, Y, 2.5), TypeError, r"batch_size must be an int, got float 2.5"),
    ("lengths", lambda: batches(X, Y[:-1], 4), ValueError, r"x and y must have the same number of samples, got 103 and 102"),
    ("empty", lambda: batches(np.zeros((0, 3)), None, 4), ValueError, r"x must be an array holding at least one sample"),
    ("shuffle", lambda: batches(X, Y, 4, shuffle="yes"), TypeError, r"shuffle must be a bool, got str 'yes'"),
    ("seed", lambda: batches(X, Y, 4, seed=-3), ValueError, r"seed must be >= 0, got -3"),
]


@pytest.mark.parametrize("name,call,exc,message", BATCH_ERRORS, ids=[c[0] for c in BATCH_ERRORS])
def test_batches_errors(name, call, exc, message):
    with pytest.raises(exc, match=message):
        call()


def _state(**changes):
    return {"seed": 0, "epoch": 0, "position": 0, "num_samples": 103, "shuffle": True, **changes}


STATE_ERRORS = [
    ("not a dict", [1, 2], TypeError, r"state must be a dict from state_dict\(\), got list"),
    ("missing key", {"seed": 0}, ValueError, r"state must have the keys .* missing \['epoch', 'position', 'num_samples', 'shuffle'\]"),
    ("other data", _state(num_samples=50), ValueError, r"saved for 50 samples but this iterator has 103"),
    ("shuffle", _state(shuffle=False), ValueError, r"saved with shuffle=False but this iterator has shuffle=True"),
    ("position", _state(position=104), ValueError, r"state\['position'\] must be <= num_samples=103, got 104"),
    ("epoch", _state(epoch=-1), ValueError, r"state\['epoch'\] must be >= 0, got -1"),
    ("seed type", _state(seed="a"), TypeError, r"state\['seed'\] must be an int, got str 'a'"),
]


@pytest.mark.parametrize("name,state,exc,message", STATE_ERRORS, ids=[c[0] for c in STATE_ERRORS])
def test_load_state_dict_errors(name, state, exc, message):
    with pytest.raises(exc, match=message):
        batches(X, Y, 4).load_state_dict(state)
