"""The jit executor between the plans and the driver, with CuPy's loaders and driver calls replaced by fakes:
the dynamic shared-memory opt-in, the per-device function cache, and the per-device sm_90a probe whose
failures (no CUDA headers, a cubin the driver cannot load) fall back to the mma.sync GEMM with a note."""
import numpy as np
import pytest

from fastconv.backends.plans import KernelOps
from fastconv.backends.plans.gemm import wgmma_kernel_names
from fastconv.explain import explain

cupy = pytest.importorskip("cupy")
from fastconv.backends import jit  # noqa: E402  (after the skip: the executor needs CuPy)

WGMMA = wgmma_kernel_names()[0]   # bf16 in, float32 out: the one the probe loads
PLAIN = "fc::max_pool2d_fprop<float, uint8_t>"
MAX_DYNAMIC_SHARED_SIZE_BYTES = cupy.cuda.driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
# 12 x 22 output tiles of 128 x 128: enough to fill the GPU, so only the probe decides
BIG = (12 * 128, 22 * 128, 64)


class FakeFunction:
    """Stands for cupy.cuda.function.Function: a handle and a call, and (like it) no other attributes."""
    __slots__ = ("ptr", "device", "calls")

    def __init__(self, ptr, device):
        self.ptr, self.device, self.calls = ptr, device, []

    def __call__(self, grid, block, args, shared_mem=0):
        self.calls.append((grid, block, args, shared_mem))


class FakeCuda:
    """The CuPy entry points the executor uses: the current device, RawModule, Module and funcSetAttribute."""

    def __init__(self, monkeypatch, load_error=None, nvrtc=False):
        # load_error: device -> the exception Module.load raises there; nvrtc: compile with the real NVRTC
        self.device, self.load_error = 0, load_error
        self.functions, self.attributes, self.compiled = [], [], []
        fake = self

        class RawKernel:   # as CuPy's: one Function per device, called and configured on the current one
            def __init__(self, name):
                self.name, self.per_device = name, {}

            @property
            def kernel(self):
                if fake.device not in self.per_device:
                    self.per_device[fake.device] = fake.new_function()
                return self.per_device[fake.device]

            def __call__(self, *args, **kwargs):
                self.kernel(*args, **kwargs)

            @property
            def max_dynamic_shared_size_bytes(self):
                raise NotImplementedError

            @max_dynamic_shared_size_bytes.setter
            def max_dynamic_shared_size_bytes(self, value):
                cupy.cuda.driver.funcSetAttribute(self.kernel.ptr, MAX_DYNAMIC_SHARED_SIZE_BYTES, value)

        class RawModule:
            def __init__(self, code, options, name_expressions):
                fake.compiled.append(tuple(name_expressions))

            def get_function(self, name):
                return RawKernel(name)

        class Module:
            def load(self, cubin):
                assert cubin.startswith(b"\x7fELF")
                if fake.load_error and fake.device in fake.load_error:
                    raise fake.load_error[fake.device]

            def get_function(self, mangled):
                return fake.new_function()

        def compile_sm90a(name):
            fake.compiled.append((name,))
            return b"\x7fELF fake sm_90a cubin", "_Z" + name

        monkeypatch.setattr(cupy.cuda.runtime, "getDevice", lambda: fake.device)
        monkeypatch.setattr(cupy, "RawModule", RawModule)
        monkeypatch.setattr(cupy.cuda.function, "Module", Module)
        monkeypatch.setattr(cupy.cuda.driver, "funcSetAttribute", lambda f, a, v: fake.attributes.append((f, a, v)))
        if not nvrtc:
            monkeypatch.setattr(jit, "compile_sm90a", compile_sm90a)

    def new_function(self):
        fn = FakeFunction(0x1000 + 0x100 * len(self.functions), self.device)
        self.functions.append(fn)
        return fn


def _driver_error(message):
    """A CuPy CUDADriverError as Module.load raises it (made without a driver)."""
    err = cupy.cuda.driver.CUDADriverError.__new__(cupy.cuda.driver.CUDADriverError)
    RuntimeError.__init__(err, message)
    return err


