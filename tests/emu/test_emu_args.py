"""launch(): the kernel table, argument conversion and its errors."""
import numpy as np
import pytest

from fastconv import emulator
from fastconv.emulator import EmulatorError


def test_kernels_lists_names_with_signatures():
    ks = emulator.kernels()
    assert ks["selftest.sgemm_tiled"] == "fc_selftest::sgemm_tiled<16, true>(const float*, const float*, float*, int, int, int)"
    assert ks["selftest.axpy_params"] == "fc_selftest::axpy_params(fc_selftest::AxpyParams, const float*, float*)"
    assert ks["selftest.half_axpy"] == "fc_selftest::half_axpy(float, const __half*, __half*, int)"
    assert issubclass(EmulatorError, RuntimeError)


def test_unknown_kernel():
    with pytest.raises(EmulatorError, match="unknown kernel 'nope'"):
        emulator.launch("nope", 1, 1, ())


def test_wrong_argument_count_names_the_kernel_and_signature():
    with pytest.raises(TypeError, match=r"kernel 'selftest.in_place_scale' takes 4 arguments \(.*in_place_scale\(const float\*, float\*, float, int\)\), got 3"):
        emulator.launch("selftest.in_place_scale", 1, 1, (np.zeros(1, np.float32),) * 2 + (1.0,))


@pytest.mark.parametrize("bad,got", [(np.zeros(4, np.float64), "float64"), (np.zeros(4, np.int32), "int32"),
                                     (np.zeros(4, np.float16), "float16")])
def test_dtype_mismatch_names_kernel_and_argument_index(bad, got):
    ok = np.zeros(4, np.float32)
    with pytest.raises(TypeError, match=rf"kernel 'selftest.in_place_scale' argument 1 \(float\*\): expected a NumPy array of dtype float32, got dtype {got}"):
        emulator.launch("selftest.in_place_scale", 1, 4, (ok, bad, 1.0, 4))


def test_array_argument_errors():
    x = np.zeros(8, np.float32)
    with pytest.raises(TypeError, match=r"argument 0 \(const float\*\): expected a NumPy array of dtype float32, got list"):
        emulator.launch("selftest.in_place_scale", 1, 4, ([0.0] * 4, x, 1.0, 4))
    with pytest.raises(ValueError, match=r"argument 1 .*C-contiguous"):
        emulator.launch("selftest.in_place_scale", 1, 4, (x[::2].copy(), x[::2], 1.0, 4))
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    emulator.launch("selftest.in_place_scale", 1, 4, (ro, np.zeros(4, np.float32), 1.0, 4))  # const: fine
    with pytest.raises(ValueError, match=r"argument 1 .*read-only"):
        emulator.launch("selftest.in_place_scale", 1, 4, (x[:4], ro, 1.0, 4))


def test_const_inputs_are_not_written_back_and_outputs_are():
    x, y = np.arange(4, dtype=np.float32), np.zeros(4, np.float32)
    emulator.launch("selftest.in_place_scale", 1, 4, (x, y, 3.0, 4))
    np.testing.assert_array_equal(x, np.arange(4))
    np.testing.assert_array_equal(y, np.arange(4) * 3)


def scalar_args(**override):
    vals = dict(a=-128, b=255, c=-32768, d=65535, e=-2**31, f=2**32 - 1, g=-2**63, h=2**64 - 1, fl=1.5, db=1e300,
                k=True, hf=65504.0, bf=-3.0e38)
    vals.update(override)
    return vals


def run_scalars(**override):
    out_i, out_f = np.zeros(9, np.int64), np.zeros(4, np.float64)
    emulator.launch("selftest.scalar_types", 1, 1, (*scalar_args(**override).values(), out_i, out_f))
    return out_i, out_f


def test_scalar_parameters_arrive_converted():
    out_i, out_f = run_scalars()
    np.testing.assert_array_equal(out_i, [-128, 255, -32768, 65535, -2**31, 2**32 - 1, -2**63, -1, 1])  # h wraps as int64
    np.testing.assert_array_equal(out_f[:3], [1.5, 1e300, 65504.0])
    assert out_f[3] == np.uint32(0xFF620000).view(np.float32)   # -3.0e38 rounded to bfloat16
    out_i, out_f = run_scalars(a=np.int8(5), e=np.int64(7), fl=np.float32(0.25), k=np.bool_(False), hf=1 / 3)
    assert out_i[0] == 5 and out_i[4] == 7 and out_i[8] == 0 and out_f[0] == 0.25
    assert out_f[2] == float(np.float16(1 / 3))     # __half parameter: rounded to nearest even


