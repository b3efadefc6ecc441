"""Rows for `compare`: one per model x resolution, as plain dicts (no pandas on the CLI path)."""

from __future__ import annotations

from typing import Any

from vitcost.analytic.estimate import Estimate, estimate, parse_resolutions
from vitcost.zoo import DEFAULT_MODELS, resolve_models


def compare_estimates(models: list[str] | None, res: list[Any], batch: int = 1, dtype: str = "fp32",
                      patch: int | None = None, window: int | None = None) -> list[Estimate]:
    """Estimates for every model x resolution, models in the order given, resolutions ascending."""
    presets = resolve_models(list(models or DEFAULT_MODELS))
    sizes = parse_resolutions(res)
    return [estimate(p.name, hw, batch, dtype, patch=patch, window=window) for p in presets for hw in sizes]


def compare_rows(models: list[str] | None, res: list[Any], batch: int = 1, dtype: str = "fp32",
                 convention: str = "macs", patch: int | None = None, window: int | None = None) -> list[dict]:
    """`Estimate.row()` for each model x resolution, with `growth`: cost in `convention` over the
    same model's cost at the smallest resolution."""
    rows: list[dict] = []
    base: dict[str, int] = {}
    for e in compare_estimates(models, res, batch, dtype, patch, window):
        row = e.row()
        cost = e.count(convention)
        base.setdefault(e.model, cost)
        row["convention"] = convention
        row["cost"] = cost
        row["growth"] = cost / base[e.model]
        rows.append(row)
    return rows
