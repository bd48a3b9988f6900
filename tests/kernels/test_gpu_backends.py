"""The native and jit backends on a real GPU, against the reference, over the same CASES as the
emulator tests (skipped without CuPy and a GPU; run on a GPU machine with
`python -m pytest tests/kernels/test_gpu_backends.py -q`)."""
from __future__ import annotations

import numpy as np
import pytest

from fastconv.backends import reference as ref
from conftest import assert_same
from test_emulated_kernels import CASES

pytestmark = pytest.mark.gpu


def _gpu_ops(name):
    from fastconv.backends.device import cuda_status
    ok, why = cuda_status()
    if not ok:
        pytest.skip(why)
    from fastconv.backends import jit, native
    status = (native if name == "native" else jit).status()
    if not status[0]:
        pytest.skip(status[1])
    module = native if name == "native" else jit
    return module._ops()


class _OnDevice:
    """Wraps KernelOps so the NumPy case inputs go to the GPU and the outputs come back."""

    def __init__(self, ops, knobs):
        import cupy
        self.ops, self.cupy = ops, cupy
        for k in ("force_tile", "force_vec", "force_index64", "force_splits"):
            setattr(ops, k, knobs.get(k))

    def __getattr__(self, name):
        fn = getattr(self.ops, name)

        def call(*args, **kwargs):
            conv = lambda a: self.cupy.asarray(a) if isinstance(a, np.ndarray) else a
            out = fn(*[conv(a) for a in args], **{k: conv(v) for k, v in kwargs.items()})
            back = lambda a: a.get() if hasattr(a, "get") else a
            return tuple(back(o) for o in out) if isinstance(out, tuple) else back(out)
        return call


@pytest.mark.parametrize("backend", ["native", "jit"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gpu_kernel_matches_reference(case, backend):
    dev = _OnDevice(_gpu_ops(backend), case.knobs)
    rng = np.random.default_rng(0)
    for ints in (True, False):
        for dtype in case.dtypes:
            inputs = case.make(rng, ints, dtype)
            want = case.run(ref, {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in inputs.items()})
            got = case.run(dev, inputs)
            want = want if isinstance(want, tuple) else (want,)
            got = got if isinstance(got, tuple) else (got,)
            for i, (g, w) in enumerate(zip(got, want)):
                if w is None:
                    continue
                w = np.asarray(w)
                w = w.astype(dtype, copy=False) if w.dtype.kind == "f" else w
                # GPUs contract a*b+c into FMAs and flush denormals: exact only where sums are exact.
                assert_same(np.asarray(g), w, exact=ints and case.exact, rtol=max(case.rtol, 1e-4),
                            atol=max(case.atol, 1e-4), what=f"{backend} {case.name} output {i}")