@pytest.mark.parametrize("field,value", [("a", 128), ("a", -129), ("b", -1), ("b", 256), ("c", 2**15), ("d", 2**16),
                                         ("e", 2**31), ("f", -1), ("g", 2**63), ("h", 2**64), ("h", -1),
                                         ("fl", 1e39), ("hf", 65520.0), ("bf", 3.4e38 * 1.01), ("k", 2)])
def test_scalar_out_of_range_raises_overflow_error(field, value):
    idx = list(scalar_args()).index(field)
    with pytest.raises(OverflowError, match=rf"kernel 'selftest.scalar_types' argument {idx} "):
        run_scalars(**{field: value})


@pytest.mark.parametrize("field,value", [("a", 1.5), ("e", "3"), ("fl", "1.0"), ("fl", None), ("k", 1.0),
                                         ("e", np.zeros(1, np.int32))])
def test_scalar_of_the_wrong_kind_raises_type_error(field, value):
    idx = list(scalar_args()).index(field)
    with pytest.raises(TypeError, match=rf"kernel 'selftest.scalar_types' argument {idx} "):
        run_scalars(**{field: value})


PARAMS = np.dtype([("alpha", np.float32), ("n", np.int32), ("stride", np.int64)])


def test_struct_parameter_from_bytes_or_structured_scalar():
    x = np.arange(12, dtype=np.float32)
    for params in (np.array((2.0, 6, 2), PARAMS)[()], np.array([(2.0, 6, 2)], PARAMS),
                   np.array((2.0, 6, 2), PARAMS).tobytes()):
        y = np.ones(12, np.float32)
        emulator.launch("selftest.axpy_params", 1, 8, (params, x, y))
        want = np.ones(12, np.float32)
        want[::2] += 2 * x[::2]
        np.testing.assert_array_equal(y, want)


def test_struct_parameter_of_the_wrong_size_or_kind():
    x, y = np.zeros(4, np.float32), np.zeros(4, np.float32)
    with pytest.raises(TypeError, match=r"argument 0 \(fc_selftest::AxpyParams\): expected bytes .* exactly 16 bytes, got 12 bytes"):
        emulator.launch("selftest.axpy_params", 1, 4, (b"\0" * 12, x, y))
    with pytest.raises(TypeError, match=r"argument 0 .*got an array of dtype float32"):
        emulator.launch("selftest.axpy_params", 1, 4, (np.zeros(4, np.float32), x, y))
    with pytest.raises(TypeError, match=r"argument 0 .*got float"):
        emulator.launch("selftest.axpy_params", 1, 4, (1.0, x, y))


def test_vector_type_pointers_and_vector_by_value():
    x = np.arange(16, dtype=np.float32)
    out = np.zeros(16, np.float32)
    bias = np.array([10, 20, 30, 40], np.float32).tobytes()   # a float4 by value
    emulator.launch("selftest.vector_pointers", 1, 4, (x, out, bias, 4))
    v = x.reshape(4, 4) + [10, 20, 30, 40]
    np.testing.assert_array_equal(out, np.concatenate([v[:, :2].ravel(), v[:, 2:].ravel()]))
    with pytest.raises(ValueError, match=r"argument 0 \(const float4\*\).*not a whole number of 16-byte elements"):
        emulator.launch("selftest.vector_pointers", 1, 4, (x[:6], out, bias, 1))


@pytest.mark.parametrize("grid,block,err", [(0, 32, ValueError), (1, 1025, ValueError), (1, (32, 33), ValueError),
                                            (1, (1, 1, 65), ValueError), ((1, 2, 3, 4), 1, TypeError),
                                            (1.0, 1, TypeError), ((1, 65536), 1, ValueError)])
def test_launch_configuration_is_checked(grid, block, err):
    with pytest.raises(err):
        emulator.launch("selftest.write_at", grid, block, (np.zeros(1, np.float32), 0, 1.0))


def test_shared_bytes_and_seed_are_checked():
    args = (np.zeros(1, np.float32), 0, 1.0)
    with pytest.raises(ValueError, match="shared_bytes"):
        emulator.launch("selftest.write_at", 1, 1, args, shared_bytes=-1)
    with pytest.raises(ValueError, match="shared_bytes"):
        emulator.launch("selftest.write_at", 1, 1, args, shared_bytes=10**7)
    with pytest.raises(ValueError, match="seed"):
        emulator.launch("selftest.write_at", 1, 1, args, order="random", seed=-1)
