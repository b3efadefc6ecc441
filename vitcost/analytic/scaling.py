"""The analytic searches behind the scaling report: fitted exponents, where the score matrices alone
fill a device, and the point where attention overtakes the token-wise layers. Pure Python on top of
`estimate`; no plotly here. (The memory wall of the whole forward is `analytic.memory_wall`.)

Resolutions are square sides R in pixels; an HxW input counts as R = sqrt(H*W).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from vitcost.analytic.estimate import Estimate, evaluate
from vitcost.design import Design
from vitcost.errors import SpecError, VitcostError
from vitcost.specs import PixelSpec, Spec, ViTSpec
from vitcost.vocab import Dtype, Res, frames, parse_size

# Where the crossing searches look, in pixels: below 32 some presets no longer fit (a Swin stage
# would have an empty grid); 65,536 px is far beyond any input these models are run on.
SEARCH_MIN = 32
SEARCH_MAX = 65536


def side(res: tuple[int, int]) -> float:
    """The square side of an (H, W) input: sqrt(H*W)."""
    h, w = res
    return math.sqrt(h * w)


def report_axis(sizes: Sequence[tuple[int, int]]) -> str:
    """What a scaling report plots against: "frames" (T) when the sizes are clips of one H x W and several
    frame counts, else "side" (sqrt(H*W))."""
    times = {frames(s) for s in sizes}
    return "frames" if len({tuple(s) for s in sizes}) == 1 and None not in times and len(times) > 1 else "side"


def axis_x(res: tuple[int, int], axis: str) -> float:
    """A size's place on the report's x axis (`report_axis`): its frames T, or its side sqrt(H*W)."""
    return float(frames(res) or 1) if axis == "frames" else side(res)


def fit_slope(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Least-squares slope of log(y) on log(x); None with fewer than two distinct x or a y <= 0."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if y > 0]
    if len({p[0] for p in pts}) < 2 or len(pts) < len(xs):
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


@dataclass(frozen=True)
class Crossing:
    """The smallest square side R (pixels) where a condition first holds, searched over
    [SEARCH_MIN, SEARCH_MAX]. `where` is "at" (found at `res`), "below" (it already holds at the
    smallest side searched, `res`), or "beyond" (it does not hold up to SEARCH_MAX; `res` is None)."""

    res: int | None
    where: str

    def describe(self) -> str:
        if self.where == "at":
            return f"{self.res:,} px"
        if self.where == "below":
            return f"≤ {self.res:,} px"
        return f"> {SEARCH_MAX:,} px"


@lru_cache(maxsize=512)
def cached_estimate(design: Design, r: int, batch: int, dtype: Dtype) -> Estimate:
    """The estimate at an R x R input (a clip of the design's `frames`, for a clip design), memoised: the
    crossing searches revisit the same sizes."""
    return evaluate(design, Res(r, r, design.frames), batch, dtype)


def _lowest_valid(model: Design, batch: int, dtype: Dtype) -> int:
    r = SEARCH_MIN
    while r < SEARCH_MAX:
        try:
            cached_estimate(model, r, batch, dtype)
            return r
        except SpecError:
            r *= 2
    raise VitcostError(f"{model.name} does not fit any input up to {SEARCH_MAX} px.")


def first_crossing(model: Design, holds: Callable[[Estimate], bool], batch: int = 1,
                   dtype: Dtype = Dtype.fp32) -> Crossing:
    """Bisect for the smallest integer R where `holds(estimate(model, R))` becomes true.

    The conditions used here (a cost or memory passing a fixed level, a ratio passing 1) grow with
    R, so the first R where they hold is well defined."""
    lo = _lowest_valid(model, batch, dtype)
    if holds(cached_estimate(model, lo, batch, dtype)):
        return Crossing(lo, "below")
    hi = SEARCH_MAX
    if not holds(cached_estimate(model, hi, batch, dtype)):
        return Crossing(None, "beyond")
    while hi - lo > 1:  # invariant: false at lo, true at hi
        mid = (lo + hi) // 2
        if holds(cached_estimate(model, mid, batch, dtype)):
            hi = mid
        else:
            lo = mid
    return Crossing(hi, "at")


def scores_share(e: Estimate, convention: str) -> tuple[int, int]:
    """(attention-score cost, Q/K/V/output projection + MLP cost) of one estimate."""
    b = e.breakdown(convention)
    return b.get("scores", 0), b.get("proj", 0) + b.get("mlp", 0)


def attention_overtakes(model: Design, convention: str = "macs", batch: int = 1,
                        dtype: Dtype = Dtype.fp32) -> Crossing | None:
    """The smallest R where the attention scores (QK^T, AV and what acts on the score matrix) cost
    at least as much as all token-wise linear layers (Q/K/V/output projections and the MLP),
    from the model's own per-role breakdown. None for a model without attention (MLP-Mixer)."""
    if scores_share(cached_estimate(model, _lowest_valid(model, batch, dtype), batch, dtype), convention)[0] == 0:
        return None

    def holds(e: Estimate) -> bool:
        scores, linear = scores_share(e, convention)
        return scores >= linear

    return first_crossing(model, holds, batch, dtype)


def overtake_closed_form(spec: Spec, tubelets: int = 1) -> float | None:
    """Closed-form R where attention scores overtake the linear layers of a global-attention
    transformer (ViT, pixel), in MACs.

    Per layer with N tokens (class tokens included) of width d and MLP ratio r:
        scores: QK^T N^2 d + AV N^2 d          = 2 N^2 d
        linear: qkv 3 N d^2 + proj N d^2 + MLP 2 r N d^2 = (4 + 2r) N d^2   (12 N d^2 for r = 4)
    equal at N = (2 + r) d, i.e. N = 6d for r = 4 (against the MLP alone, 8 N d^2: N = 4d).
    With N = (R/P)^2 + class tokens: R = P * sqrt((2 + r) d - class tokens).
    ViT-B/16: d = 768 -> N = 4608 -> R = 16 * sqrt(4607) = 1086 px. With the hidden width h = int(r d)
    and m = 2 MLP products per hidden unit (3 for SwiGLU: the gate, the value, fc2), equal at
    N = 2d + m h / 2; top-k attention (AV on k keys: N^2 d + N k d) at N = 4d + m h - k; prefix tokens
    (class and register) taken off; a clip of `tubelets` tubelets along T has (R/P)^2 tokens per tubelet, so
    R = P * sqrt(N / tubelets). None for other families, for linear attention (its N d^2 never
    overtakes the linear layers) and for token pruning (the blocks see different N)."""
    if not isinstance(spec, (ViTSpec, PixelSpec)) or spec.window or spec.attention != "softmax" or spec.prune_blocks:
        return None
    m = 3 if spec.mlp == "swiglu" else 2
    n = 4 * spec.dim + m * spec.mlp_hidden - spec.topk if spec.topk else 2 * spec.dim + m * spec.mlp_hidden / 2
    return spec.patch * math.sqrt((n - spec.class_tokens - spec.reg_tokens) / tubelets)


def score_wall(model: Design, limit_bytes: int, metric: str = "total", batch: int = 1,
               dtype: Dtype = Dtype.fp32) -> Crossing | None:
    """The smallest R where the attention matrices alone reach `limit_bytes`. metric "total": every
    layer's score matrices (what training keeps for the backward pass); "layer": the largest single
    layer's (what one inference forward holds at once). None for a model without attention."""
    def value(e: Estimate) -> int:
        return e.attn_matrix_bytes if metric == "total" else e.attn_matrix_peak_bytes

    if value(cached_estimate(model, SEARCH_MAX, batch, dtype)) == 0:
        return None
    return first_crossing(model, lambda e: value(e) >= limit_bytes, batch, dtype)


@dataclass(frozen=True)
class DeviceMemory:
    label: str  # "80 GB" or "H100 80 GB"
    bytes: int


def parse_memory(text: str) -> DeviceMemory:
    """"80GB", "80 GB", "141GB", "24GiB", "H100=80GB" or a bare number of GB (10^9 bytes)."""
    name, eq, size = text.rpartition("=")
    if eq and not name.strip():
        raise VitcostError(f"device memory {text!r} has an empty name before '='; write NAME=SIZE such as H100=80GB.")
    try:
        nbytes, shown = parse_size(size)
    except VitcostError:
        raise VitcostError(f"device memory {text!r} is not a size like 80GB, 24GiB or H100=80GB.") from None
    return DeviceMemory(f"{name.strip()} {shown}" if name.strip() else shown, nbytes)
