"""The memory wall: the largest square input whose forward (weights + input + activation peak, from
`vitcost.analytic.memory`) fits in a device's memory, solved from the model rather than by trial."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from vitcost.analytic.estimate import estimate, resolve_spec
from vitcost.analytic.memory import activation_steps, predict_memory
from vitcost.errors import VitcostError
from vitcost.specs import MViTSpec, PixelSpec, Spec, SwinSpec

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


def _lattice(spec: Spec) -> tuple[int, int]:
    """(L, step): on multiples of L every floor and ceiling of the walkers is exact, so each step's
    memory is a polynomial in R there; `step` is the granularity of resolutions reported."""
    if isinstance(spec, PixelSpec):
        return 1, 1
    if isinstance(spec, SwinSpec):  # every stage's grid a multiple of the window: no padding
        return spec.patch * 2 ** (len(spec.depths) - 1) * spec.window, spec.patch
    if isinstance(spec, MViTSpec):  # every pooled grid (Q and K/V strides) an exact division
        stride, worst = 1, 1
        for s in range(len(spec.depths)):
            stride *= spec.q_stride(s)
            worst = max(worst, stride * spec.kv_stride_at(s))
        return spec.stem_stride * worst, spec.stem_stride
    return spec.patch, spec.patch


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


def _total(spec: Spec, r: int, batch: int, dtype: str, attn: str) -> int | None:
    try:
        est = estimate(spec, r, batch, dtype)
    except VitcostError:
        return None
    return predict_memory(est, attn).total_bytes


def memory_wall(model: str | Spec, budget_bytes: int, batch: int = 1, dtype: str = "fp32",
                attn: str = "math") -> MemoryWall:
    """The largest square resolution whose forward (weights + input + activation peak) fits in
    `budget_bytes`, solved from the model rather than found by trying sizes.

    On the lattice R = L*k where every floor of the walker is exact (`_lattice`), each step's memory
    (`activation_steps`, plus weights and input) is a polynomial of degree <= 4 in R. It is recovered
    exactly by interpolating 5 lattice points (checked at 2 more), and each step's polynomial = budget
    is solved for its largest real root; the smallest root over the steps is where the forward stops
    fitting. The answer is that root rounded down to the resolution step and confirmed by the exact
    model (a size off the lattice pads windows or pools, so it may need to step down)."""
    name, spec = resolve_spec(model)
    if not budget_bytes > 0:
        raise VitcostError(f"device memory must be positive, got {budget_bytes}.")
    lattice, step = _lattice(spec)
    ks = list(range(2, 2 + WALL_SAMPLES))
    samples: list[dict[str, int]] = []
    for k in ks:
        est = estimate(spec, lattice * k, batch, dtype)
        pred = predict_memory(est, attn)
        fixed = pred.weights_bytes + pred.input_bytes
        samples.append({w: b + fixed for w, b in activation_steps(est, attn).steps.items()})
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
    total = _total(spec, r, batch, dtype, attn)
    while r > step and (total is None or total > budget_bytes):  # off-lattice padding: step down
        r -= step
        total = _total(spec, r, batch, dtype, attn)
    if total is None or total > budget_bytes:
        nxt = _total(spec, r, batch, dtype, attn) or 0
        return MemoryWall(name, budget_bytes, None, 0, r, nxt, limited_by, step, best)
    while True:  # a size above may still fit where padding made the root conservative
        up = _total(spec, r + step, batch, dtype, attn)
        if up is None or up > budget_bytes:
            return MemoryWall(name, budget_bytes, r, total, r + step, up or 0, limited_by, step, best)
        r, total = r + step, up



__all__ = ["MemoryWall", "memory_wall"]
