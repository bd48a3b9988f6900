"""What every launch plan shares: the C++-mirrored constants, the problem structs handed to the kernels,
and the host-side choices of tile, split-k, vector width and index width (made here only: C++ receives
them as the kernel's template-id; tests/kernels/test_plans.py checks them)."""
from __future__ import annotations

import numpy as np

from ...shapes import conv_output_hw

# Mirrors csrc/epilogue/activation.h ActivationKind.
ACTIVATIONS = {None: 0, "identity": 0, "linear": 0, "relu": 1, "leaky_relu": 2, "sigmoid": 3, "tanh": 4}

# Mirrors csrc/gemm/gemm_mainloop_simt.h: name -> (BM, BN, BK, threads).
TILES = {"TileSmall": (32, 32, 8, 64), "TileMedium": (64, 64, 8, 256), "TileLarge": (128, 128, 8, 256)}

# Enough blocks to fill an H100/H200 (132 SMs) twice. A fixed number, not the device's SM count, so
# that a shape always gets the same plan (and so the same summation order) on every GPU.
TARGET_BLOCKS = 264
SM90_SMS = 132   # an H100's and H200's SMs: what the sm_90a plans count tiles against, in the emulator too
ELEMENTWISE_THREADS = 256
MAX_ELEMENTWISE_BLOCKS = 1 << 16

# Mirrors csrc/common/problem.h (16 and 12 ints).
CONV2D_PROBLEM_FIELDS = ("N", "H", "W", "C", "K", "R", "S", "P", "Q", "pad_h", "pad_w", "stride_h", "stride_w",
                         "dilation_h", "dilation_w", "groups")
POOL2D_PROBLEM_FIELDS = ("N", "H", "W", "C", "P", "Q", "R", "S", "pad_h", "pad_w", "stride_h", "stride_w")
CONV2D_PROBLEM_DTYPE = np.dtype([(f, np.int32) for f in CONV2D_PROBLEM_FIELDS], align=True)
POOL2D_PROBLEM_DTYPE = np.dtype([(f, np.int32) for f in POOL2D_PROBLEM_FIELDS], align=True)
MULTI_TENSOR_WORDS = 6       # csrc/ops/optimizer.h MultiTensorEntry: 4 pointers + size + first_chunk
OPTIMIZER_CHUNK = 65536      # elements per block of the multi-tensor update

CTYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}
ARGMAX_CTYPES = {np.dtype(np.uint8): "uint8_t", np.dtype(np.uint16): "uint16_t", np.dtype(np.uint32): "uint32_t"}


def ctype(dtype) -> str:
    dt = np.dtype(dtype)
    if dt not in CTYPES:
        raise TypeError(f"the CUDA kernels take float32 or float64 arrays, got {dt}")
    return CTYPES[dt]


def argmax_dtype(pool):
    area = pool[0] * pool[1]
    return np.dtype(np.uint8 if area <= 255 else np.uint16 if area <= 65535 else np.uint32)


