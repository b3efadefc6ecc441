"""Rows for `compare`: one per design x resolution, as plain dicts (no pandas on the CLI path)."""

from __future__ import annotations

from typing import Any

from vitcost.analytic.estimate import Estimate, estimate
from vitcost.design import resolve_designs
from vitcost.vocab import parse_resolutions
from vitcost.zoo import DEFAULT_MODELS


def as_model_list(models: Any) -> list[Any]:
    """None -> the defaults; one model (a name, a path, a spec) -> a list of it; a list as is."""
    if models is None:
        return list(DEFAULT_MODELS)
    if isinstance(models, (str, bytes)) or not hasattr(models, "__iter__"):
        return [models]
    return list(models)


def compare_estimates(models: Any, res: Any, batch: Any = 1, dtype: Any = "fp32", attn: Any = "math",
                      set_items: list[str] | None = None, amp: bool = False) -> list[Estimate]:
    """Estimates for every design x resolution, designs in the order given, resolutions ascending."""
    designs = resolve_designs(as_model_list(models), set_items)
    sizes = parse_resolutions(res)
    return [estimate(d, hw, batch, dtype, attn, amp) for d in designs for hw in sizes]


def compare_rows(models: Any, res: Any, batch: Any = 1, dtype: Any = "fp32", convention: str = "macs",
                 attn: Any = "math", set_items: list[str] | None = None, hardware: Any = None,
                 amp: bool = False) -> list[dict]:
    """`Estimate.row(hardware)` for each design x resolution, with `growth`: cost in `convention` over the
    same design's cost at the smallest resolution, and `slope`: the local exponent k of cost ~ R^k
    from the design's previous resolution (log cost ratio over log side ratio; None for the first).
    With `hardware` (a `Hardware`, a profile name or file) each row has `hardware`, `time_s` (one forward of
    the batch) and `images_per_s`; `amp`: autocast at `dtype` over fp32 weights (see `estimate`)."""
    import math

    from vitcost.analytic.cost import CONVENTIONS

    if convention not in CONVENTIONS:
        from vitcost.errors import VitcostError

        raise VitcostError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}.")
    if isinstance(hardware, str):
        from vitcost.analytic.hardware import get_hardware

        hardware = get_hardware(hardware)
    rows: list[dict] = []
    base: dict[str, int] = {}
    prev: dict[str, tuple[float, int]] = {}
    for e in compare_estimates(models, res, batch, dtype, attn, set_items, amp):
        row = e.row(hardware)
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
    from dataclasses import replace

    twin = estimate(e.design._replace(spec=replace(e.spec, attention="softmax")), e.res, e.batch, e.dtype, e.attn)
    return 1 - e.activation_peak_bytes / twin.activation_peak_bytes


def train_rows(models: Any, res: Any, batch: Any = 1, dtype: Any = "fp32", convention: str = "macs",
               attn: Any = "math", set_items: list[str] | None = None, optimizer: str = "adamw",
               checkpoint: Any = None, hardware: Any = None, precision: str = "autocast") -> list[dict]:
    """One row per design x resolution for a training step: its cost in `convention` (macs | flops |
    torch: the forward, the backward of `analytic.training` and the forward that checkpointing runs again)
    and its memory part by part (`analytic.train_memory`: dtype bf16/fp16 = mixed precision under
    autocast, float32 weights; `precision` "half": the model itself in 16 bits). With `hardware`: the
    step's time on it (`savings.train_roofline`) as `time_s`, and `images_per_s` = batch / time_s."""
    from vitcost.analytic.cost import project
    from vitcost.analytic.train_memory import train_memory
    from vitcost.analytic.training import TRAIN_CONVENTIONS, train_cost
    from vitcost.design import spec_dict
    from vitcost.errors import VitcostError
    from vitcost.vocab import res_label

    if convention not in TRAIN_CONVENTIONS:
        raise VitcostError(f"the {convention} convention has no backward; a training step is counted in "
                           f"{', '.join(TRAIN_CONVENTIONS)}.")
    if isinstance(hardware, str):
        from vitcost.analytic.hardware import get_hardware

        hardware = get_hardware(hardware)
    rows: list[dict] = []
    for e in compare_estimates(models, res, batch, dtype, attn, set_items):
        m = train_memory(e, optimizer, checkpoint, precision=precision)
        step = train_cost(e).count(convention)
        recompute = project(m.recompute, convention)
        timing: dict[str, Any] = {}
        if hardware is not None:
            from vitcost.analytic.savings import train_roofline

            t = train_roofline(e, hardware, m.recompute)
            timing = {"hardware": hardware.label, "time_s": t, "images_per_s": e.batch / t if t else None}
        rows.append({
            "model": e.model, "family": e.family, "res": res_label(e.res), "batch": e.batch, "dtype": e.dtype.value,
            "precision": m.precision, "attn": e.attn.value, "optimizer": m.optimizer,
            "checkpoint": m.checkpoint or None, "tokens": e.tokens, "params": e.params, "convention": convention,
            "train_cost": step + recompute, "forward_cost": train_cost(e).count(convention, "forward"),
            "recompute_cost": recompute, "train_peak_bytes": m.step_peak, "peak_at": m.peak_at,
            "memory": m.parts(), **timing, "spec": spec_dict(e.spec),
        })
    return rows


def train_walls(rows: list[dict], budget: int, dtype: Any, attn: Any, optimizer: str, checkpoint: Any,
                precision: str = "autocast") -> list[dict]:
    """For each design of `rows`: the largest square input whose training step fits `budget` at the rows'
    batch, and the largest batch at each resolution shown (`analytic.train_memory.train_memory_wall`,
    solved from the model)."""
    from vitcost.analytic.train_memory import train_memory_wall
    from vitcost.design import design_from_dict

    out: list[dict] = []
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        design = design_from_dict(mine[0]["spec"], model)
        opts = {"optimizer": optimizer, "checkpoint": None if checkpoint in (None, "none") else checkpoint,
                "precision": precision}
        side = train_memory_wall(design, budget, solve="res", batch=mine[0]["batch"], dtype=dtype, attn=attn, **opts)
        batches = {r["res"]: train_memory_wall(design, budget, solve="batch", res=r["res"], dtype=dtype, attn=attn,
                                               **opts).value for r in mine}
        out.append({"model": model, "device_memory_bytes": budget, "batch": mine[0]["batch"],
                    "largest_res": side.value, "res_step_peak_bytes": side.step_peak, "limited_by": side.limited_by,
                    "largest_batch": batches})
    return out
