"""ImageLoader: batches independent of the worker count, seeded epochs, mid-epoch resume, every bad-data
case (skipped and named, or raised), failing and dying workers, and streaming in bounded memory."""
import os
import tracemalloc
import warnings

import numpy as np
import pytest
from image_sets import encode, make_folder, make_shards, smooth_image

from fastconv.data.images import (CenterCrop, ImageFolder, ImageLoader, LoaderError, RandomResizedCrop,
                                  SkippedImageWarning, TarShards)


def _epoch(loader, epoch=0, start=0):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedImageWarning)
        return [(x.copy(), y.copy()) for x, y in loader.batches(epoch, start)]


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x1, x2) and np.array_equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))


@pytest.fixture
def folder(tmp_path):
    return ImageFolder(make_folder(tmp_path / "d", per_class=5))


def test_batches_have_the_transform_shape_and_all_labels(folder):
    loader = ImageLoader(folder, RandomResizedCrop(24), batch_size=4, seed=0)
    batches = _epoch(loader)
    assert len(loader) == len(batches) == 4 and [len(y) for _, y in batches] == [4, 4, 4, 3]
    assert all(x.dtype == np.uint8 and x.shape[1:] == (24, 24, 3) for x, _ in batches)
    assert sorted(np.concatenate([y for _, y in batches]).tolist()) == sorted(folder.labels.tolist())


@pytest.mark.parametrize("source", ["folder", "shards"])
def test_workers_give_the_same_batches_as_in_process(tmp_path, source):
    if source == "folder":
        src = ImageFolder(make_folder(tmp_path / "d", per_class=4))
    else:
        src = TarShards(make_shards(tmp_path / "s", np.arange(13) % 3, shards=3), buffer=4)
    serial = ImageLoader(src, RandomResizedCrop(16), batch_size=3, seed=5)
    with ImageLoader(src, RandomResizedCrop(16), batch_size=3, seed=5, workers=2, prefetch=3) as parallel:
        for epoch in (0, 1):
            assert _same(_epoch(serial, epoch), _epoch(parallel, epoch))
        assert not _same(_epoch(serial, 0), _epoch(serial, 1))


@pytest.mark.parametrize("source", ["folder", "shards"])
@pytest.mark.parametrize("workers", [0, 2])
def test_resume_mid_epoch_replays_the_remaining_batches(tmp_path, source, workers):
    if source == "folder":
        folder = ImageFolder(make_folder(tmp_path / "d", per_class=5))
    else:   # a stream: the resumed epoch re-reads the shards and its shuffle buffer from the start
        folder = TarShards(make_shards(tmp_path / "s", np.arange(15) % 3, shards=3), buffer=5)
    with ImageLoader(folder, RandomResizedCrop(16), batch_size=4, seed=3, workers=workers) as loader:
        full = _epoch(loader, 1)
        assert _same(_epoch(loader, 1, start=2), full[2:])
        it = iter(loader)
        first = [next(it) for _ in range(2)]
        state = loader.state_dict()
        it.close()
    assert state["epoch"] == 0 and state["position"] == 2
    resumed = ImageLoader(folder, RandomResizedCrop(16), batch_size=4, seed=999, workers=0)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert _same(first + rest, _epoch(ImageLoader(folder, RandomResizedCrop(16), batch_size=4, seed=3), 0))
    assert resumed.state_dict()["epoch"] == 1


def test_load_state_dict_refuses_another_configuration(folder):
    state = ImageLoader(folder, RandomResizedCrop(16), batch_size=4, seed=3).state_dict()
    with pytest.raises(ValueError, match="state was saved with batch_size=4 but this loader has 5"):
        ImageLoader(folder, RandomResizedCrop(16), batch_size=5).load_state_dict(state)


