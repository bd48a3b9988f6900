"""The CUDA branch of the fastconv custom ops: torch's CUDA tensors handed to fastconv's kernels by
pointer, on torch's current stream, with no copies beyond the layout change described below.

Design (what this module does once a GPU backend exists):
- Activations: the kernels read and write NHWC memory. For a `channels_last` NCHW tensor,
  `x.permute(0, 2, 3, 1)` is already contiguous: its `data_ptr()` is handed over as is, and the
  output is allocated NHWC and returned as a channels_last NCHW view — zero copies. A plain
  contiguous NCHW tensor costs one transpose copy in (`.contiguous()` of the permuted view) and
  one out (back to contiguous NCHW so the caller gets the layout it gave), i.e. about two extra
  reads and writes of each activation per op; `model.to(memory_format=torch.channels_last)` and
  channels_last inputs avoid both.
- Conv weights (K, C/g, R, S) are permuted to fastconv's (R, S, C/g, K) per call (small copy);
  dense weights (out, in) are passed as the transpose view fastconv's (in, out) kernels can read
  with a transposed-operand flag.
- Outputs are allocated with torch (`torch.empty` on the tensor's device), so they live in torch's
  caching allocator, and every launch takes `torch.cuda.current_stream(device).cuda_stream`, so
  the op is ordered with the surrounding torch work exactly like a native torch kernel.
- The backend is `fastconv.backends.backend_for("cuda")`; the pointer entry points it must expose
  are listed in ENTRY_POINTS (one per op, `<op>_ptr(*pointers, *sizes, stream=...)`).

Until fastconv's CUDA kernels are built every function here raises RuntimeError (or
NotImplementedError when a backend lacks the pointer entry points). fastconv.torch never falls
back to torch's own kernels: a silent fallback would make "it runs on fastconv" untrue.
"""
from __future__ import annotations

import torch

from . import _bridge as br

# The pointer entry points a GPU backend module must expose, with the arguments this module passes.
# Pointers are device addresses (ints); shapes are NHWC / (R, S, C/g, K) / (in, out)-ordered tuples;
# padding is (top, bottom, left, right); dtype is 'float32' or 'float64'; stream is a cudaStream_t
# as an int. Outputs are preallocated by torch; the kernels only write them.
ENTRY_POINTS = {
    "conv2d_fprop": "conv2d_fprop_ptr(x, w, y, N, H, W, C, K, R, S, P, Q, stride, padding, dilation, groups, dtype, *, stream)",
    "conv2d_dgrad": "conv2d_dgrad_ptr(dy, w, dx, dy_shape, w_shape, dx_shape, stride, padding, dilation, groups, dtype, *, stream)",
    "conv2d_wgrad": "conv2d_wgrad_ptr(x, dy, dw, x_shape, dy_shape, dw_shape, stride, padding, dilation, groups, dtype, *, stream)",
    "max_pool2d_fprop": "max_pool2d_fprop_ptr(x, y, indices, x_shape, kernel, stride, padding, dtype, *, stream)  # indices: torch's int64 h*W+w",
    "max_pool2d_bprop": "max_pool2d_bprop_ptr(dy, indices, dx, dy_shape, dx_shape, kernel, stride, padding, dtype, *, stream)  # dx zeroed",
    "dense_fprop": "dense_fprop_ptr(x, w, b_or_0, y, M, IN, OUT, w_is_out_in, dtype, *, stream)",
    "dense_bprop": "dense_bprop_ptr(dy, x, w, dx_or_0, dw, db, M, IN, OUT, w_is_out_in, dtype, *, stream)",
}


def kernels_status() -> tuple[bool, str]:
    """(available, reason) for fastconv's CUDA kernels as seen from torch."""
    try:
        from ..backends import backend_for
        backend = backend_for("cuda")
    except Exception as exc:  # RuntimeError / NotImplementedError from the backend chooser
        return False, f"{type(exc).__name__}: {exc}"
    missing = [name for name in ENTRY_POINTS if not hasattr(backend, name + "_ptr")]
    if missing:
        return False, (f"the CUDA backend {getattr(backend, '__name__', backend)!r} does not expose the "
                       f"pointer entry points fastconv.torch needs: {', '.join(m + '_ptr' for m in missing)}")
    return True, "fastconv CUDA kernels available"


def _backend(op: str):
    ok, reason = kernels_status()
    if not ok:
        exc = NotImplementedError if "entry points" in reason else RuntimeError
        raise exc(
            f"fastconv::{op} got CUDA tensors, but the fastconv CUDA kernels are not built in this "
            f"installation ({reason}). fastconv.torch never falls back to torch's own kernels: run the "
            f"model on the CPU, or keep torch.nn modules for CUDA (do not fastconv.torch.convert it).")
    from ..backends import backend_for
    return getattr(backend_for("cuda"), op + "_ptr")


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def _dtype(t: torch.Tensor) -> str:
    return {torch.float32: "float32", torch.float64: "float64"}[t.dtype]


