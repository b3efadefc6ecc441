"""The design-space sweep: every design of a grid (or a sample of it) costed with compare's own row
builder, filtered by limits, and reduced to its Pareto front.

A sweep starts from one base design (a preset, a spec file, either with overrides, a spec object) and
varies its fields: `depth=6..24:6` (an inclusive range), `heads=8,12,16` (a list). Several fields make
a grid, crossed with the resolutions, batches, dtypes and devices asked for. Each point of that space
is one row, exactly the row `vitcost compare` prints for the point's label (the base with only the
fields that differ from it) at that resolution, batch, dtype and device: `compare_rows` /
`train_rows` make it, nothing here re-derives a figure. This module sits in report/ because those row
builders do.

Everything the user wrote is parsed (`sweep_parse`) and checked by `plan` before the first design is
costed: an unknown field, an empty or non-numeric range, a limit on an unknown column or with a bad
unit, an objective that is not a column, or a grid larger than `max_designs` is one `VitcostError`.

Dropped designs are counted by reason: `invalid: <the spec's complaint, numbers as N>` for a design that
cannot run (heads that do not divide the width), and the limit as written for the first limit a design
breaks (so the counts add up to the designs dropped). `evaluated` = surviving rows + all dropped.

The front: a design is dominated when another is no worse in every objective and better in one; the
non-dominated designs are the front (designs equal in every objective all stay). Found by sorting the
objective vectors lexicographically (every dominator of a point sorts before it) and testing each point
against the front found so far (a dominated point's dominators include a point of the front).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from vitcost.design import (
    Design,
    base_design,
    parse_design,
    parse_overrides,
    split_override,
    with_fields,
)
from vitcost.errors import SpecError, VitcostError
from vitcost.report.sweep_parse import (
    ALIASES,
    COLUMNS,
    Axis,
    Limit,
    Objective,
    _listed,
    axis_of,
    parse_amount,
    parse_limit,
    parse_objectives,
    parse_vary,
)
from vitcost.vocab import (
    Dtype,
    Kernel,
    Optimizer,
    RunMode,
    parse_checkpoint,
    parse_dtype,
    parse_kernel,
    parse_optimizer,
    parse_resolutions,
    parse_run_mode,
    whole,
)

MAX_DESIGNS = 1_000_000
CHUNK = 64  # points per task handed to a worker process


@dataclass
class Plan:
    """A checked sweep: the base, its axes and settings, the limits and objectives."""

    base: str  # the base design's label
    root: Design  # the base without its overrides
    base_overrides: dict[str, Any]  # the base's own overrides, parsed
    axes: list[Axis]
    sizes: list[tuple[int, int]]
    batches: list[int]
    dtypes: list[Dtype]
    hardware: list[Any]  # Hardware objects, or [None]
    attn: Kernel
    mode: RunMode
    amp: bool | None  # True: autocast inference; False: --mode train in pure 16 bits; None: the defaults
    convention: str
    optimizer: Optimizer
    checkpoint: int  # blocks per checkpointed run, 0 = none
    limits: list[Limit]
    objectives: list[Objective]
    sample: int | None = None
    seed: int = 0
    max_designs: int = MAX_DESIGNS
    _designs: dict[tuple, Any] = field(default_factory=dict, repr=False)

    @property
    def settings(self) -> list[Sequence[Any]]:
        return [a.values for a in self.axes] + [self.sizes, self.batches, self.dtypes, self.hardware]

    @property
    def total(self) -> int:
        return math.prod(len(s) for s in self.settings)

    def point(self, index: int) -> tuple[Any, ...]:
        """The index-th point of the grid: one value per axis, then size, batch, dtype, device (the last
        varying fastest)."""
        out = []
        for values in reversed(self.settings):
            index, i = divmod(index, len(values))
            out.append(values[i])
        return tuple(reversed(out))

    def design(self, values: tuple[Any, ...]) -> Design:
        """The design with these axis values: the root with the fields that differ from it (the label
        `compare` reads back). A design that cannot exist raises its SpecError."""
        got = self._designs.get(values)
        if got is None:
            if len(self._designs) > 4096:
                self._designs.clear()
            try:
                changes = {**self.base_overrides, **{a.field: v for a, v in zip(self.axes, values)}}
                changes = {k: v for k, v in changes.items() if v != getattr(self.root.spec, k)}
                got = with_fields(self.root, changes) if changes else self.root
            except SpecError as e:
                got = e
            self._designs[values] = got
        if isinstance(got, SpecError):
            raise got
        return got


def parse_plan(base: Any, vary: Any = None, res: Any = 224, batch: Any = 1, dtype: Any = "fp32", hardware: Any = None,
         attn: Any = "math", amp: bool | None = None, mode: Any = "inference", optimizer: str | None = None,
         checkpoint: str | None = None, convention: str = "macs", limits: Any = None, pareto: Any = None,
         sample: int | None = None, seed: int = 0, max_designs: int = MAX_DESIGNS) -> Plan:
    """Parse and check a sweep; no design is costed here (see the module's docstring for what fails)."""
    from vitcost.analytic.cost import CONVENTIONS
    from vitcost.analytic.hardware import get_hardware

    base_name = parse_design(base).name  # the base itself must be a design compare accepts
    root, base_overrides = parse_base(base)
    if isinstance(vary, dict):
        axes = [parse_vary(f"{k}={v}", root) if isinstance(v, str) else axis_of(str(k), v, root)
                for k, v in vary.items()]
    else:
        axes = [parse_vary(_vary_text(v), root) for v in _listed(vary)]
    seen = [a.field for a in axes]
    twice = next((f for f in seen if seen.count(f) > 1), None)
    if twice:
        raise VitcostError(f"--vary names the field {twice!r} twice; give its values once.")
    run_mode = parse_run_mode(mode)
    dtypes = list(dict.fromkeys(parse_dtype(d) for d in _listed(dtype)))
    batches = list(dict.fromkeys(whole(b, "batch") for b in _listed(batch)))
    devices = [get_hardware(h) if isinstance(h, str) else h for h in _listed(hardware)] or [None]
    if amp and Dtype.fp32 in dtypes:
        raise VitcostError("--amp is autocast to 16 bits: give --dtype fp16 or bf16 with it, not fp32.")
    if run_mode is RunMode.inference and (optimizer is not None or checkpoint is not None):
        raise VitcostError("--optimizer and --checkpoint describe a training step: add --mode train.")
    if convention not in CONVENTIONS:
        raise VitcostError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}.")
    if run_mode is RunMode.train:
        from vitcost.analytic.training import TRAIN_CONVENTIONS

        if convention not in TRAIN_CONVENTIONS:
            raise VitcostError(f"the {convention} convention has no backward; a training step is counted in "
                               f"{', '.join(TRAIN_CONVENTIONS)}.")
    has_hw = devices != [None]
    p = Plan(base_name, root, base_overrides, axes, parse_resolutions(res), batches, dtypes, devices,
             parse_kernel(attn), run_mode, amp, convention, parse_optimizer(optimizer or "adamw"),
             parse_checkpoint(checkpoint),
             [parse_limit(t, run_mode, has_hw, bool(amp)) for t in _listed(limits)],
             parse_objectives(pareto, run_mode, has_hw, bool(amp)),
             None if sample is None else whole(sample, "--sample"), _seed(seed), whole(max_designs, "--max-designs"))
    if p.sample is None and p.total > p.max_designs:
        raise VitcostError(f"the sweep has {p.total:,} designs, more than --max-designs {p.max_designs:,}: narrow "
                           "it, raise --max-designs, or draw some with --sample N.")
    if p.sample is not None and p.sample > p.max_designs:
        raise VitcostError(f"--sample {p.sample:,} is more than --max-designs {p.max_designs:,}.")
    return p


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise VitcostError(f"--seed must be a whole number, got {seed!r}.")
    return seed


