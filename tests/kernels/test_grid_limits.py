"""CUDA's grid limits (x <= 2^31 - 1, y and z <= 65535) on every GEMM-shaped launch of the plans
(fastconv/backends/plans/): a kernel's tiles go on grid.x when its y or z count would exceed 65535
(common.tile_grid), and the kernel decodes its tile from either grid (fc::block_tile, csrc/common/index.h).

- Every such launch site, walked with shapes whose tiles exceed grid.y or grid.z, through a launcher that
  records the launches instead of running them (the emulator cannot run 65536 blocks of a GEMM quickly):
  every grid is within the limits and holds every tile.
- The emulator runs the folded grids (knob max_grid_yz=1 folds any launch with more than one tile on y
  or z) on small shapes against the NumPy reference, exactly (small integers).
- A grid no plan can map is a clear error naming the kernel, not a failed launch.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from conftest import assert_same, emulated_ops
from fastconv.backends import reference as ref
from fastconv.backends.plans.common import MAX_GRID_X, MAX_GRID_YZ, tile_grid
from fastconv.explain import explain

VALID = ((0, 0), (0, 0))


def recording_ops():
    from fastconv.backends.plans.kernel_ops import KernelOps
    launched = []
    ops = KernelOps(np, lambda kernel, grid, block, args, shared_bytes=0, keep_alive=None:
                    launched.append((kernel, tuple(grid))), lambda a: int(a.ctypes.data))
    return ops, launched


def z(shape, dtype=np.float32):
    return np.zeros(shape, dtype)   # untouched pages: the large ones cost address space only


# (what, call(ops), kernel-name prefix, tiles (x, y, z) counted by hand from the shape and the tile)
N_SMALL = 65535 * 32 + 1           # > 65535 TileSmall columns (BN 32)
N_TENSOR = 65535 * 64 + 64          # > 65535 Tile64 columns (BN 64)
N_TENSOR128 = 65535 * 128 + 128     # > 65535 Tile128 columns (BN 128; a GEMM this wide gets Tile128)
M_WGMMA = 65535 * 128 + 128         # > 65535 wgmma rows (BM 128)
GROUPS = 65536                      # > 65535 groups on grid.z
EXTREME = [
    ("gemm N on grid.y", lambda o: o.gemm(z((1, 4)), z((4, N_SMALL))), "fc::gemm_bias_act<fc::TileSmall",
     (1, 65536, 1)),
    ("gemm (dense dgrad, B transposed) N on grid.y", lambda o: o.gemm(z((1, 4)), z((N_SMALL, 4)), trans_b=True),
     "fc::gemm_bias_act<fc::TileSmall", (1, 65536, 1)),
    ("gemm_tensor_op N on grid.y",
     lambda o: o.gemm_tensor_op(z((1, 8), np.float16), z((8, N_TENSOR128), np.float16)),
     "fc::gemm_tensor_op<fc::TensorOpF16Tile128", (1, 65536, 1)),
    ("gemm_wgmma M on grid.y", lambda o: o.gemm_wgmma(z((M_WGMMA, 8), np.float16), z((8, 8), np.float16)),
     "fc::gemm_wgmma<", (1, 65536, 1)),
    ("conv2d_fprop groups on grid.z",
     lambda o: o.conv2d_fprop(z((1, 1, 1, 2 * GROUPS)), z((1, 1, 2, GROUPS)), groups=GROUPS),
     "fc::conv2d_fprop_implicit_gemm<", (1, 1, GROUPS)),
    ("conv2d_fprop K on grid.y", lambda o: o.conv2d_fprop(z((1, 1, 1, 2)), z((1, 1, 2, N_SMALL))),
     "fc::conv2d_fprop_implicit_gemm<fc::TileSmall", (1, 65536, 1)),
    ("conv2d_dgrad groups on grid.z",
     lambda o: o.conv2d_dgrad(z((1, 1, 1, GROUPS)), z((1, 1, 2, GROUPS)), (1, 1, 1, 2 * GROUPS), (1, 1), VALID,
                              (1, 1), GROUPS), "fc::conv2d_dgrad_implicit_gemm<", (1, 1, GROUPS)),
    ("conv2d_dgrad stride phases x groups on grid.z",
     lambda o: o.conv2d_dgrad(z((1, 1, 1, 16384)), z((1, 1, 2, 16384)), (1, 2, 2, 32768), (2, 2), VALID, (1, 1),
                              16384), "fc::conv2d_dgrad_strided_implicit_gemm<", (1, 1, 4 * 16384)),
    ("conv2d_wgrad groups on grid.z",
     lambda o: o.conv2d_wgrad(z((1, 1, 1, 2 * GROUPS)), z((1, 1, 1, GROUPS)), (1, 1, 2, GROUPS), (1, 1), VALID,
                              (1, 1), GROUPS), "fc::conv2d_wgrad_implicit_gemm<", (1, 1, GROUPS)),
    ("conv2d_wgrad depthwise R*S on grid.y",
     lambda o: o.conv2d_wgrad(z((1, 256, 256, 1)), z((1, 1, 1, 1)), (256, 256, 1, 1), (1, 1), VALID, (1, 1), 1),
     "fc::conv2d_wgrad_depthwise<", (1, 65536, 1)),
    ("fused conv + 2x2 pool groups on grid.z",
     lambda o: o.conv2d_bias_relu_maxpool_fprop(z((1, 2, 2, 2 * GROUPS)), z((1, 1, 2, GROUPS)), None,
                                                groups=GROUPS), "fc::conv2d_bias_relu_maxpool2x2_fprop<",
     (1, 1, GROUPS)),
    ("fused conv + 3x3/2 pool groups on grid.z",
     lambda o: o.conv2d_bias_relu_maxpool_fprop(z((1, 3, 3, 2 * GROUPS)), z((1, 1, 2, GROUPS)), None,
                                                groups=GROUPS, pool=(3, 3)),
     "fc::conv2d_bias_relu_maxpool3x3s2_fprop<", (1, 1, GROUPS)),
    ("conv2d_fprop_tensor_op K on grid.y",
     lambda o: o.conv2d_fprop_tensor_op(z((1, 1, 1, 8), np.float16), z((1, 1, 8, N_TENSOR), np.float16)),
     "fc::conv2d_fprop_tensor_op<", (1, 65536, 1)),
    ("conv2d_dgrad_tensor_op C on grid.y",
     lambda o: o.conv2d_dgrad_tensor_op(z((1, 1, 1, 8), np.float16), z((1, 1, N_TENSOR, 8), np.float16),
                                        (1, 1, 1, N_TENSOR), (1, 1), VALID, (1, 1), 1),
     "fc::conv2d_dgrad_tensor_op<", (1, 65536, 1)),
    ("conv2d_dgrad_tensor_op stride phases on grid.z",
     lambda o: o.conv2d_dgrad_tensor_op(z((1, 1, 1, 8), np.float16), z((1, 1, 8, 8), np.float16),
                                        (1, 256, 256, 8), (256, 256), VALID, (1, 1), 1),
     "fc::conv2d_dgrad_strided_tensor_op<", (1, 1, 65536)),
    ("conv2d_wgrad_tensor_op K on grid.y",
     lambda o: o.conv2d_wgrad_tensor_op(z((1, 1, 1, 8), np.float16), z((1, 1, 1, N_TENSOR), np.float16),
                                        (1, 1, 8, N_TENSOR), (1, 1), VALID, (1, 1), 1),
     "fc::conv2d_wgrad_tensor_op<", (1, 65536, 1)),
]


@pytest.mark.parametrize("what,call,kernel,tiles", EXTREME, ids=[e[0] for e in EXTREME])
def test_every_launch_fits_the_grid_limits(what, call, kernel, tiles):
    ops, launched = recording_ops()
    call(ops)
    assert launched, what
    for name, grid in launched:
        dims = grid + (1,) * (3 - len(grid))
        assert 1 <= dims[0] <= MAX_GRID_X and 1 <= dims[1] <= MAX_GRID_YZ and 1 <= dims[2] <= MAX_GRID_YZ, \
            f"{what}: {name} launched with grid {dims}"
    gemm = [(name, grid) for name, grid in launched if name.startswith(kernel)]
    assert len(gemm) == 1, f"{what}: expected one {kernel}... launch, got {launched}"
    assert math.prod(gemm[0][1]) == math.prod(tiles), f"{what}: grid {gemm[0][1]} does not hold the {tiles} tiles"


def test_tile_grid_keeps_grids_that_fit_and_folds_the_others():
    assert tile_grid(70000, 65535, 65535) == (70000, 65535, 65535)
    assert tile_grid(70000, 65535) == (70000, 65535)
    assert tile_grid(3, 65536) == (3 * 65536, 1)
    assert tile_grid(3, 2, 65536) == (6 * 65536, 1, 1)
    assert tile_grid(3, 2, 2, max_yz=1) == (12, 1, 1)


def test_a_grid_no_plan_can_map_is_a_clear_error():
    """The check in front of every executor: column_reduce_partial's split count is grid.y (the knob forces
    more splits than grid.y holds)."""
    ops, launched = recording_ops()
    ops.force_splits = 70000
    with pytest.raises(ValueError, match=r"fc::column_reduce_partial<float>: grid \(1, 70000, 1\) has y = 70000, "
                                         r"outside CUDA's limit \[1, 65535\]"):
        ops.bias_grad(z((70000, 8)))
    assert launched == []


# ---- the folded grids, run by the emulator ---------------------------------------------------------
def ints(rng, shape, dtype=np.float32):
    return rng.integers(-3, 4, shape).astype(dtype)


def folded(report):
    """The kernels that ran with every tile on grid.x (and more than one tile)."""
    return [e.text for e in report.events if e.kind == "kernel" and set(e.detail["grid"][1:]) == {1}
            and e.detail["grid"][0] > 1]


def run_folded(fn, kernel):
    report = explain(fn)
    grids = [(e.text, e.detail["grid"]) for e in report.events if e.kind == "kernel"]
    assert any(k.startswith(kernel) for k in folded(report)), f"{kernel} did not run on a folded grid: {grids}"
    return report.result


CONV = dict(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1))


def test_folded_cuda_core_gemm_and_conv_match_the_reference(rng):
    ops = emulated_ops("reverse", max_grid_yz=1)
    a, b = ints(rng, (40, 12)), ints(rng, (12, 70))
    assert_same(run_folded(lambda: ops.gemm(a, b), "fc::gemm_bias_act<"), a @ b, True, what="gemm")
    assert_same(run_folded(lambda: ops.gemm(a, b.T.copy(), trans_b=True), "fc::gemm_bias_act<"), a @ b, True,
                what="gemm trans_b")
    x, w = ints(rng, (2, 6, 6, 8)), ints(rng, (3, 3, 4, 80))   # groups 2: 40 columns each, 2 tiles of 32
    args = (CONV["stride"], CONV["padding"], CONV["dilation"], 2)
    y = run_folded(lambda: ops.conv2d_fprop(x, w, *args), "fc::conv2d_fprop_implicit_gemm<")
    assert_same(y, ref.conv2d_fprop(x, w, *args), True, what="conv2d_fprop")
    dy = ints(rng, y.shape)
    dx = run_folded(lambda: ops.conv2d_dgrad(dy, w, x.shape, *args), "fc::conv2d_dgrad_implicit_gemm<")
    assert_same(dx, ref.conv2d_dgrad(dy, w, x.shape, *args), True, what="conv2d_dgrad")
    ops.force_splits = 2
    dw = run_folded(lambda: ops.conv2d_wgrad(x, dy, w.shape, *args), "fc::conv2d_wgrad_implicit_gemm<")
    assert_same(dw, ref.conv2d_wgrad(x, dy, w.shape, *args), True, what="conv2d_wgrad")


def test_folded_strided_dgrad_and_depthwise_wgrad_match_the_reference(rng):
    ops = emulated_ops("forward", max_grid_yz=1)
    x, w = ints(rng, (1, 7, 8, 8)), ints(rng, (3, 3, 4, 6))
    args = ((2, 2), ((1, 1), (1, 1)), (1, 1), 2)
    dy = ints(rng, ref.conv2d_fprop(x, w, *args).shape)
    dx = run_folded(lambda: ops.conv2d_dgrad(dy, w, x.shape, *args), "fc::conv2d_dgrad_strided_implicit_gemm<")
    assert_same(dx, ref.conv2d_dgrad(dy, w, x.shape, *args), True, what="strided conv2d_dgrad")
    xd, wd = ints(rng, (1, 6, 6, 4)), (3, 3, 1, 4)
    dargs = ((1, 1), ((1, 1), (1, 1)), (1, 1), 4)
    dyd = ints(rng, (1, 6, 6, 4))
    ops.force_splits = 2
    dw = run_folded(lambda: ops.conv2d_wgrad(xd, dyd, wd, *dargs), "fc::conv2d_wgrad_depthwise<")
    assert_same(dw, ref.conv2d_wgrad(xd, dyd, wd, *dargs), True, what="depthwise conv2d_wgrad")


@pytest.mark.parametrize("pool", [(2, 2), (3, 3)])
def test_folded_fused_conv_pool_matches_the_reference(rng, pool):
    ops = emulated_ops("forward", max_grid_yz=1)
    x, w, b = ints(rng, (1, 9, 9, 8)), ints(rng, (3, 3, 4, 80)), ints(rng, (80,))
    args = dict(stride=(1, 1), padding=((1, 1), (1, 1)), groups=2, pool=pool)
    kernel = "fc::conv2d_bias_relu_maxpool2x2_fprop<" if pool == (2, 2) else "fc::conv2d_bias_relu_maxpool3x3s2_fprop<"
    y, argmax = run_folded(lambda: ops.conv2d_bias_relu_maxpool_fprop(x, w, b, **args), kernel)
    want_y, want_argmax = ref.conv2d_bias_relu_maxpool_fprop(x, w, b, **args)
    assert_same(y, want_y, True, what="pooled y")
    assert_same(argmax, want_argmax, True, what="argmax")


def test_folded_tensor_op_kernels_match_the_reference(rng):
    ops = emulated_ops("forward", max_grid_yz=1)
    h = np.float16
    a, b = ints(rng, (70, 16)), ints(rng, (16, 80))
    c = run_folded(lambda: ops.gemm_tensor_op(a.astype(h), b.astype(h)), "fc::gemm_tensor_op<")
    assert_same(c, a @ b, True, what="gemm_tensor_op")
    x, w = ints(rng, (1, 9, 9, 8)), ints(rng, (1, 1, 8, 80))
    args = ((1, 1), VALID, (1, 1), 1)
    y = run_folded(lambda: ops.conv2d_fprop_tensor_op(x.astype(h), w.astype(h), *args[:3]),
                   "fc::conv2d_fprop_tensor_op<")
    assert_same(y, ref.conv2d_fprop(x, w, *args), True, what="conv2d_fprop_tensor_op")
    xs, ws = ints(rng, (1, 8, 8, 16)), ints(rng, (3, 3, 16, 16))
    sargs = ((2, 2), ((1, 1), (1, 1)), (1, 1), 1)
    dy = ints(rng, ref.conv2d_fprop(xs, ws, *sargs).shape)
    dx = run_folded(lambda: ops.conv2d_dgrad_tensor_op(dy.astype(h), ws.astype(h), xs.shape, *sargs),
                    "fc::conv2d_dgrad_strided_tensor_op<")
    assert_same(dx, ref.conv2d_dgrad(dy, ws, xs.shape, *sargs), True, what="strided conv2d_dgrad_tensor_op")
    ops.force_splits = 2
    dw = run_folded(lambda: ops.conv2d_wgrad_tensor_op(xs.astype(h), dy.astype(h), ws.shape, *sargs),
                    "fc::conv2d_wgrad_tensor_op<")
    assert_same(dw, ref.conv2d_wgrad(xs, dy, ws.shape, *sargs), True, what="conv2d_wgrad_tensor_op")


def test_folded_wgmma_gemm_matches_the_reference(rng):
    from fastconv.backends.plans.gemm import wgmma_kernel_names
    ops = emulated_ops("forward", max_grid_yz=1)
    if wgmma_kernel_names()[0] not in __import__("fastconv.emulator").emulator.kernels():
        pytest.skip("fastconv._emu predates the sm_90a kernels: rebuild it")
    a, b = ints(rng, (260, 64)), ints(rng, (64, 136))   # 3 x 2 tiles of 128 x 128
    c = run_folded(lambda: ops.gemm_wgmma(a.astype(np.float16), b.astype(np.float16)), "fc::gemm_wgmma<")
    assert_same(c, a @ b, True, what="gemm_wgmma")
