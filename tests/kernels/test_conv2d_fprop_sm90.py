"""The sm_90a conv2d fprop (csrc/conv/conv2d_fprop_wgmma_sm90.h: a 4-D TMA box of NHWC per filter tap with
element strides and zero fill, a 3-D box of KRSC filters, warp-specialized wgmma) through its plan
(fastconv/backends/plans/conv2d_sm90.py), run by the CPU emulator against the NumPy reference:

- small integers in [-3, 3]: exact (every product and fp32 sum exact), on one curated problem list: partial
  tiles in M (N*P*Q), N (K filters) and K (C not a multiple of 64), padding on every side and larger than
  the stride, strides 1-3 (also unequal), dilation, 'same' padding, 1x1 and 7x7 filters, several images per
  tile; with poison_async (a TMA destination read before its mbarrier completes is NaN) and the output
  prefilled with NaN (an element the epilogue misses stays NaN), in forward, reverse and random order;
- random floats: within the fp32 rounding bound of the emulated wgmma (one rounding per k16 step);
- every tile (128x128, 64x128 and 64x64: one consumer warpgroup) on the exact list, BN 256;
- the tile rule (choose_tile) on ResNet-50 layers, its explain note, the knob and a tuning-file entry over it;
- bias + residual + activation + 16-bit output, can_implement's reasons and the plan's argument errors.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import every_suite_conv, hopper_jit, nan_filled_sm90_ops
from fastconv.backends import tuning
from fastconv.backends.kernel_table import kernel_name
from fastconv.backends.plans.conv2d_sm90 import (choose_tile, conv2d_fprop_sm90, conv2d_fprop_sm90_can_implement,
                                                 conv2d_fprop_sm90_kernel_names, conv_tiles, pixel_tile)
from fastconv.backends.plans.gemm import wgmma_shared_bytes
from fastconv.backends.plans.tensor_op import bf16_bits_to_float32, float32_to_bf16_bits
from fastconv.backends.reference.conv import conv2d_fprop as reference_conv
from fastconv.explain import explain
from fastconv.shapes import resolve_padding

CT = {"bf16": "__nv_bfloat16", "f16": "__half"}
TILES = [(128, 128), (64, 128), (64, 64)]   # (BM, BN); 128x256 below


def launch_name(kind, bm, bn, out="float"):
    return kernel_name("conv2d_fprop_wgmma_sm90", bn=bn, stages=4, bm=bm, t=CT[kind], out=out)


def emu_ops(order="random", poison=True, seed=1):
    return nan_filled_sm90_ops(conv2d_fprop_sm90_kernel_names(), order, poison, seed)


def operands(kind, x_shape, w_shape, rng, integers=True):
    """(x, w) in the kernel's dtype and their float64 values."""
    draw = (lambda s: rng.integers(-3, 4, s)) if integers else rng.standard_normal
    x, w = draw(x_shape).astype(np.float32), draw(w_shape).astype(np.float32)
    if kind == "f16":
        x16, w16 = x.astype(np.float16), w.astype(np.float16)
        return x16, w16, x16.astype(np.float64), w16.astype(np.float64)
    x16, w16 = float32_to_bf16_bits(np, x), float32_to_bf16_bits(np, w)
    return x16, w16, bf16_bits_to_float32(np, x16).astype(np.float64), bf16_bits_to_float32(np, w16).astype(np.float64)


def reference(x64, w64, stride, padding, dilation):
    pad = resolve_padding(padding, x64.shape[1:3], w64.shape[:2], stride, dilation)
    return reference_conv(x64, w64, stride, pad, dilation)


