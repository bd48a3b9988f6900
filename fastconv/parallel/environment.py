"""The launch environment torchrun (and torch.distributed.launch, SLURM wrappers) sets for each process.

    torchrun --nproc_per_node=8 train.py                       # one node, eight processes
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 \\
             --rdzv_backend=c10d --rdzv_endpoint=host0:29500 train.py

Each process gets RANK (0..WORLD_SIZE-1 over all nodes), WORLD_SIZE, LOCAL_RANK (its index on its
node, which picks its GPU) and MASTER_ADDR / MASTER_PORT (where rank 0 listens for the rendezvous).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

REQUIRED = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class LaunchEnvironment:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int


def launched_world_size(environ=None) -> int:
    """WORLD_SIZE when a launcher set it, else 1 (a plain `python script.py`)."""
    value = (os.environ if environ is None else environ).get("WORLD_SIZE", "")
    return int(value) if value.strip().isdigit() else 1


def read_environment(environ=None) -> LaunchEnvironment:
    """The variables of this process's launch, checked; a clear error names what is missing or wrong."""
    env = os.environ if environ is None else environ
    missing = [k for k in REQUIRED if not env.get(k)]
    if missing:
        raise RuntimeError(f"distributed training needs the environment variables {list(REQUIRED)} (and "
                           f"LOCAL_RANK) that torchrun sets; {missing} not set. Launch with "
                           "`torchrun --nproc_per_node=N script.py` (docs/distributed.md)")
    values = {}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        raw = env.get(key, "0" if key == "LOCAL_RANK" else "")
        if not raw.strip().isdigit():
            raise ValueError(f"environment variable {key} must be a non-negative integer, got {raw!r}")
        values[key] = int(raw)
    if values["WORLD_SIZE"] < 1:
        raise ValueError(f"environment variable WORLD_SIZE must be >= 1, got {values['WORLD_SIZE']}")
    if values["RANK"] >= values["WORLD_SIZE"]:
        raise ValueError(f"environment variable RANK must be < WORLD_SIZE={values['WORLD_SIZE']}, "
                         f"got {values['RANK']}")
    if not 0 < values["MASTER_PORT"] < 65536:
        raise ValueError(f"environment variable MASTER_PORT must be a TCP port (1..65535), got {values['MASTER_PORT']}")
    return LaunchEnvironment(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], env["MASTER_ADDR"],
                             values["MASTER_PORT"])
