"""The sweep's rows in human units: the table (box-drawn or Markdown), the one-line summary, and the
offline HTML page of the front with the table behind it."""

from __future__ import annotations

from typing import Any

from vitcost.report.units import binary_bytes, fixed, giga, seconds

COUNTS = {"macs", "flops", "fvcore", "torch", "cost", "train_cost", "forward_cost"}
BYTES = {"attn_matrix_bytes", "attn_matrix_peak_bytes", "activation_peak_bytes", "train_peak_bytes"}
HEADINGS = {"tokens": "tokens", "params": "params", "macs": "GMACs", "flops": "GFLOPs", "fvcore": "fvcore G",
            "torch": "torch G", "attn_matrix_bytes": "attn mem", "attn_matrix_peak_bytes": "peak/layer",
            "activation_peak_bytes": "act peak", "train_peak_bytes": "step peak", "forward_cost": "fwd G",
            "time_s": "time", "images_per_s": "img/s"}


def cell(key: str, value: Any) -> str:
    """One value of column `key` in the units compare's tables use."""
    if value is None:
        return "—"
    if key == "params":
        return f"{fixed(value, 10**6, 1)}M"
    if key == "tokens":
        return f"{value:,}"
    if key in COUNTS:
        return giga(value)
    if key in BYTES:
        return binary_bytes(value)
    if key == "time_s":
        return seconds(value)
    if key == "images_per_s":
        return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)


def sweep_cells(rows: list[dict[str, Any]], columns: list[str], convention: str, train: bool,
                pareto: bool) -> tuple[list[str], list[list[str]]]:
    """The table: the label, the settings that vary across rows, params, cost, peak memory, time, then
    `columns` (the limits' and objectives' keys) not shown yet, and `pareto` when some rows are off the front."""
    settings = [k for k in ("res", "batch", "dtype", "hardware") if len({str(r.get(k)) for r in rows}) > 1]
    if "res" not in settings:
        settings.insert(0, "res")
    cost = "train_cost" if train else "cost"
    shown = ["params", cost, "train_peak_bytes" if train else "activation_peak_bytes"]
    if rows and "time_s" in rows[0]:
        shown += ["time_s", "images_per_s"]
    shown += [c for c in columns if c not in shown and not (c == convention and not train)]
    unit = {"macs": "GMACs"}.get(convention, f"GFLOPs ({convention})")
    heading = {**HEADINGS, "cost": unit, "train_cost": f"train {unit}"}
    header = ["design", *settings, *(heading.get(k, k) for k in shown)] + (["pareto"] if pareto else [])
    cells = [[r["label"], *(str(r.get(k)) for k in settings), *(cell(k, r.get(k)) for k in shown)]
             + ([cell("pareto", r["pareto"])] if pareto else []) for r in rows]
    return header, cells


def sweep_caption(rows: list[dict[str, Any]], train: bool) -> str:
    """What the time column is (the device, the time model), as compare's tables say it."""
    if not rows or "time_s" not in rows[0]:
        return ""
    from vitcost.report.table import time_caption

    what = "one training step of the batch" if train else "one forward of the batch"
    text = time_caption(rows, what).lstrip("\n")
    if len({r["hardware"] for r in rows}) > 1:
        text = text.replace(f" on {rows[0]['hardware']}", " on the row's device")
    return text


def summary(evaluated: int, survivors: int, front: int | None, dropped: dict[str, int],
            short: tuple[int, int] | None = None) -> str:
    """"120 designs evaluated, 84 kept, 3 on the front; dropped: 32 invalid: ..., 4 params<=300M"; `short`:
    (valid designs found, asked for) when a --sample ran out of draws."""
    text = f"{evaluated:,} design{'s' if evaluated != 1 else ''} evaluated, {survivors:,} kept"
    if short is not None:
        text = (f"--sample {short[1]:,}: only {short[0]:,} valid design{'s' if short[0] != 1 else ''} in the "
                f"{evaluated:,} drawn (the grid, or --max-designs draws, ran out); " + text)
    if front is not None:
        text += f", {front:,} on the front"
    if dropped:
        text += "; dropped: " + "; ".join(f"{n:,} {reason}" for reason, n in
                                          sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0])))
    return text


def sweep_page(rows: list[dict[str, Any]], objectives: list[tuple[str, bool]], header: list[str],
               cells: list[list[str]], title: str, summary: str, command: str, conventions: dict[str, str],
               convention: str) -> str:
    """The whole page: the front figure with the table of `cells` behind it."""
    import platform

    import plotly

    from vitcost.report.build import report_date
    from vitcost.report.fig_sweep import MAX_GREY, front_figure
    from vitcost.report.html import DataTable, Footer, Panel, render_page
    from vitcost.version import __version__

    names = [f"{'max ' if m else ''}{HEADINGS.get(k, k)}" for k, m in objectives]
    caption = (f"Each point is one design that passed the limits; the front (coloured) is every design no other "
               f"beats in all of {', '.join(names)}; grey ones are dominated."
               + (f" {MAX_GREY:,} of the dominated designs are drawn." if sum(not r["pareto"] for r in rows) > MAX_GREY
                  else ""))
    panel = Panel("front", f"Pareto front: {names[0]} against {names[1]}"
                  + (f", colour: {names[2]}" if len(names) > 2 else ""), caption, front_figure(rows, objectives),
                  [DataTable(title, header, cells)])
    footer = Footer(conventions=conventions, convention=convention,
                    versions={"vitcost": __version__, "plotly": plotly.__version__,
                              "Python": platform.python_version()},
                    date=report_date(), command=command, notes=[summary])
    return render_page(title, summary, [panel], footer)
