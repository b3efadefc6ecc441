"""Shared pieces of the report's figures: colours, log-log axes, hover text, number formatting."""

from __future__ import annotations

import math
from typing import Any

from vitcost.analytic.estimate import Estimate
from vitcost.vocab import res_label as _res_label

# One colour per model, in the order the models were given (plotly's default colourway).
PALETTE = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692", "#b6e880",
           "#ff97ff", "#fecb52"]
# Crossings are drawn when they fall within this factor of the plotted resolutions.
NEAR = 4.0


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def unit_name(convention: str) -> str:
    """What the y axis counts: 'MACs' or 'FLOPs (torch)'."""
    return "MACs" if convention == "macs" else f"FLOPs ({convention})"


def res_label(e: Estimate) -> str:
    return str(_res_label(e.res))


def exact(n: int | float) -> str:
    """An exact count with thousands separators."""
    return f"{n:,}" if isinstance(n, int) else f"{n:,.6g}"


def hover(lines: list[str]) -> str:
    """A hover template whose i-th line shows customdata[i] after the label lines[i]."""
    return "<br>".join(f"{label}: %{{customdata[{i}]}}" if label else f"%{{customdata[{i}]}}"
                       for i, label in enumerate(lines)) + "<extra></extra>"


# What the x axis is (`scaling.report_axis`): the input side, or the frames of clips of one H x W.
AXIS_NAMES = {"side": "resolution", "frames": "frames T"}
AXIS_TITLES = {"side": "resolution R (px, log)", "frames": "frames T (at a fixed H x W, log)"}

# Resolution ticks offered on the x axis (the chosen resolutions are always ticked).
NICE_RES = (16, 32, 64, 96, 128, 160, 224, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288,
            16384, 24576, 32768, 49152, 65536)


def res_ticks(chosen: list[float], lo: float, hi: float) -> list[float]:
    """x ticks: every chosen resolution, plus round sizes in [lo, hi] not crowding them (1/12 decade apart)."""
    ticks = sorted(set(chosen))
    for r in NICE_RES:
        if lo <= r <= hi and all(abs(math.log10(r / t)) > 1 / 12 for t in ticks):
            ticks.append(r)
    return sorted(ticks)


def log_layout(fig: Any, title: str, xtitle: str, ytitle: str, xrange: tuple[float, float] | None = None,
               xticks: list[float] | None = None) -> None:
    """Log-log axes, SI tick labels, legend below the plot; `xticks`: resolutions to tick on x."""
    fig.update_layout(
        template="plotly_white", title={"text": title, "font": {"size": 14}}, height=460,
        margin={"l": 70, "r": 20, "t": 40, "b": 10}, hovermode="closest",
        legend={"orientation": "h", "yanchor": "top", "y": -0.16, "xanchor": "left", "x": 0, "font": {"size": 11}},
    )
    fig.update_xaxes(type="log", title=xtitle, tickformat="~s", showline=True, linecolor="#999")
    fig.update_yaxes(type="log", title=ytitle, tickformat="~s", exponentformat="SI", showline=True,
                     linecolor="#999")
    if xrange is not None:
        fig.update_xaxes(range=[math.log10(xrange[0]), math.log10(xrange[1])])
    ys = [float(y) for t in fig.data for y in (t.y or ()) if isinstance(y, (int, float)) and y > 0]
    if ys:  # a label per decade on wide ranges, 1-2-5 on middling ones; plotly labels every digit otherwise
        span = math.log10(max(ys) / min(ys))
        if span >= 2.5:
            fig.update_yaxes(dtick=1)
        elif span >= 1:
            fig.update_yaxes(dtick="D2")
    if xticks is not None:
        lo, hi = xrange if xrange is not None else (min(xticks), max(xticks))
        vals = res_ticks(xticks, lo, hi)
        fig.update_xaxes(tickvals=vals, ticktext=[f"{v:,.0f}" for v in vals])


def in_window(r: float, lo: float, hi: float) -> bool:
    """Is r within NEAR times the plotted range [lo, hi]?"""
    return lo / NEAR <= r <= hi * NEAR


def spread_labels(values: list[float], min_gap: float) -> list[float]:
    """Nudge sorted-by-value label positions apart (same order as given) so that neighbours are at
    least `min_gap` apart, keeping each as close to its own value as it can."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = list(values)
    for k in range(1, len(order)):
        prev, cur = order[k - 1], order[k]
        out[cur] = max(out[cur], out[prev] + min_gap)
    return out


def note_if_empty(fig: Any, shown: int, text: str) -> None:
    """Write `text` across a plot that has no data line (e.g. only MLP-Mixer asked for)."""
    if shown == 0:
        fig.add_annotation(xref="paper", yref="paper", x=0.5, y=0.5, text=text, showarrow=False, font={"size": 13})
