"""The precision policy: which number format conv2d and dense multiply in.

    fastconv.set_precision('bf16')            # every conv/dense from now on
    with fastconv.precision.using('tf32'):    # for a block, then back
        ...
    Conv2D(64, 3, precision='fp16')           # one layer (None follows the policy)
    model.compile(..., precision='bf16')      # one model's training and inference

| name | operands | products / sums | on the kernels |
| --- | --- | --- | --- |
| fp32 | float32 | fp32 | CUDA-core kernels (the default) |
| tf32 | float32 rounded to 10 mantissa bits, nearest, ties away (cvt.rna) | exact / fp32 | tensor-core mma tf32 |
| bf16 | bfloat16, nearest even | exact / fp32 | tensor-core mma bf16 |
| fp16 | float16, nearest even, overflow to inf | exact / fp32 | tensor-core mma f16 |

Weights stay float32 (the masters the optimizer updates); operands are rounded at each use and every
output is float32. The NumPy reference applies the same rounding (backends/reference/rounding.py), so
it stays the oracle under every policy. Only float32 tensors follow the policy; float64 runs float64.
The environment variable FASTCONV_PRECISION sets the policy a process starts with.
"""
from __future__ import annotations

import contextlib
import os

PRECISIONS = ("fp32", "tf32", "bf16", "fp16")
ENV = "FASTCONV_PRECISION"
_policy: str | None = None   # None: FASTCONV_PRECISION, else fp32


def check_precision(name, what="precision") -> str:
    """The canonical name of a precision, or a ValueError naming `what` and the choices."""
    if isinstance(name, str) and name.strip().lower() in PRECISIONS:
        return name.strip().lower()
    raise ValueError(f"{what} must be one of {list(PRECISIONS)}, got {name!r}")


def set_precision(name) -> None:
    """Set the process-wide policy ('fp32', 'tf32', 'bf16' or 'fp16')."""
    global _policy
    _policy = check_precision(name)


def get_precision() -> str:
    """The policy in force: set_precision / using(), else $FASTCONV_PRECISION, else 'fp32'."""
    if _policy is not None:
        return _policy
    env = os.environ.get(ENV, "").strip()
    return check_precision(env, f"the environment variable {ENV}") if env else "fp32"


def effective(name=None) -> str:
    """A layer's or a call's precision: its own when given, else the policy."""
    return get_precision() if name is None else check_precision(name)


def is_reduced(name) -> bool:
    """True for the tensor-core formats (tf32, bf16, fp16)."""
    return name is not None and name != "fp32"


@contextlib.contextmanager
def using(name):
    """Run a block under another policy; the previous one (set or from the environment) comes back."""
    global _policy
    new = check_precision(name)
    previous, _policy = _policy, new
    try:
        yield new
    finally:
        _policy = previous
