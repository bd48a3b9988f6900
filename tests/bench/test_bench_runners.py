"""Runners and timers: fastconv's reference and PyTorch compute the same thing in every layout the
harness uses; the timer alternates and rotates; the GPU paths say why they are unavailable."""
import numpy as np
import pytest

from fastconv.bench.runners import CHECK_TOL, FastconvRunner, TorchRunner, baseline_runner, make_inputs, rel_err
from fastconv.bench.suites import expand_cases, load_suite
from fastconv.bench.timing import Timing, rotation_sets, time_alternating

torch = pytest.importorskip("torch")

# (suite, problem, op, batch): covers stride 2 with padding, groups = C, 1x1, pools, GEMM
CASES = [("resnet50", "res3a_3x3_s2", "conv2d_fprop", 1), ("resnet50", "res3a_3x3_s2", "conv2d_dgrad", 1),
         ("resnet50", "res3a_3x3_s2", "conv2d_wgrad", 1),
         ("mobilenet_v1", "conv_dw_12_14x14x512_s2", "conv2d_fprop", 2),
         ("mobilenet_v1", "conv_dw_12_14x14x512_s2", "conv2d_dgrad", 2),
         ("mobilenet_v1", "conv_dw_12_14x14x512_s2", "conv2d_wgrad", 2),
         ("resnet50", "res5a_1x1_downsample_s2", "conv2d_wgrad", 1),
         ("resnet50", "pool1_3x3_s2", "maxpool", 1), ("vgg16", "pool5_2x2", "maxpool", 2),
         ("seed", "dense_10816x10", "gemm", 3)]


def case_of(suite, problem, op, batch, dtype="fp32"):
    cases, _ = expand_cases([load_suite(suite)], [op], [batch], [dtype], [problem])
    return cases[0]


@pytest.mark.parametrize("suite,problem,op,batch", CASES, ids=[f"{c[2]}-{c[1]}" for c in CASES])
def test_reference_and_torch_agree_in_every_layout(suite, problem, op, batch):
    case = case_of(suite, problem, op, batch)
    sets = make_inputs(case, 2, "cpu", seed=3)
    fc = FastconvRunner("cpu")
    assert fc.available(case) == (True, "reference")
    ours = fc.setup(case, sets)[0]
    variants = TorchRunner("cpu").setup(case, sets)
    assert len(variants) == (1 if op == "gemm" else 2)
    for i in range(2):                               # both input sets, so the rotation index is honoured
        out = ours.canonical(ours.fn(i))
        assert tuple(out.shape) == case.output_shape
        for v in variants:
            err = rel_err(out, v.canonical(v.fn(i)))
            assert err < CHECK_TOL["fp32"] / 10, (v.label, err)
    assert rel_err(ours.canonical(ours.fn(0)), variants[0].canonical(variants[0].fn(1))) > 0.1  # sets differ


def test_make_inputs_is_random_normal_and_reproducible():
    case = case_of("seed", "conv_3x3_64", "conv2d_wgrad", 4)
    a, b = make_inputs(case, 2, "cpu", seed=1), make_inputs(case, 2, "cpu", seed=1)
    assert set(a[0]) == {"x", "dy"} and a[0]["x"].dtype == np.float32
    assert np.array_equal(a[1]["dy"], b[1]["dy"]) and not np.array_equal(a[0]["x"], a[1]["x"])
    assert np.count_nonzero(a[0]["x"]) == a[0]["x"].size and abs(float(a[0]["x"].std()) - 1) < 0.05
    with pytest.raises(ValueError, match="fp32"):
        make_inputs(case_of("seed", "conv_3x3_64", "conv2d_fprop", 1, "bf16"), 1, "cpu")


def test_rel_err():
    x = np.ones(10)
    assert rel_err(x, x) == 0.0
    assert np.isclose(rel_err(x * 1.01, x), 0.01)
    assert np.isnan(rel_err(np.full(10, np.nan), x))
    assert np.isclose(rel_err(torch.ones(10) * 1.5, x), 0.5)          # torch against NumPy on the CPU
    with pytest.raises(ValueError, match="shape"):
        rel_err(np.ones(3), np.ones(4))


