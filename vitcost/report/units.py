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
    if x >= 1e15:  # past a float's 15-16 significant digits: show the digits it has, not its binary tail
        return f"{x:.3g}x"
    if x >= 1e4:
        return f"{x:,.0f}x"
    return f"{x:.3g}x"


def fixed(n: float, unit: int, decimals: int) -> str:
    """n / unit with `decimals` decimals and thousands commas: 86_567_656, 10**6, 1 -> '86.6'. An int is
    divided and rounded (half away from zero) in integers, so a count past 2**53 prints every digit it has, not a
    float's approximation of them."""
    if not isinstance(n, int):
        return f"{n / unit:,.{decimals}f}"
    q, r = divmod(abs(n) * 10**decimals, unit)
    q += 2 * r >= unit
    whole, frac = divmod(q, 10**decimals)
    return ("-" if n < 0 and q else "") + f"{whole:,}" + (f".{frac:0{decimals}d}" if decimals else "")


def giga(n: float) -> str:
    """A count in units of 1e9, with the digits that matter: '17.6', '4.49', '16,360'."""
    v = n / 1e9
    if v >= 1000:
        return fixed(n, 10**9, 0)
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
