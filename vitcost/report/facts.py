"""The facts behind the scaling report's figures, per design: the points it is drawn at, its fitted
slopes, where its attention scores overtake projections + MLP, and where its score matrices alone
fill each device (the memory walls), with the estimates at those crossings.

The searches (`vitcost.analytic.scaling`) run here, once per design, so that the figure builders
(`fig_*.py`) only draw the numbers they are handed. Whether a crossing falls inside a figure's
plotted range is the figure's business: every crossing found inside the searched range comes with
its point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vitcost.analytic.estimate import Estimate
from vitcost.analytic.registry import family_of
from vitcost.analytic.scaling import (
    Crossing,
    DeviceMemory,
    attention_overtakes,
    cached_estimate,
    fit_slope,
    overtake_closed_form,
    score_wall,
    scores_share,
    side,
)

# The score-matrix memory a wall is found for: every layer's matrices together (what training keeps
# for the backward pass), or the largest single layer's (what one inference forward holds at once).
WALL_METRICS = ("total", "layer")


@dataclass(frozen=True)
class Point:
    """A design's estimate at one input size, placed at x = sqrt(H*W) px. `scores` and `linear`: its
    attention-score cost and its Q/K/V/output projection + MLP cost in the report's convention."""

    x: float
    est: Estimate
    scores: int
    linear: int


@dataclass(frozen=True)
class Found:
    """Where a crossing search ended. `text`: "1,088 px", "≤ 32 px" (already at the smallest size
    searched) or "> 65,536 px" (not up to the largest). `res` and `point`: the square side where it
    was found and the estimate there; None unless it was found inside the searched range."""

    text: str
    res: int | None
    point: Point | None


@dataclass(frozen=True)
class ClosedForm:
    """The closed-form overtaking point of a global-attention transformer (see
    `scaling.overtake_closed_form`): side `res` px, at `tokens` = (2 + MLP ratio) x width tokens."""

    res: float
    tokens: float


@dataclass(frozen=True)
class DesignFacts:
    """Everything the figures draw about one design.

    `points`: at the chosen resolutions, ascending. `fit_slope`: least-squares slope of log cost on
    log R over them; `top_slope`: between the two largest (None with fewer than two).
    `overtake`: None for a design without attention scores. `walls`: (device label, metric) -> the
    first side where the score matrices reach the device's memory; None for a design without
    attention matrices."""

    model: str
    family: str
    points: tuple[Point, ...]
    fit_slope: float | None
    top_slope: float | None
    overtake: Found | None
    closed_form: ClosedForm | None
    walls: dict[tuple[str, str], Found] | None

    @property
    def first(self) -> Estimate:
        """The estimate at the smallest chosen resolution (exponent, complexity class, growth base)."""
        return self.points[0].est


@dataclass(frozen=True)
class ScalingFacts:
    """The facts of every design in a report, in the order given, with what they were found for."""

    designs: tuple[DesignFacts, ...]
    devices: tuple[DeviceMemory, ...]  # ascending sizes
    convention: str
    batch: int
    dtype: str


def _point(e: Estimate, x: float, convention: str) -> Point:
    return Point(x, e, *scores_share(e, convention))


def _found(c: Crossing, design: Any, convention: str, batch: int, dtype: str) -> Found:
    if c.where != "at":
        return Found(c.describe(), None, None)
    return Found(c.describe(), c.res, _point(cached_estimate(design, c.res, batch, dtype), float(c.res), convention))


def design_facts(ests: list[Estimate], devices: list[DeviceMemory], convention: str, batch: int,
                 dtype: str) -> DesignFacts:
    """The facts of one design from its estimates at the chosen resolutions, ascending. The searches
    re-estimate the design itself (`ests[0].design`), not its label."""
    first = ests[0]
    design = first.design
    points = tuple(_point(e, side(e.res), convention) for e in ests)
    xs, ys = [p.x for p in points], [p.est.count(convention) for p in points]
    top = fit_slope(xs[-2:], ys[-2:]) if len(ests) >= 2 else None
    cross = attention_overtakes(design, convention, batch, dtype)
    overtake = None if cross is None else _found(cross, design, convention, batch, dtype)
    closed_res = overtake_closed_form(first.spec)
    closed = None if closed_res is None else ClosedForm(closed_res, (2 + first.spec.mlp_ratio) * first.spec.dim)
    walls = None
    if ests[-1].attn_matrix_elems != 0:
        found = {(d.label, m): score_wall(design, d.bytes, m, batch, dtype) for d in devices for m in WALL_METRICS}
        if all(c is not None for c in found.values()):  # None: no score matrix at any size
            walls = {key: _found(c, design, convention, batch, dtype) for key, c in found.items()}
    return DesignFacts(first.model, family_of(first.spec).title, points, fit_slope(xs, ys), top, overtake, closed,
                       walls)


def scaling_facts(groups: dict[str, list[Estimate]], devices: list[DeviceMemory], convention: str, batch: int,
                  dtype: str) -> ScalingFacts:
    """`groups`: model -> its estimates at the chosen resolutions, ascending; `devices`: ascending sizes."""
    return ScalingFacts(tuple(design_facts(ests, devices, convention, batch, dtype) for ests in groups.values()),
                        tuple(devices), convention, batch, dtype)
