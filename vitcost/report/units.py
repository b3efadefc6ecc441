"""Unit conversion for display only: everything below this layer is exact integers."""

from __future__ import annotations

_SI = ["", "K", "M", "G", "T", "P", "E", "Z", "Y"]
_BIN = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def si(n: float, digits: int = 3) -> str:
    """12_620_583_936 -> '12.6G'."""
    i = 0
    x = float(n)
    while abs(x) >= 1000 and i < len(_SI) - 1:
        x /= 1000
        i += 1
    return f"{x:.{digits}g}{_SI[i]}" if i else f"{x:.{digits}g}"


def binary_bytes(n: float, digits: int = 3) -> str:
    """824_633_720_832 -> '768 GiB'."""
    i = 0
    x = float(n)
    while abs(x) >= 1024 and i < len(_BIN) - 1:
        x /= 1024
        i += 1
    return f"{x:.{digits}g} {_BIN[i]}"


def ratio(x: float) -> str:
    if x >= 1e4:
        return f"{x:,.0f}x"
    return f"{x:.3g}x"


def giga(n: float) -> str:
    """A count in units of 1e9, with the digits that matter: '17.6', '4.49', '16,360'."""
    v = n / 1e9
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"
