"""Figures: analytic vs counted vs measured, as log-log scatters around the y = x line.

Counts come from `vitcost check` rows (analytic vs fvcore and FlopCounterMode in the row's own
convention); time and memory from `vitcost profile` rows (predicted vs measured). Rows whose status
is not "ok" or whose values are missing are left out of the scatter and listed in the table."""

from __future__ import annotations

from typing import Any

from vitcost.report.fig_common import exact, hover, log_layout
from vitcost.report.html import DataTable, Panel
from vitcost.report.units import binary_bytes


def _positive(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and v > 0 for v in values)


def _show(v: Any) -> str:
    if v is None:
        return "—"
    return exact(v) if isinstance(v, (int, float)) else str(v)


def _scatter(fig: Any, name: str, symbol: str, colour: str, pts: list[tuple[float, float, list[str]]],
             labels: list[str]) -> None:
    import plotly.graph_objects as go

    if symbol.endswith("-open"):  # drawn over filled markers: an outline lets both show where they coincide
        marker = {"symbol": symbol, "size": 13, "color": colour, "line": {"width": 2}}
    else:
        marker = {"symbol": symbol, "size": 8, "color": colour, "line": {"color": "#222", "width": 1}}
    fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="markers", name=name, marker=marker,
                             customdata=[p[2] for p in pts], hovertemplate=hover(labels)))


def _identity(fig: Any, pts: list[tuple[float, float, Any]], title: str, xtitle: str, ytitle: str) -> None:
    import plotly.graph_objects as go

    vals = [v for p in pts for v in p[:2]]
    lo, hi = (min(vals) / 2, max(vals) * 2) if vals else (1.0, 10.0)
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="y = x", hoverinfo="skip",
                             line={"color": "#555", "dash": "dash", "width": 1}))
    log_layout(fig, title, xtitle, ytitle, (lo, hi))
    fig.update_yaxes(range=[fig.layout.xaxis.range[0], fig.layout.xaxis.range[1]])
    if not pts:
        fig.add_annotation(xref="paper", yref="paper", x=0.5, y=0.5, text="no rows with both values",
                           showarrow=False, font={"size": 13})


def _where(r: dict[str, Any]) -> str:
    attn = f" ({r['attn']} attention)" if isinstance(r.get("attn"), str) and r["attn"] else ""
    return f"{r['model']} @ {r['res']}{attn}"


def counts_panel(rows: list[dict[str, Any]], source: str) -> Panel:
    """Analytic count (x) vs fvcore and FlopCounterMode counts (y) of `vitcost check` rows."""
    import plotly.graph_objects as go

    fig = go.Figure()
    every: list[tuple[float, float, Any]] = []
    for key, name, symbol, col in (("fvcore", "fvcore", "circle", "#1f77b4"),
                                   ("torch", "torch FlopCounterMode", "square-open", "#ff7f0e")):
        pts = [(r["analytic"], r[key], [_where(r), r.get("convention", "—"), exact(r["analytic"]), exact(r[key]),
                                        _show(r.get(f"{key}_diff")), r["status"]])
               for r in rows if _positive(r["analytic"], r[key])]
        every += pts
        _scatter(fig, name, symbol, col, pts, ["model", "convention", "analytic", name, "difference", "status"])
    _identity(fig, every, "Analytic vs counted", "analytic count (log)", "counted (log)")
    table = [[str(r["model"]), str(r["res"]), str(r.get("attn", "—")), str(r.get("convention", "—")),
              _show(r["analytic"]),
              _show(r["fvcore"]), _show(r.get("fvcore_diff")), _show(r["torch"]), _show(r.get("torch_diff")),
              str(r["status"]), str(r.get("first_mismatch") or "")] for r in rows]
    caption = (f"Each point is one model and resolution from {source}: the analytic count on x against what "
               "fvcore (circles) and torch's FlopCounterMode (open squares) count on the built torch module, in the "
               "row's convention (models too large to run are counted on the meta device). Points on the dashed "
               "y = x line agree exactly.")
    return Panel("counts", "Analytic vs fvcore vs FlopCounterMode", caption, fig, [
        DataTable(f"Cross-check rows ({source})", ["model", "res", "attention", "convention", "analytic", "fvcore",
                                                    "fvcore diff", "torch", "torch diff", "status", "first mismatch"],
                  table),
    ])