# (N, H, W, C, K, R, S, stride, padding, dilation): one or two tiles each (the emulated wgmma is slow).
PROBLEMS = [
    (2, 9, 7, 72, 136, 3, 3, (1, 1), ((1, 1), (1, 1)), (1, 1)),   # partial M, N (136 = 128 + 8), K (72 = 64 + 8)
    (1, 11, 10, 16, 24, 3, 3, (2, 2), ((2, 1), (0, 3)), (1, 1)),  # asymmetric padding, 2 > stride on top
    (2, 10, 11, 8, 16, 3, 2, (3, 2), ((1, 2), (2, 1)), (1, 1)),   # strides 3 x 2, padding on every side
    (1, 12, 12, 24, 40, 3, 3, (1, 1), ((2, 2), (2, 2)), (2, 2)),  # dilation 2
    (1, 13, 9, 16, 8, 3, 3, (2, 2), "same", (1, 1)),              # TF 'same' at stride 2 (pads bottom/right more)
    (3, 8, 8, 64, 72, 1, 1, (2, 2), "valid", (1, 1)),             # 1x1 stride 2 (ResNet downsample)
    (1, 14, 14, 8, 16, 7, 7, (2, 2), ((3, 3), (3, 3)), (1, 1)),   # 7x7 stem shape, 49 taps: the ring wraps
    (5, 3, 3, 16, 8, 3, 3, (1, 1), ((1, 1), (1, 1)), (1, 1)),     # several images in one pixel tile
]
IDS = [f"n{p[0]}h{p[1]}w{p[2]}c{p[3]}k{p[4]}r{p[5]}s{p[6]}st{p[7][0]}{p[7][1]}d{p[9][0]}" for p in PROBLEMS]


