"""The sweep's front: the first two objectives as axes, the third as colour, the dominated designs in
grey behind the front."""

from __future__ import annotations

from typing import Any

from vitcost.report.fig_common import hover
from vitcost.report.sweep_view import HEADINGS, cell

GREY = "#c7ccd4"
MAX_GREY = 5_000  # dominated designs drawn (SVG, no WebGL needed); past this many, an even spread of them


def _title(key: str, maximise: bool) -> str:
    name = {"time_s": "time per batch (s)", "images_per_s": "images/s", "params": "params"}.get(key, HEADINGS.get(
        key, key))
    if key in ("macs", "flops", "fvcore", "torch", "train_cost", "forward_cost", "cost"):
        name = key
    if key.endswith("_bytes"):
        name = f"{HEADINGS.get(key, key)} (bytes)"
    return f"{name} ({'higher' if maximise else 'lower'} is better)"


def _log(values: list[float]) -> bool:
    pos = [v for v in values if v is not None and v > 0]
    return len(pos) == len(values) and bool(pos) and max(pos) / min(pos) > 20


def front_figure(rows: list[dict[str, Any]], objectives: list[tuple[str, bool]]) -> Any:
    """A scatter of `rows` (each with `pareto`) over the first two objectives; the third colours the front."""
    import plotly.graph_objects as go

    (x, xmax), (y, ymax) = objectives[0], objectives[1]
    colour = objectives[2] if len(objectives) > 2 else None
    lines = ["", *(HEADINGS.get(k, k) for k, _ in objectives)]
    template = hover(lines)

    def data(rs: list[dict[str, Any]]) -> dict[str, Any]:
        return {"x": [r[x] for r in rs], "y": [r[y] for r in rs],
                "customdata": [[r["label"] + f" @ {r['res']}", *(cell(k, r[k]) for k, _ in objectives)] for r in rs]}

    front = [r for r in rows if r["pareto"]]
    rest = [r for r in rows if not r["pareto"]]
    if len(rest) > MAX_GREY:
        rest = rest[:: -(-len(rest) // MAX_GREY)]
    fig = go.Figure()
    if rest:
        fig.add_trace(go.Scatter(mode="markers", name="dominated", marker={"color": GREY, "size": 6},
                                   hovertemplate=template, **data(rest)))
    marker: dict[str, Any] = {"size": 10, "line": {"width": 1, "color": "#1d2530"}}
    if colour is not None:
        marker.update(color=[r[colour[0]] for r in front], colorscale="Viridis", reversescale=colour[1],
                      showscale=True, colorbar={"title": {"text": HEADINGS.get(colour[0], colour[0])}})
    else:
        marker["color"] = "#ef553b"
    fig.add_trace(go.Scatter(mode="markers", name="Pareto front", marker=marker, hovertemplate=template,
                             **data(front)))
    fig.update_layout(template="plotly_white", height=460, legend={"orientation": "h", "y": -0.18},
                      margin={"l": 60, "r": 20, "t": 30, "b": 60})
    fig.update_xaxes(title_text=_title(x, xmax), type="log" if _log([r[x] for r in rows]) else "linear")
    fig.update_yaxes(title_text=_title(y, ymax), type="log" if _log([r[y] for r in rows]) else "linear")
    return fig