def _vary_text(item: Any) -> str:
    if not isinstance(item, str):
        raise VitcostError(f"--vary takes FIELD=VALUES text, not {item!r}.")
    return item


def parse_base(base: Any) -> tuple[Design, dict[str, Any]]:
    """The base's root design (a preset or file, or the design object itself) and its own overrides."""
    if isinstance(base, str):
        split = split_override(base.strip())
        if split:
            root = base_design(split[0])
            return root, parse_overrides(split[1], type(root.spec), root.name)
    return parse_design(base), {}


# ---------------------------------------------------------------------------------------------
# Costing


def row_of(p: Plan, index: int) -> dict[str, Any]:
    """The compare row of the index-th point, with `label` first. Raises the SpecError of a design
    that cannot run."""
    *values, size, batch, dt, hw = p.point(index)
    design = p.design(tuple(values))
    from vitcost.analytic.estimate import evaluate
    from vitcost.report.rows import compare_rows, train_rows

    if p.mode is RunMode.train:
        rows = train_rows([evaluate(design, size, batch, dt, p.attn)], p.convention, p.optimizer, p.checkpoint, hw,
                          "half" if p.amp is False and dt is not Dtype.fp32 else "autocast")
    else:
        rows = compare_rows([evaluate(design, size, batch, dt, p.attn, bool(p.amp))], p.convention, hw)
    return {"label": design.name, **rows[0]}


