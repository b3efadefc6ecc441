"""The facts behind the scaling report's figures, per design: the points it is drawn at, its fitted
slopes, where its attention scores overtake projections + MLP, and where its score matrices alone
fill each device (the memory walls), with the estimates at those crossings; and per design its
training step, plain and checkpointed per block, part by part (`training_facts`), with the largest
square input that trains on each device.

The searches (`vitcost.analytic.scaling`) run here, once per design, so that the figure builders
(`fig_*.py`) only draw the numbers they are handed. Whether a crossing falls inside a figure's
plotted range is the figure's business: every crossing found inside the searched range comes with
its point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vitcost.analytic.estimate import Estimate
from vitcost.analytic.registry import family_of
from vitcost.analytic.scaling import (
    Crossing,
    DeviceMemory,
    attention_overtakes,
    axis_x,
    cached_estimate,
    fit_slope,
    overtake_closed_form,
    report_axis,
    score_wall,
    scores_share,
)
from vitcost.design import Design
from vitcost.vocab import Dtype, Kernel, Optimizer

if TYPE_CHECKING:
    from vitcost.analytic.train_memory import TrainMemory

# The score-matrix memory a wall is found for: every layer's matrices together (what training keeps
# for the backward pass), or the largest single layer's (what one inference forward holds at once).
WALL_METRICS = ("total", "layer")


@dataclass(frozen=True)
class Point:
    """A design's estimate at one input size, placed at x = sqrt(H*W) px (or at its frames T, on a report
    against T: `scaling.report_axis`). `scores` and `linear`: its
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
    axis: str = "side"  # what x is: "side" sqrt(H*W) px, or "frames" T (`scaling.report_axis`)


def _point(e: Estimate, x: float, convention: str) -> Point:
    return Point(x, e, *scores_share(e, convention))


def _found(c: Crossing, design: Design, convention: str, batch: int, dtype: Dtype) -> Found:
    if c.where != "at":
        return Found(c.describe(), None, None)
    return Found(c.describe(), c.res, _point(cached_estimate(design, c.res, batch, dtype), float(c.res), convention))


def design_facts(ests: list[Estimate], devices: list[DeviceMemory], convention: str, batch: int,
                 dtype: Dtype, axis: str = "side") -> DesignFacts:
    """The facts of one design from its estimates at the chosen resolutions, ascending, placed on `axis`
    (`scaling.report_axis`). The searches re-estimate the design itself (`ests[0].design`), not its label,
    over square sides R at the design's own frames (`Design.frames`); they run only where that is what the
    points show: against R, at those frames."""
    first = ests[0]
    design = first.design
    points = tuple(_point(e, axis_x(e.res, axis), convention) for e in ests)
    xs, ys = [p.x for p in points], [p.est.count(convention) for p in points]
    top = fit_slope(xs[-2:], ys[-2:]) if len(ests) >= 2 else None
    if axis != "side" or any(e.res.frames != design.frames for e in ests):
        return DesignFacts(first.model, family_of(first.spec).title, points, fit_slope(xs, ys), top, None, None, None)
    cross = attention_overtakes(design, convention, batch, dtype)
    overtake = None if cross is None else _found(cross, design, convention, batch, dtype)
    fam = family_of(first.spec)
    tubelets = fam.analytic.time_grid(first.spec, first.res.frames) if fam.frames and first.res.frames else 1
    closed_res = overtake_closed_form(first.spec, tubelets)
    closed = None if closed_res is None else ClosedForm(closed_res, (2 + first.spec.mlp_ratio) * first.spec.dim)
    walls = None
    if ests[-1].attn_matrix_elems != 0:
        found = {(d.label, m): score_wall(design, d.bytes, m, batch, dtype) for d in devices for m in WALL_METRICS}
        if all(c is not None for c in found.values()):  # None: no score matrix at any size
            walls = {key: _found(c, design, convention, batch, dtype) for key, c in found.items()}
    return DesignFacts(first.model, family_of(first.spec).title, points, fit_slope(xs, ys), top, overtake, closed,
                       walls)


def scaling_facts(groups: dict[str, list[Estimate]], devices: list[DeviceMemory], convention: str, batch: int,
                  dtype: Dtype) -> ScalingFacts:
    """`groups`: model -> its estimates at the chosen resolutions, ascending; `devices`: ascending sizes. Clips
    of one H x W and several T are plotted against T (`scaling.report_axis`)."""
    axis = report_axis([e.res for ests in groups.values() for e in ests])
    return ScalingFacts(tuple(design_facts(ests, devices, convention, batch, dtype, axis) for ests in groups.values()),
                        tuple(devices), convention, batch, dtype.value, axis)


