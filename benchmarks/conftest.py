"""pytest-benchmark suites: `python -m pytest benchmarks/` (not collected by a plain `python -m pytest`,
whose testpaths is tests/).

CPU variants run anywhere with small shapes; GPU variants are marked `gpu` and skip without one
(benchmarks/gpu_check.sh runs them with `-m gpu`). Each timed function synchronizes the device
before returning, and records device and shape in benchmark.extra_info.
"""
import importlib.util

import pytest

if importlib.util.find_spec("pytest_benchmark") is None:     # pip install fastconv[bench]
    collect_ignore_glob = ["test_*.py"]


def pytest_addoption(parser):
    parser.addoption("--bench-threads", type=int, default=1,
                     help="CPU threads for PyTorch and NumPy's BLAS in the CPU variants (0: library defaults)")


@pytest.fixture(scope="session", autouse=True)
def _cpu_threads(request):
    from fastconv.bench.env import limit_cpu_threads
    limit_cpu_threads(request.config.getoption("--bench-threads"))


def gpu_reason():
    from fastconv.bench.env import torch_cuda_status
    ok, why = torch_cuda_status()
    return None if ok else why


@pytest.fixture
def need_gpu():
    why = gpu_reason()
    if why:
        pytest.skip(f"no GPU: {why}")