_NUMBERS = re.compile(r"(?<!\w)-?\d[\d,]*(?:\.\d+)?(?:[eE][+-]?\d+)?|\d[\d,]*(?:\.\d+)?")


def invalid_reason(error: Exception) -> str:
    """The reason a design that cannot run is counted under: the complaint with its numbers as N, so
    that heads=7 and heads=9 not dividing the width are one reason."""
    return "invalid: " + _NUMBERS.sub("N", str(error))


def objective_vector(p: Plan, row: dict[str, Any]) -> tuple[float, ...]:
    """The row's objectives, each negated when maximised, so that smaller is better throughout (a missing
    value, an img/s of a zero time, is the worst)."""
    out = []
    for o in p.objectives:
        v = row.get(o.key)
        out.append(math.inf if v is None else -v if o.maximise else v)
    return tuple(out)


def evaluate(p: Plan, index: int, keep_row: bool) -> tuple[int, str | None, Any]:
    """(index, None, the row or its objective vector) for a surviving point; (index, reason, None) for a
    dropped one."""
    try:
        row = row_of(p, index)
    except VitcostError as e:
        return index, invalid_reason(e), None
    for limit in p.limits:
        if not limit.holds(row):
            return index, limit.text, None
    return index, None, row if keep_row else objective_vector(p, row)


_WORKER: dict[str, Any] = {}


def _init_worker(p: Plan) -> None:
    _WORKER["plan"] = p


def _work(task: tuple[list[int], bool]) -> list[tuple[int, str | None, Any]]:
    indices, keep_row = task
    return [evaluate(_WORKER["plan"], i, keep_row) for i in indices]


