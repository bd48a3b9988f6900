"""fastconv.deterministic: bitwise run-to-run reproducibility.

Every kernel fastconv ships today is deterministic by construction: reductions (wgrad split-k,
bias gradients, batch-norm statistics, losses) sum their partial results in a fixed order, and
max-pool backward gathers instead of scattering with atomics. So deterministic(True) costs
nothing yet; it is the switch that any future faster-but-nondeterministic algorithm (atomic
split-k, for example) must consult, and tests hold the shipped kernels to it (tests/test_explain.py
runs the kernels under shuffled thread orders and compares bits).
"""
from __future__ import annotations

_enabled = False


def deterministic(enabled: bool | None = None) -> bool:
    """deterministic(True/False) sets the mode; deterministic() returns it."""
    global _enabled
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise TypeError(f"enabled must be True, False or None, got {type(enabled).__name__} {enabled!r}")
        _enabled = enabled
    return _enabled
