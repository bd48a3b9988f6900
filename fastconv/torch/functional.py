"""Drop-ins for torch.nn.functional.conv2d, max_pool2d and linear, running fastconv's ops.

Same signatures and semantics as torch's; what fastconv does not support raises an error that
names the argument. Unbatched (C, H, W) inputs are accepted like torch does.
"""
from __future__ import annotations

import torch

from .._checks import pair as _pair
from ..shapes import resolve_padding
from . import _bridge as br
from . import _ops  # noqa: F401  (registers torch.ops.fastconv.*)

__all__ = ["conv2d", "max_pool2d", "linear"]


def pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """fastconv's int-or-pair check; a 1-element sequence is broadcast, as torch does."""
    if isinstance(value, (tuple, list)) and len(value) == 1:
        value = (value[0], value[0])
    return _pair(value, name, minimum)


def _check_tensor(t, name: str, op: str, like: torch.Tensor | None = None, like_name: str = "input"):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"fastconv.torch.{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in br.FLOAT_DTYPES:
        raise TypeError(f"fastconv.torch.{op}: {name} has dtype {t.dtype}, but fastconv supports "
                        f"torch.float32 and torch.float64 only")
    if like is not None:
        if t.dtype != like.dtype:
            raise TypeError(f"fastconv.torch.{op}: {like_name} ({like.dtype}) and {name} ({t.dtype}) "
                            f"must have the same dtype")
        if t.device != like.device:
            raise ValueError(f"fastconv.torch.{op}: {like_name} is on {like.device} but {name} is on "
                             f"{t.device}; they must be on the same device")


def _unbatched(x, op: str):
    """(x as 4-D, was_unbatched) for (N, C, H, W) or (C, H, W) input."""
    if x.dim() == 4:
        return x, False
    if x.dim() == 3:
        return x.unsqueeze(0), True
    raise ValueError(f"fastconv.torch.{op}: expected a 3-D (unbatched C, H, W) or 4-D (batched N, C, H, W) "
                     f"input, got input of shape {tuple(x.shape)}")


def conv_padding(padding, in_hw, kernel_hw, stride, dilation) -> list[int]:
    """torch's conv padding (int, (ph, pw), 'valid' or 'same') -> [top, bottom, left, right].
    'same' puts the odd pixel at the bottom / right, as torch (and fastconv.shapes) do."""
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"fastconv.torch.conv2d: invalid padding string {padding!r}, should be one "
                             f"of ['valid', 'same']")
        if padding == "same" and tuple(stride) != (1, 1):
            raise ValueError("fastconv.torch.conv2d: padding='same' is not supported for strided "
                             f"convolutions (stride={tuple(stride)}), as in torch")
    (t, b), (l, r) = resolve_padding(padding, in_hw, kernel_hw, stride, dilation)
    return [t, b, l, r]


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """torch.nn.functional.conv2d on fastconv's conv2d_fprop / dgrad / wgrad."""
    op = "conv2d"
    _check_tensor(input, "input", op)
    _check_tensor(weight, "weight", op, input)
    if bias is not None:
        _check_tensor(bias, "bias", op, input)
    x, unbatched = _unbatched(input, op)
    if weight.dim() != 4:
        raise ValueError(f"fastconv.torch.conv2d: weight must be 4-D (out_channels, in_channels/groups, kH, kW), "
                         f"got shape {tuple(weight.shape)}")
    stride, dilation = pair(stride, "stride"), pair(dilation, "dilation")
    groups = int(groups)
    if groups < 1:
        raise ValueError(f"fastconv.torch.conv2d: groups must be a positive integer, got {groups}")
    k, cg = weight.shape[:2]
    if k % groups != 0:
        raise ValueError(f"fastconv.torch.conv2d: out_channels ({k}) must be divisible by groups ({groups})")
    if x.shape[1] != cg * groups:
        raise ValueError(f"fastconv.torch.conv2d: given groups={groups}, weight of shape {tuple(weight.shape)} "
                         f"expects input with {cg * groups} channels, but got {x.shape[1]} channels "
                         f"(input shape {tuple(input.shape)})")
    if bias is not None and tuple(bias.shape) != (k,):
        raise ValueError(f"fastconv.torch.conv2d: bias must have shape ({k},), got {tuple(bias.shape)}")
    pads = conv_padding(padding, tuple(x.shape[2:]), tuple(weight.shape[2:]), stride, dilation)
    try:
        _ops.conv_out_hw(x.shape, weight.shape, stride, pads, dilation)
    except ValueError as exc:
        raise ValueError(f"fastconv.torch.conv2d: {exc}") from None
    y = torch.ops.fastconv.conv2d_fprop(x, weight, list(stride), pads, list(dilation), groups)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y.squeeze(0) if unbatched else y


