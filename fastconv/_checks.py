"""Argument checks shared by every public entry point.

Every error names the argument, what was expected and what was given, so a user
can fix the call without reading our source.
"""
from __future__ import annotations

import numbers

import numpy as np

INT32_MAX = 2**31 - 1


def _describe(value) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"array of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{type(value).__name__} {value!r}"


def check_int(value, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {_describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {_describe(value)}")
    return bool(value)


def check_float(value, name: str, low: float | None = None, high: float | None = None,
                low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {_describe(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")
    return value


def pair(value, name: str, minimum: int = 1) -> tuple[int, int]:
    """An int or a pair of ints -> (int, int), each >= minimum."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        return (check_int(value[0], name, minimum), check_int(value[1], name, minimum))
    v = check_int(value, name, minimum)
    return (v, v)


def check_rank(array, rank: int, name: str, layout: str | None = None):
    ndim = len(array.shape)
    if ndim != rank:
        what = f"a rank-{rank} array" + (f" ({layout})" if layout else "")
        raise ValueError(f"{name} must be {what}, got {_describe(array)}")
    return array


def check_float_dtype(array, name: str):
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got dtype {array.dtype}")
    return array


def check_same_dtype(a, b, name_a: str, name_b: str):
    if a.dtype != b.dtype:
        raise TypeError(f"{name_a} and {name_b} must have the same dtype, got {a.dtype} and {b.dtype}")
