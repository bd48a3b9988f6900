"""cp.async wrappers: copies with zero-fill, group accounting, reads before the wait."""
import numpy as np
import pytest

from fastconv import emulator
from fastconv.emulator import EmulatorError


@pytest.mark.parametrize("nbytes,cg", [(4, False), (8, False), (16, False), (16, True)])
@pytest.mark.parametrize("poison", [False, True])
def test_copy_with_zero_fill(nbytes, cg, poison):
    rng = np.random.default_rng(nbytes)
    blocks, threads, e = 3, 64, nbytes // 4
    src = rng.standard_normal(blocks * threads * e).astype(np.float32)
    src_bytes = rng.integers(0, nbytes + 1, blocks * threads).astype(np.int32)   # any byte count <= cp-size
    dst = np.full_like(src, 7.0)
    name = f"selftest.cp_async_copy{nbytes}" + ("_cg" if cg else "")
    emulator.launch(name, blocks, threads, (src, src_bytes, dst), poison_async=poison)
    want = src.view(np.uint8).reshape(-1, nbytes).copy()
    for i, n in enumerate(src_bytes):
        want[i, n:] = 0                  # bytes past src-size are zero-filled
    np.testing.assert_array_equal(dst.view(np.uint8).reshape(-1, nbytes), want)


def test_read_before_wait_sees_stale_data_or_nan_in_poison_mode():
    src = np.arange(1, 257, dtype=np.float32)
    out = np.zeros_like(src)
    emulator.launch("selftest.cp_async_stale_read", 2, 128, (src, out, 1), poison_async=True)
    np.testing.assert_array_equal(out, src)             # with the wait: correct in both modes
    emulator.launch("selftest.cp_async_stale_read", 2, 128, (src, out, 0))
    np.testing.assert_array_equal(out, -1.0)            # without: the old contents...
    emulator.launch("selftest.cp_async_stale_read", 2, 128, (src, out, 0), poison_async=True)
    assert np.isnan(out).all()                          # ...and NaN in poison mode


@pytest.mark.parametrize("order", ["forward", "reverse", "random"])
def test_double_buffered_pipeline_waits_for_exactly_the_older_group(order):
    rng = np.random.default_rng(4)
    chunks = 5
    src = rng.integers(-9, 10, chunks * 64).astype(np.float32)
    out = np.zeros(64, np.float32)
    emulator.launch("selftest.cp_async_pipeline", 1, 64, (src, out, chunks), order=order, poison_async=True)
    np.testing.assert_array_equal(out, src.reshape(chunks, 64)[:, (np.arange(64) + 1) % 64].sum(axis=0))


def test_misaligned_cp_async_is_reported():
    with pytest.raises(EmulatorError, match=r"selftest.cp_async_misaligned.*cp.async.ca.shared.global.*16-byte aligned"):
        emulator.launch("selftest.cp_async_misaligned", 1, 1, (np.zeros(4, np.float32), np.zeros(1, np.float32)))
