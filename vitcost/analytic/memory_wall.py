"""The memory wall: the largest square input whose forward (weights + input + activation peak, from
`vitcost.analytic.memory`) fits in a device's memory, solved from the model rather than by trial."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from vitcost.analytic.estimate import estimate
from vitcost.analytic.memory import activation_steps
from vitcost.analytic.registry import family_of
from vitcost.design import Design, parse_design
from vitcost.errors import VitcostError

WALL_SAMPLES = 7  # lattice points fitted: a degree-4 polynomial through 5, checked at the other 2
WALL_DEGREE = 4  # scores grow with tokens^2 = R^4; nothing in these models grows faster


@dataclass(frozen=True)
class MemoryWall:
    """The largest square input (a multiple of `step`) whose forward fits in `budget_bytes`."""

    model: str
    budget_bytes: int
    res: int | None  # None: not even the smallest input fits
    total_bytes: int  # predicted weights + input + activation peak at `res`
    next_res: int  # the next size up, which does not fit
    next_total_bytes: int
    limited_by: str  # the step whose memory crosses the budget first
    step: int  # resolution granularity (the patch or stem stride)
    root: float  # the real solution R of the limiting step's polynomial = budget


def _newton(xs: list[int], ys: list[int]) -> list[Fraction]:
    """Divided-difference coefficients of the interpolating polynomial through (xs, ys)."""
    coef = [Fraction(y) for y in ys]
    for j in range(1, len(xs)):
        for i in range(len(xs) - 1, j - 1, -1):
            coef[i] = (coef[i] - coef[i - 1]) / (xs[i] - xs[i - j])
    return coef


def _monomial(xs: list[int], newton: list[Fraction]) -> list[Fraction]:
    """Newton form -> monomial coefficients, highest power first."""
    poly = [Fraction(0)]
    for i in range(len(newton) - 1, -1, -1):  # Horner on the Newton basis: poly = poly * (x - xs[i]) + c_i
        shifted = poly + [Fraction(0)]
        for j in range(len(poly)):
            shifted[j + 1] -= poly[j] * xs[i]
        shifted[-1] += newton[i]
        poly = shifted
    while len(poly) > 1 and poly[0] == 0:
        poly.pop(0)
    return poly


def _eval(xs: list[int], newton: list[Fraction], x: int) -> Fraction:
    acc = newton[-1]
    for i in range(len(newton) - 2, -1, -1):
        acc = acc * (x - xs[i]) + newton[i]
    return acc


def _largest_root(poly: list[Fraction]) -> float:
    """The largest real root of a polynomial (highest power first); inf when it has none."""
    import numpy

    roots = numpy.roots([float(c) for c in poly]) if len(poly) > 1 else []
    real = [r.real for r in roots if abs(r.imag) <= 1e-9 * max(1.0, abs(r.real))]
    return max(real) if real else math.inf


def _total(design: Design, r: int, batch: int, dtype: Any, attn: Any) -> int | None:
    try:
        est = estimate(design, r, batch, dtype, attn)
    except VitcostError:
        return None
    return est.memory.total_bytes


def memory_wall(model: Any, budget_bytes: int, batch: int = 1, dtype: Any = "fp32",
                attn: Any = "math") -> MemoryWall:
    """The largest square resolution whose forward (weights + input + activation peak) fits in
    `budget_bytes`, solved from the model rather than found by trying sizes.

    On the lattice R = L*k where every floor of the walker is exact (the family's `lattice`), each step's memory
    (`activation_steps`, plus weights and input) is a polynomial of degree <= 4 in R. It is recovered
    exactly by interpolating 5 lattice points (checked at 2 more), and each step's polynomial = budget
    is solved for its largest real root; the smallest root over the steps is where the forward stops
    fitting. The answer is that root rounded down to the resolution step and confirmed by the exact
    model (a size off the lattice pads windows or pools, so it may need to step down)."""
    design = parse_design(model)
    name, spec = design.name, design.spec
    if not budget_bytes > 0:
        raise VitcostError(f"device memory must be positive, got {budget_bytes}.")
    lattice, step = family_of(spec).lattice(spec)
    ks = list(range(2, 2 + WALL_SAMPLES))
    samples: list[dict[str, int]] = []
    for k in ks:
        est = estimate(design, lattice * k, batch, dtype, attn)
        pred = est.memory
        fixed = pred.weights_bytes + pred.input_bytes
        samples.append({w: b + fixed for w, b in activation_steps(est, est.attn).steps.items()})
    names = set(samples[0]).intersection(*samples[1:])
    xs = [lattice * k for k in ks]
    best, limited_by = math.inf, ""
    fit = WALL_DEGREE + 1
    for w in sorted(names):
        ys = [smp[w] for smp in samples]
        newton = _newton(xs[:fit], ys[:fit])
        if any(_eval(xs[:fit], newton, x) != y for x, y in zip(xs[fit:], ys[fit:])):
            raise VitcostError(f"memory of {name} at step {w!r} is not a polynomial in the resolution; "
                               "cannot solve the memory wall.")
        poly = _monomial(xs[:fit], newton)
        poly[-1] -= budget_bytes
        root = _largest_root(poly)
        if root < best:
            best, limited_by = root, w
    if not math.isfinite(best):  # no crossing: memory grows with R, so it is above the budget everywhere
        best = 0.0
    r = max(int(best // step) * step, step)
    total = _total(design, r, batch, dtype, attn)
    while r > step and (total is None or total > budget_bytes):  # off-lattice padding: step down
        r -= step
        total = _total(design, r, batch, dtype, attn)
    if total is None or total > budget_bytes:
        nxt = _total(design, r, batch, dtype, attn) or 0
        return MemoryWall(name, budget_bytes, None, 0, r, nxt, limited_by, step, best)
    while True:  # a size above may still fit where padding made the root conservative
        up = _total(design, r + step, batch, dtype, attn)
        if up is None or up > budget_bytes:
            return MemoryWall(name, budget_bytes, r, total, r + step, up or 0, limited_by, step, best)
        r, total = r + step, up



__all__ = ["MemoryWall", "memory_wall"]