# --- the training step ----------------------------------------------------------------------------
#
# One training step per design, resolution and checkpointing choice (`analytic.train_memory`): AdamW
# (or --optimizer) at the report's batch and dtype (bf16/fp16: mixed precision under torch.autocast,
# float32 weights), math attention as the rest of the report, torch's CUDA rules (autocast lists,
# multi-tensor optimizer), since the figure sets the step against GPU memory.

TRAIN_DEVICE = "cuda"
TRAIN_CHECKPOINTS: dict[str, int] = {"none": 0, "block": 1}  # label -> train_memory's blocks per checkpointed run

# The bar of one step, bottom to top: the resident parts, then the peak phase's own bytes. Keys -> labels.
SEGMENTS: dict[str, str] = {
    "weights": "weights",
    "optimizer_state": "optimizer state",
    "input": "batch",
    "activations_saved": "activations saved",
    "weight_casts": "16-bit weight copies",
    "gradients": "gradients",
    "forward": "forward, above saved",
    "backward": "backward, above saved",
    "optimizer": "optimizer update",
}


def peak_phase(m: TrainMemory) -> str:
    """The phase holding the step peak: forward, backward (a checkpointed run's recomputation included)
    or optimizer."""
    first = m.peak_at.split(" ", 1)[0]
    return "backward" if first == "recompute" else first


def step_segments(m: TrainMemory) -> dict[str, int]:
    """The step peak as a stack that sums to it exactly: weights + optimizer state + batch (resident the
    whole step) + the peak phase's bytes, split as
      optimizer phase:         gradients (all of them) + the update's temporaries
      forward/backward phase:  the activations the forward saves (with autocast's 16-bit weight copies)
                               + the rest of that phase's peak (backward: gradients so far, a checkpointed
                               run recomputed, the gradients flowing back, net of saved tensors already freed;
                               forward: temporaries, net of what is saved after the peak)."""
    phase = peak_phase(m)
    parts = {"weights": m.weights, "optimizer_state": m.optimizer_state, "input": m.input}
    top = m.step_peak - m.resident
    if phase == "optimizer":
        split = {"gradients": m.gradients, "optimizer": top - m.gradients}
    else:
        split = {"activations_saved": m.activations_saved, "weight_casts": m.weight_casts,
                 phase: top - m.activations_saved - m.weight_casts}
    if min(split.values()) < 0:  # the peak phase as one part rather than a negative one
        split = {phase: top}
    return {**parts, **split}


@dataclass(frozen=True)
class TrainPoint:
    """One training step: the estimate, its checkpointing label (a TRAIN_CHECKPOINTS key), the memory
    model's parts, the bar's segments, and the step's cost (forward + backward + the forward that
    checkpointing runs again) and that recomputation alone, in the facts' convention."""

    est: Estimate
    checkpoint: str
    memory: TrainMemory
    segments: dict[str, int]
    cost: int
    recompute: int


@dataclass(frozen=True)
class TrainWallFound:
    """The largest square input whose step fits a device (`text`: "1,616 px", "none fits", or why it
    could not be solved) and the step peak there."""

    text: str
    res: int | None
    step_peak: int | None


@dataclass(frozen=True)
class DesignTraining:
    """The training steps of one design: `points` by resolution ascending, each checkpointing choice in
    TRAIN_CHECKPOINTS order; `walls`: (device label, checkpointing label) -> the largest input that trains;
    `note`: why a checkpointing choice is missing (a design without blocks)."""

    model: str
    points: tuple[TrainPoint, ...]
    walls: dict[tuple[str, str], TrainWallFound]
    note: str | None


@dataclass(frozen=True)
class TrainingFacts:
    designs: tuple[DesignTraining, ...]
    devices: tuple[DeviceMemory, ...]  # ascending sizes
    optimizer: str
    batch: int
    dtype: str
    convention: str  # the cost's: the report's, or macs where the report's (fvcore) has no backward
    device: str = TRAIN_DEVICE


def train_convention(convention: str) -> str:
    """The convention a training step is counted in: the report's, except fvcore (no backward: macs,
    which fvcore's one-per-MAC count matches on the forward)."""
    from vitcost.analytic.training import TRAIN_CONVENTIONS

    return convention if convention in TRAIN_CONVENTIONS else "macs"


