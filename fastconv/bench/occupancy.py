"""Theoretical occupancy of a kernel on one GPU target, from its registers, shared memory and block size.

The per-SM limits of each target fastconv builds for, in one table (TARGETS). Sources: the CUDA C++
Programming Guide, "Technical Specifications per Compute Capability" (8.0: A100; 9.0: H100/H200),
and the allocation granularities of the CUDA Occupancy Calculator (registers per warp in units of
256, warps in groups of 4, shared memory in units of 128 bytes plus 1 KB the system reserves per
block since compute capability 8.0). Shared memory per SM is the largest carveout; a kernel that
runs with a smaller carveout fits fewer blocks than computed here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SmLimits:
    """Per-SM resources of a compute capability."""
    name: str
    max_threads: int = 2048
    max_warps: int = 64
    max_blocks: int = 32
    regs: int = 65536
    reg_alloc_unit: int = 256          # registers are allocated per warp in units of 256
    warp_alloc_granularity: int = 4
    max_regs_per_thread: int = 255
    smem: int = 228 * 1024             # shared memory per SM
    smem_per_block_max: int = 227 * 1024
    smem_reserved_per_block: int = 1024
    smem_alloc_unit: int = 128


SM80 = SmLimits("sm_80 (A100)", smem=164 * 1024, smem_per_block_max=163 * 1024)
SM90 = SmLimits("sm_90 (H100/H200)")
TARGETS = {"sm_80": SM80, "sm_90a": SM90}   # the targets the native build and the compile checks use

LIMITERS = ("warps", "blocks", "registers", "shared memory")


def occupancy(threads_per_block: int, regs_per_thread: int, smem_per_block: int = 0, limits: SmLimits = SM90) -> dict:
    """Theoretical occupancy: resident blocks per SM from each limit (warps, blocks, registers, shared
    memory: static + dynamic bytes per block), the smallest wins; occupancy = resident warps / max
    warps (Nsight Compute: sm__maximum_warps_per_active_cycle_pct). Returns blocks_per_sm,
    warps_per_sm, occupancy (0..1), limiter (which limit binds; warps wins a tie) and by (blocks per
    SM each limit allows)."""
    for what, v in (("threads_per_block", threads_per_block), ("regs_per_thread", regs_per_thread),
                    ("smem_per_block", smem_per_block)):
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError(f"{what} must be an int, got {type(v).__name__}")
    if not 1 <= threads_per_block <= 1024:
        raise ValueError(f"threads_per_block must be in [1, 1024], got {threads_per_block}")
    if regs_per_thread < 0 or smem_per_block < 0:
        raise ValueError(f"regs_per_thread and smem_per_block must be >= 0, got {regs_per_thread}, {smem_per_block}")
    warps = math.ceil(threads_per_block / 32)
    by = {"warps": limits.max_warps // warps, "blocks": limits.max_blocks}
    if regs_per_thread > 0:
        if regs_per_thread > limits.max_regs_per_thread:
            raise ValueError(f"{regs_per_thread} registers per thread exceeds {limits.max_regs_per_thread}")
        regs_per_warp = math.ceil(regs_per_thread * 32 / limits.reg_alloc_unit) * limits.reg_alloc_unit
        warps_by_regs = limits.regs // regs_per_warp
        warps_by_regs -= warps_by_regs % limits.warp_alloc_granularity
        by["registers"] = warps_by_regs // warps
    unit = limits.smem_alloc_unit
    smem = math.ceil((smem_per_block + limits.smem_reserved_per_block) / unit) * unit
    if smem_per_block > limits.smem_per_block_max:
        raise ValueError(f"{smem_per_block} B of shared memory per block exceeds {limits.smem_per_block_max} "
                         f"on {limits.name}")
    by["shared memory"] = limits.smem // smem
    blocks = min(by.values())
    limiter = min(by, key=lambda k: (by[k], k != "warps"))
    return {"blocks_per_sm": blocks, "warps_per_sm": blocks * warps, "occupancy": blocks * warps / limits.max_warps,
            "limiter": limiter, "by": by}


def target_limits(arch: str) -> SmLimits:
    try:
        return TARGETS[arch]
    except KeyError:
        raise ValueError(f"arch must be one of {list(TARGETS)}, got {arch!r}") from None
