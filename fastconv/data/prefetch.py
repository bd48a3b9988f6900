"""Batches copied to the GPU ahead of use: pinned host buffers, a copy stream, one event per batch.

    for device_arrays, host_arrays in prefetch(((x[i], y[i]) for i in batches), "cuda"):
        ...   # the current stream already waits for this batch's copy, and only for it

Double-buffered: while the compute stream works on batch i, batch i+1 is copied from pinned host
memory (cupy.cuda.alloc_pinned_memory: only pinned memory copies asynchronously) on a separate
stream. Each slot has a `ready` event (copy done; the consumer's stream waits on it, the host does
not) and a `free` event recorded on the consumer's stream when it asks for the next batch, which
the next copy into that slot waits for. On the CPU it is a plain iterator: (batch, batch).
"""
from __future__ import annotations

import ctypes
from collections import deque

import numpy as np

DEPTH = 2   # two slots: one being computed on, one being filled


def prefetch(batches, device: str, depth: int = DEPTH, stream=None):
    """Yield (device_arrays, host_arrays) for each tuple of NumPy arrays in `batches`, in order.
    On 'cuda', device_arrays are CuPy copies made on a side stream, and `stream` (the consumer's
    CuPy stream; None: the current one) waits for each; on 'cpu' both are the batch. A batch that
    is already on the device is yielded as (batch, batch)."""
    if device != "cuda":
        for batch in batches:
            yield batch, batch
        return
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 2:
        raise ValueError(f"depth must be an int >= 2 (double buffering), got {depth!r}")
    yield from _CudaPrefetcher(depth).run(batches, stream)


class _Slot:
    """Pinned host buffers and device buffers for one batch in flight."""

    def __init__(self, cp):
        self.cp = cp
        self.shapes = None
        self.ready = cp.cuda.Event(disable_timing=True)   # the copy into the device buffers is done
        self.free = None                                   # the consumer no longer reads them

    def fill(self, batch, stream):
        cp = self.cp
        if self.shapes is not None:
            self.ready.synchronize()  # the last copy out of the pinned buffers has finished
        if self.free is not None:
            stream.wait_event(self.free)
        shapes = [(a.shape, a.dtype) for a in batch]
        if shapes != self.shapes:     # first use, or another shape (the last batch): new buffers
            self.pinned = [np.frombuffer(cp.cuda.alloc_pinned_memory(max(a.nbytes, 1)), a.dtype, a.size)
                           .reshape(a.shape) for a in batch]
            with stream:
                self.device = [cp.empty(a.shape, a.dtype) for a in batch]
            self.shapes = shapes
        for p, a in zip(self.pinned, batch):
            np.copyto(p, a)
        for d, p in zip(self.device, self.pinned):
            if p.nbytes:
                d.data.copy_from_host_async(ctypes.c_void_p(p.ctypes.data), p.nbytes, stream)
        self.ready.record(stream)


class _CudaPrefetcher:
    def __init__(self, depth):
        import cupy
        self.cp = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.slots = [_Slot(cupy) for _ in range(depth)]

    def run(self, batches, stream=None):
        cp, depth = self.cp, len(self.slots)
        compute = stream or cp.cuda.get_current_stream()
        it, staged, count, previous = iter(batches), deque(), 0, None
        try:
            while True:
                if previous is not None:   # the consumer asked for the next batch: it has queued its work on this one
                    previous.free = cp.cuda.Event(disable_timing=True)
                    previous.free.record(compute)
                while len(staged) < depth and self._stage(it, staged, count):
                    count += 1             # batch `count` goes into slot count % depth, one batch ahead of use
                if not staged:
                    return
                slot, host = staged.popleft()
                previous = slot
                if slot is None:           # already on the device: nothing to copy
                    yield host, host
                    continue
                compute.wait_event(slot.ready)
                yield tuple(slot.device), host
        finally:   # also when the consumer stops early: nothing may still use a slot when it is freed
            self.stream.synchronize()
            compute.synchronize()

    def _stage(self, it, staged, i):
        try:
            batch = next(it)
        except StopIteration:
            return False
        host = tuple(batch)
        if not all(isinstance(a, np.ndarray) for a in host):
            staged.append((None, host))
            return True
        batch = tuple(np.ascontiguousarray(a) for a in host)
        slot = self.slots[i % len(self.slots)]
        slot.fill(batch, self.stream)
        staged.append((slot, host))
        return True
