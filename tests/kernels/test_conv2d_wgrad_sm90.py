"""The sm_90a conv2d wgrad (csrc/conv/conv2d_wgrad_wgmma_sm90.h: per tap a wgmma GEMM of C channels by K filters
over the output pixels, both operands TMA pixel boxes read MN-major, split-k over pixel tiles summed in split
order) through its plan (fastconv/backends/plans/conv2d_wgrad_sm90.py), run by the CPU emulator against the NumPy
reference:

- small integers in [-3, 3]: exact (every product and fp32 sum exact), on one curated problem list: partial tiles
  in C (channels), K (filters) and the pixels, padding on every side and larger than the stride, strides 1-3
  (also unequal), dilation, 'same' padding, 1x1, 3x3 and 7x7 filters; with poison_async (a TMA destination read
  before its mbarrier completes is NaN) and dw and the split workspace prefilled with NaN (an element nobody
  writes stays NaN), in forward, reverse and random thread order; 1, 2 and 5 splits give the same bits;
- random floats: within the fp32 rounding bound of the emulated wgmma and the split reduction, and two runs
  bitwise equal;
- can_implement's reasons, the plan's argument errors, the split choice and the explain note;
- routing (plans/conv2d.py conv2d_wgrad_tensor_core, and conv2d_wgrad under a bf16 / fp16 precision policy): the
  sm_90a wgrad where it applies, mma.sync with the reason where not.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import every_suite_conv, hopper_jit, nan_filled_sm90_ops
from test_conv2d_fprop_sm90 import operands   # (x, w) there; (x, dy) here
from fastconv.backends import reference as ref
from fastconv.backends.plans.conv2d import sm90_wgrad_route
from fastconv.backends.plans.conv2d_sm90 import pixel_tile
from fastconv.backends.plans.conv2d_wgrad_sm90 import (WGRAD_SM90_SHARED, conv2d_wgrad_sm90,
                                                       conv2d_wgrad_sm90_can_implement, conv2d_wgrad_sm90_kernel_names,
                                                       wgrad_sm90_splits)
from fastconv.backends.plans.tensor_op import bf16_bits_to_float32, float32_to_bf16_bits
from fastconv.backends.reference.conv import conv2d_wgrad as reference_wgrad
from fastconv.explain import explain
from fastconv.shapes import conv_output_hw, resolve_padding


def emu_ops(order="random", poison=True, seed=1):
    """dw and the split workspace stay NaN where the kernels do not write."""
    return nan_filled_sm90_ops(conv2d_wgrad_sm90_kernel_names(), order, poison, seed)


def setup(problem, kind, rng, integers=True):
    """x, dy (kernel dtype), their float64 values, w_shape and the resolved padding of one PROBLEMS entry."""
    n, h, w, c, k, r, s, stride, padding, dilation = problem
    pad = resolve_padding(padding, (h, w), (r, s), stride, dilation)
    p, q = conv_output_hw((h, w), (r, s), stride, pad, dilation)
    return (*operands(kind, (n, h, w, c), (n, p, q, k), rng, integers), (r, s, c, k), pad)


def pixel_tiles(problem, pad):
    """How many 64-pixel boxes cover the output (the k-tiles of one split-free CTA)."""
    n, h, w, c, k, r, s, stride, _, dilation = problem
    p, q = conv_output_hw((h, w), (r, s), stride, pad, dilation)
    tq, tp, tn = pixel_tile(n, p, q, stride, 64)
    assert tq * tp * tn == 64
    return -(-q // tq) * -(-p // tp) * -(-n // tn)


def reference(x64, dy64, w_shape, stride, pad, dilation):
    return reference_wgrad(x64, dy64, w_shape, stride, pad, dilation, 1)


# (N, H, W, C, K, R, S, stride, padding, dilation)
PROBLEMS = [
    (2, 9, 7, 136, 72, 3, 3, (1, 1), ((1, 1), (1, 1)), (1, 1)),   # partial C (128 + 8), K (64 + 8), pixels (126)
    (1, 11, 10, 16, 24, 3, 3, (2, 2), ((2, 1), (0, 3)), (1, 1)),  # asymmetric padding, 2 > stride on top
    (2, 10, 11, 8, 16, 3, 2, (3, 2), ((1, 2), (2, 1)), (1, 1)),   # strides 3 x 2, padding on every side
    (1, 12, 12, 24, 40, 3, 3, (1, 1), ((2, 2), (2, 2)), (2, 2)),  # dilation 2
    (1, 13, 9, 16, 8, 3, 3, (2, 2), "same", (1, 1)),              # TF 'same' at stride 2 (pads bottom/right more)
    (3, 8, 8, 64, 136, 1, 1, (2, 2), "valid", (1, 1)),            # 1x1 stride 2, two filter tiles
    (1, 14, 14, 8, 16, 7, 7, (2, 2), ((3, 3), (3, 3)), (1, 1)),   # 7x7 stem shape: 49 taps
    (2, 20, 18, 16, 16, 3, 3, (1, 1), ((1, 1), (1, 1)), (1, 1)),  # 720 pixels: 12+ pixel tiles, the ring wraps
]
IDS = [f"n{p[0]}h{p[1]}w{p[2]}c{p[3]}k{p[4]}r{p[5]}s{p[6]}st{p[7][0]}{p[7][1]}d{p[9][0]}" for p in PROBLEMS]


@pytest.mark.parametrize("kind", ["bf16", "f16"])
@pytest.mark.parametrize("problem", PROBLEMS, ids=IDS)
def test_conv2d_wgrad_sm90_exact_on_small_integers(kind, problem):
    stride, dilation = problem[7], problem[9]
    x, dy, x64, dy64, w_shape, pad = setup(problem, kind, np.random.default_rng(sum(problem[:7])))
    ops = emu_ops()
    dw = conv2d_wgrad_sm90(ops, x, dy, w_shape, stride, pad, dilation)
    assert dw.dtype == np.float32 and dw.shape == w_shape
    np.testing.assert_array_equal(dw, reference(x64, dy64, w_shape, stride, pad, dilation).astype(np.float32))
    name, grid, block, shared = ops.launched[0]
    assert name == conv2d_wgrad_sm90_kernel_names()[0 if kind == "bf16" else 1]
    r, s, c, k = w_shape
    assert grid[:2] == (-(-k // 128), -(-c // 128) * r * s) and block == (384,) and shared == WGRAD_SM90_SHARED
    assert [n for n, *_ in ops.launched[1:]] == (["fc::split_k_reduce<float>"] if grid[2] > 1 else [])


@pytest.mark.parametrize("problem", [PROBLEMS[0], PROBLEMS[7]], ids=[IDS[0], IDS[7]])
def test_conv2d_wgrad_sm90_splits_give_the_same_bits(problem):
    """1, 2 and 5 splits over the pixel tiles (the workspace NaN-prefilled): exact on small integers, so equal."""
    stride, dilation = problem[7], problem[9]
    x, dy, x64, dy64, w_shape, pad = setup(problem, "bf16", np.random.default_rng(5))
    want = reference(x64, dy64, w_shape, stride, pad, dilation).astype(np.float32)
    tiles = pixel_tiles(problem, pad)
    for splits in (1, 2, 5):
        ops = emu_ops()
        np.testing.assert_array_equal(conv2d_wgrad_sm90(ops, x, dy, w_shape, stride, pad, dilation, splits=splits),
                                      want)
        per = -(-tiles // splits)                                  # contiguous runs of pixel tiles
        assert ops.launched[0][1][2] == -(-tiles // per) and len(ops.launched) == (1 if splits == 1 else 2)


def test_conv2d_wgrad_sm90_grid_folded_onto_x():
    """With grid.y and grid.z capped (max_grid_yz, as past 65535 tiles) every (filter tile, channel tile x tap, split)
    goes on grid.x and fc::block_tile unfolds it: the same exact result."""
    problem = PROBLEMS[7]                                          # 9 taps: grid (1, 9, 3)
    stride, dilation = problem[7], problem[9]
    x, dy, x64, dy64, w_shape, pad = setup(problem, "bf16", np.random.default_rng(8))
    ops = emu_ops()
    ops.max_grid_yz = 4
    dw = conv2d_wgrad_sm90(ops, x, dy, w_shape, stride, pad, dilation, splits=3)
    np.testing.assert_array_equal(dw, reference(x64, dy64, w_shape, stride, pad, dilation).astype(np.float32))
    assert pixel_tiles(problem, pad) >= 3 and ops.launched[0][1] == (9 * 3, 1, 1)


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_conv2d_wgrad_sm90_thread_orders(order):
    problem = PROBLEMS[1]
    x, dy, x64, dy64, w_shape, pad = setup(problem, "bf16", np.random.default_rng(3))
    dw = conv2d_wgrad_sm90(emu_ops(order=order, poison=False), x, dy, w_shape, problem[7], pad, problem[9], splits=2)
    np.testing.assert_array_equal(dw, reference(x64, dy64, w_shape, problem[7], pad, problem[9]).astype(np.float32))


@pytest.mark.parametrize("kind", ["bf16", "f16"])
def test_conv2d_wgrad_sm90_random_within_the_fp32_rounding_bound_and_deterministic(kind):
    """Each k16 step of the emulated wgmma adds an exact 16-product sum to the fp32 accumulator with one
    rounding, and split_k_reduce adds the partials with one rounding each: |error| <= n u / (1 - n u) *
    (|x|^T |dy|), n = 4 k16 steps * pixel tiles per split + splits, u = 2^-24 (float64 oracle). Two runs with
    different thread orders give the same bits (a fixed summation order)."""
    problem = PROBLEMS[7]
    stride, dilation = problem[7], problem[9]
    x, dy, x64, dy64, w_shape, pad = setup(problem, kind, np.random.default_rng(21), integers=False)
    ops = emu_ops(seed=4)
    dw = conv2d_wgrad_sm90(ops, x, dy, w_shape, stride, pad, dilation, splits=3)
    want = reference(x64, dy64, w_shape, stride, pad, dilation)
    magnitude = reference(np.abs(x64), np.abs(dy64), w_shape, stride, pad, dilation)
    tiles = pixel_tiles(problem, pad)
    assert tiles >= 10                                 # 720 pixels: every split reduces several tiles
    per = -(-tiles // 3)
    n_round = 4 * per + 3
    bound = n_round * 2.0**-24 / (1 - n_round * 2.0**-24) * magnitude
    assert (np.abs(dw - want) <= bound).all(), np.abs(dw - want).max()
    assert np.abs(dw - want).max() > 0   # the bound is exercised, not a sum that happened to be exact
    again = conv2d_wgrad_sm90(emu_ops(order="reverse", seed=9), x, dy, w_shape, stride, pad, dilation, splits=3)
    np.testing.assert_array_equal(again.view(np.uint32), dw.view(np.uint32))


def test_wgrad_sm90_splits_fill_two_waves_in_a_fixed_order():
    # ResNet-50's 3x3 64 -> 64 at 56 x 56, batch 32: 9 output tiles, 1568 pixel tiles -> 29 splits of 55 (261 CTAs,
    # 2 waves of 132; 30 would start a third)
    assert wgrad_sm90_splits(9, 1568) == (29, 55)
    assert wgrad_sm90_splits(400, 1568) == (1, 1568)        # enough CTAs already: one split
    assert wgrad_sm90_splits(1, 6) == (1, 6)                # under 4 pixel tiles per split: no split
    assert wgrad_sm90_splits(1, 10**6) == (264, 3788)       # one tile: 264 CTAs (2 waves)
    assert wgrad_sm90_splits(9, 1568, force=7) == (7, 224)
    for out_tiles, pix in [(9, 1568), (2, 100), (36, 49)]:
        splits, per = wgrad_sm90_splits(out_tiles, pix)
        assert (splits - 1) * per < pix <= splits * per     # every split reduces at least one pixel tile


def test_conv2d_wgrad_sm90_explain_names_the_kernel_and_splits():
    problem = PROBLEMS[0]                                         # 126 pixels: 2 or more pixel tiles
    x, dy, x64, dy64, w_shape, pad = setup(problem, "f16", np.random.default_rng(6))
    ex = explain(conv2d_wgrad_sm90, emu_ops(), x, dy, w_shape, problem[7], problem[8], problem[9], splits=2)
    assert any("sm_90a wgmma conv2d wgrad" in e.text and "in the emulator" in e.text and "2 split(s)" in e.text
               for e in ex.events if e.kind == "note"), [e.text for e in ex.events]
    np.testing.assert_array_equal(ex.result, reference(x64, dy64, w_shape, problem[7], pad, problem[9]).astype(np.float32))


def test_conv2d_wgrad_sm90_can_implement_says_why_not():
    ops = emu_ops()
    x, dy = np.zeros((1, 8, 8, 16), np.uint16), np.zeros((1, 6, 6, 8), np.uint16)
    assert conv2d_wgrad_sm90_can_implement(ops, x, dy, (3, 3, 16, 8))[0]
    cases = [
        (np.zeros((1, 8, 8, 12), np.uint16), dy, (3, 3, 12, 8), {}, "C=12 is not a multiple of 8"),
        (x, np.zeros((1, 6, 6, 12), np.uint16), (3, 3, 16, 12), {}, "K=12 is not a multiple of 8"),
        (x.astype(np.float32), dy.astype(np.float32), (3, 3, 16, 8), {}, "x is float32; the kernel takes float16"),
        (x, dy.astype(np.float16), (3, 3, 16, 8), {}, "x is uint16 but dy is float16"),
        (np.zeros((1, 40, 40, 16), np.uint16), np.zeros((1, 5, 38, 8), np.uint16), (3, 3, 16, 8), {"stride": (9, 1)},
         r"stride \(9, 1\) exceeds 8"),
        (np.zeros((1, 8, 8, 32), np.uint16), dy, (3, 3, 16, 8), {"groups": 2}, "groups=2"),
    ]
    for xi, dyi, w_shape, kw, why in cases:
        ok, reason = conv2d_wgrad_sm90_can_implement(ops, xi, dyi, w_shape, **kw)
        assert not ok and re.search(why, reason), (why, reason)
    buf = np.zeros(8 * 8 * 16 + 8, np.uint16)
    start = (-buf.ctypes.data // 2) % 8 + 2                    # 4 bytes past a 16-byte boundary
    unaligned = buf[start:start + 8 * 8 * 16].reshape(1, 8, 8, 16)
    with pytest.raises(ValueError, match="cannot run this problem: x or dy is not 16-byte aligned"):
        conv2d_wgrad_sm90(ops, unaligned, dy, (3, 3, 16, 8))
    ops.sm90_target = lambda: None
    ok, reason = conv2d_wgrad_sm90_can_implement(ops, x, dy, (3, 3, 16, 8))
    assert not ok and "not sm_90" in reason


def test_conv2d_wgrad_sm90_bad_arguments():
    ops = emu_ops()
    x, dy = np.zeros((1, 8, 8, 16), np.uint16), np.zeros((1, 6, 6, 8), np.uint16)
    with pytest.raises(ValueError, match=r"dy has shape \(1, 6, 5, 8\), expected \(1, 6, 6, 8\)"):
        conv2d_wgrad_sm90(ops, x, dy[:, :, :5], (3, 3, 16, 8))
    with pytest.raises(ValueError, match="expected NHWC x and dy and an"):
        conv2d_wgrad_sm90(ops, x[0], dy, (3, 3, 16, 8))
    with pytest.raises(ValueError, match="splits must be a positive integer, got 0"):
        conv2d_wgrad_sm90(ops, x, dy, (3, 3, 16, 8), splits=0)


def notes(report):
    return " | ".join(e.text for e in report.events if e.kind == "note")


@pytest.mark.parametrize("prec", ["bf16", "fp16"])
def test_wgrad_routes_to_the_sm90_kernel_under_a_precision_policy(prec):
    """conv2d_wgrad(precision=...) reaches the sm_90a wgrad through conv2d_wgrad_tensor_core: exact against the
    reference's own rounding of the operands (small integers)."""
    problem = PROBLEMS[3]
    n, h, w, c, k, r, s, stride, padding, dilation = problem
    rng = np.random.default_rng(11)
    pad = resolve_padding(padding, (h, w), (r, s), stride, dilation)
    p, q = conv_output_hw((h, w), (r, s), stride, pad, dilation)
    x, dy = rng.integers(-3, 4, (n, h, w, c)).astype(np.float32), rng.integers(-3, 4, (n, p, q, k)).astype(np.float32)
    ops = emu_ops()
    ops.sm90_conv_min_tiles = 0
    report = explain(lambda: ops.conv2d_wgrad(x, dy, (r, s, c, k), stride, pad, dilation, 1, precision=prec))
    assert [name.split("<")[0] for name in report.kernels].count("fc::conv2d_wgrad_wgmma_sm90") == 1, report.kernels
    assert "sm_90a wgmma + TMA conv wgrad (MN-major pixel boxes, fixed-order split-k) in the emulator" in notes(report)
    np.testing.assert_array_equal(report.result, ref.conv2d_wgrad(x, dy, (r, s, c, k), stride, pad, dilation, 1,
                                                                  precision=prec))


