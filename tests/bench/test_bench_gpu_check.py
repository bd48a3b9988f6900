"""benchmarks/gpu_check.sh: valid bash, a dry run that lists the stages, argument errors, and (on a
machine without GPU tools) a stub run of the stage machinery with every python call replaced by echo."""
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.sh"
STAGES = ["env", "install", "build_C", "pytest_gpu", "memcheck", "racecheck", "bench_conv", "predictions",
          "bench_gemm_pool", "train_step", "profile", "ncu_counters", "pytest_bench", "results"]
HOPPER = ["env", "install", "build_C", "bench_conv", "predictions", "train_step", "results"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def run(*args, env=None, timeout=60):
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_syntax():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


def test_dry_run_prints_every_stage_and_runs_nothing(tmp_path):
    out = tmp_path / "out"
    p = run("--dry-run", str(out))
    assert p.returncode == 0, p.stderr
    for stage in STAGES:
        assert f"[{stage}] timeout" in p.stdout
    for needle in ("pip install --no-build-isolation --no-deps -e .", "pytest -m gpu", "compute-sanitizer",
                   "--baseline cudnn", "--op gemm,maxpool", "--op train_step", "fastconv.bench.results merge"):
        assert needle in p.stdout or needle in SCRIPT.read_text()
    assert "memcheck" in p.stdout and "racecheck" in p.stdout
    assert not out.exists()                                   # a dry run writes nothing


def test_stage_timeouts_fit_eight_minutes():
    text = SCRIPT.read_text()
    assert 'BUDGET="${GPU_CHECK_BUDGET:-450}"' in text        # the whole run stops under 8 min = 480 s
    assert "timeout --kill-after=10" in text
    assert "cupy" in (SCRIPT.parent.parent / "fastconv" / "bench" / "sanitize_check.py").read_text()
    assert "PYTORCH_NO_CUDA_MEMORY_CACHING=1" in text


def test_usage_errors():
    assert run().returncode == 2
    assert run("--bogus", "x").returncode == 2
    assert run("a", "b").returncode == 2
    p = run("--dry-run", "--stages", "env,bogus", "x")
    assert p.returncode == 2 and "unknown stage 'bogus'" in p.stderr
    assert run("--dry-run", "x", "--stages").returncode == 2


def test_hopper_stages_are_issue_16s_bf16_checks(tmp_path):
    """--stages hopper: only the bf16 conv suites against cuDNN, the predictions beside them and the bf16 training
    steps (with what they need), sized for one lease: their caps fit the 450 s budget less the install's."""
    p = run("--dry-run", "--stages", "hopper", str(tmp_path / "out"))
    assert p.returncode == 0, p.stderr
    listed = [line[1:line.index("]")] for line in p.stdout.splitlines() if line.startswith("[")]
    assert listed == HOPPER
    conv = p.stdout[p.stdout.index("[bench_conv]"):p.stdout.index("[predictions]")]
    for needle in ("--suite resnet50,vgg16,mobilenet_v1", "--op conv2d_fprop,conv2d_dgrad,conv2d_wgrad",
                   "--dtype bf16 ", "--baseline cudnn"):
        assert needle in conv
    train = p.stdout[p.stdout.index("[train_step]"):p.stdout.index("[results]")]
    assert "--model seed,resnet18 --dtype bf16" in train
    assert "scripts/predict_sm90_convs.py --batch 32 --compare" in p.stdout
    assert (SCRIPT.parents[1] / "scripts" / "predict_sm90_convs.py").exists()


@pytest.mark.skipif(any(shutil.which(t) for t in ("nvidia-smi", "compute-sanitizer", "ncu")),
                    reason="stub run only where no GPU tools could be started")
def test_stub_run_records_every_stage_and_fails_without_results(tmp_path):
    import os
    env = dict(os.environ, PYTHON="echo", GPU_CHECK_BUDGET="120")
    p = run(str(tmp_path / "out"), env=env)
    assert p.returncode == 1                                  # no benchmark JSON: the results stage fails
    summary = (tmp_path / "out" / "summary.txt").read_text()
    for stage in STAGES:
        assert stage in summary
    assert "memcheck         SKIP" in summary and "results          FAIL" in summary
    assert p.stdout.rstrip().splitlines()[-1].startswith(("check.log", "summary.txt"))   # the table is last
    assert len(list((tmp_path / "out").iterdir())) <= 9
    assert "predictions      SKIP" in summary                   # no bench JSON to set the predictions beside
    p = run("--stages", "hopper", str(tmp_path / "hop"), env=env)
    summary = (tmp_path / "hop" / "summary.txt").read_text()
    assert [s for s in STAGES if s + " " in summary] == HOPPER


def test_plain_pytest_does_not_collect_the_benchmarks():
    """`python -m pytest` from the root runs testpaths = tests only; benchmarks/ needs naming explicitly."""
    tomllib = pytest.importorskip("tomllib")
    root = SCRIPT.parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert config["testpaths"] == ["tests"]
    assert not (root / "conftest.py").exists() and list((root / "benchmarks").glob("test_*.py"))
