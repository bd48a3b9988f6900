"""Out-of-bounds accesses, faults and device asserts are reported, naming the kernel and argument."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastconv import emulator
from fastconv.emulator import EmulatorError


@pytest.mark.parametrize("index,elements", [(10, "(elements 10..10)"), (11, "(elements 11..11)"), (-1, "(elements -1..-1)"),
                                            (64, ": element 64 (byte offset 256)"),
                                            (5000, ": element 5000 (byte offset 20000)")])
def test_write_just_out_of_bounds_is_caught_and_named(index, elements):
    """Within the 256-byte rounding of the array's end (or before its start) the guard bytes are
    compared after the launch, and a rerun names the thread; from the next page on the guard is
    read-only and the write faults at once."""
    out = np.zeros(10, np.float32)
    with pytest.raises(EmulatorError) as err:
        emulator.launch("selftest.write_at", 1, 32, (out, index, 3.0))
    msg = str(err.value)
    assert "kernel 'selftest.write_at' block (0,0,0): thread (0,0,0): " in msg
    assert "out-of-bounds write to argument 0 (float*, 10 elements)" in msg
    assert elements in msg
    np.testing.assert_array_equal(out, 0)   # nothing is copied back from a failed launch


def test_in_bounds_write_passes():
    out = np.zeros(10, np.float32)
    emulator.launch("selftest.write_at", 1, 32, (out, 9, 3.0))
    np.testing.assert_array_equal(out, [0] * 9 + [3])


@pytest.mark.parametrize("index", [10, 100, -1, -3000])
def test_out_of_bounds_read_returns_nan(index):
    x, out = np.arange(10, dtype=np.float32), np.zeros(1, np.float32)
    emulator.launch("selftest.read_at", 1, 1, (x, out, index))
    assert np.isnan(out[0])


def test_dynamic_shared_memory_overflow_is_caught():
    emulator.launch("selftest.write_dynamic_shared_at", 1, 32, (7,), shared_bytes=32)
    with pytest.raises(EmulatorError, match=r"write_dynamic_shared_at.*block \(0,0,0\).*dynamic shared memory \(shared_bytes=32\)"):
        emulator.launch("selftest.write_dynamic_shared_at", 1, 32, (8,), shared_bytes=32)


def test_dynamic_shared_memory_used_without_shared_bytes_is_caught():
    """With no dynamic shared memory the guard page starts at its address: the write faults at once."""
    with pytest.raises(EmulatorError, match=r"block \(0,0,0\): thread \(\d+,0,0\): out-of-bounds write to dynamic shared "
                                            r"memory \(shared_bytes=0\): byte offset 0"):
        emulator.launch("selftest.write_dynamic_shared_at", 1, 32, (0,))


def test_device_assert_is_reported():
    emulator.launch("selftest.device_assert", 1, 4, (np.array([1, 2, 3, 4], np.int32),))
    with pytest.raises(EmulatorError, match=r"device_assert.*thread \(2,0,0\).*assertion `values\[threadIdx.x\] >= 0` failed at .*races.cuh"):
        emulator.launch("selftest.device_assert", 1, 4, (np.array([1, 2, -3, 4], np.int32),))


def test_the_same_array_passed_twice_is_one_buffer():
    x = np.arange(8, dtype=np.float32)
    emulator.launch("selftest.in_place_scale", 1, 8, (x, x, 2.0, 8))
    np.testing.assert_array_equal(x, np.arange(8) * 2)


def test_partly_overlapping_arrays_are_rejected():
    x = np.arange(16, dtype=np.float32)
    with pytest.raises(ValueError, match="argument 1.*partly overlaps"):
        emulator.launch("selftest.in_place_scale", 1, 8, (x[:8], x[4:12], 2.0, 8))


# Faults in device code: run in a subprocess so that a broken fault net fails the test instead of
# killing the test process.
@pytest.fixture(scope="module")
def fault_reports():
    script = textwrap.dedent("""
        import json, numpy as np
        from fastconv import emulator
        out = {}
        cases = {
            "far_after": ("selftest.write_at", (np.zeros(10, np.float32), 10**6, 1.0)),
            "far_before": ("selftest.write_at", (np.zeros(10, np.float32), -10**6, 1.0)),
            "wild": ("selftest.write_at", (np.zeros(10, np.float32), 2**61, 1.0)),
            "divide": ("selftest.integer_divide", (np.array([1, 2], np.int32), np.array([1, 0], np.int32),
                                                   np.zeros(2, np.int32))),
            "stack": ("selftest.stack_hog", (np.zeros(2, np.float32), 80 * 1024)),
        }
        for key, (name, args) in cases.items():
            try:
                emulator.launch(name, 1, 2, args)
                out[key] = None
            except emulator.EmulatorError as e:
                out[key] = str(e)
        # the process and the emulator still work afterwards
        x = np.zeros(4, np.float32)
        emulator.launch("selftest.write_at", 1, 1, (x, 1, 5.0))
        out["after"] = x.tolist()
        print(json.dumps(out))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_far_out_of_bounds_write_faults_and_names_the_argument(fault_reports):
    for key, off in [("far_after", "4000000"), ("far_before", "-4000000")]:
        msg = fault_reports[key]
        assert msg and "kernel 'selftest.write_at' block (0,0,0): thread (0,0,0)" in msg
        assert f"out-of-bounds access to argument 0 (float*, 40 bytes): byte offset {off}" in msg


def test_wild_pointer_and_integer_division_by_zero_are_reported(fault_reports):
    assert "invalid memory access" in fault_reports["wild"]
    assert "thread (1,0,0)" in fault_reports["divide"] and "SIGFPE" in fault_reports["divide"]
    assert fault_reports["after"] == [0.0, 5.0, 0.0, 0.0]


def test_stack_overflow_is_reported(fault_reports):
    msg = fault_reports["stack"]
    assert msg and "kernel 'selftest.stack_hog'" in msg and "stack overflow" in msg
