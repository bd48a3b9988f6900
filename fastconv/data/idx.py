"""The IDX file format (MNIST and its relatives), raw or gzip-compressed.

Layout: two zero bytes, a dtype code, the number of dimensions, then one big-endian uint32 per
dimension, then the data in big-endian C order.
"""
from __future__ import annotations

import gzip
import math
import os
import zlib

import numpy as np

from .._checks import _describe

IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str) -> bytes:
    if not os.path.exists(path):
        raise FileNotFoundError(f"IDX file not found: {path}")
    if os.path.isdir(path):
        raise ValueError(f"IDX file must be a file, got the directory {path}")
    with open(path, "rb") as f:
        raw = f.read()
    # sniff rather than trust the extension: some mirrors serve gzip data without '.gz'
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"{path}: corrupt gzip data ({exc})") from exc
    return raw


def read_idx(file) -> np.ndarray:
    """Parse one IDX file (a path, raw or .gz) into an array of its shape, in native byte order.

    A missing file raises FileNotFoundError; anything malformed (bad magic number, unknown dtype
    code, truncated header or data, trailing bytes) a ValueError naming the file and the problem.
    """
    if not isinstance(file, (str, os.PathLike)):
        raise TypeError(f"file must be a path, got {_describe(file)}")
    path = os.fspath(file)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: not an IDX file: {len(raw)} bytes, too short for the 4-byte magic number")
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file: bad magic number 0x{raw[:4].hex()} "
                         f"(an IDX file starts with two zero bytes, a dtype code and the number of dimensions)")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        valid = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise ValueError(f"{path}: unknown IDX dtype code 0x{code:02X} (valid: {valid})")
    if ndim == 0:
        raise ValueError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header: {ndim} dimensions need {header} bytes, "
                         f"the file has {len(raw)}")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: a forged header cannot overflow
    found = len(raw) - header
    if found < expected:
        raise ValueError(f"{path}: truncated IDX data: shape {shape} of {dtype.name} needs {expected} bytes, "
                         f"found {found}")
    if found > expected:
        raise ValueError(f"{path}: {found - expected} unexpected bytes after the IDX data of shape {shape}")
    data = np.frombuffer(raw, dtype, count=expected // dtype.itemsize, offset=header)
    return data.astype(dtype.newbyteorder("="), copy=True).reshape(shape)  # writable, native order
