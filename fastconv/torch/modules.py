"""Drop-in nn.Conv2d, nn.MaxPool2d and nn.Linear that run fastconv's ops.

Each subclasses its torch counterpart: same constructor, same parameters (names, shapes and
torch's layouts — conv weight (K, C/groups, R, S), linear weight (out, in)), same initialisation,
same state dict, and isinstance(m, torch.nn.Conv2d) stays true, so existing checkpoints and
weight-init code work unchanged. Only forward differs. The layout change to fastconv's NHWC /
(R, S, C/groups, K) / (in, out) happens inside the ops.
"""
from __future__ import annotations

from torch import nn

from . import _bridge as br
from . import functional as F

__all__ = ["Conv2d", "MaxPool2d", "Linear"]


def _check_factory_dtype(cls: str, dtype):
    if dtype is not None and dtype not in br.FLOAT_DTYPES:
        raise TypeError(f"fastconv.torch.{cls}: dtype={dtype} is not supported; fastconv runs "
                        f"torch.float32 and torch.float64")


def conv2d_unsupported(padding_mode) -> str | None:
    """Why a conv with these settings cannot run on fastconv, or None."""
    if padding_mode != "zeros":
        return (f"padding_mode={padding_mode!r} is not supported (fastconv pads with zeros only: "
                f"padding_mode='zeros')")
    return None


def max_pool2d_unsupported(dilation) -> str | None:
    if dilation not in (1, (1, 1), [1, 1]):
        return f"dilation={dilation!r} is not supported (fastconv's max-pool kernels have no dilation)"
    return None


class Conv2d(nn.Conv2d):
    """torch.nn.Conv2d on fastconv's conv2d ops; padding_mode='zeros' only."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None):
        why = conv2d_unsupported(padding_mode)
        if why:
            raise ValueError(f"fastconv.torch.Conv2d: {why}; keep torch.nn.Conv2d for this layer")
        _check_factory_dtype("Conv2d", dtype)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device=device, dtype=dtype)

    def _conv_forward(self, input, weight, bias):
        why = conv2d_unsupported(self.padding_mode)
        if why:
            raise ValueError(f"fastconv.torch.Conv2d: {why}")
        return F.conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)

    def forward(self, input):
        return self._conv_forward(input, self.weight, self.bias)

    def _get_name(self):
        return "fastconv.Conv2d"


class MaxPool2d(nn.MaxPool2d):
    """torch.nn.MaxPool2d on fastconv's max-pool ops; dilation=1 only. ceil_mode and return_indices
    (torch's flat indices, usable with nn.MaxUnpool2d) are supported."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False):
        why = max_pool2d_unsupported(dilation)
        if why:
            raise NotImplementedError(f"fastconv.torch.MaxPool2d: {why}; keep torch.nn.MaxPool2d for this layer")
        super().__init__(kernel_size, stride, padding, dilation, return_indices, ceil_mode)

    def forward(self, input):
        return F.max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation,
                            ceil_mode=self.ceil_mode, return_indices=self.return_indices)

    def _get_name(self):
        return "fastconv.MaxPool2d"


class Linear(nn.Linear):
    """torch.nn.Linear on fastconv's dense ops."""

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
        _check_factory_dtype("Linear", dtype)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)

    def forward(self, input):
        return F.linear(input, self.weight, self.bias)

    def _get_name(self):
        return "fastconv.Linear"


SWAPS = {nn.Conv2d: Conv2d, nn.MaxPool2d: MaxPool2d, nn.Linear: Linear}
