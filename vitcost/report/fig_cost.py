"""Figure: cost vs resolution, log-log, one line per model, with the fitted slope beside the
family's asymptotic exponent, and a star where attention scores overtake projections + MLP.

Both figures draw the facts they are handed (`report.facts`): the slopes and crossings are found
by the assembler, not here."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from vitcost.analytic.cost import CONVENTIONS
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
    spread_labels,
    unit_name,
)
from vitcost.report.html import DataTable, Panel
from vitcost.report.units import giga, ratio, si

if TYPE_CHECKING:
    from vitcost.report.facts import ScalingFacts


def _fmt_slope(s: float | None) -> str:
    return "—" if s is None else f"{s:.2f}"


def cost_panel(facts: ScalingFacts) -> Panel:
    """One line per design through its points, in `facts.convention`."""
    import plotly.graph_objects as go

    convention, batch = facts.convention, facts.batch
    unit = unit_name(convention)
    fig = go.Figure()
    sides = [p.x for f in facts.designs for p in f.points]
    lo, hi = min(sides), max(sides)
    xs_all: list[float] = list(sides)
    labels: list[tuple[float, float, str, str]] = []  # (x, log10 y, text, colour)
    summary, rows = [], []
    for i, f in enumerate(facts.designs):
        model, fit, expo = f.model, f.fit_slope, f.first.exponent
        points = list(f.points)
        cross = f.overtake
        star = None
        if cross is not None and cross.point is not None and in_window(cross.res, lo, hi):
            star = cross.point
            points = sorted([*points, star], key=lambda p: p.x)
            xs_all.append(star.x)
        fig.add_trace(go.Scatter(
            x=[p.x for p in points], y=[p.est.count(convention) for p in points], mode="lines+markers",
            name=f"{model} — fit {_fmt_slope(fit)}, analytic {expo}", line={"color": colour(i), "width": 2},
            marker={"size": 6}, legendgroup=model,
            customdata=[[model, res_label(e), exact(e.tokens), f"{exact(c)} ({si(c)})"]
                        for e in (p.est for p in points) for c in [e.count(convention)]],
            hovertemplate=hover(["model", "resolution", "tokens", unit]),
        ))
        if star is not None:
            b = star.est
            fig.add_trace(go.Scatter(
                x=[star.x], y=[b.count(convention)], mode="markers", showlegend=False, legendgroup=model,
                marker={"symbol": "star", "size": 15, "color": colour(i), "line": {"color": "#222", "width": 1}},
                customdata=[[model, f"{cross.res} px", exact(b.tokens), exact(star.scores), exact(star.linear)]],
                hovertemplate=hover(["attention overtakes projections + MLP", "at", "tokens", "scores",
                                     "projections + MLP"]),
            ))
        last = f.points[-1]
        labels.append((last.x, math.log10(last.est.count(convention)),
                       f"fit {_fmt_slope(fit)} · analytic {expo}", colour(i)))
        summary.append([model, f.family, _fmt_slope(fit), _fmt_slope(f.top_slope), str(expo), f.first.complexity])
        base = f.first.count(convention)
        rows += [[model, res_label(e), exact(e.tokens), exact(e.count(convention)), giga(e.count(convention)),
                  ratio(e.count(convention) / base)] for e in (p.est for p in f.points)]
    ys_log = [lab[1] for lab in labels]
    y_span = max(max(ys_log) - min(ys_log), 1.0)
    for (x, y, text, col), ly in zip(labels, spread_labels(ys_log, 0.075 * y_span)):
        fig.add_annotation(x=math.log10(x), y=y, ax=math.log10(x * 1.25), ay=ly, axref="x", ayref="y",
                           text=text, showarrow=True, arrowhead=0, arrowcolor=col, arrowwidth=1,
                           xanchor="left", font={"size": 11, "color": col})
    log_layout(fig, f"{unit} per forward (batch {batch}) vs {AXIS_NAMES[facts.axis]}", AXIS_TITLES[facts.axis],
               f"{unit} (log)", (min(xs_all) / 1.15, max(xs_all) * 3.2), sides)
    caption = (f"Cost of one forward pass in the {convention} convention ({CONVENTIONS[convention]}). Each line "
               "is labelled with the least-squares slope of log cost on log R over the chosen resolutions, beside "
               "its family's asymptotic exponent (cost ~ R^k as R grows): a fit below the exponent means the linear "
               "layers still dominate at these sizes. ★ marks where attention scores overtake projections + MLP "
               "(figure 4).")
    return Panel("cost", f"{unit} vs resolution", caption, fig, [
        DataTable("Fitted vs analytic exponent (log cost on log R)",
                  ["model", "family", "fitted slope", "slope at the top (last two)", "analytic exponent",
                   "attention class"], summary),
        DataTable(f"{unit} per model and resolution, batch {batch}",
                  ["model", "res", "tokens", unit, f"G{unit.split()[0]}", "growth"], rows),
    ])


def overtake_panel(facts: ScalingFacts) -> Panel:
    """Figure: attention-score cost over projection + MLP cost vs resolution, with the crossing at 1.

    For ViT and pixel models the closed form (N = 6d tokens for an MLP ratio of 4, see
    `scaling.overtake_closed_form`) is drawn beside the crossing found from the per-role breakdown."""
    import plotly.graph_objects as go

    unit = unit_name(facts.convention)
    fig = go.Figure()
    sides = [p.x for f in facts.designs for p in f.points]
    lo, hi = min(sides), max(sides)
    xs_all = list(sides)
    rows, crossings, skipped = [], [], []
    for i, f in enumerate(facts.designs):
        model, cross = f.model, f.overtake
        if cross is None:
            skipped.append(model)
            continue
        star = cross.point if cross.point is not None and in_window(cross.res, lo, hi) else None
        points = list(f.points)
        if star is not None:
            points = sorted([*points, star], key=lambda p: p.x)
            xs_all.append(star.x)
        fig.add_trace(go.Scatter(
            x=[p.x for p in points], y=[p.scores / p.linear for p in points], mode="lines+markers", name=model,
            line={"color": colour(i), "width": 2}, legendgroup=model,
            customdata=[[model, res_label(p.est), exact(p.scores), exact(p.linear), f"{p.scores / p.linear:.3g}"]
                        for p in points],
            hovertemplate=hover(["model", "resolution", "scores", "projections + MLP", "ratio"]),
        ))
        if star is not None:
            fig.add_trace(go.Scatter(
                x=[cross.res], y=[star.scores / star.linear], mode="markers", showlegend=False, legendgroup=model,
                marker={"symbol": "star", "size": 15, "color": colour(i), "line": {"color": "#222", "width": 1}},
                customdata=[[model, f"{cross.res} px", exact(star.est.tokens)]],
                hovertemplate=hover(["scores overtake projections + MLP", "from the breakdown, at", "tokens"])))
        closed = f.closed_form
        if closed is not None and in_window(closed.res, lo, hi):
            xs_all.append(closed.res)
            fig.add_trace(go.Scatter(
                x=[closed.res], y=[1.0], mode="markers", showlegend=False, legendgroup=model,
                marker={"symbol": "x-thin", "size": 16, "color": "#222", "line": {"color": "#222", "width": 2}},
                customdata=[[model, f"{closed.res:,.0f} px"]],
                hovertemplate=hover(["closed form N = (2 + mlp ratio) d", "at"])))
        closed_text = "—" if closed is None else f"{closed.res:,.0f} px (N = {closed.tokens:,.0f} tokens)"
        crossings.append([model, f.family, cross.text, closed_text])
        rows += [[model, res_label(p.est), exact(p.scores), exact(p.linear), f"{p.scores / p.linear:.3g}"]
                 for p in points]
    fig.add_trace(go.Scatter(x=[min(xs_all) / 1.1, max(xs_all) * 1.1], y=[1, 1], mode="lines",
                             name="scores = projections + MLP", line={"color": "#555", "dash": "dash", "width": 1},
                             hoverinfo="skip"))
    note_if_empty(fig, len(facts.designs) - len(skipped), "no attention scores: " + ", ".join(skipped))
    log_layout(fig, f"Attention scores ÷ (projections + MLP) vs {AXIS_NAMES[facts.axis]}", AXIS_TITLES[facts.axis],
               f"ratio of {unit} (log)", (min(xs_all) / 1.15, max(xs_all) * 1.15), sides)
    note = f" {', '.join(skipped)}: no attention, not shown." if skipped else ""
    caption = ("Where attention overtakes the token-wise layers. Per ViT layer the scores cost 2N²d MACs (QK^T and AV) "
               "and the Q/K/V/output projections plus the MLP 12Nd² (MLP ratio 4), so they are equal at N = 6d tokens "
               "(ViT-B/16: d = 768, N = 4,608, R = 16·√4607 ≈ 1,086 px; ✕ marks this closed form). ★ marks the "
               "crossing found from each model's own per-role breakdown. Swin's windowed scores stay a fixed "
               "fraction (2M²/12C per stage) of its linear layers, so they never overtake." + note)
    return Panel("overtake", "Where attention overtakes projections + MLP", caption, fig, [
        DataTable("Resolution where attention scores first cost as much as projections + MLP",
                  ["model", "family", "from the breakdown", "closed form (ViT, pixel)"], crossings),
        DataTable(f"Scores vs projections + MLP ({unit}) per model and resolution",
                  ["model", "res", "scores", "projections + MLP", "ratio"], rows),
    ])