@pytest.mark.parametrize("case,why", [
    ("c12", "C=12 or K=16 is not a multiple of 8"),
    ("float32", "operands are float32"),
    ("groups", "groups=2 (the sm_90a wgrad takes groups == 1)"),
    ("few_tiles", "too few to fill the GPU (under 264)"),
    ("not_sm90", "the device is not sm_90"),
])
def test_wgrad_falls_back_to_mma_sync_with_the_reason(case, why):
    rng = np.random.default_rng(2)
    c, k, groups, dtype = (12 if case == "c12" else 16), 16, (2 if case == "groups" else 1), np.float16
    if case == "float32":
        dtype = np.float32
    x = rng.integers(-3, 4, (2, 6, 6, c)).astype(dtype)
    dy = rng.integers(-3, 4, (2, 6, 6, k)).astype(dtype)
    ops = emu_ops()
    ops.sm90_conv_min_tiles = 264 if case == "few_tiles" else 0
    if case == "not_sm90":
        ops.sm90_target = lambda: None
    report = explain(lambda: ops.conv2d_wgrad_tensor_core(x, dy, (3, 3, c // groups, k), (1, 1), ((1, 1), (1, 1)),
                                                          (1, 1), groups))
    assert "mma.sync tensor-op wgrad instead of the sm_90a kernel: " in notes(report) and why in notes(report), \
        notes(report)
    assert not any(name.startswith("fc::conv2d_wgrad_wgmma_sm90") for name in report.kernels)


def test_wgrad_route_counts_the_split_ctas():
    """A 3x3 512 -> 256 at 7 x 7, batch 32: 4 x 2 x 9 = 72 tiles, 25 pixel tiles of 64 -> up to 6 splits of 4
    (enough); at batch 1 one pixel tile: 72 CTAs (too few for the default 132, one per SM; fine for 0)."""
    assert sm90_wgrad_route((32, 7, 7, 512), (3, 3, 512, 256), (1, 1), ((1, 1), (1, 1)), 1, np.uint16)[0] == "conv"
    route, why = sm90_wgrad_route((1, 7, 7, 512), (3, 3, 512, 256), (1, 1), ((1, 1), (1, 1)), 1, np.uint16)
    assert route == "tensor_op" and "72 tiles of 128x128 (C x K per tap) in at most 1 split(s)" in why
    assert sm90_wgrad_route((1, 7, 7, 512), (3, 3, 512, 256), (1, 1), ((1, 1), (1, 1)), 1, np.uint16, 0)[0] == "conv"


@every_suite_conv("suite,problem")
def test_conv2d_wgrad_sm90_runs_every_resnet50_and_vgg16_conv(suite, problem):
    """Every conv of the ResNet-50 and VGG-16 suites at batch 1 (224 x 224), bf16 integers in [-1, 1] (sums of
    at most 112^2 * 1 products: exact), or the reason can_implement gives for the stems with C = 3. Opt-in:
    FASTCONV_EMU_SUITES=1 python -m pytest -n 2 -k every_resnet50 tests/kernels/test_conv2d_wgrad_sm90.py."""
    n, h, w, c, k, r, s = 1, problem["H"], problem["W"], problem["C"], problem["K"], problem["R"], problem["S"]
    stride, padding, dilation = tuple(problem["stride"]), tuple(map(tuple, problem["padding"])), tuple(problem["dilation"])
    p, q = conv_output_hw((h, w), (r, s), stride, padding, dilation)
    rng = np.random.default_rng(c * k + h)
    x = float32_to_bf16_bits(np, rng.integers(-1, 2, (n, h, w, c)).astype(np.float32))
    dy = float32_to_bf16_bits(np, rng.integers(-1, 2, (n, p, q, k)).astype(np.float32))
    ops = emu_ops(poison=False)
    ok, why = conv2d_wgrad_sm90_can_implement(ops, x, dy, (r, s, c, k), stride, padding, dilation)
    if c % 8:
        assert not ok and f"C={c} is not a multiple of 8" in why
        return
    dw = conv2d_wgrad_sm90(ops, x, dy, (r, s, c, k), stride, padding, dilation)
    x64, dy64 = (bf16_bits_to_float32(np, v).astype(np.float64) for v in (x, dy))
    np.testing.assert_array_equal(dw, reference(x64, dy64, (r, s, c, k), stride, padding, dilation).astype(np.float32))


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["bf16", "f16"])
@pytest.mark.parametrize("problem", [PROBLEMS[0], PROBLEMS[2], (8, 56, 56, 64, 64, 3, 3, (1, 1), "same", (1, 1)),
                                     (8, 28, 28, 256, 512, 3, 3, (2, 2), "same", (1, 1))])