def ceil_div(a, b):
    return -(-a // b)


def scalar(dtype, v):
    """v as a NumPy scalar of `dtype`: a kernel's T-typed argument."""
    return np.dtype(dtype).type(v)


# CUDA's grid limits (every GPU since sm_30): x up to 2^31 - 1, y and z up to 65535.
MAX_GRID_X, MAX_GRID_YZ = 2**31 - 1, 65535


def tile_grid(tiles_x, tiles_y, tiles_z=None, max_yz=MAX_GRID_YZ):
    """The grid of a kernel that finds its tile with fc::block_tile (csrc/common/index.h): the tiles as they
    are when tiles_y and tiles_z fit grid.y / grid.z (<= max_yz), else every tile on grid.x, x fastest
    (the same block order). A 2-D grid without tiles_z. max_yz: KernelOps.max_grid_yz, a test knob."""
    tiles = (tiles_x, tiles_y) if tiles_z is None else (tiles_x, tiles_y, tiles_z)
    if all(t <= max_yz for t in tiles[1:]):
        return tiles
    return (tiles_x * tiles_y * (tiles_z or 1),) + (1,) * (len(tiles) - 1)


def check_grid(kernel, grid):
    """A clear error for a grid outside CUDA's limits, before the driver (or the emulator) refuses it."""
    dims = (tuple(int(d) for d in grid) + (1, 1))[:3]
    if 1 <= dims[0] <= MAX_GRID_X and 1 <= dims[1] <= MAX_GRID_YZ and 1 <= dims[2] <= MAX_GRID_YZ:
        return   # every launch passes here: the common case first
    for axis, d, limit in zip("xyz", dims, (MAX_GRID_X, MAX_GRID_YZ, MAX_GRID_YZ)):
        if not 1 <= d <= limit:
            why = " (the problem is too large for this kernel's launch plan)" if d > limit else ""
            raise ValueError(f"{kernel}: grid {dims} has {axis} = {d}, outside CUDA's limit [1, {limit}]{why}")


def conv2d_problem(x_shape, w_shape, stride, padding, dilation, groups):
    n, h, w, c = (int(v) for v in x_shape)
    r, s, cg, k = (int(v) for v in w_shape)
    if cg * groups != c or k % groups:
        raise ValueError(f"groups={groups} does not fit x channels {c} and filter shape {tuple(w_shape)}")
    p, q = conv_output_hw((h, w), (r, s), stride, padding, dilation)
    values = (n, h, w, c, k, r, s, p, q, padding[0][0], padding[1][0], stride[0], stride[1], dilation[0],
              dilation[1], groups)
    for name, v in zip(CONV2D_PROBLEM_FIELDS, values):
        if not 0 <= v <= 2**31 - 1:
            raise ValueError(f"conv2d {name}={v} does not fit a 32-bit int")
    return np.array([values], CONV2D_PROBLEM_DTYPE)[0], (n, p, q, k)


def pool2d_problem(x_shape, pool, stride, padding):
    n, h, w, c = (int(v) for v in x_shape)
    p, q = conv_output_hw((h, w), pool, stride, padding, what="pool_size")
    values = (n, h, w, c, p, q, pool[0], pool[1], padding[0][0], padding[1][0], stride[0], stride[1])
    return np.array([values], POOL2D_PROBLEM_DTYPE)[0], (n, p, q, c)


# ---- tile, vector-width and index choices (the tiles are csrc/gemm/gemm_mainloop_simt.h's) ----------------
def choose_tile(m, n, batches=1):
    """The largest tile that still gives TARGET_BLOCKS blocks; small problems get TileSmall."""
    for name in ("TileLarge", "TileMedium"):
        bm, bn, _, _ = TILES[name]
        if n > bn // 2 and m >= bm and ceil_div(m, bm) * ceil_div(n, bn) * batches >= TARGET_BLOCKS:
            return name
    return "TileSmall"


def choose_splits(rows, cols, kdim, tile, batches=1):
    """Split-k for wgrad: enough blocks to fill the GPU, each split at least 16 k-slices long.
    Returns (splits, k_per_split) with k_per_split a multiple of the tile's BK."""
    bm, bn, bk, _ = TILES[tile]
    blocks = ceil_div(rows, bm) * ceil_div(cols, bn) * batches
    splits = max(1, min(ceil_div(TARGET_BLOCKS, blocks), kdim // (bk * 16), 64))
    k_per_split = ceil_div(ceil_div(kdim, splits), bk) * bk
    return ceil_div(kdim, k_per_split) if kdim else 1, max(k_per_split, bk)


def choose_row_splits(rows):
    """Splits of a column reduction over `rows` rows (bias gradient, batch-norm statistics)."""
    return max(1, min(ceil_div(rows, 4096), 128))


def vector_width(dtype, divisible, pointers):
    """4 (16-byte loads) for float32 when every channel count is a multiple of 4 and every pointer
    16-byte aligned; else 1 (the scalar path)."""
    if np.dtype(dtype) != np.float32 or any(d % 4 for d in divisible):
        return 1
    return 4 if all(p % 16 == 0 for p in pointers) else 1

