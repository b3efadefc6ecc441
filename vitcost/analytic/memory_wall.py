"""The memory wall: the largest square input whose forward (weights + input + activation peak, from
`vitcost.analytic.memory`) or training step (`vitcost.analytic.train_memory`) fits in a device's memory,
or the largest batch whose step does, solved from the model rather than by trial. One solver
(`solve_wall`) serves both: each takes the bytes of every step that can hold the peak as a polynomial
on the family's lattice of sizes."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

from vitcost.analytic.estimate import evaluate
from vitcost.analytic.memory import activation_steps
from vitcost.analytic.registry import family_of
from vitcost.analytic.train_memory import step_candidates, train_memory
from vitcost.design import Design
from vitcost.errors import VitcostError
from vitcost.vocab import Dtype, Kernel, Res

WALL_SAMPLES = 7  # lattice points fitted: a degree-4 polynomial through 5, checked at the other 2
WALL_DEGREE = 4  # scores grow with tokens^2 = R^4; nothing in these models grows faster


@dataclass(frozen=True)
class TrainWall:
    """The largest square input (solve="res", a multiple of `step`) or batch (solve="batch") whose training
    step fits in `budget_bytes`."""

    model: str
    budget_bytes: int
    solve: str  # res | batch
    value: int | None  # the side or the batch; None: not even the smallest fits
    step_peak: int  # the predicted step peak at `value`
    next_value: int  # the next size up, which does not fit
    next_step_peak: int
    limited_by: str  # the step whose memory crosses the budget first
    step: int  # granularity of `value`
    root: float  # the real solution of the limiting step's polynomial = budget


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


class Solution(NamedTuple):
    """What `solve_wall` finds: the largest `value` that fits (None: not even the smallest), its `total`
    bytes, the next value up and its total, the step that crosses the budget first and its root."""

    value: int | None
    total: int
    next_value: int
    next_total: int
    limited_by: str
    root: float


def _search(step: int, budget: int, candidates: Callable[[int], dict[str, int]],
            exact: Callable[[int], int | None]) -> Solution:
    """The largest multiple of `step` that fits, by doubling then bisection on `exact` (memory that grows
    with x without being one polynomial: EViT's rounded token counts). `root`: where the fit ends, the
    largest fitting value (the limiting step: the largest at the next value up)."""
    def fits(k: int) -> bool:
        total = exact(k * step)
        return total is not None and total <= budget

    if not fits(1):
        up = exact(step)
        return Solution(None, 0, step, up or 0, _largest(candidates, step), 0.0)
    lo, hi = 1, 2
    while fits(hi):
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    v = lo * step
    return Solution(v, exact(v) or 0, hi * step, exact(hi * step) or 0, _largest(candidates, hi * step), float(v))


def _largest(candidates: Callable[[int], dict[str, int]], x: int) -> str:
    try:
        steps = candidates(x)
    except VitcostError:
        return ""
    return max(steps, key=steps.__getitem__) if steps else ""


def solve_wall(what: str, xs: list[int], fit: int, step: int, budget: int,
               candidates: Callable[[int], dict[str, int]], exact: Callable[[int], int | None],
               rounded: bool = False) -> Solution:
    """The largest multiple of `step` whose memory fits in `budget` bytes, solved from the model rather than
    found by trying values. `candidates(x)`: the bytes at every step that can hold the peak, at `x`;
    `exact(x)`: the peak at x (None where the design cannot run). Each step's bytes is a polynomial in x on
    the sample points `xs`: recovered exactly from the first `fit` of them, checked at the rest (an error
    names the step that is not one); each step's polynomial = budget is solved for its largest real root,
    and the smallest root over the steps is where the memory stops fitting. That root, rounded down to
    `step`, is confirmed by `exact` (off the sample lattice a size may pad or pool, so the value may have to
    step down, or a size above may still fit). `rounded`: the design rounds a size inside (EViT's kept
    tokens), so a step that is not one polynomial is searched for instead (`_search`)."""
    samples = [candidates(x) for x in xs]
    names = set(samples[0]).intersection(*samples[1:])
    best, limited_by = math.inf, ""
    for name in sorted(names):
        ys = [smp[name] for smp in samples]
        newton = _newton(xs[:fit], ys[:fit])
        if any(_eval(xs[:fit], newton, x) != y for x, y in zip(xs[fit:], ys[fit:])):
            if rounded:  # token pruning rounds the tokens each pruning block keeps: search the monotone peak
                return _search(step, budget, candidates, exact)
            raise VitcostError(f"{what} at step {name!r} is not a polynomial; cannot solve the memory wall.")
        poly = _monomial(xs[:fit], newton)
        poly[-1] -= budget
        root = _largest_root(poly)
        if root < best:
            best, limited_by = root, name
    if not math.isfinite(best):  # no crossing: memory grows with x, so it is above the budget everywhere
        best = 0.0
    v = max(int(best // step) * step, step)
    total = exact(v)
    while v > step and (total is None or total > budget):
        v -= step
        total = exact(v)
    if total is None or total > budget:
        return Solution(None, 0, v, total or 0, limited_by, best)
    while True:
        up = exact(v + step)
        if up is None or up > budget:
            return Solution(v, total, v + step, up or 0, limited_by, best)
        v, total = v + step, up


FIRST_SAMPLE = 2  # the lattice multiple the samples start from
MAX_FIRST_SAMPLE = 64


def first_lattice_point(lattice: int, walk: Callable[[int], Any]) -> int:
    """The first lattice multiple k >= FIRST_SAMPLE at which the design runs (`walk(lattice * k)` does not
    refuse): top-k attention needs at least k keys."""
    for k in range(FIRST_SAMPLE, MAX_FIRST_SAMPLE):
        try:
            walk(lattice * k)
        except VitcostError:
            continue
        return k
    return FIRST_SAMPLE  # the sampling then names why the design cannot run


def _lattice(design: Design, budget_bytes: int, walk: Callable[[int], Any]) -> tuple[list[int], int, int]:
    """The sample sides (the family's lattice from the first point the design runs at), how many of them
    fix the polynomial, and the side's granularity; refuses a budget that is not positive."""
    if not budget_bytes > 0:
        raise VitcostError(f"device memory must be positive, got {budget_bytes}.")
    lattice, step = family_of(design.spec).lattice(design.spec)
    first = first_lattice_point(lattice, walk)
    return [lattice * k for k in range(first, first + WALL_SAMPLES)], WALL_DEGREE + 1, step


def memory_wall(design: Design, budget_bytes: int, batch: int = 1, dtype: Dtype = Dtype.fp32,
                attn: Kernel = Kernel.math) -> MemoryWall:
    """The largest square resolution whose forward (weights + input + activation peak) fits in `budget_bytes` (for a
    clip design, `Design.frames`, the side of its clips of that many frames), solved from the model (`solve_wall`):
    on the lattice R = L*k where every floor of the walker is exact (the family's `lattice`), each step's memory
    (`activation_steps`, plus weights and input) is a polynomial of degree <= 4 in R, recovered from 5 lattice
    points and checked at 2 more."""
    def at(r: int) -> Any:
        return evaluate(design, Res(r, r, design.frames), batch, dtype, attn)

    def candidates(r: int) -> dict[str, int]:
        est = at(r)
        pred = est.memory
        fixed = pred.weights_bytes + pred.input_bytes
        return {w: b + fixed for w, b in activation_steps(est, est.attn).steps.items()}

    def exact(r: int) -> int | None:
        try:
            return at(r).memory.total_bytes
        except VitcostError:
            return None

    xs, fit, step = _lattice(design, budget_bytes, at)
    sol = solve_wall(f"memory of {design.name}", xs, fit, step, budget_bytes, candidates, exact,
                     rounded=family_of(design.spec).rounded(design.spec))
    return MemoryWall(design.name, budget_bytes, sol.value, sol.total, sol.next_value, sol.next_total,
                      sol.limited_by, step, sol.root)


def train_memory_wall(design: Design, budget_bytes: int, *, solve: str = "res", res: tuple[int, int] | None = None,
                      batch: int = 1, dtype: Dtype = Dtype.fp32, attn: Kernel = Kernel.math,
                      **opts: Any) -> TrainWall:
    """The largest square resolution (solve="res", at `batch`; a clip design's side at its `frames`) or batch
    (solve="batch", at `res`, default the design's) whose training step (`train_memory(...).step_peak`, with `opts`:
    optimizer, checkpoint, device, precision, dropout) fits in `budget_bytes`, solved as `memory_wall` solves the
    forward's, from every candidate step of the training walk (`train_memory.step_candidates`): a polynomial of
    degree <= 4 in the side R on the family's lattice, or affine in the batch (fixed by two points, checked at a
    third)."""
    if solve not in ("res", "batch"):
        raise VitcostError(f"solve for res or batch, not {solve!r}.")
    train_opts = {k: v for k, v in opts.items() if v is not None}
    train_opts["attn"] = attn

    def at(v: int) -> Any:
        return evaluate(design, Res(v, v, design.frames), batch, dtype, attn) if solve == "res" else \
            evaluate(design, design.size if res is None else res, v, dtype, attn)

    def exact(v: int) -> int | None:
        try:
            return train_memory(at(v), **train_opts).step_peak
        except VitcostError:
            return None

    if solve == "res":
        xs, fit, step = _lattice(design, budget_bytes, at)
    else:
        if not budget_bytes > 0:
            raise VitcostError(f"device memory must be positive, got {budget_bytes}.")
        step, fit = 1, 2
        xs = [2, 3, 4]  # from 2 on: head-split operands are copied (B' > 1) at every sample
    sol = solve_wall(f"training memory of {design.name} in the {'resolution' if solve == 'res' else 'batch'}", xs,
                     fit, step, budget_bytes, lambda v: step_candidates(at(v), train_opts), exact,
                     rounded=solve == "res" and family_of(design.spec).rounded(design.spec))
    return TrainWall(design.name, budget_bytes, solve, sol.value, sol.total, sol.next_value, sol.next_total,
                     sol.limited_by, step, sol.root)


__all__ = ["MemoryWall", "TrainWall", "memory_wall", "train_memory_wall", "solve_wall", "first_lattice_point",
           "Solution", "WALL_SAMPLES", "WALL_DEGREE"]
