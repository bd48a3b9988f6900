"""conv2d dgrad at stride 1 on the sm_90a conv (fastconv/backends/plans/conv2d_dgrad_sm90.py: the fprop of dy
with the turned filter), in the emulator against the NumPy reference's dgrad: exact on small integers with
asymmetric padding, dilation and 'same'; the reasons it refuses (stride > 1, padding beyond the filter)."""
from __future__ import annotations

import numpy as np
import pytest
from test_conv2d_fprop_sm90 import emu_ops, operands

from fastconv.backends.plans.conv2d_dgrad_sm90 import conv2d_dgrad_sm90, conv2d_dgrad_sm90_can_implement
from fastconv.backends.reference.conv import conv2d_dgrad as reference_dgrad
from fastconv.shapes import conv2d_output_shape, resolve_padding

# (x shape (N, H, W, C), R, S, padding, dilation): C not a multiple of 8 (the output side of dgrad), K = 16
DGRAD = [((2, 7, 9, 20), 3, 3, ((1, 1), (1, 1)), (1, 1)),
         ((1, 8, 6, 24), 3, 2, ((2, 0), (0, 1)), (1, 1)),
         ((1, 9, 9, 8), 3, 3, "same", (2, 2)),
         ((3, 5, 5, 136), 1, 1, "valid", (1, 1))]


@pytest.mark.parametrize("kind", ["bf16", "f16"])
@pytest.mark.parametrize("x_shape,r,s,padding,dilation", DGRAD)
def test_conv2d_dgrad_sm90_exact_on_small_integers(kind, x_shape, r, s, padding, dilation):
    k = 16
    pad = resolve_padding(padding, x_shape[1:3], (r, s), (1, 1), dilation)
    y_shape = conv2d_output_shape(x_shape, (r, s, x_shape[3], k), (1, 1), pad, dilation)
    rng = np.random.default_rng(sum(x_shape) + r)
    dy, w, dy64, w64 = operands(kind, y_shape, (r, s, x_shape[3], k), rng)
    ops = emu_ops()
    dx = conv2d_dgrad_sm90(ops, dy, w, x_shape, (1, 1), padding, dilation)
    want = reference_dgrad(dy64, w64, x_shape, (1, 1), pad, dilation, 1)
    np.testing.assert_array_equal(dx, want.astype(np.float32))
    assert ops.launched[0][0].startswith("fc::conv2d_fprop_wgmma_sm90<")


def test_conv2d_dgrad_sm90_says_why_not():
    ops = emu_ops()
    dy, w = np.zeros((1, 4, 4, 16), np.uint16), np.zeros((3, 3, 8, 16), np.uint16)
    ok, why = conv2d_dgrad_sm90_can_implement(ops, dy, w, (1, 8, 8, 8), (2, 2), ((1, 0), (1, 0)))
    assert not ok and "takes stride 1" in why
    ok, why = conv2d_dgrad_sm90_can_implement(ops, np.zeros((1, 10, 10, 16), np.uint16), w, (1, 6, 6, 8), (1, 1),
                                              ((3, 3), (3, 3)))
    assert not ok and "padding exceeds dilation * (kernel - 1)" in why
    ok, why = conv2d_dgrad_sm90_can_implement(ops, np.zeros((1, 6, 6, 12), np.uint16), np.zeros((3, 3, 8, 12), np.uint16),
                                              (1, 6, 6, 8), (1, 1), ((1, 1), (1, 1)))
    assert not ok and "C=12 is not a multiple of 8" in why   # dy's channels (K) are the fprop's C
    ok, why = conv2d_dgrad_sm90_can_implement(ops, np.zeros((1, 6, 6, 16), np.uint16), w, (1, 6, 6, 8), (1, 1),
                                              ((1, 1), (1, 1)))
    assert ok and "conv2d dgrad (as the fprop of dy)" in why
    with pytest.raises(ValueError, match="conv2d_dgrad_sm90 cannot run this problem: stride"):
        conv2d_dgrad_sm90(ops, dy, w, (1, 8, 8, 8), (2, 2), ((1, 0), (1, 0)))