def _chunks(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield list(indices[start:start + size])


class _Evaluator:
    """Costs batches of points in this process (jobs=1) or over `jobs` spawned processes, in order."""

    def __init__(self, p: Plan, jobs: int, keep_row: bool) -> None:
        self.p, self.keep_row, self.pool = p, keep_row, None
        if jobs > 1:
            import multiprocessing

            self.pool = multiprocessing.get_context("spawn").Pool(jobs, initializer=_init_worker, initargs=(p,))

    def __call__(self, indices: Sequence[int]) -> Iterator[tuple[int, str | None, Any]]:
        if self.pool is None:
            for i in indices:
                yield evaluate(self.p, i, self.keep_row)
            return
        for part in self.pool.imap(_work, ((c, self.keep_row) for c in _chunks(indices, CHUNK))):
            yield from part

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def _draws(total: int, seed: int) -> Iterator[int]:
    """Distinct indices below `total` in a random order fixed by `seed`: random picks while fewer than half
    are taken, then the rest shuffled (so a small space is drawn to its end without slowing down)."""
    import random

    rng = random.Random(seed)
    seen: set[int] = set()
    while len(seen) < total // 2:
        i = rng.randrange(total)
        if i not in seen:
            seen.add(i)
            yield i
    rest = [i for i in range(total) if i not in seen]
    rng.shuffle(rest)
    yield from rest


@dataclass
class Result:
    rows: list[dict[str, Any]]  # the surviving rows shown (all, or the front), each with `pareto` (None: no objectives)
    dropped: dict[str, int]
    evaluated: int
    survivors: int
    front: int  # designs on the front
    short: int | None = None  # --sample: the valid designs found when fewer than asked (the draws ran out)


def run(p: Plan, all_rows: bool = True, jobs: int = 1, progress: Callable[[int, int], None] | None = None) -> Result:
    """Cost the plan's points (all, or `p.sample` valid ones drawn at random), drop those that are invalid or
    break a limit, and mark the front. `all_rows`: return every surviving row, else only the front's (then
    only the survivors' objective vectors are held while sweeping, and the front's rows are costed again).
    `progress(done, planned)` is called as points are costed."""
    jobs = whole(jobs, "--jobs")
    keep_row = all_rows or not p.objectives
    evaluator = _Evaluator(p, jobs, keep_row)
    kept: list[tuple[int, Any]] = []
    dropped: dict[str, int] = {}
    evaluated = 0
    planned = p.total if p.sample is None else min(p.sample, p.total)

    def consume(results: Iterator[tuple[int, str | None, Any]]) -> int:
        nonlocal evaluated
        valid = 0
        for index, reason, payload in results:
            evaluated += 1
            if reason is None:
                kept.append((index, payload))
            else:
                dropped[reason] = dropped.get(reason, 0) + 1
            valid += reason is None or not reason.startswith("invalid: ")
            if progress is not None and evaluated % 256 == 0:
                progress(min(evaluated, planned), planned)
        return valid

    found = None
    try:
        if p.sample is None:
            consume(evaluator(range(p.total)))
        else:
            draws, found, budget = _draws(p.total, p.seed), 0, min(p.total, p.max_designs)
            while found < p.sample and evaluated < budget:
                batch = list(itertools.islice(draws, min(p.sample - found, budget - evaluated)))
                if not batch:
                    break
                found += consume(evaluator(batch))
    finally:
        evaluator.close()
    if progress is not None:
        progress(planned, planned)
    result = _finish(p, kept, dropped, evaluated, keep_row, all_rows)
    if found is not None and found < p.sample:
        result.short = found
    return result


def _finish(p: Plan, kept: list[tuple[int, Any]], dropped: dict[str, int], evaluated: int, keep_row: bool,
            all_rows: bool) -> Result:
    vectors = [objective_vector(p, payload) if keep_row else payload for _, payload in kept]
    mask = pareto_mask(vectors) if p.objectives else [True] * len(kept)
    chosen = [k for k in range(len(kept)) if all_rows or mask[k]]
    if p.objectives:
        chosen.sort(key=lambda k: (vectors[k], kept[k][0]))
    rows = []
    for k in chosen:
        index, payload = kept[k]
        row = payload if keep_row else row_of(p, index)
        rows.append({**row, "pareto": mask[k] if p.objectives else None})
    return Result(rows, dropped, evaluated, len(kept), sum(mask))


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether `a` is no worse than `b` in every objective and better in one (smaller is better)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_mask(vectors: Sequence[Sequence[float]]) -> list[bool]:
    """Which vectors no other dominates (smaller is better in each coordinate; equal vectors all stay)."""
    mask = [False] * len(vectors)
    front: list[Sequence[float]] = []
    for i in sorted(range(len(vectors)), key=vectors.__getitem__):
        v = vectors[i]
        if not any(dominates(f, v) for f in front):
            mask[i] = True
            front.append(v)
    return mask


def sweep_rows(base: Any, vary: Any = None, *, jobs: int = 1, all_rows: bool = True, **options: Any) -> Result:
    """Plan and run a sweep (see `plan` for the options)."""
    return run(parse_plan(base, vary, **options), all_rows=all_rows, jobs=jobs)


__all__ = ["COLUMNS", "ALIASES", "Plan", "Result", "parse_plan", "run", "sweep_rows", "pareto_mask", "dominates",
           "parse_limit", "parse_objectives", "parse_vary", "parse_amount", "row_of"]
