"""ImageLoader.batches(rank, world_size) in one process: the ranks' shares of a folder are the parts of the
double batch, tar shards go whole to ranks, and what data-parallel fit checks at start-up about a loader."""
import os
import shutil
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data"))
from image_sets import make_folder, make_shards  # noqa: E402

import fastconv as fc  # noqa: E402
from fastconv.data.images import CenterCrop, ImageFolder, ImageLoader, RandomResizedCrop, TarShards  # noqa: E402
from fastconv.layers import Conv2D, Dense, Flatten, SyncBatchNormalization  # noqa: E402
from fastconv.parallel.agreement import fingerprint  # noqa: E402
from fastconv.parallel.data_parallel import _check_sync_batchnorm_shares  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("f") / "d", per_class=7, size=(20, 24))   # 21 images


def _batches(loader, epoch=0, start=0, rank=0, world_size=1):
    return [(x.copy(), y.copy()) for x, y in loader.batches(epoch, start, rank, world_size)]


@pytest.mark.parametrize("world", [2, 3])
def test_folder_shares_concatenate_to_the_batch_of_batch_size_times_ranks(folder, world):
    one = ImageLoader(ImageFolder(folder), RandomResizedCrop(12), batch_size=4 * world, seed=3)
    per_rank = ImageLoader(ImageFolder(folder), RandomResizedCrop(12), batch_size=4, seed=3)
    assert per_rank.steps_per_epoch(world) == len(one)
    for epoch in (0, 1):
        shares = [_batches(per_rank, epoch, 0, r, world) for r in range(world)]
        for step, (x, y) in enumerate(_batches(one, epoch)):
            np.testing.assert_array_equal(np.concatenate([s[step][0] for s in shares]), x)
            np.testing.assert_array_equal(np.concatenate([s[step][1] for s in shares]), y)
            assert max(len(s[step][1]) for s in shares) - min(len(s[step][1]) for s in shares) <= 1


def test_a_share_resumes_mid_epoch_and_does_not_depend_on_workers(folder):
    serial = ImageLoader(ImageFolder(folder), RandomResizedCrop(12), batch_size=4, seed=3)
    full = _batches(serial, 1, 0, 1, 2)
    with ImageLoader(ImageFolder(folder), RandomResizedCrop(12), batch_size=4, seed=3, workers=2) as parallel:
        resumed = _batches(parallel, 1, 2, 1, 2)
    assert len(resumed) == len(full) - 2
    for (x1, y1), (x2, y2) in zip(full[2:], resumed):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)


def test_tar_shards_go_whole_to_ranks_and_short_ranks_pad_with_empty_batches(tmp_path):
    pattern = make_shards(tmp_path / "s", np.arange(10) % 2, shards=3, size=(16, 18))   # 4, 4, 2 samples
    loader = ImageLoader(TarShards(pattern, buffer=3), CenterCrop(12), batch_size=3, seed=0)
    assert loader.source.rank_counts(2) == [6, 4]                      # shards 0 + 2, shard 1
    assert loader.steps_per_epoch(2) == 2
    shares = [_batches(loader, 0, 0, r, 2) for r in range(2)]
    assert [len(y) for _, y in shares[0]] == [3, 3] and [len(y) for _, y in shares[1]] == [3, 1]
    ones = ImageLoader(TarShards(pattern), CenterCrop(12), batch_size=10, shuffle=False)
    everything = sorted(i.tobytes() for x, _ in ones.batches(0) for i in x)
    assert sorted(i.tobytes() for s in shares for x, _ in s for i in x) == everything   # each sample once
    assert loader.source.rank_counts(3) == [4, 4, 2] and loader.steps_per_epoch(3) == 2
    empty = _batches(loader, 0, 0, 2, 3)[1]
    assert empty[0].shape == (0, 12, 12, 3) and empty[1].shape == (0,)
    with pytest.raises(ValueError, match="3 shard file\\(s\\) for 4 ranks.*at least as many shards as ranks"):
        _batches(loader, 0, 0, 0, 4)
    with pytest.raises(ValueError, match="rank must be < world_size=2, got 2"):
        _batches(loader, 0, 0, 2, 2)


def _model(sync=False):
    fc.set_seed(0)
    model = fc.Sequential([Conv2D(4, 3, input_shape=(12, 12, 3)), *([SyncBatchNormalization()] if sync else []),
                           Flatten(), Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def test_sync_batchnorm_refuses_tar_shards_that_leave_a_rank_without_samples(tmp_path):
    pattern = make_shards(tmp_path / "s", np.arange(10) % 2, shards=3, size=(16, 18))   # ranks: 6 and 4
    loader = ImageLoader(TarShards(pattern), CenterCrop(12), batch_size=2, seed=0)
    with pytest.raises(ValueError, match="SyncBatchNormalization every rank needs a sample in every step.*\\[6, 4\\]"):
        _check_sync_batchnorm_shares(_model(sync=True), loader, None, 2, 2)
    loader = ImageLoader(TarShards(pattern), CenterCrop(12), batch_size=3, seed=0)
    _check_sync_batchnorm_shares(_model(sync=True), loader, None, 3, 2)   # 2 steps each: allowed


def test_the_start_up_fingerprint_of_a_loader_names_its_data_not_its_root(folder, tmp_path):
    def data_of(root, batch_size=4, **kw):
        loader = ImageLoader(ImageFolder(root), RandomResizedCrop(12), batch_size=batch_size, seed=0, **kw)
        return fingerprint(_model(), loader, None)

    copy = shutil.copytree(folder, tmp_path / "elsewhere")   # another mount of the same files
    assert data_of(folder) == data_of(copy)
    os.remove(os.path.join(copy, "cat", "000.jpg"))
    other = data_of(copy)
    assert other["samples"] == 20 and other["data"] != data_of(folder)["data"]
    assert data_of(folder, batch_size=5)["loader"] != data_of(folder)["loader"]
