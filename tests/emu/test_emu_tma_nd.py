"""The emulated TMA tiled copy of rank 3-5 maps with element strides (csrc/arch/sm90/primitives.h
emu::tma_issue / tma_run) against the semantics transcribed here independently of the C++:

- cuTensorMapEncodeTiled (CUDA driver API, "Tensor Map Object Management"): globalDim per dimension
  (innermost first), globalStrides in bytes for dimensions 1..rank-1 (multiples of 16 below 2^40), boxDim
  the elements *traversed* per dimension (1..256), elementStrides the traversal stride (1..8).
- With traversal stride e the box keeps every e-th element: ceil(box / e) per dimension land in shared
  memory (nvFuser's "TMA Support in NVFuser" notes: box (6, 4) with stride (1, 3) is a (6, 2) tile), packed
  innermost first; the transaction bytes are those of the packed tile.
- "Data Movement: cp.async.bulk.tensor" (tile mode): the coordinates are signed; every element whose
  coordinate is negative or >= globalDim in any dimension is zero-filled (OOB fill NONE), including
  elements that lie inside the allocation but outside the map's dims; the instruction's dimension
  (.3d/.4d/.5d) must match the map's rank.
- "Tensor Copy Swizzling Modes": 128B swizzle XORs the 16-byte chunk index with address bits 7-9.
"""
import math

import numpy as np
import pytest

from fastconv import emulator
from fastconv.backends.plans.tensor_map import TMA_SWIZZLE_128B, TMA_SWIZZLE_NONE, encode_tensor_map_emulated


