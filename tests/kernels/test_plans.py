"""The host-side choices of the launch plans (fastconv/backends/plans/), without launching anything:
32- vs 64-bit indexing, tiles, vector width, split-k, and the backend choice."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from fastconv import backends
from fastconv.backends import jit
from fastconv.backends.plans.common import TILES, choose_splits, choose_tile, vector_width
from fastconv.backends.plans.gemm import gemm_config
from fastconv.shapes import needs_64bit_index

BIG = 2**31  # one element more than INT32_MAX


def test_needs_64bit_index_boundary():
    assert not needs_64bit_index((2**31 - 1,))
    assert needs_64bit_index((BIG,))
    assert needs_64bit_index((3, 4), (1024, 1024, 1024, 2))   # any one tensor is enough
    assert not needs_64bit_index((46340, 46340))               # 2147395600 < 2**31


def _ops():
    return jit.KernelOps(np, lambda *a, **k: None, lambda a: 0)


@pytest.mark.parametrize("shapes, index", [
    (((8, 56, 56, 64), (3, 3, 64, 64), (8, 56, 56, 64)), "int"),
    (((256, 224, 224, 192), (3, 3, 192, 64), (256, 224, 224, 64)), "int64_t"),   # x has 2.47e9 elements
    (((1, 1, 1, 1), (1, 1, 1, 1), (2**31 - 1, 1, 1, 1)), "int"),
    (((1, 1, 1, 1), (1, 1, 1, 1), (BIG, 1, 1, 1)), "int64_t"),
])
def test_index_type_is_64bit_exactly_when_a_tensor_needs_it(shapes, index):
    tile, vec, chosen = gemm_config(_ops(), np.float32, 10**6, 64, (64, 64), (0, 0), shapes)
    assert chosen == index
    if index == "int64_t":
        assert tile == "TileMedium"                              # the one 64-bit tile the registry holds
    assert f"fc::conv2d_fprop_implicit_gemm<fc::{tile}, {vec}, {chosen}, float>" in jit.all_kernel_names()


def test_double_uses_the_one_double_instantiation():
    assert gemm_config(_ops(), np.float64, 10**6, 64, (64,), (0,), ((4,),)) == ("TileSmall", 1, "int64_t")


@pytest.mark.parametrize("divisible, pointers, want", [
    ((64, 64, 128, 128), (0, 256), 4), ((3, 3, 64, 64), (0, 0), 1), ((64, 64, 64, 64), (0, 8), 1),
    ((4, 4, 4, 4), (16, 32), 4)])
def test_vector_width(divisible, pointers, want):
    assert vector_width(np.float32, divisible, pointers) == want
    assert vector_width(np.float64, divisible, pointers) == 1


def test_tile_choice_grows_with_the_problem():
    assert choose_tile(100, 10) == "TileSmall"
    assert choose_tile(8 * 56 * 56, 64) == "TileMedium"        # 392 x 1 blocks of 64 x 64
    assert choose_tile(64 * 56 * 56, 256) == "TileLarge"


@pytest.mark.parametrize("rows, cols, kdim", [(576, 64, 8 * 56 * 56), (27, 64, 100), (9, 1, 7), (4608, 512, 49 * 256),
                                              (9, 3, 1)])
def test_split_k_covers_the_reduction_exactly(rows, cols, kdim):
    for tile in TILES:
        splits, kps = choose_splits(rows, cols, kdim, tile)
        assert kps % TILES[tile][2] == 0 and splits >= 1
        assert (splits - 1) * kps < kdim <= splits * kps


def test_backend_choice(monkeypatch):
    monkeypatch.delenv("FASTCONV_BACKEND", raising=False)
    set_status = lambda native, jit_: monkeypatch.setattr(backends, "_gpu_status", lambda: (native, jit_))
    set_status((True, "ok"), (True, "ok"))
    assert backends.backend_for("cuda").__name__.endswith(".native")
    set_status((False, "no _C"), (True, "ok"))
    assert backends.backend_for("cuda").__name__.endswith(".jit")
    assert backends.backend_name("cuda") == "jit"
    assert backends.backend_for("cpu") is backends.reference
    monkeypatch.setenv("FASTCONV_BACKEND", "native")
    with pytest.raises(RuntimeError, match="FASTCONV_BACKEND=native is not available: no _C"):
        backends.backend_for("cuda")
    monkeypatch.setenv("FASTCONV_BACKEND", "reference")
    with pytest.raises(RuntimeError, match="NumPy arrays only"):
        backends.backend_for("cuda")
    monkeypatch.setenv("FASTCONV_BACKEND", "jit")
    assert backends.backend_for("cuda").__name__.endswith(".jit")
    set_status((False, "no _C"), (False, "no GPU"))
    monkeypatch.delenv("FASTCONV_BACKEND")
    with pytest.raises(RuntimeError, match="native: no _C; jit: no GPU"):
        backends.backend_for("cuda")


def test_backend_modules_expose_the_reference_api():
    from fastconv.backends import reference
    for name in jit.REFERENCE_API:
        assert hasattr(reference, name), name
        assert hasattr(jit.KernelOps, name), name
    assert set(jit.REFERENCE_API) >= {n for n in reference.__all__ if n not in ("im2col", "hash32")}


def test_reduction_modes_mirror_reduce_h():
    """plans/reduce.py names the modes of csrc/ops/reduce.h: the same names (less the k<Prefix>), the same values."""
    from fastconv.backends.plans.reduce import ColumnFinal, ColumnReduceMode, ScalarReduceMode
    text = (Path(__file__).resolve().parents[2] / "csrc" / "ops" / "reduce.h").read_text()
    for enum, prefix in ((ColumnReduceMode, "kCol"), (ColumnFinal, "kFinal"), (ScalarReduceMode, "kScalar")):
        body = re.search(rf"enum {enum.__name__} : int {{([^}}]*)}}", text).group(1)
        cpp = {re.sub(r"(?<!^)(?=[A-Z])", "_", name[len(prefix):]).upper(): int(value)
               for name, value in re.findall(r"(k\w+) = (\d+)", body)}
        assert cpp == {m.name: m.value for m in enum}, enum.__name__


def test_backend_modules_serve_the_ops_table_only():
    """jit, native and emulated serve KernelOps' ops as module functions, not the Launcher's fields or helpers."""
    from fastconv.backends import emulated, jit, native
    from fastconv.backends.plans import OPS
    assert {"conv2d_fprop", "gemm", "gemm_wgmma", "normalize_uint8", "sgd_update"} <= OPS
    assert not OPS & {"xp", "launch", "ptr", "executor", "force_tile", "c", "run1d", "tuned"}
    for module in (jit, native, emulated):
        with pytest.raises(AttributeError):
            module.force_tile
