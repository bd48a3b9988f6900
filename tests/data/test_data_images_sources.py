"""ImageFolder and TarShards: labels, order and class mapping (against torchvision's ImageFolder when it
imports), shard patterns, WebDataset grouping, deterministic shuffling, and malformed layouts."""
import os
import tarfile

import numpy as np
import pytest
from image_sets import add_member, encode, make_folder, make_shards, smooth_image

from fastconv.data.images import ImageFolder, TarShards, expand_pattern


def test_folder_samples_classes_and_order(tmp_path):
    root = make_folder(tmp_path / "d", classes=("b", "a", "c"), per_class=3)
    os.makedirs(tmp_path / "d" / "a" / "sub")
    (tmp_path / "d" / "a" / "sub" / "X.JPG").write_bytes((tmp_path / "d" / "a" / "000.jpg").read_bytes())
    (tmp_path / "d" / "c" / "notes.txt").write_text("not an image")
    from fastconv.data import ImageFolder as PublicImageFolder   # the name the issue asks for
    f = PublicImageFolder(root)
    assert f.class_names == ["a", "b", "c"] and f.class_to_idx == {"a": 0, "b": 1, "c": 2}
    assert len(f) == 10
    rel = [os.path.relpath(p, root) for p in f.paths]
    assert rel[:4] == ["a/000.jpg", "a/001.jpg", "a/002.jpg", "a/sub/X.JPG"]
    assert f.labels.tolist() == [0] * 4 + [1] * 3 + [2] * 3
    assert f.ignored == [os.path.join(root, "c", "notes.txt")]


def test_folder_matches_torchvision_imagefolder(tmp_path):
    try:
        from torchvision.datasets import ImageFolder as TorchImageFolder
    except Exception as exc:
        pytest.skip(f"torchvision is not importable here: {type(exc).__name__}")
    root = make_folder(tmp_path / "d", classes=("zebra", "Ant", "moth"), per_class=3)
    os.makedirs(tmp_path / "d" / "moth" / "deeper")
    (tmp_path / "d" / "moth" / "deeper" / "1.png").write_bytes(encode(smooth_image(np.random.default_rng(0), 8, 8), "PNG"))
    ours, theirs = ImageFolder(root), TorchImageFolder(root)
    assert ours.class_to_idx == theirs.class_to_idx
    assert list(zip(ours.paths, ours.labels.tolist())) == theirs.samples


def test_empty_class_folder_is_an_error_naming_it_unless_allowed(tmp_path):
    root = make_folder(tmp_path / "d", classes=("a", "c"), per_class=2)
    os.makedirs(tmp_path / "d" / "b")
    (tmp_path / "d" / "b" / "readme.md").write_text("no images here")
    with pytest.raises(ValueError, match=r"class folder\(s\) with no images \(b\)"):
        ImageFolder(root)
    f = ImageFolder(root, allow_empty=True)
    assert f.class_names == ["a", "b", "c"] and f.empty_classes == ["b"] and sorted(set(f.labels.tolist())) == [0, 2]


def test_folder_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        ImageFolder(tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match="has no class folders"):
        ImageFolder(tmp_path / "flat")
    with pytest.raises(TypeError, match="root must be a directory path"):
        ImageFolder(3)


def test_folder_epoch_order_is_a_seeded_permutation(tmp_path):
    f = ImageFolder(make_folder(tmp_path / "d", per_class=5))
    names = lambda seed, epoch, shuffle=True: [n for _, _, n in f.epoch_items(seed, epoch, shuffle)]
    assert names(0, 0, False) == f.paths
    assert sorted(names(0, 0)) == sorted(f.paths)
    assert names(0, 0) == names(0, 0) and names(0, 0) != names(0, 1) and names(0, 0) != names(1, 0)


