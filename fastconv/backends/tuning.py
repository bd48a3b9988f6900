"""The tuning file: per (GPU, op, problem, dtype) the fastest kernel configuration, found by timing
(`fastconv tune`, fastconv/bench/tune.py) and kept as JSON that people can read, diff and commit.

    {"format": "fastconv-tuning", "version": 1, "entries": {
      "NVIDIA H100 80GB HBM3 (sm_90) | conv2d_fprop | float32 | x=32x56x56x64 w=3x3x64x64 stride=1x1 pad=1,1,1,1 dil=1x1 groups=1": {
        "device": ..., "op": ..., "dtype": ..., "problem": ...,      # the four parts of the key
        "config": {"tile": "TileLarge"},          # + "splits" for conv2d_wgrad; "64x128" (BM x BN) for conv2d_fprop_sm90
        "heuristic": {"tile": "TileMedium"}, "candidates_us": {"TileLarge": 41.2, ...},
        "speedup_vs_heuristic": 1.08, "timer": "cuda events", "real": true,
        "fastconv": "0.1.0", "date": "2026-11-28"}}}

The launch plans (fastconv/backends/plans) look up the entry of the current device first and fall back
to the heuristic (plans/common.py choose_tile / choose_splits) when there is none, or when the entry
does not fit the shape (e.g. the 64-bit index path, which has one tile); `fastconv.explain` says which.
The file is read once and cached, and re-read when it changes (one stat per lookup); it is replaced
atomically (temporary file, fsync, rename), and a file that cannot be read raises TuningFileError
naming it: it is never silently ignored or overwritten. docs/tuning.md has the how-to.
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from .._atomic import atomic_open
from ..explain import active as explain_active, note

ENV = "FASTCONV_TUNING_FILE"
FORMAT = "fastconv-tuning"
VERSION = 1
EMULATOR_DEVICE = "fastconv emulator (CPU)"   # entries timed through the emulator: tests, not a real tuning
KEY_FIELDS = ("device", "op", "dtype", "problem")
OPS = ("conv2d_fprop", "conv2d_dgrad", "conv2d_wgrad", "gemm", "gemm_tensor_op", "conv2d_fprop_sm90")


class TuningFileError(ValueError):
    """A tuning file that cannot be read (not JSON, another format or version, a malformed entry)."""


def default_path() -> Path:
    """$FASTCONV_TUNING_FILE, else the user cache dir ($XDG_CACHE_HOME or ~/.cache)/fastconv/tuning.json."""
    env = os.environ.get(ENV)
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "fastconv" / "tuning.json"


# ---- keys --------------------------------------------------------------------------------------
def conv_problem(x_shape, w_shape, stride, padding, dilation, groups) -> str:
    """'x=N x H x W x C w=R x S x C/g x K stride=.. pad=top,bottom,left,right dil=.. groups=..' (NHWC, RSCK)."""
    (t, b), (l, r) = padding
    return (f"x={'x'.join(str(int(v)) for v in x_shape)} w={'x'.join(str(int(v)) for v in w_shape)} "
            f"stride={stride[0]}x{stride[1]} pad={t},{b},{l},{r} dil={dilation[0]}x{dilation[1]} groups={groups}")


def gemm_problem(m, n, k, trans_a=False, trans_b=False, out=None) -> str:
    """'M=.. N=.. K=.. nn' (t for a transposed operand), plus ' out=<dtype>' for the tensor-core GEMM."""
    layout = ("t" if trans_a else "n") + ("t" if trans_b else "n")
    return f"M={m} N={n} K={k} {layout}" + (f" out={out}" if out else "")


def entry_key(device, op, dtype, problem) -> str:
    return " | ".join((device, op, dtype, problem))


@functools.lru_cache(maxsize=16)
def _cuda_device_id(index: int) -> str:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(index)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return f"{name} (sm_{props['major']}{props['minor']})"


def device_id(xp) -> str:
    """The device a KernelOps on array module `xp` runs on: GPU name and compute capability, or the emulator."""
    if xp.__name__ == "numpy":
        return EMULATOR_DEVICE
    return _cuda_device_id(xp.cuda.runtime.getDevice())


# ---- the file ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    key: str
    config: dict
    path: str

    def tile(self, valid) -> str | None:
        """The tuned tile if it is one of `valid` (the tiles this shape can run), else None with a note."""
        tile = self.config.get("tile")
        if tile in valid:
            note(f"tile {tile} from tuning file {self.path} (entry {self.key})")
            return tile
        note(f"tuned tile {tile!r} ignored (not valid here; valid: {sorted(valid)}), heuristic instead: "
             f"tuning file {self.path} (entry {self.key})")
        return None

    def splits(self, max_splits) -> int | None:
        """The tuned split-k count if 1 <= splits <= max_splits, else None with a note."""
        s = self.config.get("splits")
        if s is None:
            return None
        if isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= max_splits:
            note(f"split-k {s} from tuning file {self.path} (entry {self.key})")
            return s
        note(f"tuned split-k {s!r} ignored (this shape allows 1..{max_splits}), heuristic instead: entry {self.key}")
        return None


class TuningFile:
    """The entries of one tuning file: key -> dict (see the module docstring)."""

    def __init__(self, path, entries=None):
        self.path, self.entries = Path(path), dict(entries or {})

    @classmethod
    def read(cls, path) -> "TuningFile":
        """Parse and validate `path`; a missing file is an empty TuningFile; anything unreadable raises."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return cls(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise TuningFileError(f"tuning file {path} cannot be read: {exc}") from None
        return cls(path, parse(text, str(path)))

    def get(self, device, op, dtype, problem) -> dict | None:
        return self.entries.get(entry_key(device, op, dtype, problem))

    def put(self, device, op, dtype, problem, config, **info) -> str:
        """Add or replace an entry; info: heuristic, candidates_us, speedup_vs_heuristic, timer, real."""
        key = entry_key(device, op, dtype, problem)
        from .. import __version__
        self.entries[key] = {"device": device, "op": op, "dtype": dtype, "problem": problem, "config": dict(config),
                             "fastconv": __version__, "date": datetime.date.today().isoformat(), **info}
        return key

    def text(self) -> str:
        """Stable formatting: sorted keys, 2-space indent, one trailing newline (so diffs show only changes)."""
        doc = {"format": FORMAT, "version": VERSION, "entries": self.entries}
        return json.dumps(doc, indent=2, sort_keys=True) + "\n"

    def save(self) -> None:
        atomic_write_text(self.path, self.text())


