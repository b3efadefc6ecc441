"""Figure: where each model's cost goes at one resolution, as stacked shares by role."""

from __future__ import annotations

from vitcost.analytic.cost import ROLES
from vitcost.analytic.estimate import Estimate
from vitcost.report.fig_common import exact, hover, res_label, unit_name
from vitcost.report.html import DataTable, Panel
from vitcost.report.units import si

# Bar segments: role keys they sum, label, colour. Embedding, norms, head and adds are small and
# folded into "other"; the table behind the plot keeps every role apart.
SEGMENTS: list[tuple[tuple[str, ...], str, str]] = [
    (("scores",), "attention scores (QK^T, AV)", "#d62728"),
    (("proj",), "Q/K/V/output projections", "#1f77b4"),
    (("mlp",), "MLP (channel and token mixing)", "#2ca02c"),
    (("pool",), "pooling / merging", "#9467bd"),
    (("embed", "norm", "head", "other"), "other (embedding, norms, head, adds)", "#7f7f7f"),
]


def breakdown_panel(ests: list[Estimate], convention: str) -> Panel:
    """`ests`: one estimate per model, all at the breakdown resolution."""
    import plotly.graph_objects as go

    unit = unit_name(convention)
    fig = go.Figure()
    models = [e.model for e in ests]
    parts = [e.breakdown(convention) for e in ests]
    totals = [e.count(convention) for e in ests]
    for roles, label, col in SEGMENTS:
        values = [sum(b.get(r, 0) for r in roles) for b in parts]
        fig.add_trace(go.Bar(
            x=models, y=values, name=label, marker_color=col,
            customdata=[[m, label, f"{exact(v)} {unit}", f"{v / t:.1%}" if t else "—"]
                        for m, v, t in zip(models, values, totals)],
            hovertemplate=hover(["model", "part", "cost", "share"]),
        ))
    for m, t in zip(models, totals):
        fig.add_annotation(x=m, y=100, yanchor="bottom", text=f"{si(t)}", showarrow=False, font={"size": 11})
    res = res_label(ests[0])
    fig.update_layout(
        template="plotly_white", barmode="stack", barnorm="percent", height=460,
        title={"text": f"Share of {unit} by part at {res} px (total above each bar)", "font": {"size": 14}},
        margin={"l": 70, "r": 20, "t": 40, "b": 10},
        legend={"orientation": "h", "yanchor": "top", "y": -0.12, "xanchor": "left", "x": 0, "font": {"size": 11},
                "traceorder": "normal"},
    )
    fig.update_yaxes(title=f"% of {unit}", range=[0, 108], ticksuffix="%")
    roles = list(ROLES)
    rows = [[e.model, res_label(e), *(exact(b.get(r, 0)) for r in roles), exact(t)]
            for e, b, t in zip(ests, parts, totals)]
    caption = (f"Each model's {unit} at {res} px split by what the ops do: attention scores (QK^T and AV, with "
               "relative-position terms), the Q/K/V and output projections, the MLPs (channel and token mixing), "
               "pooling and patch merging, and the rest (patch embedding, norms, head, adds). Hover for exact "
               "counts; the table keeps every part apart.")
    return Panel("breakdown", f"Where the {unit} go at {res} px", caption, fig, [
        DataTable(f"{unit} by part at {res} px", ["model", "res", *(ROLES[r] for r in roles), "total"], rows),
    ])
