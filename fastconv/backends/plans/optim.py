"""Launch plans of the optimizers (csrc/ops/optimizer.h): SGD and Adam as one multi-tensor launch each,
used by fastconv.optimizers on the GPU. Both read this step's scalars from a StepScalars buffer
(STEP_SCALARS float64 words, on this device; step_scalars() makes one) and take a resident table
(multi_tensor_table()), so the launch holds no per-step value and can be captured in a CUDA graph."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..kernel_table import kernel_name
from .common import OPTIMIZER_CHUNK, ceil_div, ctype

# csrc/ops/optimizer.h StepScalars, in order (float64 words)
STEP_SCALARS = ("lr", "adam_step", "adam_decay")


@dataclass(eq=False)
class MultiTensorTable:
    """A multi-tensor update's table, resident on the device (multi_tensor_table)."""
    words: np.ndarray
    device: object
    num_tensors: int
    chunks: int
    dtype: type


def step_scalars(lx):
    """A zeroed StepScalars buffer on this device; write it with set_step_scalars before a step."""
    return lx.xp.zeros(len(STEP_SCALARS), np.float64)


def set_step_scalars(lx, buffer, values: dict):
    """Write {name: value} (names from STEP_SCALARS; missing ones 0) into the buffer, in stream
    order, by a one-thread kernel (no host-to-device copy, so the host never waits)."""
    lx.launch(kernel_name("set_step_scalars", t="double"), (1,), (1,),
              (buffer,) + tuple(np.float64(values.get(k, 0.0)) for k in STEP_SCALARS))


def multi_tensor_table(lx, groups, table=None, upload=True):
    """The MultiTensorEntry table (csrc/ops/optimizer.h) of groups (param, grad, slot0[, slot1]),
    resident on the device: `table` (a previous result) is returned as it is when no address or
    size changed, else a new one is uploaded. Empty tensors are left out. The table holds addresses
    only: the caller keeps the arrays alive while launches that use it may run. upload=False
    allocates the device words but leaves them unwritten until upload_table (inside a CUDA-graph
    capture, which can record a launch that reads them but not the copy that writes them)."""
    groups = [g for g in groups if g[0].size]
    for g in groups:
        for a in g:
            if a is not None and not a.flags.c_contiguous:
                raise ValueError("multi-tensor updates need contiguous parameters, gradients and slots")
    words, chunks = [], 0
    for group in groups:
        size = int(group[0].size)
        ptrs = [lx.ptr(a) if a is not None else 0 for a in group] + [0] * (4 - len(group))
        words += ptrs + [size, chunks]
        chunks += ceil_div(size, OPTIMIZER_CHUNK)
    words = np.array(words, np.int64)
    if table is not None and np.array_equal(table.words, words):
        return table
    dtype = groups[0][0].dtype.type if groups else np.float32
    table = MultiTensorTable(words, lx.xp.empty(len(words), np.int64), len(groups), chunks, dtype)
    if upload:
        upload_table(lx, table)
    return table


def upload_table(lx, table):
    table.device[...] = lx.xp.asarray(table.words)   # CuPy: staged through pinned memory, in stream order


def _multi_launch(lx, kernel, table, scalars, args):
    if table.num_tensors:
        lx.launch(kernel, (table.chunks,), (256,),
                  (table.device, np.int32(table.num_tensors), np.int64(OPTIMIZER_CHUNK), scalars) + args)


def sgd_update(lx, table, scalars, momentum=0.0, nesterov=False, weight_decay=0.0):
    """In place, for every (param, grad, velocity) of the table (velocity 0 when momentum == 0)."""
    dt = table.dtype
    _multi_launch(lx, kernel_name("sgd_update_multi", t=ctype(dt)), table, scalars,
                  (dt(momentum), np.int32(bool(nesterov)), dt(weight_decay)))


def adam_update(lx, table, scalars, beta_1, beta_2, epsilon):
    """In place, for every (param, grad, m, v) of the table; scalars holds lr, adam_step, adam_decay."""
    dt = table.dtype
    _multi_launch(lx, kernel_name("adam_update_multi", t=ctype(dt)), table, scalars,
                  (dt(1 - beta_1), dt(1 - beta_2), dt(epsilon)))
