"""The derived float32 tolerance of tests/baseline_error.py: a multiple of the baseline's own error
against float64, plus a floor of a few float32 ulps."""
import numpy as np
import pytest

from baseline_error import EPS32, FACTOR, FLOOR_ULPS, assert_within_baseline

exact = np.linspace(-2.0, 2.0, 101)           # max |exact| = 2: one float32 ulp of it is 2 * EPS32
noise = np.sin(np.arange(101.0))              # a fixed pattern of errors with max |noise| close to 1


def test_within_the_factor_of_the_baselines_error_passes_and_beyond_fails():
    baseline = exact + 1e-4 * noise
    assert_within_baseline(exact + 0.9 * FACTOR * 1e-4 * noise, baseline, exact, "close")
    with pytest.raises(AssertionError, match=r"far: ours is off from float64 by .* the float32 baseline by"):
        assert_within_baseline(exact + 2 * FACTOR * 1e-4 * noise, baseline, exact, "far")


def test_the_floor_covers_a_baseline_that_rounds_exactly():
    ulp = 2 * EPS32
    assert_within_baseline(exact + 0.5 * FLOOR_ULPS * ulp * noise, exact, exact, "floor")
    with pytest.raises(AssertionError, match="beyond"):
        assert_within_baseline(exact + 2 * FLOOR_ULPS * ulp * noise, exact, exact, "beyond")


def test_shapes_must_match():
    with pytest.raises(AssertionError):
        assert_within_baseline(exact[:-1], exact, exact, "shapes")