def _train_wall(design: Design, d: DeviceMemory, batch: int, dtype: Dtype, optimizer: Optimizer,
                checkpoint: int) -> TrainWallFound:
    from vitcost.analytic.memory_wall import train_memory_wall
    from vitcost.errors import VitcostError

    try:
        w = train_memory_wall(design, d.bytes, solve="res", batch=batch, dtype=dtype, attn=Kernel.math,
                              optimizer=optimizer, checkpoint=checkpoint, device=TRAIN_DEVICE)
    except VitcostError as err:
        return TrainWallFound(f"not solved: {err}", None, None)
    if w.value is None:
        return TrainWallFound(f"none fits (not even {w.next_value:,} px)", None, None)
    return TrainWallFound(f"{w.value:,} px", w.value, w.step_peak)


def design_training(ests: list[Estimate], devices: list[DeviceMemory], optimizer: Optimizer,
                    convention: str) -> DesignTraining:
    """The training steps of one design at its estimates' sizes (ascending), plain and checkpointed per
    block, and the largest square input each trains at on each device."""
    from vitcost.analytic.cost import project
    from vitcost.analytic.train_memory import train_memory
    from vitcost.errors import VitcostError

    first = ests[0]
    points: list[TrainPoint] = []
    skipped: set[str] = set()
    note = None
    for e in ests:
        step = e.train_cost().count(convention)
        for label, checkpoint in TRAIN_CHECKPOINTS.items():
            if label in skipped:
                continue
            try:
                m = train_memory(e, optimizer, checkpoint, device=TRAIN_DEVICE)
            except VitcostError as err:
                if not checkpoint:
                    raise
                skipped.add(label)
                note = f"{first.model}: no checkpointing per block ({err})"
                continue
            recompute = project(m.recompute, convention)
            points.append(TrainPoint(e, label, m, step_segments(m), step + recompute, recompute))
    walls = {(d.label, label): _train_wall(first.design, d, first.batch, first.dtype, optimizer, checkpoint)
             for d in devices for label, checkpoint in TRAIN_CHECKPOINTS.items() if label not in skipped}
    return DesignTraining(first.model, tuple(points), walls, note)


def training_facts(groups: dict[str, list[Estimate]], devices: list[DeviceMemory], optimizer: Optimizer,
                   convention: str, batch: int, dtype: Dtype) -> TrainingFacts:
    """`groups`: model -> its estimates at the chosen resolutions, ascending; `devices`: ascending sizes."""
    conv = train_convention(convention)
    return TrainingFacts(tuple(design_training(ests, devices, optimizer, conv) for ests in groups.values()),
                         tuple(devices), optimizer.value, batch, dtype.value, conv)


# --- time per forward ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LatencyPoint:
    """One forward of the batch on one device: its FLOPs (`flops` convention), the forward-time figure
    `compare --hardware` shows (`roofline.forward_time`) and the model that gave it."""

    model: str
    device: str
    res: str
    x: float  # sqrt(H * W), or the frames T on a report against T (`scaling.axis_x`)
    flops: int
    time_s: float
    images_per_s: float
    time_model: str


@dataclass(frozen=True)
class LatencyFacts:
    devices: tuple[str, ...]
    points: tuple[LatencyPoint, ...]
    batch: int
    precision: str
    axis: str = "side"  # what x is (`scaling.report_axis`)


def latency_facts(groups: dict[str, list[Estimate]], hardware: list[Any]) -> LatencyFacts:
    """The forward's time of every estimate on every device profile: a 16-bit report is timed as autocast
    over fp32 weights (timm's --amp, the regime the per-op model is fitted in), an fp32 one as it is."""
    from vitcost.analytic.estimate import evaluate
    from vitcost.analytic.roofline import forward_time
    from vitcost.vocab import res_label

    points = []
    first = next(iter(groups.values()))[0]
    amp = first.dtype is not Dtype.fp32
    axis = report_axis([e.res for ests in groups.values() for e in ests])
    for hw in hardware:
        for ests in groups.values():
            for e in ests:
                timed = evaluate(e.design, e.res, e.batch, e.dtype, e.attn, amp) if amp else e
                t = forward_time(timed, hw)
                points.append(LatencyPoint(e.model, t["hardware"], str(res_label(e.res)), axis_x(e.res, axis), e.flops,
                                           t["time_s"], t["images_per_s"], t["time_model"]))
    precision = f"{first.dtype.value} autocast over fp32 weights" if amp else "fp32"
    return LatencyFacts(tuple(dict.fromkeys(p.device for p in points)), tuple(points), first.batch, precision, axis)