def swizzled(addr, width):
    if width == 0:
        return addr
    bits = int(math.log2(width // 16))
    return addr ^ (((addr >> 7) & ((1 << bits) - 1)) << 4)


def tile_counts(box, es):
    return [-(-b // e) for b, e in zip(box, es)]


def expect(tensor, dims, coords, box, es, width):
    """The shared-memory bytes of the box: tensor is the allocation (outermost first), dims the map's
    extents (innermost first, possibly smaller than the allocation)."""
    counts = tile_counts(box, es)
    rank = len(dims)
    img = np.zeros(int(np.prod(counts)) * 2, np.uint8)
    for lin, idx in enumerate(np.ndindex(*reversed(counts))):
        j = idx[::-1]                                               # innermost first
        g = [coords[i] + j[i] * es[i] for i in range(rank)]
        inside = all(0 <= g[i] < dims[i] for i in range(rank))
        v = tensor[tuple(reversed(g))] if inside else 0
        addr = swizzled(lin * 2, width)
        img[addr:addr + 2] = np.frombuffer(np.uint16(v).tobytes(), np.uint8)
    return img


def run(tensor, dims, coords, box, es, swizzle, wait=1, box_bytes=None, kernel_rank=None, poison=False):
    rank = len(dims)
    alloc = tensor.shape[::-1]                                      # innermost first
    strides = [2 * int(np.prod(alloc[:i])) for i in range(1, rank)]
    tmap = encode_tensor_map_emulated(0, 2, dims, strides, box, swizzle, elem_strides=es)
    nbytes = int(np.prod(tile_counts(box, es))) * 2
    out = np.zeros(nbytes, np.uint8)
    c = list(coords) + [0] * (5 - rank)
    emulator.launch(f"hopper.tma_box_{kernel_rank or rank}d", grid=1, block=64,
                    args=(tensor, tmap, *c, nbytes if box_bytes is None else box_bytes, wait, out),
                    shared_bytes=nbytes + 1024, order="random", seed=5, poison_async=poison)
    return out


def nonzero(shape, seed):
    return np.random.default_rng(seed).integers(1, 2**15, shape).astype(np.uint16)   # zero fill is visible


# (C, W, H, N) of an NHWC activation as the conv reads it: 64 channels x 8 columns at stride 2 x 4 rows at
# stride 3 x 2 images; the allocation has 80 channels but the map only 72 (channels 72.. are outside).
CONV_CASES = [((0, 0, 0, 0)), ((8, -3, -2, 0)), ((40, 5, 7, 1)), ((0, 11, 12, 2)), ((-16, -20, 0, -1))]


@pytest.mark.parametrize("coords", CONV_CASES)
def test_tma_4d_box_with_element_strides_and_zero_fill(coords):
    tensor = nonzero((3, 13, 14, 80), sum(coords) + 40)             # (N, H, W, C)
    dims, box, es = (72, 14, 13, 3), (64, 16, 12, 2), (1, 2, 3, 1)
    out = run(tensor, dims, coords, box, es, TMA_SWIZZLE_128B)
    np.testing.assert_array_equal(out, expect(tensor, dims, coords, box, es, 128))


@pytest.mark.parametrize("coords", [(0, 0, 0), (-8, 3, 250), (32, 8, -40)])
def test_tma_3d_filter_box(coords):
    tensor = nonzero((300, 9, 64), 7)                                # (K, R*S, C)
    dims, box, es = (64, 9, 300), (64, 1, 128), (1, 1, 1)
    np.testing.assert_array_equal(run(tensor, dims, coords, box, es, TMA_SWIZZLE_128B),
                                  expect(tensor, dims, coords, box, es, 128))


@pytest.mark.parametrize("coords", [(0, 0, 0, 0, 0), (-4, 1, -1, 2, 3), (8, 4, 5, -2, 6)])
def test_tma_5d_unswizzled_with_uneven_strides(coords):
    tensor = nonzero((7, 4, 6, 5, 16), 9)
    dims, box, es = (16, 5, 6, 4, 7), (8, 3, 5, 2, 7), (1, 2, 4, 1, 3)   # ceil: 2, 2, 2, 3 elements kept
    np.testing.assert_array_equal(run(tensor, dims, coords, box, es, TMA_SWIZZLE_NONE),
                                  expect(tensor, dims, coords, box, es, 0))


@pytest.mark.parametrize("poison", [False, True])
def test_tma_nd_read_before_the_wait_sees_old_bytes(poison):
    tensor = nonzero((3, 13, 14, 80), 1)
    out = run(tensor, (72, 14, 13, 3), (0, 0, 0, 0), (64, 16, 12, 2), (1, 2, 3, 1), TMA_SWIZZLE_128B, wait=0,
              poison=poison)
    from fastconv import _emu
    assert (out.view("<u4") == _emu.POISON_WORD).all()


def test_tma_nd_transaction_bytes_are_the_strided_tile():
    """expect_tx of the traversed box (not the kept tile) leaves the phase waiting for bytes that never come."""
    tensor = nonzero((3, 13, 14, 80), 2)
    box, es = (64, 16, 12, 2), (1, 2, 3, 1)
    with pytest.raises(emulator.EmulatorError, match="deadlock.*transaction bytes"):
        run(tensor, (72, 14, 13, 3), (0, 0, 0, 0), box, es, TMA_SWIZZLE_128B, box_bytes=int(np.prod(box)) * 2)


def test_tma_nd_errors_are_clear():
    tensor = nonzero((3, 13, 14, 80), 3)
    dims, box, es = (72, 14, 13, 3), (64, 16, 12, 2), (1, 2, 3, 1)
    with pytest.raises(emulator.EmulatorError, match="the tensor map has rank 4; the instruction's dimension"):
        run(tensor, dims, (0, 0, 0, 0), box, es, TMA_SWIZZLE_128B, kernel_rank=5)
    with pytest.raises(ValueError, match=r"element strides \(1, 9, 1, 1\) must be one per dimension in \[1, 8\]"):
        encode_tensor_map_emulated(0, 2, dims, (160, 2240, 29120), box, TMA_SWIZZLE_128B, elem_strides=(1, 9, 1, 1))
    with pytest.raises(ValueError, match="the innermost 1"):
        encode_tensor_map_emulated(0, 2, dims, (160, 2240, 29120), box, TMA_SWIZZLE_128B, elem_strides=(2, 1, 1, 1))
    with pytest.raises(ValueError, match="4 dims need 3 strides"):
        encode_tensor_map_emulated(0, 2, dims, (160, 2240), box, TMA_SWIZZLE_128B)
    with pytest.raises(ValueError, match="must be a multiple of 16"):
        encode_tensor_map_emulated(0, 2, dims, (160, 2250, 29120), box, TMA_SWIZZLE_128B)
    with pytest.raises(ValueError, match="rank 6"):
        encode_tensor_map_emulated(0, 2, (8,) * 6, (16,) * 5, (8,) * 6, TMA_SWIZZLE_NONE)


@pytest.mark.gpu
@pytest.mark.parametrize("coords", CONV_CASES[1:3])
def test_tma_4d_box_with_element_strides_on_h100(coords):
    """The same box on the hardware: the emulator's reading of boxDim / elementStrides (ceil(box / stride)
    kept, zero fill per coordinate) is what the TMA unit does."""
    from fastconv.backends.plans.tensor_map import encode_tensor_map_cuda
    from fastconv.backends.device import cuda_status
    ok, why = cuda_status()
    if not ok:
        pytest.skip(why)
    cupy = pytest.importorskip("cupy")
    if str(cupy.cuda.Device().compute_capability) != "90":
        pytest.skip("needs an sm_90 (Hopper) GPU")
    from pathlib import Path
    name = "fc_sm90_selftest::tma_box_nd<4>"
    csrc = Path(__file__).resolve().parents[2] / "csrc"
    module = cupy.RawModule(code='#include "hopper/sm90_selftest.cuh"\n',
                            options=("-std=c++17", f"-I{csrc}", "-arch=sm_90a"), name_expressions=[name])
    tensor = nonzero((3, 13, 14, 80), 11)
    dims, box, es = (72, 14, 13, 3), (64, 16, 12, 2), (1, 2, 3, 1)
    dev = cupy.asarray(tensor)
    tmap = encode_tensor_map_cuda(int(dev.data.ptr), np.uint16, dims, (160, 14 * 160, 13 * 14 * 160), box,
                                  TMA_SWIZZLE_128B, elem_strides=es)
    nbytes = int(np.prod(tile_counts(box, es))) * 2
    out = cupy.zeros(nbytes, np.uint8)
    fn = module.get_function(name)
    fn((1,), (64,), (dev, np.frombuffer(tmap, np.dtype((np.void, 128)))[0], *(np.int32(c) for c in coords), np.int32(0),
                     np.int32(nbytes), np.int32(1), out), shared_mem=nbytes + 1024)
    np.testing.assert_array_equal(out.get(), expect(tensor, dims, coords, box, es, 128))
