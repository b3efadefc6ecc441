"""Rows for `compare`: one per design x resolution, as plain dicts (no pandas on the CLI path), built
from typed results (`Estimate`, `TrainMemory`): the analytic core computes, this layer names the fields.
compare's JSON field names and `memory.*` sub-keys are what scripts read; they change here or nowhere."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vitcost.analytic.estimate import Estimate, evaluate
from vitcost.design import Design, spec_dict
from vitcost.vocab import Dtype, Kernel, Optimizer, res_label

if TYPE_CHECKING:
    from vitcost.analytic.savings import Saving


def compare_estimates(designs: list[Design], sizes: list[tuple[int, int]], batch: int = 1,
                      dtype: Dtype = Dtype.fp32, attn: Kernel = Kernel.math, amp: bool = False) -> list[Estimate]:
    """Estimates for every design x resolution, designs in the order given, resolutions as given."""
    return [evaluate(d, hw, batch, dtype, attn, amp) for d in designs for hw in sizes]


def estimate_row(e: Estimate, hardware: Any = None) -> dict[str, Any]:
    """The machine-readable summary of one estimate (compare's JSON/CSV row); `spec` is the full effective spec;
    `frames` is a clip's T (None for an image). `attn_matrix_bytes` / `attn_matrix_peak_bytes` are the scores as if
    materialised, whatever the kernel (a fused kernel's stored scores are `memory.stored_score_bytes`). Under
    autocast (`amp`) the activation-memory figures are None (see `Estimate.require_single_width`). With `hardware`
    (a `Hardware`): `time_s`, the forward's time per batch on it (`roofline.forward_time`), and `images_per_s` =
    batch / time_s."""
    h, w = e.res
    mem = (None, None, None) if e.amp else (e.attn_matrix_bytes, e.attn_matrix_peak_bytes, e.activation_peak_bytes)
    row = {
        "model": e.model, "family": e.family, "res": res_label(e.res), "frames": e.res.frames, "height": h, "width": w,
        "batch": e.batch, "dtype": e.dtype.value, "amp": e.amp, "attn": e.attn.value, "tokens": e.tokens,
        "params": e.params, "macs": e.macs, "flops": e.flops, "fvcore": e.count("fvcore"),
        "torch": e.count("torch"), "attn_matrix_elems": e.attn_matrix_elems,
        "attn_matrix_bytes": mem[0], "attn_matrix_peak_bytes": mem[1], "activation_peak_bytes": mem[2],
        "global_attn_share": e.global_attn_share, "complexity": e.complexity,
    }
    if hardware is not None:
        from vitcost.analytic.roofline import forward_time

        row.update(forward_time(e, hardware))
    row["spec"] = spec_dict(e.spec)
    return row


def compare_rows(estimates: list[Estimate], convention: str = "macs", hardware: Any = None) -> list[dict]:
    """`estimate_row(e, hardware)` for each estimate, with `growth`: cost in `convention` over the same
    design's cost at its first (smallest) resolution, and `slope`: the local exponent k of cost ~ R^k from
    the design's previous resolution (log cost ratio over log side ratio; None for the first). With
    `hardware` (a `Hardware`) each row has `hardware`, `time_s` (one forward of the batch) and
    `images_per_s`."""
    rows: list[dict] = []
    base: dict[str, int] = {}
    prev: dict[str, tuple[float, int]] = {}
    for e in estimates:
        row = estimate_row(e, hardware)
        cost = e.count(convention)
        side = math.sqrt(e.res[0] * e.res[1])
        base.setdefault(e.model, cost)
        row["convention"] = convention
        row["cost"] = cost
        row["growth"] = cost / base[e.model] if base[e.model] else None
        last = prev.get(e.model)
        row["slope"] = (math.log(cost / last[1]) / math.log(side / last[0])
                        if last and last[1] and cost and side != last[0] else None)
        prev[e.model] = (side, cost)
        row["linear_attn_saving"] = linear_attention_saving(e)
        rows.append(row)
    return rows


def linear_attention_saving(e: Estimate) -> float | None:
    """For a design with linear attention: the fraction of the forward's activation peak it saves
    against the same design with softmax attention (same resolution, batch, dtype and kernel) — the
    course's "~60%", computed for this model and size. None for any other design."""
    if getattr(e.spec, "attention", "softmax") != "linear" or e.amp:
        return None
    twin = evaluate(e.design._replace(spec=replace(e.spec, attention="softmax")), e.res, e.batch, e.dtype, e.attn)
    return 1 - e.activation_peak_bytes / twin.activation_peak_bytes


def train_rows(estimates: list[Estimate], convention: str = "macs", optimizer: Optimizer = Optimizer.adamw,
               checkpoint: int = 0, hardware: Any = None, precision: str = "autocast") -> list[dict]:
    """One row per estimate for a training step: its cost in `convention` (macs | flops | torch: the
    forward, the backward of `analytic.training` and the forward that checkpointing runs again) and its
    memory part by part (`analytic.train_memory`: dtype bf16/fp16 = mixed precision under autocast,
    float32 weights; `precision` "half": the model itself in 16 bits). With `hardware`: the step's time
    on it (`train_time.step_time`: the per-op model for a 16-bit step on a fitted profile, else a
    roofline) as `time_s`, `images_per_s` = batch / time_s, and `time_model`."""
    from vitcost.analytic.cost import project
    from vitcost.analytic.train_memory import train_memory
    from vitcost.analytic.training import TRAIN_CONVENTIONS, train_cost
    from vitcost.errors import VitcostError

    if convention not in TRAIN_CONVENTIONS:
        raise VitcostError(f"the {convention} convention has no backward; a training step is counted in "
                           f"{', '.join(TRAIN_CONVENTIONS)}.")
    rows: list[dict] = []
    for e in estimates:
        m = train_memory(e, optimizer, checkpoint, precision=precision)
        step = train_cost(e).count(convention)
        recompute = project(m.recompute, convention)
        timing: dict[str, Any] = {}
        if hardware is not None:
            from vitcost.analytic.train_time import step_time

            t, how = step_time(e, hardware, m.recompute, optimizer, amp=precision != "half")
            timing = {"hardware": hardware.label, "time_s": t, "images_per_s": e.batch / t if t else None,
                      "time_model": how}
        rows.append({
            "model": e.model, "family": e.family, "res": res_label(e.res), "frames": e.res.frames, "batch": e.batch,
            "dtype": e.dtype.value, "precision": m.precision, "attn": e.attn.value, "optimizer": m.optimizer,
            "checkpoint": m.checkpoint or None, "tokens": e.tokens, "params": e.params, "convention": convention,
            "train_cost": step + recompute, "forward_cost": train_cost(e).count(convention, "forward"),
            "recompute_cost": recompute, "train_peak_bytes": m.step_peak, "peak_at": m.peak_at,
            "memory": m.parts(), **timing, "spec": spec_dict(e.spec),
        })
    return rows


def train_walls(estimates: list[Estimate], budget: int, optimizer: str, checkpoint: int,
                precision: str = "autocast") -> list[dict]:
    """For each design of `estimates` (their batch, dtype and kernel): the largest square input whose
    training step fits `budget`, and the largest batch at each resolution shown
    (`analytic.memory_wall.train_memory_wall`, solved from the model)."""
    from vitcost.analytic.memory_wall import train_memory_wall

    out: list[dict] = []
    for model in dict.fromkeys(e.model for e in estimates):
        mine = [e for e in estimates if e.model == model]
        first = mine[0]
        opts = {"optimizer": optimizer, "checkpoint": checkpoint, "precision": precision}
        side = train_memory_wall(first.design, budget, solve="res", batch=first.batch, dtype=first.dtype,
                                 attn=first.attn, **opts)
        batches = {res_label(e.res): train_memory_wall(e.design, budget, solve="batch", res=e.res, dtype=e.dtype,
                                                       attn=e.attn, **opts).value for e in mine}
        out.append({"model": model, "device_memory_bytes": budget, "batch": first.batch,
                    "largest_res": side.value, "res_step_peak_bytes": side.step_peak, "limited_by": side.limited_by,
                    "largest_batch": batches})
    return out


def saving_row(s: Saving) -> dict[str, Any]:
    """One row of `savings`: the technique's training step against the baseline."""
    e = s.estimate
    return {"technique": s.technique, "model": e.model, "res": res_label(e.res), "batch": e.batch,
            "dtype": e.dtype.value, "attn": e.attn.value, "mode": s.mode, "checkpoint": s.checkpoint or None,
            "step_peak_bytes": s.memory_bytes, "memory_saved": s.memory_saved, "flops": s.flops,
            "flops_ratio": s.flops_ratio, "time_s": s.time_s, "speedup": s.speedup,
            "time_model": s.time_model, "course_memory_saved": s.course_memory, "course_speedup": s.course_speed}
