"""Figure: attention-matrix memory vs resolution, log-log, with device-memory lines and the
resolution where each model's score matrices no longer fit (the memory wall). The walls are found
by the assembler (`report.facts`); this only draws them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitcost.analytic.estimate import Estimate
from vitcost.report.fig_common import (
    AXIS_NAMES,
    AXIS_TITLES,
    colour,
    exact,
    hover,
    in_window,
    log_layout,
    note_if_empty,
    res_label,
)
from vitcost.report.html import DataTable, Panel
from vitcost.report.units import binary_bytes

if TYPE_CHECKING:
    from vitcost.report.facts import ScalingFacts

METRICS = {"total": "all layers", "layer": "largest layer"}  # the keys are facts.WALL_METRICS


def _bytes(e: Estimate, metric: str) -> int:
    return e.attn_matrix_bytes if metric == "total" else e.attn_matrix_peak_bytes


def memory_panel(facts: ScalingFacts) -> Panel:
    import plotly.graph_objects as go

    devices, batch, dtype = facts.devices, facts.batch, facts.dtype
    fig = go.Figure()
    sides = [p.x for f in facts.designs for p in f.points]
    lo, hi = min(sides), max(sides)
    xs_all = list(sides)
    walls, rows, skipped, box = [], [], [], {d.label: [] for d in devices}
    for i, f in enumerate(facts.designs):
        model, found = f.model, f.walls
        if found is None:
            skipped.append(model)
            continue
        extra = {c.res: c.point for c in found.values() if c.point is not None and in_window(c.res, lo, hi)}
        points = sorted([*f.points, *extra.values()], key=lambda p: p.x)
        xs_all += [p.x for p in extra.values()]
        for metric, dash in (("total", "solid"), ("layer", "dot")):
            fig.add_trace(go.Scatter(
                x=[p.x for p in points], y=[_bytes(p.est, metric) for p in points], mode="lines+markers",
                name=f"{model} ({METRICS[metric]})", legendgroup=model,
                line={"color": colour(i), "dash": dash, "width": 2 if metric == "total" else 1.5},
                marker={"size": 5 if metric == "total" else 4},
                customdata=[[model, res_label(e), METRICS[metric], exact(_bytes(e, metric)),
                             binary_bytes(_bytes(e, metric))] for e in (p.est for p in points)],
                hovertemplate=hover(["model", "resolution", "score matrices of", "bytes", "="]),
            ))
        for d in devices:
            for metric in METRICS:
                c = found[(d.label, metric)]
                if metric == "total":
                    box[d.label].append(f"{model} {c.text}")
                if c.point is None or not in_window(c.res, lo, hi):
                    continue
                e = c.point.est
                fig.add_trace(go.Scatter(
                    x=[c.res], y=[_bytes(e, metric)], mode="markers", showlegend=False, legendgroup=model,
                    marker={"symbol": "diamond" if metric == "total" else "diamond-open", "size": 11,
                            "color": colour(i), "line": {"color": "#222", "width": 1}},
                    customdata=[[model, d.label, METRICS[metric], f"{c.res:,} px", exact(_bytes(e, metric))]],
                    hovertemplate=hover(["memory wall", "device", "score matrices of", "first reached at",
                                         "bytes"])))
        walls += [[model, d.label, found[(d.label, "total")].text, found[(d.label, "layer")].text] for d in devices]
        rows += [[model, res_label(e), exact(e.attn_matrix_elems), exact(e.attn_matrix_bytes),
                  binary_bytes(e.attn_matrix_bytes), exact(e.attn_matrix_peak_bytes),
                  binary_bytes(e.attn_matrix_peak_bytes)] for e in (p.est for p in f.points)]
    x0, x1 = min(xs_all) / 1.15, max(xs_all) * 1.15
    for k, d in enumerate(devices):  # ascending sizes: label the smallest below its line, the rest above
        fig.add_trace(go.Scatter(x=[x0, x1], y=[d.bytes, d.bytes], mode="lines+text", name=f"device memory {d.label}",
                                 text=["", d.label], textposition="bottom left" if k == 0 else "top left",
                                 textfont={"size": 10, "color": "#444"},
                                 line={"color": "#444", "dash": "dash", "width": 1.5},
                                 customdata=[[d.label, exact(d.bytes)]] * 2, hovertemplate=hover(["device", "bytes"])))
    text = "<br>".join(f"<b>{label}</b>: " + ", ".join(v) for label, v in box.items() if v)
    if text:
        fig.add_annotation(xref="paper", yref="paper", x=0.99, y=0.01, xanchor="right", yanchor="bottom", align="left",
                           text="memory wall, all layers —<br>" + text, showarrow=False, font={"size": 10},
                           bgcolor="rgba(255,255,255,0.85)", bordercolor="#bbb", borderwidth=1)
    note_if_empty(fig, len(facts.designs) - len(skipped), "no attention matrices: " + ", ".join(skipped))
    log_layout(fig, f"Attention-matrix memory ({dtype}, batch {batch}) vs {AXIS_NAMES[facts.axis]}",
               AXIS_TITLES[facts.axis],
               "bytes (log)", (x0, x1), sides)
    note = f" {', '.join(skipped)}: no attention matrix, not shown." if skipped else ""
    caption = ("Bytes of the materialised attention-score matrices (batch × heads × Nq × Nkv elements per layer). "
               "Solid: all layers together, what training keeps for the backward pass; dotted: the largest single "
               "layer, what one inference forward holds at once. Dashed horizontal lines: device memory; ◆ marks the "
               "first resolution where the matrices alone fill it (◇ for the largest layer). Fused attention "
               "(FlashAttention) never materialises these matrices." + note)
    return Panel("memory", "Attention-matrix memory vs resolution (the memory wall)", caption, fig, [
        DataTable("Memory wall: first resolution where the score matrices reach the device memory",
                  ["model", "device memory", "all layers", "largest layer"], walls),
        DataTable(f"Attention-score matrices per model and resolution ({dtype}, batch {batch})",
                  ["model", "res", "elements, all layers", "bytes, all layers", "all layers", "bytes, largest layer",
                   "largest layer"],
                  rows),
    ])

