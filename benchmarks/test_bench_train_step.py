"""The seed model's training step (forward, backward, Adam) as a pytest-benchmark, fastconv and PyTorch.

    python -m pytest benchmarks/test_bench_train_step.py [-m gpu]
"""
import pytest

from fastconv.bench.timing import synced_rotation
from fastconv.bench.train_step import _fastconv_step, _torch_step, seed_step_flops

BATCH_CPU, BATCH_GPU = 32, 128


def _bench(benchmark, step, device, impl, batch):
    step(0)
    timed = synced_rotation(step, device)

    benchmark.group = f"{device} seed train step"
    benchmark.extra_info.update(device=device, model="seed", shape=f"N={batch} 28x28x1", implementation=impl,
                                flops_per_step=seed_step_flops(batch))
    benchmark(timed)
    if benchmark.stats:
        benchmark.extra_info["images_per_s"] = batch / benchmark.stats.stats.median


@pytest.mark.parametrize("impl", ["fastconv", "torch eager"])
def test_train_step_cpu(benchmark, impl):
    step = _fastconv_step(BATCH_CPU, 2, "cpu") if impl == "fastconv" else _torch_step(BATCH_CPU, 2, "cpu", "fp32")
    _bench(benchmark, step, "cpu", impl, BATCH_CPU)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["fastconv", "torch eager"])
def test_train_step_gpu(benchmark, need_gpu, impl):
    if impl == "fastconv":
        try:
            step = _fastconv_step(BATCH_GPU, 2, "gpu")
        except Exception as exc:
            pytest.skip(f"fastconv has no GPU training step yet: {exc}")
    else:
        step = _torch_step(BATCH_GPU, 2, "gpu", "fp32")
    _bench(benchmark, step, "gpu", impl, BATCH_GPU)
