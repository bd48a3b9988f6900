"""Plans of the deterministic reductions (csrc/ops/reduce.h): column sums (bias gradient, batch-norm
statistics) and whole-array scalars (the losses), with the kernels' modes named as reduce.h names them."""
from __future__ import annotations

from enum import IntEnum

import numpy as np

from ..kernel_table import kernel_name
from .common import ceil_div, choose_row_splits, ctype, scalar


# Mirror csrc/ops/reduce.h's enums, less their k<Prefix> (tests/kernels/test_plans.py compares them).
class ColumnReduceMode(IntEnum):
    SUM = 0        # a[row, c]
    SQ_DEV = 1     # (a[row, c] - mean[c])^2
    DOT_XHAT = 2   # a[row, c] * (b[row, c] - mean[c]) * invstd[c]


class ColumnFinal(IntEnum):
    SUM = 0
    MEAN = 1
    INV_STD = 2       # 1 / sqrt(s / rows + eps)


class ScalarReduceMode(IntEnum):
    SUM = 0
    SQ_DIFF = 1       # (a[i] - b[i])^2


def column_reduce(lx, mode, a, b, mean, invstd, rows, cols, final, eps=0.0):
    """final(sum over rows of mode(row, c)) per column c of a row-major (rows, cols) a, in a fixed order."""
    t = ctype(a.dtype)
    out = lx.xp.empty((cols,), a.dtype)
    if cols == 0:
        return out
    splits = lx.force_splits or choose_row_splits(rows)
    rows_per_split = max(1, ceil_div(rows, splits))
    splits = max(1, ceil_div(rows, rows_per_split))
    partial = lx.xp.empty((splits, cols), a.dtype)
    lx.launch(kernel_name("column_reduce_partial", t=t), (ceil_div(cols, 32), splits), (32, 8),
              (np.int32(mode), a, b, mean, invstd, np.int64(rows), np.int32(cols), np.int64(rows_per_split), partial))
    column_finalize(lx, partial, splits, cols, final, rows, eps, out)
    return out


def column_finalize(lx, partial, splits, cols, final, rows, eps, out):
    """out[c] = final(the sum of partial[:, c], in split order)."""
    lx.launch(kernel_name("column_finalize", t=ctype(partial.dtype)), (ceil_div(cols, 256),), (256,),
              (partial, np.int32(splits), np.int32(cols), np.int32(final), np.int64(rows), scalar(partial.dtype, eps),
               out))


def reduce_to_scalar(lx, mode, a, b, n, divisor):
    out = lx.xp.empty((), a.dtype)
    lx.launch(kernel_name("reduce_to_scalar", t=ctype(a.dtype)), (1,), (256,),
              (np.int32(mode), a, b, np.int64(n), scalar(a.dtype, divisor), out))
    return out