def test_gpu_paths_explain_why_not():
    case = case_of("resnet50", "res2_3x3", "conv2d_fprop", 32, "bf16")
    ok, why = FastconvRunner("gpu").available(case)
    if not ok:
        assert why                                    # e.g. 'no fastconv GPU backend (native: ...)'
    cpu_bf16 = FastconvRunner("cpu").available(case)
    assert cpu_bf16[0] is False and "float32" in cpu_bf16[1]
    assert baseline_runner("none", "cpu") is None
    assert baseline_runner("cudnn", "gpu").label_for("conv2d_fprop") == "cudnn"
    assert baseline_runner("auto", "gpu").label_for("gemm") == "cublas"
    assert baseline_runner("torch", "cpu").label_for("gemm") == "torch-cpu"
    with pytest.raises(ValueError):
        baseline_runner("mkl", "cpu")


# ---- timing ---------------------------------------------------------------------------------------
class FakeClock:
    """Each call advances time by the cost of the fn that ran (recorded by the fns themselves)."""
    name = "fake"

    def __init__(self):
        self.now = 0.0

    def mark(self):
        return self.now

    def sync(self):
        pass

    def seconds(self, t0, t1):
        return t1 - t0


def test_time_alternating_rotates_sets_and_alternates():
    clock, calls = FakeClock(), []

    def make(name, cost):
        def fn(i):
            calls.append((name, i))
            clock.now += cost
        return fn
    out = time_alternating({"a": make("a", 1e-4), "b": make("b", 4e-4)}, n_sets=3, clock=clock, repeats=4, warmup=2,
                           target_sample_s=1e-3, max_inner=64)
    assert out["a"].inner == 10 and out["b"].inner == 3        # samples of ~1 ms: 1e-3 / cost
    assert all(abs(s - 1e-4) < 1e-12 for s in out["a"].samples_s) and len(out["b"].samples_s) == 4
    assert out["a"].median_s == pytest.approx(1e-4) and out["b"].median_s == pytest.approx(4e-4)
    sets_a = [i for n, i in calls if n == "a"]
    assert sets_a[:6] == [0, 1, 2, 0, 1, 2]                     # each call takes the next input set
    # rounds alternate which implementation goes first
    timed = [n for n, _ in calls[2 + 2 + 2:]]                   # after warm-up (2+2) and sizing (1+1)
    assert timed[0] == "a" and timed[10] == "b" and timed[13] == "b" and timed[16] == "a"


def test_timing_stats_and_deadline():
    t = Timing([1.0, 2.0, 3.0, 4.0, 100.0], inner=1, n_sets=2)
    assert t.median_s == 3.0 and t.min_s == 1.0 and t.quantile(0.25) == 2.0 and t.quantile(0.75) == 4.0
    assert t.spread == pytest.approx((4.0 - 2.0) / 3.0)
    assert t.to_json()["samples"] == 5
    clock = FakeClock()

    def fn(i):
        clock.now += 1e-3
    out = time_alternating({"a": fn}, 2, clock, repeats=1000, warmup=0, deadline=0.0)   # already past
    assert len(out["a"].samples_s) == 3                         # at least 3 rounds are kept


def test_rotation_sets():
    mb = 2**20
    # 60 MB L2, 2x margin: 120 MB / 10 MB per set = 12 sets
    assert rotation_sets(10 * mb, 60 * mb) == 12
    # a set larger than the cache: still 2, so consecutive calls never reuse one set
    assert rotation_sets(500 * mb, 60 * mb) == 2
    # tiny sets are capped, and the memory budget wins
    assert rotation_sets(1024, 60 * mb) == 512
    assert rotation_sets(10 * mb, 60 * mb, budget_bytes=35 * mb) == 3
    assert rotation_sets(100 * mb, 60 * mb, budget_bytes=50 * mb) == 1
