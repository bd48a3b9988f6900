"""fastconv.data.prefetch: the CPU iterator yields the batches unchanged; the CUDA prefetcher's
copies, events and slot reuse are checked on a stand-in for CuPy that logs every stream operation
(and copies at once), and on a GPU its device batches equal the host ones."""
import ctypes
import sys
import types

import numpy as np
import pytest

import fastconv as fc
from fastconv.data.prefetch import prefetch
from fastconv.backends.device import cuda_available


def _batches(n=7, batch=4, last=2, seed=0):
    rng = np.random.default_rng(seed)
    sizes = [batch] * (n - 1) + [last]
    return [(rng.random((s, 3, 3, 1), dtype=np.float32), rng.integers(0, 5, s)) for s in sizes]


def test_cpu_yields_the_same_batches_in_the_same_order():
    batches = _batches()
    out = list(prefetch(iter(batches), "cpu"))
    assert len(out) == len(batches)
    for (dev, host), b in zip(out, batches):
        assert dev is b and host is b


def test_cpu_fit_follows_the_resumable_batch_order(tmp_path):
    """fit draws epoch e's order from (seed, e) and resumes at a step; with the prefetcher in the loop
    a run resumed from a mid-epoch checkpoint still ends bitwise where an uninterrupted one ends."""
    from fastconv.layers import Conv2D, Dense, Flatten
    rng = np.random.default_rng(3)
    x, y = rng.random((24, 6, 6, 1), dtype=np.float32), rng.integers(0, 3, 24)

    def model():
        fc.set_seed(0)
        m = fc.Sequential([Conv2D(2, 3, activation="relu", input_shape=(6, 6, 1), name="conv"), Flatten(name="flat"),
                           Dense(3, activation="softmax", name="dense")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        return m

    full = model()
    full.fit(x, y, epochs=2, batch_size=5, seed=9, verbose=0)

    class Stop(fc.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                raise KeyboardInterrupt
    ckpt = tmp_path / "ckpt"
    with pytest.raises(KeyboardInterrupt):
        model().fit(x, y, epochs=2, batch_size=5, seed=9, verbose=0, callbacks=[Stop()],
                    checkpoint_dir=ckpt, checkpoint_every=2)
    resumed = model()
    resumed.fit(x, y, epochs=2, batch_size=5, seed=9, verbose=0, checkpoint_dir=ckpt, resume=True)
    for a, b in zip(full.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_depth_is_checked(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy([]))
    with pytest.raises(ValueError, match="depth must be an int >= 2"):
        next(prefetch(iter(_batches()), "cuda", depth=1))


# ---- the CUDA prefetcher on a logging stand-in for CuPy -------------------------------------------
def _fake_cupy(log):
    cp = types.ModuleType("cupy")
    names = iter(range(1000))

    class Stream:
        def __init__(self, non_blocking=False, name=None):
            self.name = name or f"s{next(names)}"

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def wait_event(self, event):
            log.append(("wait", self.name, event.recorded_as))

        def synchronize(self):
            log.append(("sync", self.name))

    class Event:
        def __init__(self, disable_timing=False):
            self.recorded_as = None

        def record(self, stream):
            self.recorded_as = (stream.name, len(log))
            log.append(("record", stream.name, self.recorded_as))

        def synchronize(self):
            log.append(("host waits", self.recorded_as))

    class Pointer:
        def __init__(self, arr):
            self.arr = arr

        def copy_from_host_async(self, src, nbytes, stream):
            ctypes.memmove(self.arr.ctypes.data, src.value, nbytes)
            log.append(("copy", stream.name, self.arr.shape))

    class DeviceArray:
        def __init__(self, shape, dtype):
            self.arr = np.full(shape, -1, dtype)
            self.data = Pointer(self.arr)

    compute = Stream(name="compute")
    cp.empty = DeviceArray
    cp.cuda = types.SimpleNamespace(Stream=Stream, Event=Event, get_current_stream=lambda: compute,
                                    alloc_pinned_memory=lambda n: bytearray(n))
    return cp


@pytest.fixture
def fake(monkeypatch):
    log = []
    monkeypatch.setitem(sys.modules, "cupy", _fake_cupy(log))
    return log


def test_cuda_prefetch_yields_equal_batches_in_order_with_a_partial_last(fake):
    batches = _batches()
    n = 0
    for (dev, host), b in zip(prefetch(iter(batches), "cuda"), batches):
        assert host[0] is b[0] and host[1] is b[1]
        np.testing.assert_array_equal(dev[0].arr, b[0])
        np.testing.assert_array_equal(dev[1].arr, b[1])
        n += 1
    assert n == len(batches)


def test_cuda_prefetch_events_order_copies_and_compute(fake):
    """Compute waits for batch i's copy right before i is yielded; batch i+1's copy is issued before
    i is yielded (one ahead); the copy into a slot waits for the free event recorded after the slot's
    previous batch was consumed; the streams are synchronized at the end."""
    batches = _batches(n=5, last=4)
    yielded_at = []
    for _ in prefetch(iter(batches), "cuda"):
        yielded_at.append(len(fake))
    copies = [i for i, e in enumerate(fake) if e[0] == "copy" and e[2][1:] == (3, 3, 1)]
    assert len(copies) == 5
    for i, at in enumerate(yielded_at):
        assert copies[i] < at
        if i + 1 < len(copies):
            assert copies[i + 1] < at, f"batch {i + 1} was not copied ahead of batch {i}'s use"
        # the last thing before the yield is compute waiting on this batch's ready event
        kind, stream, _ = fake[at - 1]
        assert (kind, stream) == ("wait", "compute")
    frees = [e[2] for e in fake if e[0] == "record" and e[1] == "compute"]
    copy_waits = [(i, e[2]) for i, e in enumerate(fake) if e[0] == "wait" and e[1] != "compute"]
    # batches 2, 3, 4 reuse slots 0, 1, 0: each copy waits for the free of batch i - 2
    assert [w for _, w in copy_waits] == frees[:3]
    for (i, _), c in zip(copy_waits, copies[2:]):
        assert i < c
    assert fake[-2:] == [("sync", fake[-2][1]), ("sync", "compute")]


def test_cuda_prefetch_reuses_two_slots_and_syncs_when_stopped_early(fake):
    gen = prefetch(iter(_batches(n=6, last=4)), "cuda")
    seen = [next(gen)[0][0] for _ in range(4)]
    assert seen[0] is seen[2] and seen[1] is seen[3] and seen[0] is not seen[1]   # double buffering
    gen.close()
    assert fake[-1] == ("sync", "compute")


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs an NVIDIA GPU")
def test_gpu_prefetch_matches_the_host_batches():
    import cupy
    batches = _batches(n=9, batch=64, last=5)
    stream = cupy.cuda.Stream(non_blocking=True)
    got = []
    with stream:
        for dev, host in prefetch(iter(batches), "cuda", stream=stream):
            got.append(tuple((d * 1).get(stream=stream) for d in dev))  # a kernel on the consumer stream
    for g, b in zip(got, batches):
        np.testing.assert_array_equal(g[0], b[0])
        np.testing.assert_array_equal(g[1], b[1])
    assert len(got) == len(batches)


def test_cuda_prefetch_passes_device_resident_batches_through(fake):
    import cupy   # the stand-in
    dev = (cupy.empty((4, 3, 3, 1), np.float32), cupy.empty((4,), np.int64))
    host = _batches(n=2, last=4)
    out = list(prefetch(iter([host[0], dev, host[1]]), "cuda"))
    assert out[1] == (dev, dev)                                  # no copy for arrays already on the device
    np.testing.assert_array_equal(out[2][0][0].arr, host[1][0])
    assert sum(1 for e in fake if e[0] == "copy") == 4           # two arrays each for the two host batches
