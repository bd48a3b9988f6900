"""conv2d dgrad on the sm_90a conv (fastconv/backends/plans/conv2d_dgrad_sm90.py: per stride phase, the fprop of dy
over only that phase's turned taps, written at dx's strided pixels by the kernel's output view), in the emulator
against the NumPy reference's dgrad:

- small integers: exact, on strides 1, 2, 3 and 2x1, 1x1 / 3x3 / 7x7 filters, padding on every side, larger than
  the filter (negative padding of a phase's fprop) and 'same', dilation (also with gcd(stride, dilation) > 1 and
  == 1), partial tiles in C (dx's channels, the GEMM's N), K (dy's channels, the reduction) and pixels, phases no
  tap reaches (zeroed); dx prefilled with NaN (every element written) and TMA destinations poisoned until their
  mbarrier completes, in random, forward and reverse thread order;
- random floats: within the fp32 rounding bound of the emulated wgmma;
- one launch per phase with taps, the explain note naming them, the 16-bit output, can_implement's reasons.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from conftest import every_suite_conv, hopper_jit
from test_conv2d_fprop_sm90 import emu_ops, operands

from fastconv.backends.plans.conv2d_dgrad_sm90 import conv2d_dgrad_sm90, conv2d_dgrad_sm90_can_implement
from fastconv.backends.kernel_table import kernel_name
from fastconv.backends.plans.conv2d_sm90 import choose_tile
from fastconv.backends.plans.tensor_op import bf16_bits_to_float32, float32_to_bf16_bits
from fastconv.backends.reference.conv import conv2d_dgrad as reference_dgrad
from fastconv.explain import explain
from fastconv.shapes import conv2d_output_shape, resolve_padding

# (x shape (N, H, W, C), K, R, S, stride, padding, dilation, launches: the phases some tap reaches)
DGRAD = [
    ((2, 7, 9, 20), 16, 3, 3, (1, 1), ((1, 1), (1, 1)), (1, 1), 1),     # C = 20: partial tile in dx's channels
    ((1, 8, 6, 24), 16, 3, 2, (1, 1), ((2, 0), (0, 1)), (1, 1), 1),
    ((1, 9, 9, 8), 16, 3, 3, (1, 1), "same", (2, 2), 1),
    ((1, 6, 7, 8), 16, 3, 3, (1, 1), ((3, 3), (0, 2)), (1, 1), 1),      # padding 3 > R - 1: the fprop's is -1
    ((2, 20, 18, 24), 72, 3, 3, (2, 2), ((1, 1), (1, 1)), (1, 1), 4),   # ResNet's 3x3/2; K = 72 = 64 + 8; 2 pixel tiles
    ((1, 10, 11, 16), 16, 3, 3, (3, 3), ((2, 1), (0, 2)), (1, 1), 9),   # stride 3, padding on every side
    ((2, 8, 7, 8), 16, 3, 2, (2, 1), ((1, 0), (1, 1)), (1, 1), 2),      # stride 2x1
    ((3, 6, 7, 136), 16, 1, 1, (2, 2), "valid", (1, 1), 1),             # ResNet's 1x1/2: 3 phases zeroed; C 128 + 8
    ((1, 9, 9, 8), 8, 1, 1, (3, 3), ((1, 1), (1, 1)), (1, 1), 1),       # stride 3 > kernel, padded: phase (2, 2) only
    ((1, 14, 13, 8), 16, 7, 7, (2, 2), ((3, 3), (3, 3)), (1, 1), 4),    # the 7x7/2 stem's shape, up to 16 taps a phase
    ((1, 11, 12, 16), 16, 3, 3, (2, 2), "same", (2, 2), 1),             # dilation 2 at stride 2: one phase has taps
    ((1, 13, 12, 8), 24, 3, 3, (2, 2), ((3, 2), (2, 3)), (3, 3), 4),    # dilation 3 at stride 2: tap step 2, dy step 3
]
IDS = [f"h{p[0][1]}w{p[0][2]}c{p[0][3]}k{p[1]}r{p[2]}s{p[3]}st{p[4][0]}{p[4][1]}d{p[6][0]}" for p in DGRAD]


def problem(x_shape, k, r, s, stride, padding, dilation, kind, rng, integers=True):
    """(dy, w) in the kernel's dtype, their float64 values and the resolved padding."""
    pad = resolve_padding(padding, x_shape[1:3], (r, s), stride, dilation)
    y_shape = conv2d_output_shape(x_shape, (r, s, x_shape[3], k), stride, pad, dilation)
    return (*operands(kind, y_shape, (r, s, x_shape[3], k), rng, integers), pad)


