"""Data-parallel fit on GPUs over NCCL: the same code as the CPU tests, with CuPy buffers handed to
NCCL by DLPack and collectives ordered on CuPy's stream. Marked `gpu`; one GPU runs the one-rank
test, two or more also the two-rank one."""
import numpy as np
import pytest

from fastconv.backends.device import cuda_available

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cuda_available() or not torch.cuda.is_available(),
                                 reason="needs an NVIDIA GPU and a CUDA build of torch")]

import fastconv as fc  # noqa: E402
from fastconv import parallel  # noqa: E402

from dist_launch import free_port, launch  # noqa: E402
from dist_worker import SEED, build, data  # noqa: E402


@pytest.fixture
def nccl_world_of_one(monkeypatch):
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    group = parallel.init(timeout_s=120, device="cuda")
    try:
        yield group
    finally:
        parallel.shutdown()


def test_one_nccl_rank_equals_the_eager_one_process_path(nccl_world_of_one):
    assert nccl_world_of_one.backend == "nccl"
    (x, y), _ = data()
    runs = []
    for distributed in (parallel.DataParallel(bucket_bytes=256), False):
        with fc.using_device("cuda"):
            model = build()
            model.fit(x, y, epochs=2, batch_size=8, seed=SEED, verbose=0, graph=False, distributed=distributed)
        runs.append(model.get_weights())
    for a, b in zip(*runs):     # backward seeded with n/8, then divided by it: powers of two, exact
        np.testing.assert_array_equal(a, b)


def test_bucket_tensors_share_the_cupy_buffers(nccl_world_of_one):
    from fastconv.parallel.buckets import GradientBuckets
    (x, _), _ = data()
    with fc.using_device("cuda"):
        model = build()
        model._ensure_built(x.shape[1:])
    buckets = GradientBuckets(model.trainable_weights, nccl_world_of_one, bucket_bytes=256)
    for b in buckets.buckets:
        assert b.tensor.is_cuda and b.tensor.data_ptr() == b.flat.data.ptr


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_end_bitwise_identical(tmp_path):
    ranks = launch([tmp_path / "run", "--device", "cuda", "--timeout", 120], deadline_s=300)
    for rank in ranks:
        assert rank.returncode == 0, rank.stderr[-3000:]
    weights = []
    for r in range(2):
        with np.load(tmp_path / f"run.rank{r}.npz") as f:
            weights.append([f[k] for k in f.files])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
