"""Conv2D with Keras' arguments and defaults, on NHWC inputs."""
from __future__ import annotations

from .. import functional as F
from .._checks import check_int, pair
from ..precision import check_precision
from ..shapes import conv_output_hw, resolve_padding
from .activation_mixin import WithActivation
from .base import Layer


class Conv2D(WithActivation, Layer):
    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", dilation_rate=(1, 1), groups=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 precision=None, **kwargs):
        super().__init__(**kwargs)
        self.filters = check_int(filters, "filters", 1)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.strides = pair(strides, "strides")
        self.dilation_rate = pair(dilation_rate, "dilation_rate")
        self.groups = check_int(groups, "groups", 1)
        if isinstance(padding, str) and padding.lower() not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid', 'same' or explicit ints, got {padding!r}")
        self.padding = padding.lower() if isinstance(padding, str) else padding
        if self.filters % self.groups:
            raise ValueError(f"filters ({self.filters}) must be divisible by groups ({self.groups})")
        self.use_bias = use_bias
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self._set_activation(activation)
        # None follows fastconv.set_precision; else 'fp32' / 'tf32' / 'bf16' / 'fp16' for this layer
        self.precision = None if precision is None else check_precision(precision, f"Conv2D {self.name!r} precision")

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D {self.name!r} expects inputs (batch, height, width, channels), "
                             f"got (batch, {', '.join(map(str, input_shape))})")
        channels = input_shape[-1]
        if channels % self.groups:
            raise ValueError(f"Conv2D {self.name!r}: input channels ({channels}) must be divisible by groups ({self.groups})")
        self.add_weight("kernel", (*self.kernel_size, channels // self.groups, self.filters), self.kernel_initializer)
        if self.use_bias:
            self.add_weight("bias", (self.filters,), self.bias_initializer)

    def compute_output_shape(self, input_shape):
        h, w, _ = input_shape
        pads = resolve_padding(self.padding, (h, w), self.kernel_size, self.strides, self.dilation_rate)
        p, q = conv_output_hw((h, w), self.kernel_size, self.strides, pads, self.dilation_rate)
        return (p, q, self.filters)

    def pre_activation(self, x, training=False):
        return F.conv2d(x, self.params["kernel"], self.params.get("bias"), self.strides, self.padding,
                        self.dilation_rate, self.groups, precision=self.precision)

    def get_config(self):
        return {"name": self.name, "filters": self.filters, "kernel_size": list(self.kernel_size),
                "strides": list(self.strides), "padding": self.padding, "dilation_rate": list(self.dilation_rate),
                "groups": self.groups, "activation": self.activation, "use_bias": self.use_bias,
                "kernel_initializer": self.kernel_initializer, "bias_initializer": self.bias_initializer,
                "input_shape": self.input_shape, **({"precision": self.precision} if self.precision else {})}