def _profile_table(rows: list[dict[str, Any]], source: str) -> DataTable:
    cells = [[str(r["model"]), str(r["res"]), str(r.get("dtype", "—")), str(r.get("device_name") or r.get("device")
              or "—"), str(r["status"]), _show(r["predicted_time_s"]), _show(r["measured_time_s"]),
              _show(r["predicted_mem_bytes"]), _show(r["measured_mem_bytes"]), _show(r.get("achieved_tflops")),
              _show(r.get("peak_fraction")), str(r.get("note") or "")] for r in rows]
    return DataTable(f"Profile rows ({source})", ["model", "res", "dtype", "device", "status", "predicted s",
                                                   "measured s", "predicted bytes", "measured bytes",
                                                   "achieved TFLOP/s", "of peak", "note"], cells)


def time_panel(rows: list[dict[str, Any]], source: str) -> Panel:
    """Predicted (x) vs measured (y) forward time of `vitcost profile` rows with status ok."""
    import plotly.graph_objects as go

    fig = go.Figure()
    pts = [(r["predicted_time_s"], r["measured_time_s"],
            [_where(r), str(r.get("device_name") or r.get("device") or "—"), f"{r['predicted_time_s']:.4g} s",
             f"{r['measured_time_s']:.4g} s", f"{r['measured_time_s'] / r['predicted_time_s']:.3g}x"])
           for r in rows if r["status"] == "ok" and _positive(r["predicted_time_s"], r["measured_time_s"])]
    _scatter(fig, "forward time", "circle", "#2ca02c", pts, ["model", "device", "predicted", "measured",
                                                              "measured / predicted"])
    _identity(fig, pts, "Predicted vs measured forward time", "predicted seconds (log)", "measured seconds (log)")
    caption = (f"Each point is one model and resolution from {source}: the roofline prediction on x against the "
               "measured forward time on y (status ok rows only; skipped and out-of-memory rows are in the table). "
               "Points above y = x ran slower than predicted.")
    return Panel("time", "Predicted vs measured time", caption, fig, [_profile_table(rows, source)])


def memory_agreement_panel(rows: list[dict[str, Any]], source: str) -> Panel:
    """Predicted (x) vs measured (y) peak memory, and attention bytes where measured."""
    import plotly.graph_objects as go

    fig = go.Figure()
    every: list[tuple[float, float, Any]] = []
    series = (("predicted_mem_bytes", "measured_mem_bytes", "peak memory", "circle", "#9467bd"),
              ("predicted_attn_bytes", "measured_attn_bytes", "attention matrices", "diamond-open", "#d62728"))
    for pk, mk, name, symbol, col in series:
        pts = [(r[pk], r[mk], [_where(r), name, f"{exact(r[pk])} ({binary_bytes(r[pk])})",
                               f"{exact(r[mk])} ({binary_bytes(r[mk])})", f"{r[mk] / r[pk]:.3g}x"])
               for r in rows if r["status"] == "ok" and _positive(r.get(pk), r.get(mk))]
        every += pts
        _scatter(fig, name, symbol, col, pts, ["model", "what", "predicted", "measured", "measured / predicted"])
    _identity(fig, every, "Predicted vs measured memory", "predicted bytes (log)", "measured bytes (log)")
    table = [[str(r["model"]), str(r["res"]), str(r["status"]), _show(r["predicted_mem_bytes"]),
              _show(r["measured_mem_bytes"]), _show(r.get("mem_ratio")), _show(r.get("predicted_attn_bytes")),
              _show(r.get("measured_attn_bytes"))] for r in rows]
    caption = (f"Each point is one model and resolution from {source}: predicted peak memory (circles) and "
               "attention-matrix bytes (open diamonds) on x against the measured figures on y (status ok rows with "
               "both values).")
    return Panel("memfit", "Predicted vs measured memory", caption, fig, [
        DataTable(f"Memory rows ({source})", ["model", "res", "status", "predicted peak", "measured peak",
                                               "ratio", "predicted attention", "measured attention"], table),
    ])
