"""Start the ranks of a test job as torchrun would: one process per rank, the rendezvous on a free
port of 127.0.0.1, every wait bounded so that a bug can never hang the suite."""
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist_worker.py")


@dataclass
class Rank:
    returncode: int | None   # None: an awaited rank still running at the deadline (then killed)
    stdout: str
    stderr: str
    seconds: float           # from the start of the job to this rank's exit (or the deadline)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, world=2, deadline_s=90.0, wait_for=None, command=None) -> list[Rank]:
    """Run dist_worker.py with `args` (or `command`, a list) on `world` ranks. Waits up to
    deadline_s for the ranks in wait_for (default: all), then kills every rank still running."""
    port = free_port()
    base = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world)}
    start = time.monotonic()
    command = command or [sys.executable, WORKER, *map(str, args), "--world", str(world)]
    procs = [subprocess.Popen(command,
                              env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}, cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(world)]
    ended = {}
    try:
        for r in (range(world) if wait_for is None else wait_for):
            try:
                procs[r].wait(timeout=max(0.0, start + deadline_s - time.monotonic()))
                ended[r] = time.monotonic() - start
            except subprocess.TimeoutExpired:
                pass
    finally:
        for p in procs:                 # only the processes this job started
            if p.poll() is None:
                p.kill()
    out = []
    for r, p in enumerate(procs):
        stdout, stderr = p.communicate(timeout=30)
        awaited = wait_for is None or r in wait_for
        out.append(Rank(None if awaited and r not in ended else p.returncode, stdout, stderr,
                        ended.get(r, deadline_s)))
    return out
