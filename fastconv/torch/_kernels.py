"""The one bridge from torch tensors to fastconv's kernels, for CUDA and CPU tensors alike.

Every fastconv custom op (see _ops) runs here the same way on every device:
  1. torch tensors are put in fastconv's layouts: NHWC activations (`_bridge.nhwc`: free for a
     channels_last tensor, one transpose copy for a plain contiguous NCHW one), (R, S, C/g, K)
     filters (`_bridge.rsck`: a copy of the small filter), Linear weights kept as torch's (out, in)
     and read through KernelOps.gemm's transposed-operand flags (no copy);
  2. those tensors become arrays of the target's array module *by zero copy* (DLPack): CuPy
     views on CUDA, NumPy views on the CPU;
  3. the target's op runs. On CUDA that is `backend_for("cuda")` (native, then jit): KernelOps, the
     launch plans every kernel backend shares. On the CPU it is the NumPy reference, or with
     `set_kernel_backend('emulated')` the same KernelOps plans run by the CPU SIMT emulator, so
     the code CUDA runs is tested without a GPU (all of it but _cuda's stream / allocator scope;
     the tests run the DLPack output path too, on a NumPy twin of the CUDA target);
  4. the fresh output arrays become torch tensors by zero copy (`torch.from_dlpack` on CUDA,
     `torch.from_numpy` on the CPU), viewed back as NCHW (channels_last in -> channels_last out,
     zero copies; contiguous in -> one transpose copy out).
Max-pool indices are converted between KernelOps' window-local argmax (r * S + s, uint8/16/32)
and torch's int64 flat h * W + w per (n, c) plane with array ops of the target (`flat_indices`,
`window_offsets`), so return_indices and nn.MaxUnpool2d interoperate with torch.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable

import torch

from ..explain import TracedBackend, active as explain_active, note
from . import _bridge as br, _cuda

CPU_BACKENDS = ("reference", "emulated")
ENV = "FASTCONV_TORCH_BACKEND"
_cpu_choice: str | None = None     # set_kernel_backend(); None: $FASTCONV_TORCH_BACKEND, then backend_for("cpu")


def set_kernel_backend(name: str | None) -> None:
    """Which fastconv backend runs fastconv.torch's ops on CPU tensors: 'reference' (the NumPy
    oracle) or 'emulated' (the csrc/ kernels and their KernelOps launch plans in the CPU SIMT
    emulator, through the same bridge code as CUDA; slow, for tests on small shapes). None goes
    back to the default: $FASTCONV_TORCH_BACKEND if set, else fastconv's own choice for the CPU
    (the reference, or the emulator under FASTCONV_BACKEND=emulated). CUDA tensors always run on
    backend_for('cuda')."""
    global _cpu_choice
    if name is not None:
        name = _check_cpu_name(name, "set_kernel_backend: name")
    if name == "emulated":
        from ..backends import emulated
        ok, reason = emulated.status()
        if not ok:
            raise RuntimeError(f"fastconv.torch.set_kernel_backend('emulated'): the emulator is not available: {reason}")
    _cpu_choice = name


def kernel_backend(device: str = "cpu") -> str:
    """The backend name fastconv.torch's ops use for tensors on `device` ('cpu' or 'cuda')."""
    if device == "cuda":
        from ..backends import backend_name
        return backend_name("cuda")
    return _cpu_backend()[1]


def _check_cpu_name(name, what: str) -> str:
    if not isinstance(name, str) or name.strip().lower() not in CPU_BACKENDS:
        raise ValueError(f"fastconv.torch.{what} must be one of {list(CPU_BACKENDS)} (or None for the "
                         f"default), got {name!r}")
    return name.strip().lower()


def _cpu_backend():
    """(module, name, why) of the CPU backend."""
    from .. import backends
    name, why = _cpu_choice, f"fastconv.torch.set_kernel_backend({_cpu_choice!r})"
    if name is None and os.environ.get(ENV, "").strip():
        name, why = _check_cpu_name(os.environ[ENV], ENV), f"{ENV}={os.environ[ENV].strip()}"
    if name is None:
        module = backends.backend_for("cpu")
        return module, backends.backend_name("cpu"), "fastconv's CPU backend"
    if name == "emulated":
        from ..backends import emulated as module
        ok, reason = module.status()
        if not ok:
            raise RuntimeError(f"{why}: the emulated backend is not available: {reason}")
    else:
        from ..backends import reference as module
    if explain_active():
        module = TracedBackend(module, name, why)
    return module, name, why


# ---- targets: where an op runs, and how tensors become its arrays and back --------------------------

