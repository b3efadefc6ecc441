"""Unit conversion for display only: everything below this layer is exact integers."""

from __future__ import annotations

_SI = ["", "K", "M", "G", "T", "P", "E", "Z", "Y"]
_BIN = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]


def _scaled(n: float, base: int, units: list[str]) -> tuple[float, str]:
    i, x = 0, float(n)
    while abs(x) >= base and i < len(units) - 1:
        x /= base
        i += 1
    return x, units[i]


def si(n: float, digits: int = 3) -> str:
    """12_620_583_936 -> '12.6G'."""
    x, unit = _scaled(n, 1000, _SI)
    return f"{x:.{digits}g}{unit}"


def binary_bytes(n: float, digits: int = 3) -> str:
    """824_633_720_832 -> '768 GiB'."""
    x, unit = _scaled(n, 1024, _BIN)
    return f"{x:.{digits}g} {unit}"


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


def seconds(t: float | None) -> str:
    """1.23 s, 456 ms, 7.8 µs; an em dash for no value."""
    if t is None:
        return "—"
    if t >= 1:
        return f"{t:.3g} s"
    if t >= 1e-3:
        return f"{t * 1e3:.3g} ms"
    return f"{t * 1e6:.3g} µs"
