"""Output-size and padding arithmetic, written once and shared by every backend.

Vocabulary (CUTLASS's): activation x is (N, H, W, C) (NHWC), filter w is (R, S, C/groups, K)
(Keras layout: kh, kw, in/groups, out), output y is (N, P, Q, K).
Padding is always resolved to explicit ((top, bottom), (left, right)) before any kernel sees it.
"""
from __future__ import annotations

from ._checks import INT32_MAX, check_int, pair

Padding2D = tuple[tuple[int, int], tuple[int, int]]


def resolve_padding(padding, in_hw, kernel_hw, stride, dilation=(1, 1), name: str = "padding") -> Padding2D:
    """'valid', 'same' (Keras/TF semantics for any stride), an int, (ph, pw) or ((t, b), (l, r))."""
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0), (0, 0))
        if mode == "same":
            out = []
            for size, k, s, d in zip(in_hw, kernel_hw, stride, dilation):
                extent = (k - 1) * d + 1
                target = -(-size // s)  # ceil(size / s)
                total = max((target - 1) * s + extent - size, 0)
                out.append((total // 2, total - total // 2))
            return (out[0], out[1])
        raise ValueError(f"{name} must be 'valid', 'same', an int or per-side ints, got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
        (t, b), (l, r) = padding[0], padding[1]
        return ((check_int(t, name, 0), check_int(b, name, 0)), (check_int(l, name, 0), check_int(r, name, 0)))
    ph, pw = pair(padding, name, minimum=0)
    return ((ph, ph), (pw, pw))


def conv_output_hw(in_hw, kernel_hw, stride, padding: Padding2D, dilation=(1, 1), what: str = "kernel"):
    """(P, Q) of a convolution or pooling window; raises if the window does not fit."""
    out = []
    for axis, (size, k, s, d, (lo, hi)) in enumerate(zip(in_hw, kernel_hw, stride, dilation, padding)):
        extent = (k - 1) * d + 1
        padded = size + lo + hi
        if extent > padded:
            dim = "height" if axis == 0 else "width"
            raise ValueError(
                f"{what} {dim} {k} (dilated extent {extent}) is larger than the padded input {dim} {padded} "
                f"(input {size}, padding {lo}+{hi}); use padding='same' or a smaller {what}")
        out.append((padded - extent) // s + 1)
    return tuple(out)


def conv2d_output_shape(x_shape, w_shape, stride, padding: Padding2D, dilation=(1, 1)):
    n, h, w, _ = x_shape
    r, s, _, k = w_shape
    p, q = conv_output_hw((h, w), (r, s), stride, padding, dilation)
    return (n, p, q, k)


def needs_64bit_index(*shapes) -> bool:
    """True when any tensor has more elements than a signed 32-bit index can address."""
    for shape in shapes:
        count = 1
        for d in shape:
            count *= int(d)
        if count > INT32_MAX:
            return True
    return False
