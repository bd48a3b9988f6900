"""Seed-model training step on the CPU: fastconv (reference backend) vs the same model in PyTorch.

    python benchmarks/train_step_cpu.py [--batch 128] [--steps 30] [--json PATH]

Both do forward, backward and an Adam update on 28x28x1 inputs, batch 128, in one process,
alternating in rounds so that machine noise hits both alike. Reports the median images/s.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np


def fastconv_step(batch, seed=0):
    import fastconv as fc
    fc.set_seed(seed)
    model = fc.models.seed_model((28, 28, 1), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    return lambda: model.train_on_batch(x, y)


def torch_step(batch, seed=0):
    import torch
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 64, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(64 * 13 * 13, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, 28, 28)
    y = torch.randint(0, 10, (batch,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def median_seconds(step, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    import torch
    ours, theirs = fastconv_step(args.batch), torch_step(args.batch)
    for s in (ours, theirs):  # warm-up
        for _ in range(3):
            s()
    results = {"fastconv": [], "torch": []}
    for _ in range(args.rounds):
        results["fastconv"].append(median_seconds(ours, args.steps))
        results["torch"].append(median_seconds(theirs, args.steps))
    ips = {k: args.batch / float(np.median(v)) for k, v in results.items()}
    ratio = ips["fastconv"] / ips["torch"]
    print(f"seed model training step, batch {args.batch}, 28x28x1, CPU ({platform.processor() or platform.machine()}, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads)")
    print(f"  fastconv (reference): {ips['fastconv']:8.0f} images/s")
    print(f"  PyTorch CPU         : {ips['torch']:8.0f} images/s")
    print(f"  ratio fastconv/torch: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"batch": args.batch, "images_per_second": ips, "ratio": ratio,
                       "torch": torch.__version__, "numpy": np.__version__, "machine": platform.platform()}, f, indent=2)


if __name__ == "__main__":
    main()
