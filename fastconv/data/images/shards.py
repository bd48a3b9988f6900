"""Tar shards in WebDataset's convention, read sequentially (a data set larger than memory, on slow disks).

A sample is the run of consecutive members sharing a key (the path up to the first '.' of the file
name): `<key>.jpg` (or .jpeg/.png/...) holds the image, `<key>.cls` its class index as text. Shards are
named by glob or brace patterns, `data/train-{0000..0146}.tar`. One pass over the headers at
construction counts the samples and reads the labels (the image bytes are seeked over in an
uncompressed tar); each epoch then reads every shard front to back once. Shuffling is WebDataset's:
the shard order is permuted, then samples pass through a shuffle buffer of `buffer` samples, both
drawn from (seed, epoch), so an epoch's order is reproducible and a resume replays it.
"""
from __future__ import annotations

import glob
import os
import re
import tarfile

import numpy as np

from ..._checks import _describe, check_int

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp")
_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}|\{([^{}]*,[^{}]*)\}")


def expand_pattern(pattern: str) -> list[str]:
    """Shard paths for `pattern`: {a..b} numeric ranges (zero-padded as written), {x,y} alternatives,
    then glob wildcards; sorted, duplicates removed."""
    match = _BRACE.search(pattern)
    if match is None:
        return sorted(set(glob.glob(os.path.expanduser(pattern))))
    if match.group(3) is not None:
        options = match.group(3).split(",")
    else:
        lo, hi = match.group(1), match.group(2)
        width = len(lo) if lo.startswith("0") else 0
        options = [str(i).zfill(width) for i in range(int(lo), int(hi) + 1)]
    found = set()
    for option in options:
        found.update(expand_pattern(pattern[:match.start()] + option + pattern[match.end():]))
    return sorted(found)


def _split_key(member_name: str):
    folder, _, base = member_name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), suffix.lower() if dot else ""


def _samples(tar, read=False):
    """(key, {suffix: member}) runs of consecutive regular members of an open tar; read=True gives the
    bytes of the image and .cls members instead (read as they come: a stream cannot seek back)."""
    key, group = None, {}
    for member in tar:
        if not member.isfile():
            continue
        k, suffix = _split_key(member.name)
        if k != key and group:
            yield key, group
            group = {}
        key = k
        if not read:
            group[suffix] = member
        elif suffix == "cls" or suffix in IMAGE_SUFFIXES:
            group[suffix] = tar.extractfile(member).read()
    if group:
        yield key, group


def _image_suffix(group):
    return next((s for s in IMAGE_SUFFIXES if s in group), None)


def _label(data: bytes, where: str) -> int:
    try:
        return int(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{where}: a .cls member must hold a class index as text, got {data[:40]!r}") from None


class TarShards:
    """The samples of the shards matching `pattern`. Samples without an image or a .cls member are left
    out and listed in `incomplete`. class_names defaults to '0'..'K-1' for the K = max label + 1 classes."""

    def __init__(self, pattern, class_names=None, buffer: int = 1000):
        if not isinstance(pattern, (str, os.PathLike)):
            raise TypeError(f"pattern must be a shard path pattern like 'train-{{0000..0099}}.tar', got "
                            f"{_describe(pattern)}")
        self.pattern = os.fspath(pattern)
        self.shards = expand_pattern(self.pattern)
        if not self.shards:
            raise FileNotFoundError(f"no tar shards match {self.pattern!r}")
        self.buffer = check_int(buffer, "buffer", 1)
        self.counts, labels, self.incomplete, image_bytes = [], [], [], 0
        for shard in self.shards:
            before = len(labels)
            try:
                with tarfile.open(shard, "r:*") as tar:
                    for key, group in _samples(tar):
                        if _image_suffix(group) is None or "cls" not in group:
                            self.incomplete.append(f"{shard}:{key}")
                            continue
                        labels.append(_label(tar.extractfile(group["cls"]).read(), f"{shard}:{key}.cls"))
                        image_bytes += group[_image_suffix(group)].size
            except tarfile.TarError as exc:
                raise ValueError(f"{shard}: not a readable tar shard ({exc})") from None
            self.counts.append(len(labels) - before)
        if not labels:
            raise ValueError(f"the shards matching {self.pattern!r} hold no samples with an image and a .cls")
        self.labels = np.asarray(labels, np.int64)
        self.mean_sample_bytes = image_bytes / len(labels)   # sizes the loader's memory check
        if self.labels.min() < 0:
            raise ValueError(f"{self.pattern}: class indices must be >= 0, got {int(self.labels.min())}")
        count = int(self.labels.max()) + 1
        if class_names is None:
            class_names = [str(i) for i in range(count)]
        class_names = [str(c) for c in class_names]
        if len(class_names) < count:
            raise ValueError(f"class_names has {len(class_names)} names but the shards use class index {count - 1}")
        self.class_names = class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def read_shard(self, shard):
        """(bytes, label, name) for each complete sample of one shard, reading it front to back."""
        with tarfile.open(shard, "r|*") as tar:
            for key, data in _samples(tar, read=True):
                suffix = _image_suffix(data)
                if suffix is None or "cls" not in data:
                    continue
                yield data[suffix], _label(data["cls"], f"{shard}:{key}.cls"), f"{shard}:{key}.{suffix}"

    def epoch_items(self, seed: int, epoch: int, shuffle: bool):
        return self._stream(range(len(self.shards)), np.random.default_rng([seed, epoch]) if shuffle else None)

    # ---- data-parallel ranks: whole shard files per rank, as WebDataset splits by node ---------
    def check_ranks(self, world_size: int) -> None:
        if len(self.shards) < world_size:
            raise ValueError(f"{self.pattern!r} has {len(self.shards)} shard file(s) for {world_size} ranks; each "
                             "rank streams whole shard files, so there must be at least as many shards as ranks "
                             "(split the data into more shards)")

    def rank_shards(self, rank: int, world_size: int) -> list[int]:
        """The shard files rank reads every epoch: every world_size-th from the rank-th (fixed, so each
        rank's step count is the same every epoch; when the count is not a multiple of world_size the
        first ranks have one more)."""
        return list(range(rank, len(self.shards), world_size))

    def rank_counts(self, world_size: int) -> list[int]:
        """Samples per rank."""
        self.check_ranks(world_size)
        return [sum(self.counts[s] for s in self.rank_shards(r, world_size)) for r in range(world_size)]

    def rank_items(self, seed: int, epoch: int, shuffle: bool, rank: int, world_size: int):
        """rank's samples of epoch `epoch`: its shard files in an order (and a shuffle buffer) drawn from
        (seed, epoch, rank), so the ranks do not mirror each other's order."""
        self.check_ranks(world_size)
        return self._stream(self.rank_shards(rank, world_size),
                            np.random.default_rng([seed, epoch, rank]) if shuffle else None)

    def _stream(self, shards, rng):
        """The samples of `shards` (indices) in that order, or (rng) in a permuted order through the shuffle buffer."""
        if rng is None:
            for s in shards:
                yield from self.read_shard(self.shards[s])
            return
        buffer = []
        for s in rng.permutation(np.asarray(shards)):
            for item in self.read_shard(self.shards[s]):
                if len(buffer) < self.buffer:
                    buffer.append(item)
                    continue
                j = int(rng.integers(len(buffer)))
                buffer[j], item = item, buffer[j]
                yield item
        for j in rng.permutation(len(buffer)):
            yield buffer[j]

    def __repr__(self):
        return f"TarShards({self.pattern!r}, {len(self.shards)} shards, {len(self)} samples)"