@dataclass
class Target:
    ops: object                                  # reference API (+ gemm / bias_grad on KernelOps backends)
    xp: object                                   # numpy or cupy
    from_array: Callable                         # (array, dtype, *input arrays) -> tensor (zero copy)
    ptr: Callable[[object], int]                 # array -> data address (the test hook's record)
    scope: Callable[[], contextlib.AbstractContextManager]

    def to_array(self, t: torch.Tensor):
        """A zero-copy array view (DLPack) of a tensor; callers hand contiguous tensors."""
        return self.xp.from_dlpack(t.detach())

    def call(self, op: str, *args):
        if _handed is not None:
            _handed.append((op, [self.ptr(a) for a in args if hasattr(a, "shape") and hasattr(a, "dtype")]))
        return getattr(self.ops, op)(*args)


def from_dlpack(a, dtype: torch.dtype, *inputs) -> torch.Tensor:
    """A KernelOps output array -> torch tensor by DLPack (zero copy; the tensor keeps the array
    alive). KernelOps' outputs are fresh arrays, never views of an input, so no aliasing check."""
    out = torch.from_dlpack(a)
    return out if out.dtype == dtype else out.to(dtype)


def dlpack_target(ops, xp, scope, ptr) -> Target:
    """A target whose arrays cross by DLPack both ways: CUDA's (CuPy), and in tests a NumPy twin
    that runs that very conversion code on the CPU."""
    return Target(ops, xp, from_dlpack, ptr, scope)


def cpu_target() -> Target:
    import numpy as np
    # br.from_numpy: the NumPy reference may return a view of an input, which a custom op's output
    # must never be; it copies only then
    return Target(_cpu_backend()[0], np, br.from_numpy, lambda a: int(a.ctypes.data), contextlib.nullcontext)


def target(t: torch.Tensor) -> Target:
    if t.device.type == "cuda":
        return dlpack_target(*_cuda.target_parts(t.device))
    if t.device.type == "cpu":
        return cpu_target()
    raise ValueError(f"fastconv.torch: tensors on {t.device.type!r} have no fastconv backend (cpu and cuda only)")


# ---- test hook ------------------------------------------------------------------------------------

_handed: list | None = None


@contextlib.contextmanager
def record_handed():
    """Test hook: yields a list that gets (op, [data address of each array argument]) for every
    backend op the bridge calls, so tests can check that channels_last tensors reach the kernels
    uncopied (address == tensor.data_ptr())."""
    global _handed
    previous, _handed = _handed, []
    try:
        yield _handed
    finally:
        _handed = previous


# ---- layout helpers ---------------------------------------------------------------------------------

def _activation(t: torch.Tensor, name: str):
    """(t as contiguous NHWC, channels_last?) and an explain() note when that costs a copy."""
    cl = br.is_channels_last(t)
    if not cl and t.dim() == 4 and t.shape[1] > 1 and t.shape[2] * t.shape[3] > 1:
        note(f"{name} is contiguous NCHW: one transpose copy into NHWC (and one back for the output); "
             "channels_last tensors go to the kernels uncopied")
    return br.nhwc(t), cl


def _dense_operand(t: torch.Tensor) -> torch.Tensor:
    """A row-major matrix, vector or bias (a free view unless t is a transposed / strided view)."""
    return t.detach().contiguous()


# ---- convolution ------------------------------------------------------------------------------------

def conv2d_fprop(x, w, stride, padding, dilation, groups):
    tg = target(x)
    with tg.scope():
        xh, cl = _activation(x, "x")
        xa, wa = tg.to_array(xh), tg.to_array(br.rsck(w))
        y = tg.call("conv2d_fprop", xa, wa, tuple(stride), br.pads2d(padding), tuple(dilation), groups)
        return br.nchw(tg.from_array(y, x.dtype, xa, wa), cl)


def conv2d_dgrad(dy, w, x_shape, stride, padding, dilation, groups):
    n, c, h, wd = x_shape
    tg = target(dy)
    with tg.scope():
        dyh, cl = _activation(dy, "dy")
        dya, wa = tg.to_array(dyh), tg.to_array(br.rsck(w))
        dx = tg.call("conv2d_dgrad", dya, wa, (n, h, wd, c), tuple(stride), br.pads2d(padding), tuple(dilation),
                     groups)
        return br.nchw(tg.from_array(dx, dy.dtype, dya, wa), cl)


def conv2d_wgrad(x, dy, w_shape, stride, padding, dilation, groups):
    k, cg, r, s = w_shape
    tg = target(x)
    with tg.scope():
        xa, dya = tg.to_array(_activation(x, "x")[0]), tg.to_array(_activation(dy, "dy")[0])
        dw = tg.call("conv2d_wgrad", xa, dya, (r, s, cg, k), tuple(stride), br.pads2d(padding), tuple(dilation),
                     groups)
        # (R, S, C/g, K) -> torch's (K, C/g, R, S): one copy of the small filter gradient
        return tg.from_array(dw, x.dtype, xa, dya).permute(3, 2, 0, 1).contiguous()


