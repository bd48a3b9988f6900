"""The launcher every plan function takes as its first argument (`lx`): what a backend hands the plans
(array module, launch, pointer, device capabilities) and the test knobs, all declared here and given at
construction (KernelOps(xp, launch, ptr, builds_sm90a=..., executor=...)); the knobs may be set later."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import tuning
from ...explain import traced_launch
from .common import (ELEMENTWISE_THREADS, MAX_ELEMENTWISE_BLOCKS, MAX_GRID_YZ, SM90_SMS, ceil_div, check_grid,
                     tile_grid)


@dataclass(eq=False)
class Launcher:
    """xp: the array module (cupy or numpy); launch(kernel, grid, block, args, shared_bytes=0), wrapped at
    construction to check the grid and record the launch for fastconv.explain; ptr(a): the address of an
    array's data (for alignment checks). builds_sm90a: whether the executor runs the sm_90a kernels, a bool
    or a callable asked per use (per device: native's _C.sm90a_code, jit's compile-and-load probe), and
    sm90a_reason: a callable saying why not (jit). executor: the backend's executor, for tests to inspect.
    Test knobs: force_tile, force_vec (1 disables 16-byte loads), force_index64, force_splits,
    force_tensor_op_tile ('Tile64' / 'Tile128'), force_wgmma_bn, force_sm90_conv_tile ((bm, bn) of the sm_90a
    conv, conv2d_sm90.py), max_grid_yz (below 65535: the GEMM-shaped
    kernels' tiles go on grid.x sooner, common.tile_grid), sm90_conv_min_tiles (the fewest 64 x 128 output
    tiles for which a conv takes the sm_90a kernels, conv2d.py sm90_fprop_route: SM90_SMS, one each, as on an H100,
    also in the emulator; 0 sends every size); tuning_device: the device name tuning-file
    entries are looked up under (None: the current device, fastconv/backends/tuning.py device_id)."""
    xp: Any
    launch: Callable
    ptr: Callable[[Any], int]
    builds_sm90a: bool | Callable[[], bool] = False
    sm90a_reason: Callable[[], str] | None = None
    executor: Any = None
    force_tile: str | None = None
    force_vec: int | None = None
    force_index64: bool | None = None
    force_splits: int | None = None
    force_tensor_op_tile: str | None = None
    force_wgmma_bn: int | None = None
    force_sm90_conv_tile: tuple[int, int] | None = None
    sm90_conv_min_tiles: int = SM90_SMS
    max_grid_yz: int = MAX_GRID_YZ
    tuning_device: str | None = None

    def __post_init__(self):
        traced = traced_launch(self.launch)

        def checked(kernel, grid, block, *args, **kwargs):
            check_grid(kernel, grid)
            return traced(kernel, grid, block, *args, **kwargs)
        self.launch = checked

    def c(self, a):
        """a as a C-contiguous array (itself when it is one)."""
        return self.xp.ascontiguousarray(a)

    def tile_grid(self, tiles_x, tiles_y, tiles_z=None):
        """The grid of a kernel that reads its tile through fc::block_tile (common.tile_grid)."""
        return tile_grid(tiles_x, tiles_y, tiles_z, self.max_grid_yz)

    def run1d(self, kernel, n, args):
        """An elementwise kernel over n items: ELEMENTWISE_THREADS per block, grid-stride beyond the cap."""
        self.launch(kernel, (max(1, min(ceil_div(n, ELEMENTWISE_THREADS), MAX_ELEMENTWISE_BLOCKS)),),
                    (ELEMENTWISE_THREADS,), args)

    def tuned(self, op, dtype, problem):
        """This device's tuning-file entry for (op, dtype, problem) (fastconv/backends/tuning.py), or None;
        problem: a zero-argument callable giving the key, formatted only when a tuning file exists."""
        name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
        if name == "float64":   # one double instantiation per kernel: nothing to tune
            return None
        return tuning.lookup(self.tuning_device or (lambda: tuning.device_id(self.xp)), op, name, problem)

    def sm90_target(self):
        """'emulator' on the CPU emulator, 'sm90' on a compute-capability 9.0 GPU, else None."""
        if self.xp is np:
            return "emulator"
        try:
            return "sm90" if str(self.xp.cuda.Device().compute_capability) == "90" else None
        except Exception:   # pragma: no cover - no device
            return None

    def runs_sm90a(self) -> bool:
        """builds_sm90a, asked now."""
        flag = self.builds_sm90a
        return bool(flag() if callable(flag) else flag)
