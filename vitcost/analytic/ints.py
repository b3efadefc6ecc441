"""Integer helpers that switch to sympy only when handed symbols, so one formula gives both exact
integers and the symbolic expression."""

from __future__ import annotations

from typing import Any


def _is_int(*xs: Any) -> bool:
    return all(isinstance(x, int) for x in xs)


def floor_div(a: Any, b: Any) -> Any:
    if _is_int(a, b):
        return a // b
    import sympy

    return sympy.floor(a / b)


def ceil_div(a: Any, b: Any) -> Any:
    if _is_int(a, b):
        return -(-a // b)
    import sympy

    return sympy.ceiling(a / b)


def imin(a: Any, b: Any) -> Any:
    if _is_int(a, b):
        return min(a, b)
    import sympy

    return sympy.Min(a, b)


def imax(a: Any, b: Any) -> Any:
    if _is_int(a, b):
        return max(a, b)
    import sympy

    return sympy.Max(a, b)


def conv_out(size: Any, kernel: int, stride: int, pad: int) -> Any:
    """Output length of a convolution: floor((size + 2*pad - kernel) / stride) + 1."""
    return floor_div(size + 2 * pad - kernel, stride) + 1