def test_expand_pattern(tmp_path):
    for n in ("a-008.tar", "a-009.tar", "a-010.tar", "b-1.tar", "c.tar"):
        (tmp_path / n).write_bytes(b"")
    base = str(tmp_path)
    assert expand_pattern(f"{base}/a-{{008..010}}.tar") == [f"{base}/a-{i:03d}.tar" for i in (8, 9, 10)]
    assert expand_pattern(f"{base}/{{a-008,b-1}}.tar") == [f"{base}/a-008.tar", f"{base}/b-1.tar"]
    assert expand_pattern(f"{base}/*-*.tar") == [f"{base}/{n}" for n in ("a-008.tar", "a-009.tar", "a-010.tar", "b-1.tar")]
    assert expand_pattern(f"{base}/a-{{011..012}}.tar") == []


def test_shards_hold_every_sample_in_order_without_shuffle(tmp_path):
    labels = np.arange(11) % 4
    shards = TarShards(make_shards(tmp_path / "s", labels, shards=3), buffer=4)
    assert len(shards) == 11 and shards.counts == [4, 4, 3] and shards.labels.tolist() == labels.tolist()
    assert shards.class_names == ["0", "1", "2", "3"]
    items = list(shards.epoch_items(0, 0, shuffle=False))
    assert [n.rsplit(":", 1)[1] for _, _, n in items] == [f"sample{i:05d}.jpg" for i in range(11)]
    assert [label for _, label, _ in items] == labels.tolist()
    assert all(isinstance(p, bytes) and p[:2] == b"\xff\xd8" for p, _, _ in items)


def test_shard_shuffle_is_seeded_and_covers_every_sample(tmp_path):
    shards = TarShards(make_shards(tmp_path / "s", np.zeros(12, int), shards=3), buffer=5)
    names = lambda seed, epoch: [n for _, _, n in shards.epoch_items(seed, epoch, True)]
    assert sorted(names(0, 0)) == sorted(n for _, _, n in shards.epoch_items(0, 0, False))
    assert names(0, 0) == names(0, 0) and names(0, 0) != names(0, 1) and names(0, 0) != names(1, 0)


def test_shard_samples_missing_a_part_are_listed_and_left_out(tmp_path):
    path = tmp_path / "x-0.tar"
    jpg = encode(smooth_image(np.random.default_rng(0), 8, 8))
    with tarfile.open(path, "w") as tar:
        add_member(tar, "dir/a.jpg", jpg)
        add_member(tar, "dir/a.cls", b"1")
        add_member(tar, "dir/b.jpg", jpg)        # no label
        add_member(tar, "dir/c.cls", b"0")       # no image
        add_member(tar, "dir/d.seg.png", encode(smooth_image(np.random.default_rng(0), 8, 8), "PNG"))
        add_member(tar, "dir/d.cls", b"2")       # only a .seg.png: not an image suffix
        add_member(tar, "dir/e.png", encode(smooth_image(np.random.default_rng(0), 8, 8), "PNG"))
        add_member(tar, "dir/e.cls", b" 2\n")
    shards = TarShards(str(path), class_names=["x", "y", "z"])
    assert shards.labels.tolist() == [1, 2] and shards.class_names == ["x", "y", "z"]
    assert shards.incomplete == [f"{path}:dir/b", f"{path}:dir/c", f"{path}:dir/d"]
    assert [n for _, _, n in shards.epoch_items(0, 0, False)] == [f"{path}:dir/a.jpg", f"{path}:dir/e.png"]


def test_shard_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no tar shards match"):
        TarShards(str(tmp_path / "none-{0..3}.tar"))
    (tmp_path / "bad.tar").write_bytes(b"this is not a tar file" * 40)
    with pytest.raises(ValueError, match="bad.tar: not a readable tar shard"):
        TarShards(str(tmp_path / "bad.tar"))
    with tarfile.open(tmp_path / "lbl.tar", "w") as tar:
        add_member(tar, "a.jpg", b"x")
        add_member(tar, "a.cls", b"cat")
    with pytest.raises(ValueError, match=r"lbl.tar:a.cls: a .cls member must hold a class index"):
        TarShards(str(tmp_path / "lbl.tar"))
    with pytest.raises(ValueError, match="class_names has 1 names but the shards use class index 1"):
        TarShards(make_shards(tmp_path / "s", [0, 1], shards=1), class_names=["only"])