def parse(text: str, where: str) -> dict:
    """The entries of a tuning file's text; TuningFileError naming `where` for anything unexpected."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TuningFileError(f"tuning file {where} is not valid JSON ({exc}); fix it, or move it aside and run "
                              f"`fastconv tune` again") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TuningFileError(f"{where} is not a fastconv tuning file (expected \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise TuningFileError(f"tuning file {where} has version {doc.get('version')!r}; this fastconv reads version "
                              f"{VERSION} (re-tune with `fastconv tune`, writing to another file)")
    entries = doc.get("entries")
    if not isinstance(entries, dict):
        raise TuningFileError(f"tuning file {where}: \"entries\" must be an object")
    for key, e in entries.items():
        if not isinstance(e, dict) or not isinstance(e.get("config"), dict):
            raise TuningFileError(f"tuning file {where}: entry {key!r} needs a \"config\" object")
        if any(not isinstance(e.get(f), str) for f in KEY_FIELDS) or key != entry_key(*(e[f] for f in KEY_FIELDS)):
            raise TuningFileError(f"tuning file {where}: entry {key!r} does not match its fields "
                                  f"{'/'.join(KEY_FIELDS)} (the key is 'device | op | dtype | problem')")
        if e["op"] not in OPS:
            raise TuningFileError(f"tuning file {where}: entry {key!r} has op {e['op']!r}; ops: {list(OPS)}")
    return entries


def atomic_write_text(path, text: str) -> None:
    """Write `text` to `path`, replacing it whole or not at all (fastconv/_atomic.py)."""
    with atomic_open(path, "w") as f:
        f.write(text)


# ---- lookup (what the launch plans call) -------------------------------------------------------
_cache: dict[str, tuple[tuple, TuningFile]] = {}
_lock = threading.Lock()
_local = threading.local()


def current(path=None) -> TuningFile | None:
    """The tuning file at `path` (default_path()), read once and re-read when its mtime, size or inode
    change; None when there is no file."""
    path = str(path or default_path())
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
    cached = _cache.get(path)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    tf = TuningFile.read(path)
    with _lock:
        _cache[path] = (stamp, tf)
    return tf


@contextlib.contextmanager
def bypassed():
    """Within this block (this thread) the plans ignore the tuning file: what the heuristic alone picks."""
    previous = getattr(_local, "bypass", False)
    _local.bypass = True
    try:
        yield
    finally:
        _local.bypass = previous


def lookup(device, op, dtype, problem) -> Entry | None:
    """The entry for (device, op, dtype, problem) in the current tuning file, else None (with a note).
    device and problem may be zero-argument callables: with no tuning file (the common case) the
    lookup costs one stat, no device query and no key formatting."""
    if getattr(_local, "bypass", False):
        note("heuristic: the tuning file is bypassed (fastconv.backends.tuning.bypassed)")
        return None
    tf = current()
    if tf is None:
        if explain_active():
            note(f"heuristic: shape not tuned (no tuning file at {default_path()})")
        return None
    device = device() if callable(device) else device
    problem = problem() if callable(problem) else problem
    e = tf.get(device, op, dtype, problem)
    key = entry_key(device, op, dtype, problem)
    if e is None:
        note(f"heuristic: shape not tuned (no entry {key} in {tf.path})")
        return None
    return Entry(key, e["config"], str(tf.path))