def pool_padding(in_hw, kernel_size, stride, padding, ceil_mode) -> list[int]:
    """torch's symmetric max-pool padding (+ ceil_mode) -> [top, bottom, left, right].

    ceil_mode keeps a last, partial window as long as it starts inside the input or the left
    padding (torch's rule); it becomes extra bottom / right padding, which max-pool never picks."""
    pads = []
    for size, k, s, p in zip(in_hw, kernel_size, stride, padding):
        extra = 0
        if ceil_mode:
            span = size + 2 * p - k
            out = -(-span // s) + 1                     # ceil(span / s) + 1
            if (out - 1) * s >= size + p:               # the last window would start in the right padding
                out -= 1
            extra = max((out - 1) * s + k - (size + 2 * p), 0)
        pads += [p, p + extra]
    return pads


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    """torch.nn.functional.max_pool2d on fastconv's max_pool2d_fprop / bprop.
    indices (return_indices=True) are torch's: flat h * W + w per (n, c) plane, int64."""
    op = "max_pool2d"
    _check_tensor(input, "input", op)
    x, unbatched = _unbatched(input, op)
    kernel = pair(kernel_size, "kernel_size")
    stride = kernel if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) \
        else pair(stride, "stride")
    padding = pair(padding, "padding", minimum=0)
    if pair(dilation, "dilation") != (1, 1):
        raise NotImplementedError(f"fastconv.torch.max_pool2d: dilation={dilation!r} is not supported "
                                  f"(fastconv's max-pool kernels have no dilation); use dilation=1")
    for k, p in zip(kernel, padding):
        if 2 * p > k:
            raise ValueError(f"fastconv.torch.max_pool2d: pad should be at most half of the kernel size, "
                             f"but got padding={padding} and kernel_size={kernel}")
    for axis, (size, k, p) in enumerate(zip(x.shape[2:], kernel, padding)):
        if k > size + 2 * p:
            dim = "height" if axis == 0 else "width"
            raise ValueError(f"fastconv.torch.max_pool2d: kernel_size {dim} {k} is larger than the padded "
                             f"input {dim} {size + 2 * p} (input {size}, padding {p} on each side)")
    pads = pool_padding(tuple(x.shape[2:]), kernel, stride, padding, bool(ceil_mode))
    y, indices = torch.ops.fastconv.max_pool2d_fprop(x, list(kernel), list(stride), pads)
    if unbatched:
        y, indices = y.squeeze(0), indices.squeeze(0)
    return (y, indices) if return_indices else y


def linear(input, weight, bias=None):
    """torch.nn.functional.linear (y = input @ weight.T + bias, any leading dims) on fastconv's
    dense_fprop / dense_bprop."""
    op = "linear"
    _check_tensor(input, "input", op)
    _check_tensor(weight, "weight", op, input)
    if bias is not None:
        _check_tensor(bias, "bias", op, input)
    if weight.dim() != 2:
        raise ValueError(f"fastconv.torch.linear: weight must be 2-D (out_features, in_features), "
                         f"got shape {tuple(weight.shape)}")
    if input.dim() == 0 or input.shape[-1] != weight.shape[1]:
        raise ValueError(f"fastconv.torch.linear: input of shape {tuple(input.shape)} does not match weight "
                         f"of shape {tuple(weight.shape)} (expected last dim {weight.shape[1]})")
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(f"fastconv.torch.linear: bias must have shape ({weight.shape[0]},), "
                         f"got {tuple(bias.shape)}")
    lead = input.shape[:-1]
    y = torch.ops.fastconv.dense_fprop(input.reshape(-1, weight.shape[1]), weight, bias)
    return y.reshape(*lead, weight.shape[0])