def test_conv2d_wgrad_sm90_on_h100(kind, problem):
    """On an sm_90 GPU through the jit backend (NVRTC sm_90a): the emulator's bound doubled, allowing per k16
    step one rounding of the 16-product sum (not exact in the tensor core) besides the accumulator's; two runs
    give the same bits."""
    cupy, jit = hopper_jit()
    stride, dilation = problem[7], problem[9]
    x, dy, x64, dy64, w_shape, pad = setup(problem, kind, np.random.default_rng(0), integers=False)
    ops = jit._ops()
    xd, dyd = cupy.asarray(x), cupy.asarray(dy)
    ok, why = conv2d_wgrad_sm90_can_implement(ops, xd, dyd, w_shape, stride, pad, dilation)
    assert ok, why
    dw = cupy.asnumpy(conv2d_wgrad_sm90(ops, xd, dyd, w_shape, stride, pad, dilation))
    again = cupy.asnumpy(conv2d_wgrad_sm90(ops, xd, dyd, w_shape, stride, pad, dilation))
    np.testing.assert_array_equal(again.view(np.uint32), dw.view(np.uint32))
    want = reference(x64, dy64, w_shape, stride, pad, dilation)
    n_round = 4 * pixel_tiles(problem, pad) + 64      # k16 steps of the longest split, at most 64 partials
    bound = n_round * 2.0**-24 * reference(np.abs(x64), np.abs(dy64), w_shape, stride, pad, dilation)
    assert (np.abs(dw - want) <= 2 * bound).all(), np.abs(dw - want).max()