def conv2d_fprop(x, w, stride, padding, dilation, groups):
    launch = _backend("conv2d_fprop")
    from ._ops import conv_out_hw
    cl = br.is_channels_last(x)
    xh, wk = br.nhwc(x), br.rsck(w)                # free for channels_last x
    (n, h, wd, c), (r, s, _, k) = xh.shape, wk.shape
    p, q = conv_out_hw(x.shape, w.shape, stride, padding, dilation)
    yh = torch.empty((n, p, q, k), dtype=x.dtype, device=x.device)
    launch(xh.data_ptr(), wk.data_ptr(), yh.data_ptr(), n, h, wd, c, k, r, s, p, q, tuple(stride),
           tuple(padding), tuple(dilation), groups, _dtype(x), stream=_stream(x))
    return br.nchw(yh, cl)


def conv2d_dgrad(dy, w, x_shape, stride, padding, dilation, groups):
    launch = _backend("conv2d_dgrad")
    n, c, h, wd = x_shape
    dyh, wk = br.nhwc(dy), br.rsck(w)
    dxh = torch.empty((n, h, wd, c), dtype=dy.dtype, device=dy.device)
    launch(dyh.data_ptr(), wk.data_ptr(), dxh.data_ptr(), tuple(dyh.shape), tuple(wk.shape),
           tuple(dxh.shape), tuple(stride), tuple(padding), tuple(dilation), groups, _dtype(dy),
           stream=_stream(dy))
    return br.nchw(dxh, br.is_channels_last(dy))


def conv2d_wgrad(x, dy, w_shape, stride, padding, dilation, groups):
    launch = _backend("conv2d_wgrad")
    k, cg, r, s = w_shape
    xh, dyh = br.nhwc(x), br.nhwc(dy)
    dwk = torch.empty((r, s, cg, k), dtype=x.dtype, device=x.device)
    launch(xh.data_ptr(), dyh.data_ptr(), dwk.data_ptr(), tuple(xh.shape), tuple(dyh.shape),
           tuple(dwk.shape), tuple(stride), tuple(padding), tuple(dilation), groups, _dtype(x),
           stream=_stream(x))
    return dwk.permute(3, 2, 0, 1).contiguous()


def max_pool2d_fprop(x, kernel_size, stride, padding):
    launch = _backend("max_pool2d_fprop")
    from ._ops import pool_out_hw
    cl = br.is_channels_last(x)
    xh = br.nhwc(x)
    n, _, _, c = xh.shape
    p, q = pool_out_hw(x.shape, kernel_size, stride, padding)
    yh = torch.empty((n, p, q, c), dtype=x.dtype, device=x.device)
    idx = torch.empty((n, p, q, c), dtype=torch.int64, device=x.device)   # kernel writes torch's flat index
    launch(xh.data_ptr(), yh.data_ptr(), idx.data_ptr(), tuple(xh.shape), tuple(kernel_size),
           tuple(stride), tuple(padding), _dtype(x), stream=_stream(x))
    return br.nchw(yh, cl), br.nchw(idx, cl)


def max_pool2d_bprop(dy, indices, x_shape, kernel_size, stride, padding):
    launch = _backend("max_pool2d_bprop")
    n, c, h, w = x_shape
    dyh, idx = br.nhwc(dy), br.nhwc(indices)
    dxh = torch.zeros((n, h, w, c), dtype=dy.dtype, device=dy.device)
    launch(dyh.data_ptr(), idx.data_ptr(), dxh.data_ptr(), tuple(dyh.shape), tuple(dxh.shape),
           tuple(kernel_size), tuple(stride), tuple(padding), _dtype(dy), stream=_stream(dy))
    return br.nchw(dxh, br.is_channels_last(dy))


def dense_fprop(x, w, b):
    launch = _backend("dense_fprop")
    x, w = x.contiguous(), w.contiguous()
    y = torch.empty((x.shape[0], w.shape[0]), dtype=x.dtype, device=x.device)
    launch(x.data_ptr(), w.data_ptr(), 0 if b is None else b.contiguous().data_ptr(), y.data_ptr(),
           x.shape[0], x.shape[1], w.shape[0], True, _dtype(x), stream=_stream(x))
    return y


def dense_bprop(dy, x, w, need_dx):
    launch = _backend("dense_bprop")
    dy, x, w = dy.contiguous(), x.contiguous(), w.contiguous()
    dx = torch.empty(x.shape if need_dx else (0, x.shape[1]), dtype=x.dtype, device=x.device)
    dw = torch.empty_like(w)
    db = torch.empty((w.shape[0],), dtype=x.dtype, device=x.device)
    launch(dy.data_ptr(), x.data_ptr(), w.data_ptr(), dx.data_ptr() if need_dx else 0, dw.data_ptr(),
           db.data_ptr(), x.shape[0], x.shape[1], w.shape[0], True, _dtype(x), stream=_stream(x))
    return dx, dw, db