def _hopper_ops(ex):
    """The jit plans wired to `ex` as jit._ops wires them, on an sm_90 device, with launches recorded."""
    launched = []
    ops = KernelOps(np, lambda kernel, *a, **k: launched.append(kernel), lambda a: int(a.ctypes.data),
                    **jit.executor_fields(ex))
    ops.sm90_target = lambda: "sm90"
    return ops, launched


def _fallback(ops, launched):
    """gemm_wgmma on a large fp16 problem: the kernel it launched and its explain notes."""
    m, n, k = BIG
    report = explain(lambda: ops.gemm_wgmma(np.ones((m, k), np.float16), np.ones((k, n), np.float16)))
    return launched[-1], [e.text for e in report.events if e.kind == "note"]


def test_dynamic_shared_memory_above_48k_is_allowed_through_the_driver_once_per_device_and_kernel(monkeypatch):
    bindings = pytest.importorskip("cuda.bindings.driver")
    attr = int(bindings.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)
    fake = FakeCuda(monkeypatch)
    ex = jit._CupyExecutor()
    big = jit.DEFAULT_SHARED_BYTES + 1
    for kernel, shared in ((WGMMA, 0), (WGMMA, jit.DEFAULT_SHARED_BYTES), (PLAIN, jit.DEFAULT_SHARED_BYTES)):
        ex.launch(kernel, (1,), (128,), (), shared_bytes=shared)
    assert fake.attributes == []                      # the default limit needs no opt-in
    ex.launch(WGMMA, (1,), (384,), (), shared_bytes=200_000)
    ex.launch(WGMMA, (1,), (384,), (), shared_bytes=200_000)
    ex.launch(WGMMA, (1,), (384,), (), shared_bytes=big)   # within what it was allowed
    ex.launch(PLAIN, (1,), (128,), (), shared_bytes=big)
    fake.device = 1
    ex.launch(WGMMA, (1,), (384,), (), shared_bytes=200_000)
    wgmma0, plain0, wgmma1 = (ex.function(WGMMA, 0), ex.function(PLAIN, 0), ex.function(WGMMA, 1))
    assert fake.attributes == [(wgmma0.ptr, attr, 200_000), (plain0.ptr, attr, big), (wgmma1.ptr, attr, 200_000)]
    assert [c[3] for c in wgmma0.calls] == [0, jit.DEFAULT_SHARED_BYTES, 200_000, 200_000, big]
    assert [c[3] for c in wgmma1.calls] == [200_000]


def test_struct_arguments_reach_the_function_as_one_element_arrays(monkeypatch):
    FakeCuda(monkeypatch)
    ex = jit._CupyExecutor()
    problem = np.array([tuple(range(16))], np.dtype([(f"f{i}", np.int32) for i in range(16)]))[0]
    ex.launch(PLAIN, (1,), (32,), (problem, np.int32(7)))
    (_, _, args, _), = ex.function(PLAIN).calls
    assert isinstance(args[0], np.ndarray) and args[0].size == 1 and args[0].tobytes() == problem.tobytes()
    assert args[1] == 7


def test_each_device_gets_its_own_functions(monkeypatch):
    fake = FakeCuda(monkeypatch)
    ex = jit._CupyExecutor()
    for device in (0, 1, 0, 1):
        fake.device = device
        for kernel in (PLAIN, WGMMA):
            ex.launch(kernel, (1,), (32,), ())
    for kernel in (PLAIN, WGMMA):
        f0, f1 = ex.function(kernel, 0), ex.function(kernel, 1)
        assert (f0.device, f1.device) == (0, 1) and len(f0.calls) == len(f1.calls) == 2
    assert sorted(fake.compiled) == sorted([(PLAIN,), (WGMMA,)])   # compiled once, loaded once per device
    fake.device = 1
    assert set(ex.loaded()) == {PLAIN, WGMMA} and ex.loaded()[PLAIN] is ex.function(PLAIN, 1)


