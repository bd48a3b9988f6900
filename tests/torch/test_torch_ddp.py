"""DistributedDataParallel (gloo, 2 CPU processes) training a converted model."""
import copy
import os
import socket
import time

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402
from torch import nn  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

from baseline_error import assert_within_baseline  # noqa: E402

WORLD = 2
STEPS = 3
TIMEOUT_S = 120


def _model():
    # no BatchNorm: with it, per-rank batch statistics would make DDP differ from one big batch
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 5))


def _batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    return torch.randn(WORLD * 4, 3, 16, 16, generator=g), torch.randint(0, 5, (WORLD * 4,), generator=g)


def _worker(rank, port, out_dir):
    torch.set_num_threads(1)
    import fastconv.torch as fct
    from torch.nn.parallel import DistributedDataParallel as DDP
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=__import__("datetime").timedelta(seconds=60))
    try:
        torch.manual_seed(0)
        model = _model()
        fct.convert(model, strict=True)
        ddp = DDP(model)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
        for step in range(STEPS):
            x, t = _batch(step)
            x, t = x[rank::WORLD], t[rank::WORLD]          # this rank's half of the global batch
            opt.zero_grad()
            TF.cross_entropy(ddp(x), t).backward()
            opt.step()
        flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        gathered = [torch.empty_like(flat) for _ in range(WORLD)]
        dist.all_gather(gathered, flat)
        if rank == 0:
            torch.save({"gathered": gathered, "state": model.state_dict()}, os.path.join(out_dir, "result.pt"))
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_gloo_two_processes_identical_parameters(tmp_path):
    ctx = mp.start_processes(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"DDP workers did not finish within {TIMEOUT_S} s")
    finally:
        for proc in ctx.processes:            # only the processes this test started
            if proc.is_alive():
                proc.kill()
    result = torch.load(tmp_path / "result.pt")
    rank0, rank1 = result["gathered"]
    torch.testing.assert_close(rank0, rank1, rtol=0, atol=0)   # every rank ends bit-identical

    # and DDP over 2 x 4 samples equals plain torch on the 8-sample batch, as closely as torch's
    # float32 run is to its float64 one (tests/baseline_error.py)
    torch.manual_seed(0)
    ref = _model()
    exact = copy.deepcopy(ref).double()
    initial = torch.cat([p.detach().reshape(-1).clone() for p in ref.parameters()])
    for model in (ref, exact):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        for step in range(STEPS):
            x, t = _batch(step)
            perm = torch.cat([torch.arange(r, WORLD * 4, WORLD) for r in range(WORLD)])
            opt.zero_grad()
            TF.cross_entropy(model(x[perm].to(next(model.parameters()).dtype)), t[perm]).backward()
            opt.step()
    exact_state = exact.state_dict()
    for name, p in ref.state_dict().items():
        assert_within_baseline(result["state"][name], p, exact_state[name], name)
    assert not torch.allclose(rank0, initial)                   # it trained
