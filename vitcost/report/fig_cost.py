"""Figure: cost vs resolution, log-log, one line per model, with the fitted slope beside the
family's asymptotic exponent, and a star where attention scores overtake projections + MLP."""

from __future__ import annotations

import math

from vitcost.analytic.cost import CONVENTIONS
from vitcost.analytic.estimate import Estimate
from vitcost.analytic.registry import family_of
from vitcost.analytic.scaling import attention_overtakes, cached_estimate, fit_slope, side
from vitcost.report.fig_common import (
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


def slopes(ests: list[Estimate], convention: str) -> tuple[float | None, float | None]:
    """(least-squares slope over all resolutions, slope between the two largest) of log cost on log R."""
    xs = [side(e.res) for e in ests]
    ys = [e.count(convention) for e in ests]
    local = fit_slope(xs[-2:], ys[-2:]) if len(ests) >= 2 else None
    return fit_slope(xs, ys), local


def _fmt_slope(s: float | None) -> str:
    return "—" if s is None else f"{s:.2f}"


def cost_panel(groups: dict[str, list[Estimate]], convention: str, batch: int, dtype: str) -> Panel:
    """`groups`: model -> its estimates at the chosen resolutions, ascending."""
    import plotly.graph_objects as go

    unit = unit_name(convention)
    fig = go.Figure()
    sides = [side(e.res) for ests in groups.values() for e in ests]
    lo, hi = min(sides), max(sides)
    xs_all: list[float] = list(sides)
    labels: list[tuple[float, float, str, str]] = []  # (x, log10 y, text, colour)
    summary, rows = [], []
    for i, (model, ests) in enumerate(groups.items()):
        fit, local = slopes(ests, convention)
        expo = ests[0].exponent
        points = [(side(e.res), e) for e in ests]
        cross = attention_overtakes(model, convention, batch, dtype)
        star = None
        if cross is not None and cross.where == "at" and in_window(cross.res, lo, hi):
            star = (float(cross.res), cached_estimate(model, cross.res, batch, dtype))
            points = sorted([*points, star], key=lambda p: p[0])
            xs_all.append(star[0])
        fig.add_trace(go.Scatter(
            x=[p[0] for p in points], y=[p[1].count(convention) for p in points], mode="lines+markers",
            name=f"{model} — fit {_fmt_slope(fit)}, analytic {expo}", line={"color": colour(i), "width": 2},
            marker={"size": 6}, legendgroup=model,
            customdata=[[model, res_label(e), exact(e.tokens), f"{exact(c)} ({si(c)})"]
                        for _, e in points for c in [e.count(convention)]],
            hovertemplate=hover(["model", "resolution", "tokens", unit]),
        ))
        if star is not None:
            s, b = star[1].breakdown(convention), star[1]
            fig.add_trace(go.Scatter(
                x=[star[0]], y=[b.count(convention)], mode="markers", showlegend=False, legendgroup=model,
                marker={"symbol": "star", "size": 15, "color": colour(i), "line": {"color": "#222", "width": 1}},
                customdata=[[model, f"{cross.res} px", exact(b.tokens), exact(s.get("scores", 0)),
                             exact(s.get("proj", 0) + s.get("mlp", 0))]],
                hovertemplate=hover(["attention overtakes projections + MLP", "at", "tokens", "scores",
                                     "projections + MLP"]),
            ))
        last = ests[-1]
        labels.append((side(last.res), math.log10(last.count(convention)),
                       f"fit {_fmt_slope(fit)} · analytic {expo}", colour(i)))
        summary.append([model, family_of(ests[0].spec).title, _fmt_slope(fit), _fmt_slope(local), str(expo),
                        ests[0].complexity])
        base = ests[0].count(convention)
        rows += [[model, res_label(e), exact(e.tokens), exact(e.count(convention)), giga(e.count(convention)),
                  ratio(e.count(convention) / base)] for e in ests]
    ys_log = [lab[1] for lab in labels]
    y_span = max(max(ys_log) - min(ys_log), 1.0)
    for (x, y, text, col), ly in zip(labels, spread_labels(ys_log, 0.075 * y_span)):
        fig.add_annotation(x=math.log10(x), y=y, ax=math.log10(x * 1.25), ay=ly, axref="x", ayref="y",
                           text=text, showarrow=True, arrowhead=0, arrowcolor=col, arrowwidth=1,
                           xanchor="left", font={"size": 11, "color": col})
    log_layout(fig, f"{unit} per forward (batch {batch}) vs resolution", "resolution R (px, log)",
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


def overtake_panel(groups: dict[str, list[Estimate]], convention: str, batch: int, dtype: str) -> Panel:
    """Figure: attention-score cost over projection + MLP cost vs resolution, with the crossing at 1.

    For ViT and pixel models the closed form (N = 6d tokens for an MLP ratio of 4, see
    `scaling.overtake_closed_form`) is drawn beside the crossing found from the per-role breakdown."""
    import plotly.graph_objects as go

    from vitcost.analytic.scaling import overtake_closed_form, scores_share

    unit = unit_name(convention)
    fig = go.Figure()
    sides = [side(e.res) for ests in groups.values() for e in ests]
    lo, hi = min(sides), max(sides)
    xs_all = list(sides)
    rows, crossings, skipped = [], [], []
    for i, (model, ests) in enumerate(groups.items()):
        cross = attention_overtakes(model, convention, batch, dtype)
        if cross is None:
            skipped.append(model)
            continue
        points = [(side(e.res), e) for e in ests]
        if cross.where == "at" and in_window(cross.res, lo, hi):
            points = sorted([*points, (float(cross.res), cached_estimate(model, cross.res, batch, dtype))],
                            key=lambda p: p[0])
            xs_all.append(float(cross.res))
        data = [(x, e, *scores_share(e, convention)) for x, e in points]
        fig.add_trace(go.Scatter(
            x=[d[0] for d in data], y=[d[2] / d[3] for d in data], mode="lines+markers", name=model,
            line={"color": colour(i), "width": 2}, legendgroup=model,
            customdata=[[model, res_label(e), exact(s), exact(lin), f"{s / lin:.3g}"] for _, e, s, lin in data],
            hovertemplate=hover(["model", "resolution", "scores", "projections + MLP", "ratio"]),
        ))
        closed = overtake_closed_form(ests[0].spec)
        if cross.where == "at" and in_window(cross.res, lo, hi):
            e = cached_estimate(model, cross.res, batch, dtype)
            s, lin = scores_share(e, convention)
            fig.add_trace(go.Scatter(
                x=[cross.res], y=[s / lin], mode="markers", showlegend=False, legendgroup=model,
                marker={"symbol": "star", "size": 15, "color": colour(i), "line": {"color": "#222", "width": 1}},
                customdata=[[model, f"{cross.res} px", exact(e.tokens)]],
                hovertemplate=hover(["scores overtake projections + MLP", "from the breakdown, at", "tokens"])))
        if closed is not None and in_window(closed, lo, hi):
            xs_all.append(closed)
            fig.add_trace(go.Scatter(
                x=[closed], y=[1.0], mode="markers", showlegend=False, legendgroup=model,
                marker={"symbol": "x-thin", "size": 16, "color": "#222", "line": {"color": "#222", "width": 2}},
                customdata=[[model, f"{closed:,.0f} px"]],
                hovertemplate=hover(["closed form N = (2 + mlp ratio) d", "at"])))
        spec = ests[0].spec
        closed_text = "—" if closed is None else (
            f"{closed:,.0f} px (N = {(2 + spec.mlp_ratio) * spec.dim:,.0f} tokens)")
        crossings.append([model, family_of(ests[0].spec).title, cross.describe(), closed_text])
        rows += [[model, res_label(e), exact(s), exact(lin), f"{s / lin:.3g}"] for x, e, s, lin in data]
    fig.add_trace(go.Scatter(x=[min(xs_all) / 1.1, max(xs_all) * 1.1], y=[1, 1], mode="lines",
                             name="scores = projections + MLP", line={"color": "#555", "dash": "dash", "width": 1},
                             hoverinfo="skip"))
    note_if_empty(fig, len(groups) - len(skipped), "no attention scores: " + ", ".join(skipped))
    log_layout(fig, "Attention scores ÷ (projections + MLP) vs resolution", "resolution R (px, log)",
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