def test_missing_cuda_headers_fall_back_to_mma_sync_with_a_note(monkeypatch):
    pytest.importorskip("cuda.bindings.nvrtc")
    from fastconv.backends import nvrtc_check
    FakeCuda(monkeypatch, nvrtc=True)

    def no_headers():
        raise FileNotFoundError("no CUDA include directory with cuda_fp16.h found; set CUDA_HOME")
    monkeypatch.setattr(nvrtc_check, "cuda_include_dirs", no_headers)
    ex = jit._CupyExecutor()
    ok, why = ex.sm90a_support()
    assert not ok and "no CUDA headers" in why and "set CUDA_HOME" in why
    assert jit.sm90a_compiler_status() == (False, "NVRTC has no CUDA headers (no CUDA include directory with "
                                                  "cuda_fp16.h found; set CUDA_HOME)")
    kernel, notes = _fallback(*_hopper_ops(ex))
    assert kernel.startswith("fc::gemm_tensor_op<"), kernel
    assert any(n.startswith("gemm_tensor_op (mma.sync) instead of the sm_90a wgmma GEMM: jit: NVRTC has no CUDA "
                            "headers") for n in notes), notes


def test_a_cubin_the_driver_cannot_load_falls_back_with_a_note(monkeypatch):
    error = _driver_error("CUDA_ERROR_UNSUPPORTED_PTX_VERSION: the provided PTX was compiled with an unsupported "
                          "toolchain.")
    fake = FakeCuda(monkeypatch, load_error={0: error})
    ex = jit._CupyExecutor()
    kernel, notes = _fallback(*_hopper_ops(ex))
    assert kernel.startswith("fc::gemm_tensor_op<"), kernel
    note = next(n for n in notes if "instead of the sm_90a wgmma GEMM" in n)
    assert "could not load the sm_90a cubin" in note and "CUDA_ERROR_UNSUPPORTED_PTX_VERSION" in note, note
    assert fake.compiled.count((WGMMA,)) == 1 and ex.sm90a == {0: (False, note.split("GEMM: ", 1)[1])}
    _fallback(*_hopper_ops(ex))
    assert fake.compiled.count((WGMMA,)) == 1   # the answer is kept: no second compile or load


def test_the_sm90a_probe_is_per_device(monkeypatch):
    fake = FakeCuda(monkeypatch, load_error={1: _driver_error("CUDA_ERROR_NO_BINARY_FOR_GPU: no kernel image")})
    ex = jit._CupyExecutor()
    ops, launched = _hopper_ops(ex)
    m, n, k = BIG
    assert ops.wgmma_applies(m, n, k, np.float16)[0]
    fake.device = 1
    ok, why = ops.wgmma_applies(m, n, k, np.float16)
    assert not ok and "CUDA_ERROR_NO_BINARY_FOR_GPU" in why
    kernel, notes = _fallback(ops, launched)
    assert kernel.startswith("fc::gemm_tensor_op<") and any("CUDA_ERROR_NO_BINARY_FOR_GPU" in n for n in notes)
    fake.device = 0
    assert ops.wgmma_applies(m, n, k, np.float16)[0]
    assert fake.compiled.count((WGMMA,)) == 1   # one compile serves every device
    assert ex.function(WGMMA, 0).device == 0 and (1, WGMMA) not in ex.functions


def test_jit_status_says_whether_the_sm90a_kernels_can_be_compiled(monkeypatch):
    from fastconv.backends import device
    from fastconv.backends import nvrtc_check
    if not nvrtc_check.available():
        pytest.skip("NVRTC (cuda-bindings) is not installed")
    monkeypatch.setattr(device, "cuda_status", lambda: (True, "1 GPU(s) visible to CuPy"))
    monkeypatch.setattr(cupy.cuda, "Device", lambda: type("Hopper", (), {"compute_capability": "90"})())
    ok, why = jit.status()
    assert ok and "sm_90a wgmma kernels: compiled at first use (NVRTC " in why, why

    def no_headers():
        raise FileNotFoundError("no CUDA include directory with cuda_fp16.h found; set CUDA_HOME")
    monkeypatch.setattr(nvrtc_check, "cuda_include_dirs", no_headers)
    ok, why = jit.status()
    assert ok and "sm_90a wgmma kernels: no (NVRTC has no CUDA headers" in why and "gemm_tensor_op" in why, why
    monkeypatch.setattr(cupy.cuda, "Device", lambda: type("Ampere", (), {"compute_capability": "80"})())
    assert "sm_90a" not in jit.status()[1]