@pytest.mark.parametrize("tile", TILES, ids=[f"{m}x{n}" for m, n in TILES])
@pytest.mark.parametrize("kind", ["bf16", "f16"])
@pytest.mark.parametrize("problem", PROBLEMS, ids=IDS)
def test_conv2d_fprop_sm90_exact_on_small_integers(kind, problem, tile):
    n, h, w, c, k, r, s, stride, padding, dilation = problem
    bm, bn = tile
    rng = np.random.default_rng(n * h * w + c + k)
    x, wt, x64, w64 = operands(kind, (n, h, w, c), (r, s, c, k), rng)
    ops = emu_ops()
    y = conv2d_fprop_sm90(ops, x, wt, stride, padding, dilation, bm=bm, bn=bn)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, reference(x64, w64, stride, padding, dilation).astype(np.float32))
    (name, grid, block, shared), = ops.launched
    assert name == launch_name(kind, bm, bn)
    assert block == ({128: 384, 64: 256}[bm],) and shared == 4 * (bm + bn) * 64 * 2 + 1024
    p, q = y.shape[1:3]
    tq, tp, tn = pixel_tile(n, p, q, stride, bm)
    assert tq * tp * tn == bm and grid == (-(-k // bn), -(-q // tq) * -(-p // tp) * -(-n // tn))


@pytest.mark.parametrize("tile", [(128, 128), (64, 128)], ids=["128x128", "64x128"])
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_conv2d_fprop_sm90_thread_orders(order, tile):
    n, h, w, c, k, r, s, stride, padding, dilation = PROBLEMS[1]
    rng = np.random.default_rng(3)
    x, wt, x64, w64 = operands("bf16", (n, h, w, c), (r, s, c, k), rng)
    y = conv2d_fprop_sm90(emu_ops(order=order, poison=False), x, wt, stride, padding, dilation, bm=tile[0], bn=tile[1])
    np.testing.assert_array_equal(y, reference(x64, w64, stride, padding, dilation).astype(np.float32))


def test_conv2d_fprop_sm90_bn256_with_partial_filter_tile_and_krsc_weights():
    rng = np.random.default_rng(8)
    x, wt, x64, w64 = operands("bf16", (1, 6, 5, 24), (3, 3, 24, 300), rng)
    ops = emu_ops()
    want = reference(x64, w64, (1, 1), "same", (1, 1)).astype(np.float32)
    np.testing.assert_array_equal(conv2d_fprop_sm90(ops, x, wt, (1, 1), "same", (1, 1), bn=256), want)
    krsc = np.ascontiguousarray(wt.transpose(3, 0, 1, 2))
    np.testing.assert_array_equal(conv2d_fprop_sm90(ops, x, krsc, (1, 1), "same", (1, 1), w_layout="krsc", bn=256),
                                  want)
    assert [name for name, *_ in ops.launched] == [launch_name("bf16", 128, 256)] * 2
    assert ops.launched[0][1:] == ((2, 1), (384,), wgmma_shared_bytes(256))   # K = 300: 2 tiles of 256
    with pytest.raises(ValueError, match=r"tile 128x256 \(bm x bn\); __half operands have \(\(128, 128\), \(64, 128\)"):
        conv2d_fprop_sm90(ops, x.view(np.uint16).astype(np.float16), wt.astype(np.float16), (1, 1), "same", (1, 1),
                          bn=256)


@pytest.mark.parametrize("kind", ["bf16", "f16"])
def test_conv2d_fprop_sm90_random_within_the_fp32_rounding_bound(kind):
    """Each k16 step of the emulated wgmma adds an exact product sum to the fp32 accumulator with one
    rounding: |error| <= steps * 2^-24 * (|x| conv |w|), steps = R * S * ceil(C / 16) (float64 oracle)."""
    n, h, w, c, k, r, s, stride, padding, dilation = PROBLEMS[0]
    rng = np.random.default_rng(21)
    x, wt, x64, w64 = operands(kind, (n, h, w, c), (r, s, c, k), rng, integers=False)
    y = conv2d_fprop_sm90(emu_ops(), x, wt, stride, padding, dilation)
    want = reference(x64, w64, stride, padding, dilation)
    magnitude = reference(np.abs(x64), np.abs(w64), stride, padding, dilation)
    bound = r * s * -(-c // 16) * 2.0**-24 * magnitude
    assert (np.abs(y - want) <= bound).all(), np.abs(y - want).max()
    assert np.abs(y - want).max() > 0   # the bound is exercised, not a sum that happened to be exact


@pytest.mark.parametrize("kind", ["bf16", "f16"])
def test_conv2d_fprop_sm90_bias_relu_and_16bit_output(kind):
    rng = np.random.default_rng(4)
    x = rng.integers(-1, 2, (2, 7, 6, 16)).astype(np.float32)    # |y| <= 144 + 3: exact in bf16 and fp16
    w = rng.integers(-1, 2, (3, 3, 16, 24)).astype(np.float32)
    bias = rng.integers(-3, 4, 24).astype(np.float32)
    want = np.maximum(reference(x.astype(np.float64), w.astype(np.float64), (1, 1), "same", (1, 1)) + bias, 0)
    if kind == "bf16":
        xs, ws, out = float32_to_bf16_bits(np, x), float32_to_bf16_bits(np, w), np.uint16
    else:
        xs, ws, out = x.astype(np.float16), w.astype(np.float16), np.float16
    ops = emu_ops()
    y = conv2d_fprop_sm90(ops, xs, ws, (1, 1), "same", (1, 1), bias=bias, activation="relu", out_dtype=out)
    assert y.dtype == out
    got = bf16_bits_to_float32(np, y) if kind == "bf16" else y.astype(np.float32)
    np.testing.assert_array_equal(got, want.astype(np.float32))
    assert ops.launched[0][0] == launch_name(kind, 64, 64, out=CT[kind])   # K = 24: the rule's 64x64


@pytest.mark.parametrize("out,res_dtype", [(np.float32, np.uint16), (np.uint16, np.float32), (np.float32, np.float32)])
def test_conv2d_fprop_sm90_residual_block(out, res_dtype):
    """act(conv + bias + residual), a ResNet block's add: the residual converted to y's dtype and added before
    the activation; small integers, so every output dtype is exact."""
    rng = np.random.default_rng(12)
    x = rng.integers(-1, 2, (2, 6, 7, 16)).astype(np.float32)
    w = rng.integers(-1, 2, (3, 3, 16, 16)).astype(np.float32)
    bias = rng.integers(-3, 4, 16).astype(np.float32)
    res = rng.integers(-20, 21, (2, 6, 7, 16)).astype(np.float32)
    want = np.maximum(reference(x.astype(np.float64), w.astype(np.float64), (1, 1), "same", (1, 1)) + bias + res, 0)
    ops = emu_ops()
    y = conv2d_fprop_sm90(ops, float32_to_bf16_bits(np, x), float32_to_bf16_bits(np, w), (1, 1), "same", (1, 1),
                          bias=bias, activation="relu", out_dtype=out,
                          residual=float32_to_bf16_bits(np, res) if res_dtype == np.uint16 else res)
    got = bf16_bits_to_float32(np, y) if out == np.uint16 else y
    np.testing.assert_array_equal(got, want.astype(np.float32))
    with pytest.raises(ValueError, match=r"residual has shape \(2, 6, 7\), expected the output's \(2, 6, 7, 16\)"):
        conv2d_fprop_sm90(ops, float32_to_bf16_bits(np, x), float32_to_bf16_bits(np, w), (1, 1), "same", (1, 1),
                          residual=res[..., 0])
    with pytest.raises(TypeError, match="residual must be float32 or the operand dtype uint16, got float16"):
        conv2d_fprop_sm90(ops, float32_to_bf16_bits(np, x), float32_to_bf16_bits(np, w), (1, 1), "same", (1, 1),
                          residual=res.astype(np.float16))


def test_conv2d_fprop_sm90_explain_names_the_kernel_and_tile():
    rng = np.random.default_rng(6)
    x, wt, x64, w64 = operands("f16", (1, 5, 5, 8), (1, 1, 8, 8), rng)
    ex = explain(conv2d_fprop_sm90, emu_ops(), x, wt)   # 1 tile, K = 8: tile 64x64; 5 x 5 fits one 8 x 8 box
    assert any("sm_90a wgmma conv2d fprop" in e.text and "in the emulator" in e.text and "8x8x1 output pixels" in e.text
               and "tile 64x64 (1 of 128x128, 1 of 64x64: under half of the 132 SMs each; the smallest tile)" in e.text
               for e in ex.events if e.kind == "note"), [e.text for e in ex.events]
    np.testing.assert_array_equal(ex.result, reference(x64, w64, (1, 1), "valid", (1, 1)).astype(np.float32))


def test_conv2d_fprop_sm90_can_implement_says_why_not():
    ops = emu_ops()
    x, w = np.zeros((1, 8, 8, 16), np.uint16), np.zeros((3, 3, 16, 8), np.uint16)
    assert conv2d_fprop_sm90_can_implement(ops, x, w)[0]
    cases = [
        (np.zeros((1, 8, 8, 12), np.uint16), np.zeros((3, 3, 12, 8), np.uint16), {}, "C=12 is not a multiple of 8"),
        (x.astype(np.float32), w.astype(np.float32), {}, "x is float32; the kernel takes float16 or bfloat16"),
        (x, w.astype(np.float16), {}, "x is uint16 but w is float16"),
        (x, w, {"out_dtype": np.float16}, "output float16 is neither float32 nor the operand type uint16"),
        (np.zeros((1, 40, 40, 16), np.uint16), w, {"stride": (9, 1)}, r"stride \(9, 1\) exceeds 8"),
        (np.zeros((1, 8, 8, 32), np.uint16), np.zeros((3, 3, 16, 8), np.uint16), {"groups": 2}, "groups=2"),
    ]
    for xi, wi, kw, why in cases:
        ok, reason = conv2d_fprop_sm90_can_implement(ops, xi, wi, **kw)
        assert not ok and re.search(why, reason), (why, reason)
    buf = np.zeros(8 * 8 * 16 + 8, np.uint16)
    start = (-buf.ctypes.data // 2) % 8 + 2                    # 4 bytes past a 16-byte boundary
    unaligned = buf[start:start + 8 * 8 * 16].reshape(1, 8, 8, 16)
    ok, reason = conv2d_fprop_sm90_can_implement(ops, unaligned, w)
    assert not ok and "not 16-byte aligned" in reason
    with pytest.raises(ValueError, match="cannot run this problem: x or w is not 16-byte aligned"):
        conv2d_fprop_sm90(ops, unaligned, w)
    ops.sm90_target = lambda: None
    ok, reason = conv2d_fprop_sm90_can_implement(ops, x, w)
    assert not ok and "not sm_90" in reason


def test_conv2d_fprop_sm90_bad_arguments():
    ops = emu_ops()
    x, w = np.zeros((1, 8, 8, 16), np.uint16), np.zeros((3, 3, 16, 8), np.uint16)
    with pytest.raises(ValueError, match=r"bias has shape \(3,\); expected \(8,\)"):
        conv2d_fprop_sm90(ops, x, w, bias=np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="activation 'gelu' is not one of"):
        conv2d_fprop_sm90(ops, x, w, activation="gelu")
    with pytest.raises(ValueError, match="w_layout must be 'rsck'"):
        conv2d_fprop_sm90(ops, x, w, w_layout="kcrs")
    with pytest.raises(ValueError, match="expected NHWC x and a 4-D filter"):
        conv2d_fprop_sm90(ops, x[0], w)
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv2d_fprop_sm90(ops, np.zeros((1, 2, 2, 16), np.uint16), w)


# (N, P, Q, stride, the fewest tiles of 128 pixels, counted by hand over the power-of-two boxes): 56 x 56
# by 64 x 2 (28, against 24.5 for a perfect cover); 8 x 7 x 7 in 4 (8 x 8 x 2 or 8 x 4 x 4); 112 x 112 at
# stride 3 (rows at most 85 wide) by 16 x 8 exactly; 32 1x1 images in one 1 x 1 x 128 box; at stride 8
# (boxes at most 32 pixels wide and high) 2 x 28 x 28 in 14 (32 x 4 x 1).
PIXEL_TILES = [(1, 56, 56, (1, 1), 28), (8, 7, 7, (1, 1), 4), (1, 112, 112, (3, 3), 98), (32, 1, 1, (1, 1), 1),
               (2, 28, 28, (8, 8), 14)]


@pytest.mark.parametrize("n,p,q,stride,tiles", PIXEL_TILES)
def test_pixel_tile_fits_tma_and_covers_with_the_fewest_tiles(n, p, q, stride, tiles):
    tq, tp, tn = pixel_tile(n, p, q, stride)
    assert tq * tp * tn == 128 and tq * stride[1] <= 256 and tp * stride[0] <= 256
    assert -(-q // tq) * -(-p // tp) * -(-n // tn) == tiles
    if (n, p, q) == (1, 56, 56):
        assert (tq, tp, tn) == (64, 2, 1)   # of the boxes with 28 tiles, the widest rows


@pytest.mark.parametrize("n,p,q,stride,tiles", [(32, 14, 14, (1, 1), 98), (1, 56, 56, (1, 1), 49), (4, 7, 7, (2, 2), 4)])
def test_pixel_tile_of_64_rows(n, p, q, stride, tiles):
    """64-pixel boxes: 32 x 14 x 14 in 2 x 2 x 16 boxes (98, a perfect cover), 56 x 56 in 64 x 1 rows (49),
    4 x 7 x 7 in 8 x 8 x 1 (4)."""
    tq, tp, tn = pixel_tile(n, p, q, stride, 64)
    assert tq * tp * tn == 64 and -(-q // tq) * -(-p // tp) * -(-n // tn) == tiles


# ResNet-50 layers at batch 32 (and 256): (N, P, Q, K, type) -> the tile and words of its reason, the counts by hand
# (half of 132 SMs: 66): res2 3x3: 25088 pixels / 128 = 196 of 128x128 (K = 64 keeps BN 128); res4 3x3 256: 6272 /
# 128 = 49 of 128x256, 98 of 128x128; res5 3x3 512: 32 x 7 x 7 in 14 boxes of 8 x 1 x 16 (x 2 = 28 of 128x256, x 4 =
# 56 of 128x128) or 28 of 8 x 1 x 8 (112 of 64x128); res5 at batch 256: 98 x 2 = 196 of 128x256; 2 x 9 x 9 with
# K = 32: 3 boxes of 16 x 4 x 2, 5 of 16 x 2 x 2 (64x64: K <= 64).
RULE = [((32, 28, 28, 64, "__nv_bfloat16"), (128, 128), "196 tiles of 128x128 occupy at least half of the 132 SMs"),
        ((32, 14, 14, 256, "__nv_bfloat16"), (128, 128), "98 tiles of 128x128 occupy at least half of the 132 SMs "
                                                         "(49 of 128x256 would not)"),
        ((32, 7, 7, 512, "__nv_bfloat16"), (64, 128), "112 tiles of 64x128 occupy at least half of the 132 SMs "
                                                      "(28 of 128x256, 56 of 128x128 would not)"),
        ((32, 7, 7, 512, "__half"), (64, 128), "(56 of 128x128 would not)"),
        ((256, 7, 7, 512, "__nv_bfloat16"), (128, 256), "196 tiles of 128x256 occupy at least half"),
        ((2, 9, 9, 32, "__half"), (64, 64), "3 of 128x128, 5 of 64x64: under half of the 132 SMs each; the smallest")]


@pytest.mark.parametrize("problem,tile,why", RULE)
def test_choose_tile_on_resnet50_layers(problem, tile, why):
    n, p, q, k, ct = problem
    bm, bn, reason = choose_tile(n, p, q, k, (1, 1), ct)
    assert (bm, bn) == tile and why in reason, reason
    assert (bm == 64) == (2 * conv_tiles(n, p, q, k, (1, 1), 128, 128) < 132)


def test_tuned_tile_overrides_the_rule_and_the_knob_overrides_both(tmp_path, monkeypatch):
    """A tuning-file entry (op conv2d_fprop_sm90, what `fastconv tune --dtype bfloat16` writes) replaces the rule's
    64x128 by 128x128, still exact; one for a tile the type lacks is ignored with a note; force_sm90_conv_tile wins."""
    path = tmp_path / "tuning.json"
    monkeypatch.setenv(tuning.ENV, str(path))
    n, h, w, c, k, r, s, stride, padding, dilation = PROBLEMS[0]
    x, wt, x64, w64 = operands("bf16", (n, h, w, c), (r, s, c, k), np.random.default_rng(5))
    want = reference(x64, w64, stride, padding, dilation).astype(np.float32)
    problem = tuning.conv_problem(x.shape, wt.shape, stride, padding, dilation, 1)
    tf = tuning.TuningFile(path)
    tf.put(tuning.EMULATOR_DEVICE, "conv2d_fprop_sm90", "bfloat16", problem, {"tile": "128x128"}, real=False)
    tf.put(tuning.EMULATOR_DEVICE, "conv2d_fprop_sm90", "float16", problem, {"tile": "128x256"}, real=False)
    tf.save()
    ops = emu_ops()
    ops.tuning_device = tuning.EMULATOR_DEVICE
    report = explain(conv2d_fprop_sm90, ops, x, wt, stride, padding, dilation)
    np.testing.assert_array_equal(report.result, want)
    assert ops.launched[-1][0] == launch_name("bf16", 128, 128)
    assert "tile 128x128 from tuning file" in str(report) and "tile 128x128 (tile from the tuning file)" in str(report)
    report = explain(conv2d_fprop_sm90, ops, x64.astype(np.float16), w64.astype(np.float16), stride, padding, dilation)
    np.testing.assert_array_equal(report.result, want)
    assert ops.launched[-1][0] == launch_name("f16", 64, 128)   # the rule: the smallest tile, under half the SMs
    assert "tuned tile '128x256' ignored (not valid here" in str(report)
    ops.force_sm90_conv_tile = (64, 64)
    np.testing.assert_array_equal(conv2d_fprop_sm90(ops, x, wt, stride, padding, dilation), want)
    assert ops.launched[-1][0] == launch_name("bf16", 64, 64)


@every_suite_conv("suite,problem")
def test_conv2d_fprop_sm90_runs_every_resnet50_and_vgg16_conv(suite, problem):
    """Every conv of the ResNet-50 and VGG-16 suites at batch 1 (224 x 224), bf16 integers in [-2, 2] (sums
    below 2^24: exact), or the reason can_implement gives for the stems with C = 3. Opt-in (minutes of
    emulated wgmma on 2 cores): FASTCONV_EMU_SUITES=1 python -m pytest -n 2 -k every_resnet50."""
    n, h, w, c, k, r, s = 1, problem["H"], problem["W"], problem["C"], problem["K"], problem["R"], problem["S"]
    stride, padding, dilation = tuple(problem["stride"]), tuple(map(tuple, problem["padding"])), tuple(problem["dilation"])
    rng = np.random.default_rng(c * k + h)
    x = float32_to_bf16_bits(np, rng.integers(-2, 3, (n, h, w, c)).astype(np.float32))
    wt = float32_to_bf16_bits(np, rng.integers(-2, 3, (r, s, c, k)).astype(np.float32))
    ops = emu_ops(poison=False)
    ok, why = conv2d_fprop_sm90_can_implement(ops, x, wt, stride, padding, dilation)
    if c % 8:
        assert not ok and f"C={c} is not a multiple of 8" in why
        return
    y = conv2d_fprop_sm90(ops, x, wt, stride, padding, dilation)
    x64, w64 = (bf16_bits_to_float32(np, v).astype(np.float64) for v in (x, wt))
    np.testing.assert_array_equal(y, reference(x64, w64, stride, padding, dilation).astype(np.float32))


@pytest.mark.gpu
@pytest.mark.parametrize("kind", ["bf16", "f16"])
@pytest.mark.parametrize("problem", [PROBLEMS[0], PROBLEMS[2], (8, 56, 56, 64, 64, 3, 3, (1, 1), "same", (1, 1)),
                                     (8, 28, 28, 256, 512, 3, 3, (2, 2), "same", (1, 1))])
def test_conv2d_fprop_sm90_on_h100(kind, problem):
    """On an sm_90 GPU through the jit backend (NVRTC sm_90a): the emulator's bound doubled, allowing per k16
    step one rounding of the 16-product sum (not exact in the tensor core) besides the accumulator's."""
    cupy, jit = hopper_jit()
    n, h, w, c, k, r, s, stride, padding, dilation = problem
    rng = np.random.default_rng(0)
    x, wt, x64, w64 = operands(kind, (n, h, w, c), (r, s, c, k), rng, integers=False)
    ops = jit._ops()
    ok, why = conv2d_fprop_sm90_can_implement(ops, cupy.asarray(x), cupy.asarray(wt), stride, padding, dilation)
    assert ok, why
    y = cupy.asnumpy(conv2d_fprop_sm90(ops, cupy.asarray(x), cupy.asarray(wt), stride, padding, dilation))
    want = reference(x64, w64, stride, padding, dilation)
    bound = r * s * -(-c // 16) * 2.0**-24 * reference(np.abs(x64), np.abs(w64), stride, padding, dilation)
    assert (np.abs(y - want) <= 2 * bound).all(), np.abs(y - want).max()
