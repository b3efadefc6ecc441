"""Figure: attention-matrix memory vs resolution, log-log, with device-memory lines and the
resolution where each model's score matrices no longer fit (the memory wall)."""

from __future__ import annotations

from vitcost.analytic.estimate import Estimate
from vitcost.analytic.scaling import DeviceMemory, cached_estimate, score_wall, side
from vitcost.report.fig_common import colour, exact, hover, in_window, log_layout, note_if_empty, res_label
from vitcost.report.html import DataTable, Panel
from vitcost.report.units import binary_bytes

METRICS = {"total": "all layers", "layer": "largest layer"}


def _bytes(e: Estimate, metric: str) -> int:
    return e.attn_matrix_bytes if metric == "total" else e.attn_matrix_peak_bytes


def memory_panel(groups: dict[str, list[Estimate]], devices: list[DeviceMemory], batch: int, dtype: str) -> Panel:
    import plotly.graph_objects as go

    fig = go.Figure()
    sides = [side(e.res) for ests in groups.values() for e in ests]
    lo, hi = min(sides), max(sides)
    xs_all = list(sides)
    walls, rows, skipped, box = [], [], [], {d.label: [] for d in devices}
    for i, (model, ests) in enumerate(groups.items()):
        if ests[-1].attn_matrix_elems == 0:
            skipped.append(model)
            continue
        found = {(d.label, m): score_wall(model, d.bytes, m, batch, dtype) for d in devices for m in METRICS}
        extra = {c.res for c in found.values() if c is not None and c.where == "at" and in_window(c.res, lo, hi)}
        points = sorted([(side(e.res), e) for e in ests]
                        + [(float(r), cached_estimate(model, r, batch, dtype)) for r in extra], key=lambda p: p[0])
        xs_all += [float(r) for r in extra]
        for metric, dash in (("total", "solid"), ("layer", "dot")):
            fig.add_trace(go.Scatter(
                x=[p[0] for p in points], y=[_bytes(p[1], metric) for p in points], mode="lines+markers",
                name=f"{model} ({METRICS[metric]})", legendgroup=model,
                line={"color": colour(i), "dash": dash, "width": 2 if metric == "total" else 1.5},
                marker={"size": 5 if metric == "total" else 4},
                customdata=[[model, res_label(e), METRICS[metric], exact(_bytes(e, metric)),
                             binary_bytes(_bytes(e, metric))] for _, e in points],
                hovertemplate=hover(["model", "resolution", "score matrices of", "bytes", "="]),
            ))
        for d in devices:
            for metric in METRICS:
                c = found[(d.label, metric)]
                if metric == "total":
                    box[d.label].append(f"{model} {c.describe()}")
                if c is None or c.where != "at" or not in_window(c.res, lo, hi):
                    continue
                e = cached_estimate(model, c.res, batch, dtype)
                fig.add_trace(go.Scatter(
                    x=[c.res], y=[_bytes(e, metric)], mode="markers", showlegend=False, legendgroup=model,
                    marker={"symbol": "diamond" if metric == "total" else "diamond-open", "size": 11,
                            "color": colour(i), "line": {"color": "#222", "width": 1}},
                    customdata=[[model, d.label, METRICS[metric], f"{c.res:,} px", exact(_bytes(e, metric))]],
                    hovertemplate=hover(["memory wall", "device", "score matrices of", "first reached at",
                                         "bytes"])))
        walls += [[model, d.label, found[(d.label, "total")].describe(), found[(d.label, "layer")].describe()]
                  for d in devices]
        rows += [[model, res_label(e), exact(e.attn_matrix_elems), exact(e.attn_matrix_bytes),
                  binary_bytes(e.attn_matrix_bytes), exact(e.attn_matrix_peak_bytes),
                  binary_bytes(e.attn_matrix_peak_bytes)] for e in ests]
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
    note_if_empty(fig, len(groups) - len(skipped), "no attention matrices: " + ", ".join(skipped))
    log_layout(fig, f"Attention-matrix memory ({dtype}, batch {batch}) vs resolution", "resolution R (px, log)",
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