# ---- max pooling ------------------------------------------------------------------------------------

def window_origins(xp, out_hw, stride, padding):
    """Input row of tap r = 0 for every output row and input column of tap s = 0 for every output
    column (p * sh - top, q * sw - left), as (P, 1) and (1, Q) int64 arrays of xp."""
    (p, q), (sh, sw) = out_hw, stride
    rows = xp.arange(p, dtype=xp.int64) * sh - padding[0]
    cols = xp.arange(q, dtype=xp.int64) * sw - padding[2]
    return rows[:, None], cols[None, :]


def flat_indices(xp, argmax, kernel_size, stride, padding, width):
    """KernelOps' window offset r * S + s (NHWC, uint) -> torch's flat h * W + w (NHWC, int64)."""
    rows, cols = window_origins(xp, argmax.shape[1:3], stride, padding)
    arg = argmax.astype(xp.int64)
    s_len = kernel_size[1]
    return (rows[None, :, :, None] + arg // s_len) * width + cols[None, :, :, None] + arg % s_len


def window_offsets(xp, flat, kernel_size, stride, padding, width, dtype):
    """torch's flat h * W + w (NHWC, int64) -> the window offset r * S + s KernelOps' bprop reads.
    Every window of a valid max-pool holds an input element (padding <= kernel / 2), so h, w >= 0."""
    rows, cols = window_origins(xp, flat.shape[1:3], stride, padding)
    r = flat // width - rows[None, :, :, None]
    s = flat % width - cols[None, :, :, None]
    return (r * kernel_size[1] + s).astype(dtype)


def max_pool2d_fprop(x, kernel_size, stride, padding):
    tg = target(x)
    with tg.scope():
        xh, cl = _activation(x, "x")
        xa = tg.to_array(xh)
        y, arg = tg.call("max_pool2d_fprop", xa, tuple(kernel_size), tuple(stride), br.pads2d(padding))
        flat = flat_indices(tg.xp, arg, kernel_size, stride, padding, x.shape[3])
        return br.nchw(tg.from_array(y, x.dtype, xa), cl), br.nchw(tg.from_array(flat, torch.int64), cl)


def max_pool2d_bprop(dy, indices, x_shape, kernel_size, stride, padding):
    from ..backends.plans.common import argmax_dtype
    n, c, h, w = x_shape
    tg = target(dy)
    with tg.scope():
        dyh, cl = _activation(dy, "dy")
        dya, flat = tg.to_array(dyh), tg.to_array(br.nhwc(indices))
        arg = window_offsets(tg.xp, flat, kernel_size, stride, padding, w, argmax_dtype(tuple(kernel_size)))
        dx = tg.call("max_pool2d_bprop", dya, arg, (n, h, w, c), tuple(kernel_size), tuple(stride),
                     br.pads2d(padding))
        return br.nchw(tg.from_array(dx, dy.dtype, dya), cl)


# ---- dense (torch layout: y = x @ w.T + b, w (out, in)) -----------------------------------------------

def _has_gemm(ops) -> bool:
    return hasattr(ops, "gemm") and hasattr(ops, "bias_grad")


def dense_fprop(x, w, b):
    tg = target(x)
    with tg.scope():
        xa, wa = tg.to_array(_dense_operand(x)), tg.to_array(_dense_operand(w))
        ba = None if b is None else tg.to_array(_dense_operand(b))
        inputs = (xa, wa) + (() if ba is None else (ba,))
        if _has_gemm(tg.ops):     # KernelOps: w (out, in) read transposed by the GEMM, no copy
            y = tg.call("gemm", xa, wa, False, True, ba)
        else:                     # the reference takes fastconv's (in, out) weight: a free NumPy view
            y = tg.call("dense_fprop", xa, wa.T, ba)
        return tg.from_array(y, x.dtype, *inputs)


def dense_bprop(dy, x, w, need_dx):
    """-> (dx, dw, db); dx is an empty (0, in) tensor when need_dx is False."""
    tg = target(x)
    with tg.scope():
        dya, xa, wa = tg.to_array(_dense_operand(dy)), tg.to_array(_dense_operand(x)), tg.to_array(_dense_operand(w))
        if _has_gemm(tg.ops):
            dx = tg.call("gemm", dya, wa, False, False) if need_dx else None     # dy @ w
            dw = tg.call("gemm", dya, xa, True, False)                          # dy.T @ x: (out, in) as torch
            db = tg.call("bias_grad", dya)
        else:
            dx, dw_in_out, db = tg.call("dense_bprop", dya, xa, wa.T, need_dx)
            dw = dw_in_out.T
        dx = tg.from_array(dx, x.dtype, dya, xa, wa) if need_dx else x.new_empty((0, x.shape[1]))
        return dx, tg.from_array(dw, x.dtype, dya, xa, wa), tg.from_array(db, x.dtype, dya)