def _bad_folder(tmp_path):
    root = make_folder(tmp_path / "d", classes=("a", "b"), per_class=2)
    good = encode(smooth_image(np.random.default_rng(1), 40, 40))
    bad = {"a/truncated.jpg": good[: len(good) // 3], "a/garbage.jpg": os.urandom(300),
           "b/text.png": b"hello, not a png", "b/empty.jpg": b""}
    for name, data in bad.items():
        (tmp_path / "d" / name).write_bytes(data)
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "d" / "b" / "dangling.jpg")   # unreadable: the open fails
    unreadable = [os.path.join(root, *n.split("/")) for n in (*bad, "b/dangling.jpg")]
    return root, sorted(unreadable)


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_files_are_skipped_counted_and_named(tmp_path, workers):
    root, bad = _bad_folder(tmp_path)
    with ImageLoader(ImageFolder(root), CenterCrop(16, resize=20), batch_size=3, seed=0, workers=workers) as loader:
        with pytest.warns(SkippedImageWarning) as caught:
            batches = [b for b in loader.batches(0)]
        assert sum(len(y) for _, y in batches) == 4   # the good images, in batches shortened by the skips
        assert sorted(name for name, _ in loader.skipped) == bad
        reasons = {os.path.relpath(name, root): reason for name, reason in loader.skipped}
        assert "unreadable: FileNotFoundError" in reasons["b/dangling.jpg"]
        assert "corrupt or truncated" in reasons["a/truncated.jpg"]
        assert "not an image file" in reasons["b/text.png"] and "not an image file" in reasons["b/empty.jpg"]
        assert len(caught) == len(bad) and all(any(b in str(w.message) for b in bad) for w in caught)


@pytest.mark.parametrize("workers", [0, 2])
def test_on_error_raise_names_the_file(tmp_path, workers):
    root, _ = _bad_folder(tmp_path)
    with ImageLoader(ImageFolder(root), CenterCrop(16, resize=20), batch_size=2, shuffle=False,
                     on_error="raise", workers=workers) as loader:
        with pytest.raises(LoaderError, match=r"a/garbage.jpg: not an image file"):
            list(loader.batches(0))


class _Exploding(CenterCrop):
    """A transform that fails unlike bad data (a bug in user code): the loader must report it, not hang."""

    def __call__(self, data, rng=None, name=""):
        if name.endswith("002.jpg"):
            raise KeyError("bug in a user transform")
        return super().__call__(data, rng, name)


class _Dying(CenterCrop):
    def __call__(self, data, rng=None, name=""):
        os._exit(7)


class _Stuck(CenterCrop):
    def __call__(self, data, rng=None, name=""):
        import time
        time.sleep(60)


def test_a_stuck_worker_is_stopped_after_the_timeout(tmp_path):
    root = make_folder(tmp_path / "d", classes=("a",), per_class=1)
    loader = ImageLoader(ImageFolder(root), _Stuck(8, resize=10), batch_size=1, workers=1, timeout=1)
    with pytest.raises(LoaderError, match=r"no batch came back from the loader workers within timeout=1 s"):
        list(loader.batches(0))
    assert loader._pool is None


def test_a_worker_exception_is_raised_with_its_traceback(tmp_path):
    root = make_folder(tmp_path / "d", classes=("a",), per_class=4)
    with ImageLoader(ImageFolder(root), _Exploding(8, resize=10), batch_size=2, shuffle=False, workers=2) as loader:
        with pytest.raises(LoaderError, match=r"KeyError: 'bug in a user transform'[\s\S]*Traceback"):
            list(loader.batches(0))
        it = loader.batches(0)   # the loader (and its workers) stay usable after the error
        first = next(it)
        it.close()
        expected = next(ImageLoader(ImageFolder(root), CenterCrop(8, resize=10), batch_size=2, shuffle=False).batches(0))
        assert _same([first], [expected])


def test_a_dead_worker_ends_the_iteration_with_its_exit_code(tmp_path):
    root = make_folder(tmp_path / "d", classes=("a",), per_class=2)
    loader = ImageLoader(ImageFolder(root), _Dying(8, resize=10), batch_size=1, workers=1)
    with pytest.raises(LoaderError, match=r"died with exit code 7"):
        list(loader.batches(0))
    assert loader._pool is None


