"""Moving torch tensors in and out of fastconv's layouts.

torch speaks NCHW shapes with any memory format; fastconv's kernels speak NHWC memory. A
`channels_last` NCHW tensor *is* NHWC memory, so `x.permute(0, 2, 3, 1)` of it is already
contiguous and costs nothing; a plain contiguous NCHW tensor pays one transpose copy on the way in
and (to hand back the layout the caller gave us, as torch's own conv does) one on the way out.

Conventions of every fastconv op's output memory format:
- fprop outputs (conv, max-pool) follow the input x: channels_last in, channels_last out.
- gradients w.r.t. activations (dgrad, max-pool bprop) follow the incoming gradient dy.
- weight gradients are contiguous in torch's layout (the layout of nn.Conv2d / nn.Linear weights).
"""
from __future__ import annotations

import numpy as np
import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def is_channels_last(t: torch.Tensor) -> bool:
    """True when a 4-D tensor's memory is NHWC and not also plain NCHW.

    Tensors that are both (C == 1, or H == W == 1) count as NCHW. The rule must depend only on
    `is_contiguous`, which ignores the strides of size-1 dims: torch.compile's inductor hands a
    custom op inputs whose size-1 strides can differ from the traced ones, and the fake and real
    implementations must still agree on the output strides. (torch's own conv, which reads those
    strides, can pick channels_last for such ambiguous inputs; the values are the same.)"""
    return (t.dim() == 4 and not t.is_contiguous()
            and t.is_contiguous(memory_format=torch.channels_last))


def pads2d(padding):
    """[top, bottom, left, right] (the custom ops' padding) -> ((top, bottom), (left, right)), fastconv's."""
    t, b, l, r = padding
    return ((t, b), (l, r))


def memory_format(channels_last: bool):
    return torch.channels_last if channels_last else torch.contiguous_format


def nhwc(t: torch.Tensor) -> torch.Tensor:
    """NCHW-shaped tensor -> contiguous NHWC tensor (a free view when t is channels_last)."""
    return t.detach().permute(0, 2, 3, 1).contiguous()


def rsck(w: torch.Tensor) -> torch.Tensor:
    """torch conv weight (K, C/groups, R, S) -> fastconv filter (R, S, C/groups, K), contiguous."""
    return w.detach().permute(2, 3, 1, 0).contiguous()


def from_numpy(arr, dtype: torch.dtype, *inputs: np.ndarray) -> torch.Tensor:
    """A torch tensor owning `arr`'s data. Copies only when `arr` is not a fresh, writable,
    C-contiguous array (a custom op's output must never alias one of its inputs)."""
    arr = np.asarray(arr)
    if (not arr.flags.c_contiguous or not arr.flags.writeable
            or any(np.may_share_memory(arr, i) for i in inputs)):
        arr = np.array(arr, order="C", copy=True)
    out = torch.from_numpy(arr)
    return out if out.dtype == dtype else out.to(dtype)


def nchw(t_nhwc: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """NHWC tensor -> NCHW-shaped tensor: a view with channels_last strides, or a contiguous copy."""
    out = t_nhwc.permute(0, 3, 1, 2)
    return out if channels_last else out.contiguous()


def empty_nchw(like: torch.Tensor, n, c, h, w, channels_last: bool, dtype=None) -> torch.Tensor:
    """The output a kernel writes: NCHW shape, NHWC or NCHW memory."""
    return torch.empty((n, c, h, w), dtype=like.dtype if dtype is None else dtype, device=like.device,
                       memory_format=memory_format(channels_last))
