"""The `compare` table: human units, one row per model x resolution."""

from __future__ import annotations

from typing import Any

from vitcost.report.units import binary_bytes, giga, ratio

# Families whose parameter count follows the resolution, and why.
RES_DEPENDENT_PARAMS = {
    "pixel": "position embedding (one row per pixel)",
    "vit": "position embedding (one row per token)",
    "mixer": "token-mixing MLP (N x D_S weights)",
    "mvit": "relative-position tables",
    "swin": "relative-position tables (when a stage's grid is smaller than the window)",
}


def compare_cells(rows: list[dict[str, Any]], convention: str) -> tuple[list[str], list[list[str]]]:
    unit = "GMACs" if convention == "macs" else f"GFLOPs ({convention})"
    header = ["model", "res", "tokens", "params", unit, "attn mem", "peak/layer", "growth", "scaling"]
    cells = [[r["model"], str(r["res"]), f"{r['tokens']:,}", f"{r['params'] / 1e6:,.1f}M",
              giga(r["cost"]), binary_bytes(r["attn_matrix_bytes"]),
              binary_bytes(r["attn_matrix_peak_bytes"]), ratio(r["growth"]), r["complexity"]] for r in rows]
    return header, cells


def params_note(rows: list[dict[str, Any]]) -> str:
    """Say which models' parameters changed across the resolutions shown, and why."""
    seen: dict[str, set[int]] = {}
    fam: dict[str, str] = {}
    for r in rows:
        seen.setdefault(r["model"], set()).add(r["params"])
        fam[r["model"]] = r["family"]
    moving = [m for m, p in seen.items() if len(p) > 1]
    if not moving:
        return ""
    return "params change with resolution for " + "; ".join(
        f"{m} ({RES_DEPENDENT_PARAMS[fam[m]]})" for m in moving) + "."


def render_compare(rows: list[dict[str, Any]], convention: str, batch: int, dtype: str) -> None:
    from rich.console import Console
    from rich.table import Table

    header, cells = compare_cells(rows, convention)
    table = Table(title=f"vitcost compare — batch {batch}, {dtype}, {convention} convention",
                  caption="attn mem: attention scores of all layers; peak/layer: the largest layer's; "
                          "growth: cost vs the smallest resolution",
                  header_style="bold")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 or i == len(header) - 1 else "right", no_wrap=True)
    prev = None
    for r, c in zip(rows, cells):
        if prev is not None and r["model"] != prev:
            table.add_section()
        prev = r["model"]
        table.add_row(*c)
    console = wide_console()
    console.print(table)
    note = params_note(rows)
    if note:
        console.print(f"[dim]Note: {note}[/dim]")


def wide_console():
    """A rich console; when stdout is not a terminal (a pipe, a log), wide enough for the table."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 120))