def test_loader_arguments_are_checked(folder):
    t = RandomResizedCrop(8)
    with pytest.raises(TypeError, match="source must be an ImageFolder or TarShards"):
        ImageLoader([1, 2], t)
    with pytest.raises(TypeError, match="transform must be"):
        ImageLoader(folder, lambda data, rng, name: data)
    with pytest.raises(ValueError, match="on_error must be 'skip' or 'raise'"):
        ImageLoader(folder, t, on_error="ignore")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        ImageLoader(folder, t, batch_size=0)
    with pytest.raises(ValueError, match="std must be > 0"):
        ImageLoader(folder, t, std=(1, 0, 1))
    with pytest.raises(ValueError, match="timeout must be a positive number of seconds or None, got 0"):
        ImageLoader(folder, t, timeout=0)
    with pytest.raises(ValueError, match=r"memory_limit=1000 bytes is below the \d+ bytes"):
        ImageLoader(folder, t, batch_size=8, memory_limit=1000)


def test_a_data_set_larger_than_the_memory_limit_streams_within_it(tmp_path):
    # 60 photo-like JPEGs of 240x320: their files, their decoded pixels, even their 64x64 crops all
    # exceed the 500 kB the loader may hold (NumPy and bytes allocations are traced; Pillow's are not)
    root = make_folder(tmp_path / "d", classes=("a", "b", "c"), per_class=20, size=(240, 320))
    decoded, crops = 60 * 240 * 320 * 3, 60 * 64 * 64 * 3
    files = sum(os.path.getsize(p) for p in ImageFolder(root).paths)
    limit = 500_000
    loader = ImageLoader(ImageFolder(root), RandomResizedCrop(64), batch_size=8, seed=0, memory_limit=limit)
    tracemalloc.start()
    try:
        count = 0
        for x, y in loader.batches(0):
            count += len(y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 60 and min(decoded, crops, files) > limit
    assert peak < limit, peak


def test_shard_streaming_memory_does_not_grow_with_the_data_set(tmp_path):
    peaks = []
    for n in (24, 72):
        shards = TarShards(make_shards(tmp_path / f"s{n}", np.zeros(n, int), shards=3, size=(120, 160)), buffer=4)
        loader = ImageLoader(shards, RandomResizedCrop(32), batch_size=4, seed=0)
        tracemalloc.start()
        try:
            assert sum(len(y) for _, y in loader.batches(0)) == n
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    # three times the data: the peak may move by allocator noise, not by another 48 encoded images
    encoded = shards.mean_sample_bytes
    assert peaks[1] - peaks[0] < 8 * encoded, (peaks, encoded)


def test_a_corrupt_image_inside_a_shard_is_skipped_by_its_shard_and_key(tmp_path):
    import tarfile

    from image_sets import add_member
    good = encode(smooth_image(np.random.default_rng(0), 30, 30))
    path = tmp_path / "s-0.tar"
    with tarfile.open(path, "w") as tar:
        for key, data in (("a", good), ("b", good[:100]), ("c", b"not a jpeg at all"), ("d", good)):
            add_member(tar, f"{key}.jpg", data)
            add_member(tar, f"{key}.cls", b"0")
    loader = ImageLoader(TarShards(str(path)), CenterCrop(8, resize=10), batch_size=4, shuffle=False)
    (x, y), = _epoch(loader)
    assert len(y) == 2 and [n for n, _ in loader.skipped] == [f"{path}:b.jpg", f"{path}:c.jpg"]


def test_workers_started_by_spawn_give_the_same_batches(folder):
    # spawn (macOS and Windows' default) pickles the transform and the source into fresh interpreters
    serial = _epoch(ImageLoader(folder, RandomResizedCrop(16), batch_size=8, seed=2))
    with ImageLoader(folder, RandomResizedCrop(16), batch_size=8, seed=2, workers=1, start_method="spawn") as loader:
        assert _same(_epoch(loader), serial)