@pytest.mark.parametrize("kind", ["bf16", "f16"])
@pytest.mark.parametrize("x_shape,k,r,s,stride,padding,dilation,launches", DGRAD, ids=IDS)
def test_conv2d_dgrad_sm90_exact_on_small_integers(kind, x_shape, k, r, s, stride, padding, dilation, launches):
    rng = np.random.default_rng(sum(x_shape) + r + k)
    dy, w, dy64, w64, pad = problem(x_shape, k, r, s, stride, padding, dilation, kind, rng)
    ops = emu_ops()
    dx = conv2d_dgrad_sm90(ops, dy, w, x_shape, stride, padding, dilation)
    want = reference_dgrad(dy64, w64, x_shape, stride, pad, dilation, 1)
    assert dx.dtype == np.float32
    np.testing.assert_array_equal(dx, want.astype(np.float32))
    ct = "__nv_bfloat16" if kind == "bf16" else "__half"
    bm, bn, _ = choose_tile(x_shape[0], x_shape[1], x_shape[2], x_shape[3], (1, 1), ct)   # the rule over all of dx
    name = kernel_name("conv2d_fprop_wgmma_sm90", bn=bn, stages=4, bm=bm, t=ct, out="float")
    assert [name for name, *_ in ops.launched] == [name] * launches


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_conv2d_dgrad_sm90_thread_orders(order):
    x_shape, k, r, s, stride, padding, dilation, _ = DGRAD[5]
    dy, w, dy64, w64, pad = problem(x_shape, k, r, s, stride, padding, dilation, "bf16", np.random.default_rng(5))
    dx = conv2d_dgrad_sm90(emu_ops(order=order, poison=False), dy, w, x_shape, stride, padding, dilation)
    np.testing.assert_array_equal(dx, reference_dgrad(dy64, w64, x_shape, stride, pad, dilation, 1).astype(np.float32))


@pytest.mark.parametrize("kind", ["bf16", "f16"])
def test_conv2d_dgrad_sm90_random_within_the_fp32_rounding_bound(kind):
    """Each k16 step of the emulated wgmma adds an exact product sum to the fp32 accumulator with one rounding; a
    dx pixel takes at most R * S taps: |error| <= R * S * ceil(K / 16) * 2^-24 * (|dy| dgrad |w|) (float64 oracle)."""
    x_shape, k, r, s, stride, padding, dilation, _ = DGRAD[4]
    dy, w, dy64, w64, pad = problem(x_shape, k, r, s, stride, padding, dilation, kind, np.random.default_rng(21),
                                    integers=False)
    dx = conv2d_dgrad_sm90(emu_ops(), dy, w, x_shape, stride, padding, dilation)
    want = reference_dgrad(dy64, w64, x_shape, stride, pad, dilation, 1)
    bound = r * s * -(-k // 16) * 2.0**-24 * reference_dgrad(np.abs(dy64), np.abs(w64), x_shape, stride, pad,
                                                             dilation, 1)
    assert (np.abs(dx - want) <= bound).all(), np.abs(dx - want).max()
    assert np.abs(dx - want).max() > 0   # the bound is exercised, not a sum that happened to be exact


def test_conv2d_dgrad_sm90_16bit_output_and_the_note_names_the_phases():
    x_shape, k, r, s, stride, padding, dilation, _ = DGRAD[7]
    rng = np.random.default_rng(9)
    dyi = rng.integers(-2, 3, conv2d_output_shape(x_shape, (r, s, x_shape[3], k), stride, ((0, 0), (0, 0)))
                       ).astype(np.float32)
    wi = rng.integers(-2, 3, (r, s, x_shape[3], k)).astype(np.float32)   # |dx| <= 64: exact in bf16
    ops = emu_ops()
    report = explain(conv2d_dgrad_sm90, ops, float32_to_bf16_bits(np, dyi), float32_to_bf16_bits(np, wi), x_shape,
                     stride, padding, dilation, out_dtype=np.uint16)
    assert report.result.dtype == np.uint16
    want = reference_dgrad(dyi.astype(np.float64), wi.astype(np.float64), x_shape, stride, ((0, 0), (0, 0)), dilation, 1)
    np.testing.assert_array_equal(bf16_bits_to_float32(np, report.result), want.astype(np.float32))
    text = " | ".join(e.text for e in report.events if e.kind == "note")
    assert "2x2 = 4 stride phases, each over only its own taps in the emulator" in text, text
    assert "1 launches ((0,0) 1x1 taps)" in text and "phases (0, 1), (1, 0), (1, 1) reached by no tap, zeroed" in text
    bm, bn, why = choose_tile(*x_shape, (1, 1), "__nv_bfloat16")
    assert f"tiles of {bm} pixels by {bn} channels of dx ({why})" in text, text
    name = kernel_name("conv2d_fprop_wgmma_sm90", bn=bn, stages=4, bm=bm, t="__nv_bfloat16", out="__nv_bfloat16")
    assert [name for name, *_ in ops.launched] == [name]


