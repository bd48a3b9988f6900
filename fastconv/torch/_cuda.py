"""The CUDA target of the fastconv.torch bridge (_kernels): torch's CUDA tensors run fastconv's kernels
through `fastconv.backends.backend_for("cuda")` (native fastconv._C, then jit CuPy + NVRTC), i.e.
the KernelOps launch plans every kernel backend shares, with

- zero-copy arrays both ways: `cupy.from_dlpack(tensor)` in, `torch.from_dlpack(array)` out (the
  torch tensor keeps the CuPy array, and so its memory, alive);
- the launches on torch's current stream of the tensor's device: inside `scope()` CuPy's current
  device is the tensor's and its current stream is `cupy.cuda.ExternalStream` of
  `torch.cuda.current_stream(device).cuda_stream`, so the op is ordered with the surrounding torch
  work like a native torch kernel (DLPack's stream handshake then needs no extra sync);
- every CuPy allocation inside the call (outputs, split-k workspaces, index conversions) taken from
  torch's caching allocator (`torch.cuda.caching_allocator_alloc` on that stream, wrapped as
  `cupy.cuda.UnownedMemory` whose owner returns the block with `caching_allocator_delete`), so
  memory stays in one pool and `torch.cuda.memory_allocated()` counts it.

When neither GPU backend is available every CUDA call raises RuntimeError: fastconv.torch never
falls back to torch's own kernels (a silent fallback would make "it runs on fastconv" untrue).
"""
from __future__ import annotations

import contextlib

import torch


def kernels_status() -> tuple[bool, str]:
    """(available, reason) for fastconv's CUDA kernels as seen from torch."""
    from ..backends import backend_for, backend_name
    try:
        backend_for("cuda")     # probes native and jit once per process; honours FASTCONV_BACKEND
    except (RuntimeError, ValueError) as exc:
        return False, str(exc)
    return True, f"fastconv CUDA kernels available ({backend_name('cuda')} backend)"


def kernel_ops():
    """backend_for('cuda'), or the refusal."""
    ok, reason = kernels_status()
    if not ok:
        raise RuntimeError(
            f"fastconv.torch got CUDA tensors, but the fastconv CUDA kernels are not available in this "
            f"installation ({reason}). fastconv.torch never falls back to torch's own kernels: run the "
            f"model on the CPU, or keep torch.nn modules for CUDA (do not fastconv.torch.convert it).")
    from ..backends import backend_for
    return backend_for("cuda")


class _TorchBlock:
    """Owner of one block of torch's caching allocator; gives it back when CuPy drops the memory."""
    __slots__ = ("ptr",)

    def __init__(self, ptr: int):
        self.ptr = ptr

    def __del__(self):
        try:
            torch.cuda.caching_allocator_delete(self.ptr)
        except Exception:     # interpreter shutdown: torch may already be gone
            pass


def torch_malloc(size: int):
    """A CuPy allocator (cupy.cuda.using_allocator) drawing from torch's caching allocator, on
    CuPy's current device and stream (inside scope(): the tensor's device, torch's current stream)."""
    import cupy
    device = cupy.cuda.Device().id
    stream = cupy.cuda.get_current_stream().ptr
    size = max(int(size), 1)     # a real block even for empty arrays
    ptr = torch.cuda.caching_allocator_alloc(size, device, stream)
    return cupy.cuda.MemoryPointer(cupy.cuda.UnownedMemory(ptr, size, _TorchBlock(ptr), device), 0)


@contextlib.contextmanager
def scope(device: torch.device):
    """CuPy's current device, stream and allocator = the tensor's device, torch's current stream
    there, torch's caching allocator."""
    import cupy
    idx = device.index if device.index is not None else torch.cuda.current_device()
    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(idx).cuda_stream, idx)
    with cupy.cuda.Device(idx), stream, cupy.cuda.using_allocator(torch_malloc):
        yield


def target_parts(device: torch.device):
    """(ops, xp, scope, ptr) of the CUDA target on `device`; _kernels.dlpack_target makes the target."""
    ops = kernel_ops()
    import cupy
    return ops, cupy, lambda: scope(device), lambda a: int(a.data.ptr)
