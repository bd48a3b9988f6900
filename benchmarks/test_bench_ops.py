"""Per-op benchmarks (pytest-benchmark): fastconv and PyTorch on the same shapes, one test each.

    python -m pytest benchmarks/test_bench_ops.py                 # CPU variants
    python -m pytest benchmarks/test_bench_ops.py -m gpu          # GPU variants (cuDNN / cuBLAS)
    python -m pytest benchmarks/ --benchmark-compare              # against a saved run

The implementations are fastconv.bench.runners' (the same ones `fastconv bench` times); each timed
call rotates over two input sets and synchronizes the device before it returns.
"""
import pytest

from fastconv.bench.runners import FastconvRunner, TorchRunner, make_inputs
from fastconv.bench.suites import expand_cases, load_suite
from fastconv.bench.timing import synced_rotation

# (suite, problem, op): small enough for the CPU.
CPU_CASES = [("seed", "conv_3x3_64", "conv2d_fprop"), ("seed", "conv_3x3_64", "conv2d_wgrad"),
             ("resnet50", "res2_3x3", "conv2d_fprop"), ("resnet50", "res2_3x3", "conv2d_dgrad"),
             ("mobilenet_v1", "conv_dw_13_7x7x1024_s1", "conv2d_fprop"),
             ("seed", "pool_2x2", "maxpool"), ("resnet50", "pool1_3x3_s2", "maxpool"),
             ("seed", "dense_10816x10", "gemm"), ("gemm", "square_1024", "gemm")]
GPU_CASES = [("resnet50", "res2_3x3", "conv2d_fprop"), ("resnet50", "res2_3x3", "conv2d_dgrad"),
             ("resnet50", "res2_3x3", "conv2d_wgrad"), ("resnet50", "conv1_7x7_s2", "conv2d_fprop"),
             ("mobilenet_v1", "conv_dw_2_112x112x64_s2", "conv2d_fprop"), ("resnet50", "pool1_3x3_s2", "maxpool"),
             ("gemm", "square_4096", "gemm"), ("gemm", "vgg16_fc6_25088x4096", "gemm")]


def _case(suite, problem, op, batch, dtype):
    cases, _ = expand_cases([load_suite(suite)], [op], [batch], [dtype], [problem])
    return cases[0]


def _run(benchmark, runner, case, device):
    ok, why = runner.available(case)
    if not ok:
        pytest.skip(f"{runner.name}: {why}")
    sets = make_inputs(case, 2, device, seed=0)
    try:
        prepared = runner.setup(case, sets)[0]
        prepared.fn(0)
    except Exception as exc:
        if runner.role == "fastconv":
            pytest.skip(f"fastconv cannot run {case.key}: {type(exc).__name__}: {exc}")
        raise
    timed = synced_rotation(prepared.fn, device)  # the device's work belongs inside the timed call

    benchmark.extra_info.update(device=device, op=case.op, suite=case.suite, problem=case.problem.name,
                                shape=case.shape_text(), dtype=case.dtype, batch=case.batch,
                                implementation=f"{runner.name} {prepared.label}", flops=case.flops,
                                min_bytes=case.bytes)
    benchmark(timed)
    median = benchmark.stats.stats.median if benchmark.stats else None
    if median:
        benchmark.extra_info.update(gflops_per_s=case.flops / median / 1e9, gbytes_per_s=case.bytes / median / 1e9)


@pytest.mark.parametrize("impl", ["fastconv", "torch"])
@pytest.mark.parametrize("suite,problem,op", CPU_CASES, ids=[f"{o}-{p}" for _, p, o in CPU_CASES])
def test_cpu(benchmark, suite, problem, op, impl):
    case = _case(suite, problem, op, 8 if suite in ("seed", "gemm") else 1, "fp32")
    benchmark.group = f"cpu {op} {problem}"
    _run(benchmark, FastconvRunner("cpu") if impl == "fastconv" else TorchRunner("cpu"), case, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("impl", ["fastconv", "baseline"])
@pytest.mark.parametrize("suite,problem,op", GPU_CASES, ids=[f"{o}-{p}" for _, p, o in GPU_CASES])
def test_gpu(benchmark, need_gpu, suite, problem, op, impl, dtype):
    from fastconv.bench.runners import set_math_mode
    case = _case(suite, problem, op, 32, dtype)
    benchmark.group = f"gpu {op} {problem} {dtype}"
    restore = set_math_mode(dtype)
    try:
        _run(benchmark, FastconvRunner("gpu") if impl == "fastconv" else TorchRunner("gpu"), case, "gpu")
    finally:
        restore()