def test_conv2d_dgrad_sm90_says_why_not():
    ops = emu_ops()
    w = np.zeros((3, 3, 8, 16), np.uint16)
    ok, why = conv2d_dgrad_sm90_can_implement(ops, np.zeros((1, 4, 4, 16), np.uint16), w, (1, 8, 8, 8), (2, 2),
                                              ((1, 0), (1, 0)))
    assert ok and "2x2 = 4 stride phases" in why
    ok, why = conv2d_dgrad_sm90_can_implement(ops, np.zeros((1, 6, 6, 12), np.uint16), np.zeros((3, 3, 8, 12), np.uint16),
                                              (1, 6, 6, 8), (1, 1), ((1, 1), (1, 1)))
    assert not ok and "as the fprop of dy (its C is dy's K): C=12 is not a multiple of 8" in why
    ok, why = conv2d_dgrad_sm90_can_implement(ops, np.zeros((1, 4, 4, 16), np.float32), w.astype(np.float32),
                                              (1, 8, 8, 8), (2, 2), ((1, 0), (1, 0)))
    assert not ok and "float32; the kernel takes float16 or bfloat16" in why
    buf = np.zeros(4 * 4 * 16 + 8, np.uint16)
    start = (-buf.ctypes.data // 2) % 8 + 2                    # 4 bytes past a 16-byte boundary
    unaligned = buf[start:start + 4 * 4 * 16].reshape(1, 4, 4, 16)
    with pytest.raises(ValueError, match="conv2d_dgrad_sm90 cannot run this problem: .* not 16-byte aligned"):
        conv2d_dgrad_sm90(ops, unaligned, w, (1, 8, 8, 8), (2, 2), ((1, 0), (1, 0)))
    with pytest.raises(ValueError, match=re.escape("dy has shape (1, 5, 4, 16); conv2d of x (1, 8, 8, 8) with w "
                                                   "(3, 3, 8, 16) gives (1, 4, 4, 16)")):
        conv2d_dgrad_sm90(ops, np.zeros((1, 5, 4, 16), np.uint16), w, (1, 8, 8, 8), (2, 2), ((1, 0), (1, 0)))


@every_suite_conv("suite,conv")
def test_conv2d_dgrad_sm90_runs_every_resnet50_and_vgg16_conv(suite, conv):
    """The dgrad of every conv of the ResNet-50 and VGG-16 suites at batch 1 (224 x 224), stride 1 and strided,
    bf16 integers in [-2, 2] (sums below 2^24: exact); the stem's C = 3 is dx's side, which the epilogue masks.
    Opt-in: FASTCONV_EMU_SUITES=1 python -m pytest -n 2 -k every_resnet50 test_conv2d_dgrad_sm90.py"""
    x_shape, k, r, s = (1, conv["H"], conv["W"], conv["C"]), conv["K"], conv["R"], conv["S"]
    stride, padding, dilation = tuple(conv["stride"]), tuple(map(tuple, conv["padding"])), tuple(conv["dilation"])
    rng = np.random.default_rng(x_shape[3] * k + x_shape[1])
    y_shape = conv2d_output_shape(x_shape, (r, s, x_shape[3], k), stride, padding, dilation)
    dy = float32_to_bf16_bits(np, rng.integers(-2, 3, y_shape).astype(np.float32))
    w = float32_to_bf16_bits(np, rng.integers(-2, 3, (r, s, x_shape[3], k)).astype(np.float32))
    dx = conv2d_dgrad_sm90(emu_ops(poison=False), dy, w, x_shape, stride, padding, dilation)
    dy64, w64 = (bf16_bits_to_float32(np, v).astype(np.float64) for v in (dy, w))
    want = reference_dgrad(dy64, w64, x_shape, stride, padding, dilation, 1)
    np.testing.assert_array_equal(dx, want.astype(np.float32))


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["bf16", "f16"])
@pytest.mark.parametrize("x_shape,k,r,s,stride,padding,dilation", [
    ((8, 56, 56, 128), 128, 3, 3, (2, 2), ((1, 1), (1, 1)), (1, 1)),   # ResNet-50 res3a 3x3/2 at batch 8
    ((8, 56, 56, 256), 512, 1, 1, (2, 2), "valid", (1, 1)),            # res3a 1x1/2: three phases zeroed
    DGRAD[5][:7], DGRAD[11][:7]])
def test_conv2d_dgrad_sm90_on_h100(kind, x_shape, k, r, s, stride, padding, dilation):
    """On an sm_90 GPU through the jit backend (NVRTC sm_90a): the emulator's bound doubled, allowing per k16 step
    one rounding of the 16-product sum (not exact in the tensor core) besides the accumulator's."""
    cupy, jit = hopper_jit()
    dy, w, dy64, w64, pad = problem(x_shape, k, r, s, stride, padding, dilation, kind, np.random.default_rng(0),
                                    integers=False)
    dx = cupy.asnumpy(conv2d_dgrad_sm90(jit._ops(), cupy.asarray(dy), cupy.asarray(w), x_shape, stride, padding,
                                        dilation))
    want = reference_dgrad(dy64, w64, x_shape, stride, pad, dilation, 1)
    bound = r * s * -(-k // 16) * 2.0**-24 * reference_dgrad(np.abs(dy64), np.abs(w64), x_shape, stride, pad,
                                                             dilation, 1)
    assert (np.abs(dx - want) <= 2 * bound).all(), np.abs(dx - want).max()
