"""Float32 tolerances derived from a baseline's own error, for computations that amplify rounding.

A float32 result of a long computation (a deep BatchNorm stack, training steps) is off from the
exact one by rounding the computation amplifies, and how much depends on the order the CPU's BLAS
sums in: OpenBLAS's SkylakeX kernels sum differently from its Haswell ones, so a fixed bound that
holds on one CPU fails on another. Instead each such test runs the computation three times: ours
in float32, a trusted baseline (torch) in float32, and the baseline in float64 as the exact answer.
Ours must land as close to the exact answer as the baseline does, within FACTOR, plus FLOOR_ULPS
float32 ulps of the result's size (for a result the baseline happens to round exactly).

FACTOR and FLOOR_ULPS were measured on tests/torch/test_torch_resnet.py's network (ResNet-18 at
width 8) on an AMD EPYC (no AVX-512, so OpenBLAS's SkylakeX kernels could not run). Five
teacher-forced SGD steps, 10 initial seeds x 2 batches under OPENBLAS_CORETYPE Haswell, Prescott
and Nehalem: every weight, BN statistic and loss within 3.1x torch's error where that was 3 ulps
or more, and within 9 ulps where it was less. One forward/backward, 6 seeds x 2 stems (Haswell) and
4 x 2 (Prescott): the gradients of the deepest convs up to 3x torch's error (~390 ulps against
~130). FACTOR = 8 and FLOOR_ULPS = 8 leave 2x room for CPUs not measured; a real bug (a missing
term, a wrong stride) is off by orders of magnitude more.

This holds only while the computation is smooth near the inputs. Training lets a rounding
difference flip a ReLU or a max-pool's argmax, after which two float32 runs part by up to 1e-2 of
a tensor's size: compare one step at a time from a common state (teacher forcing), never whole
trajectories.
"""
from __future__ import annotations

import numpy as np

FACTOR = 8.0
FLOOR_ULPS = 8.0
EPS32 = float(np.finfo(np.float32).eps)


def _float64(value) -> np.ndarray:
    if hasattr(value, "detach"):             # a torch tensor
        value = value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def assert_within_baseline(ours, baseline, exact, what: str, factor: float = FACTOR) -> None:
    """max|ours - exact| <= factor * max|baseline - exact| + FLOOR_ULPS float32 ulps of max|exact|.

    ours and baseline are float32 results (arrays or torch tensors of one shape; stack several
    steps' results to pool them), exact the same computation in float64."""
    ours, baseline, exact = _float64(ours), _float64(baseline), _float64(exact)
    assert ours.shape == baseline.shape == exact.shape, (what, ours.shape, baseline.shape, exact.shape)
    assert np.isfinite(exact).all(), f"{what}: the float64 result is not finite"
    scale = float(np.abs(exact).max()) if exact.size else 0.0
    ulp = EPS32 * scale
    ours_err = float(np.abs(ours - exact).max()) if exact.size else 0.0
    base_err = float(np.abs(baseline - exact).max()) if exact.size else 0.0
    bound = factor * base_err + FLOOR_ULPS * ulp
    assert ours_err <= bound, (
        f"{what}: ours is off from float64 by {ours_err:.3g} ({ours_err / ulp if ulp else 0:.1f} ulps of {scale:.3g}), "
        f"the float32 baseline by {base_err:.3g}; bound {factor:g} x baseline + {FLOOR_ULPS:g} ulps = {bound:.3g}")
