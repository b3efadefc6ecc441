"""Figure: time per forward vs resolution on each `--hardware` device, and FLOPs against time, so that a
design whose time departs from its FLOPs (local attention's gathers, windows' copies, a small batch's
launches) stands out beside convolution and global attention.

It draws the facts it is handed (`report.facts.latency_facts`): every time there is the one forward-time
figure `compare` shows (`roofline.forward_time`), with the model that gave it."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING, Any

from vitcost.report.fig_common import AXIS_NAMES, AXIS_TITLES, colour, exact, hover
from vitcost.report.html import DataTable, Panel

if TYPE_CHECKING:
    from vitcost.report.facts import LatencyFacts

DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "cross", "x")


def _add(fig: Any, pts: list[Any], model: str, device: str, col: str, d: int, bound: bool, legend: bool) -> None:
    """One design on one device, by one time model: a line in time vs R and its points in FLOPs vs time;
    roofline points (a lower bound) are open markers on a thin line. The legend names each design once
    (its colour); each device's dash is named by its throughput line."""
    import plotly.graph_objects as go

    data = [[model, device, p.res, f"{p.time_s * 1e3:.4g} ms", f"{p.images_per_s:,.4g}", exact(p.flops),
             p.time_model] for p in pts]
    tip = hover(["model", "device", "resolution", "time", "img/s", "FLOPs", "time model"])
    marker = {"color": col, "size": 8, "symbol": f"{SYMBOLS[d % len(SYMBOLS)]}{'-open' if bound else ''}"}
    line = {"color": col, "width": 1 if bound else 2, "dash": DASHES[d % len(DASHES)]}
    name = f"{model} · {device}" + (" (roofline)" if bound else "")
    fig.add_trace(go.Scatter(x=[p.x for p in pts], y=[p.time_s * 1e3 for p in pts], mode="lines+markers",
                             name=model if legend else name, showlegend=legend, line=line, marker=marker,
                             legendgroup=name, customdata=data, hovertemplate=tip), row=1, col=1)
    fig.add_trace(go.Scatter(x=[p.time_s * 1e3 for p in pts], y=[p.flops / 1e9 for p in pts], mode="markers",
                             showlegend=False, legendgroup=name, marker=marker, customdata=data, hovertemplate=tip),
                  row=1, col=2)


def latency_panel(facts: LatencyFacts) -> Panel:
    """Left: ms per forward of the batch vs R, log-log, a colour per design and a dash per device. Right:
    GFLOPs against ms, log-log, with each device's median throughput as a line: a point above its
    device's line runs slower than its FLOPs say."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.1,
                        subplot_titles=(f"time per forward vs {AXIS_NAMES[facts.axis]}", "FLOPs against time"))
    models = list(dict.fromkeys(p.model for p in facts.points))
    named: set[str] = set()
    rows = []
    for d, device in enumerate(facts.devices):
        mine = [p for p in facts.points if p.device == device]
        for m, model in enumerate(models):
            for how in ("per-op", "roofline"):  # a line never joins points of two models
                pts = sorted((p for p in mine if p.model == model and p.time_model == how), key=lambda p: p.x)
                if pts:
                    _add(fig, pts, model, device, colour(m), d, how == "roofline", model not in named)
                    named.add(model)
        timed = [p for p in mine if p.time_model == "per-op"] or mine  # the line: the per-op points' median
        rate = statistics.median(p.flops / p.time_s for p in timed)
        ts = [p.time_s for p in mine]
        lo, hi = min(ts) / 1.5, max(ts) * 1.5
        fig.add_trace(go.Scatter(x=[lo * 1e3, hi * 1e3], y=[rate * lo / 1e9, rate * hi / 1e9], mode="lines",
                                 name=f"{device} ({DASHES[d % len(DASHES)]}): median {rate / 1e12:.3g} TFLOP/s",
                                 hoverinfo="skip",
                                 line={"color": "#888", "width": 1, "dash": DASHES[d % len(DASHES)]}), row=1, col=2)
        rows += [[p.model, device, p.res, f"{p.flops / 1e9:,.4g}", f"{p.time_s * 1e3:.4g}", f"{p.images_per_s:,.4g}",
                  f"{p.flops / p.time_s / 1e12:.3g}", f"{p.flops / p.time_s / rate:.2f}", p.time_model] for p in mine]
    fig.update_xaxes(type="log", title_text=AXIS_TITLES[facts.axis], row=1, col=1)
    fig.update_yaxes(type="log", title_text="ms per forward (log)", row=1, col=1)
    fig.update_xaxes(type="log", title_text="ms per forward (log)", row=1, col=2)
    fig.update_yaxes(type="log", title_text="GFLOPs per forward (log)", row=1, col=2)
    fig.update_layout(template="plotly_white", title={"text": f"Time per forward, batch {facts.batch}, "
                                                              f"{facts.precision}", "font": {"size": 14}},
                      height=460, margin={"l": 60, "r": 20, "t": 60, "b": 10}, hovermode="closest",
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0, "font": {"size": 10}})
    models_used = ", ".join(sorted({p.time_model for p in facts.points}))
    caption = (f"One forward of the batch on each device ({', '.join(facts.devices)}), by the time model "
               f"`compare --hardware` shows ({models_used}: the per-op model where the device profile carries "
               "fitted efficiencies, the run is autocast and its matmul launches are as large as the measured "
               "rows'; the roofline, a lower bound, elsewhere). Right: FLOPs (2 per MAC + the elementwise ops) "
               "against time; the grey line is the device's median throughput over its per-op points, and a point "
               "above it reaches fewer FLOP/s than the others: its time is not its FLOPs'. Open markers on thin "
               "lines are roofline points, a lower bound (a line never joins points of the two models).")
    return Panel("latency", "time per forward and FLOPs against time", caption, fig, [
        DataTable("Time per forward, per design, device and resolution",
                  ["model", "device", "res", "GFLOPs", "ms", "img/s", "TFLOP/s", "vs median", "time model"], rows),
    ])


__all__ = ["latency_panel"]
