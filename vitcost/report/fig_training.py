"""Figure: the memory of one training step per design and resolution, without and with activation
checkpointing per block, stacked part by part up to the step's peak, against device memory. The
steps, their parts and the largest inputs that train are computed by the assembler
(`report.facts.training_facts`); this only draws them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vitcost.report.fig_common import exact, hover, note_if_empty, res_label
from vitcost.report.html import DataTable, Panel
from vitcost.report.units import binary_bytes, giga

if TYPE_CHECKING:
    from vitcost.report.facts import TrainingFacts

# One colour per part (the keys are facts.SEGMENTS): blues resident, oranges what the forward leaves,
# greens the gradients and the update, red the backward's own bytes.
COLOURS = {"weights": "#1f4e79", "optimizer_state": "#6fa8dc", "input": "#9e9e9e", "activations_saved": "#e69138",
           "weight_casts": "#f1c232", "gradients": "#38761d", "forward": "#f6b26b", "backward": "#cc0000",
           "optimizer": "#93c47d"}
HATCH = {"none": "", "block": "/"}  # checkpointing label -> bar pattern
CHECKPOINT_TEXT = {"none": "no checkpointing", "block": "checkpoint per block"}
OPTIMIZER_TEXT = {"adamw": "AdamW", "sgd": "SGD with momentum", "none": "no optimizer state"}
PART_COLUMNS = [("weights", "weights"), ("gradients", "gradients"), ("optimizer_state", "optimizer state"),
                ("input", "batch"), ("activations_saved", "activations saved"), ("weight_casts", "weight casts"),
                ("forward_peak", "forward peak"), ("backward_peak", "backward peak"),
                ("optimizer_peak", "optimizer peak"), ("step_peak", "step peak")]  # TrainMemory.parts() keys


def precision_text(dtype: str) -> str:
    return "fp32" if dtype == "fp32" else f"{dtype} autocast (fp32 weights, gradients, optimizer state)"


FACET_COLUMNS = 5  # designs per row of facets
HEADROOM = 1.5  # a device line is drawn in a facet when it is below this many times the facet's tallest bar


def training_panel(facts: TrainingFacts) -> Panel:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from vitcost.report.facts import SEGMENTS, TRAIN_CHECKPOINTS

    designs = [f for f in facts.designs if f.points]
    cols = max(1, min(len(designs), FACET_COLUMNS))
    nrows = max(1, -(-len(designs) // cols))
    fig = make_subplots(rows=nrows, cols=cols, subplot_titles=[f.model for f in designs] or None,
                        horizontal_spacing=0.035 + 0.02 * (cols < 4), vertical_spacing=0.16)
    unit = "MACs" if facts.convention == "macs" else f"FLOPs ({facts.convention})"
    fig.update_annotations(font={"size": 13})  # the facets' titles (the only annotations so far)
    shown: set[str] = set()
    for i, f in enumerate(designs):
        row, col = i // cols + 1, i % cols + 1
        for key, label in SEGMENTS.items():  # bottom to top
            for ck in TRAIN_CHECKPOINTS:
                mine = [p for p in f.points if p.checkpoint == ck and p.segments.get(key)]
                if not mine:
                    continue
                fig.add_trace(go.Bar(
                    x=[res_label(p.est) for p in mine], y=[p.segments[key] for p in mine], name=label,
                    legendgroup=key, legendrank=list(SEGMENTS).index(key), showlegend=False, offsetgroup=ck,
                    marker={"color": COLOURS[key], "line": {"color": "#fff", "width": 0.5},
                            "pattern": {"shape": HATCH[ck], "fgcolor": "#fff", "size": 5}},
                    customdata=[[p.est.model, res_label(p.est), CHECKPOINT_TEXT[ck], label, exact(p.segments[key]),
                                 binary_bytes(p.segments[key]), binary_bytes(p.memory.step_peak), p.memory.peak_at,
                                 f"{giga(p.cost)} G{unit}"] for p in mine],
                    hovertemplate=hover(["model", "resolution", "", "part", "bytes", "=", "step peak", "peak in",
                                         "step cost"])), row=row, col=col)
                if key not in shown and not HATCH[ck]:  # the legend shows a plain (unhatched) swatch
                    fig.data[-1].showlegend = True
                    shown.add(key)
        low, top = min(p.memory.step_peak for p in f.points), max(p.memory.step_peak for p in f.points)
        drawn = [d for d in facts.devices if low <= d.bytes <= HEADROOM * top]  # lines among the bars
        ymax = max([top, *(d.bytes for d in drawn)]) * 1.08
        fig.update_yaxes(range=[0, ymax], row=row, col=col)
        axis = fig.get_subplot(row, col)
        xref, yref = axis.xaxis.plotly_name.replace("axis", ""), axis.yaxis.plotly_name.replace("axis", "")
        for d in drawn:
            fig.add_shape(type="line", xref=f"{xref} domain", x0=0, x1=1, yref=yref, y0=d.bytes, y1=d.bytes,
                          line={"color": "#444", "dash": "dash", "width": 1.2})
            fig.add_annotation(xref=f"{xref} domain", x=0.01, xanchor="left", yref=yref, y=d.bytes, yanchor="bottom",
                               text=d.label, showarrow=False, font={"size": 9, "color": "#444"})
        # devices far above every bar, or below every bar, are named instead of drawn (the former would squash
        # the bars, the latter lie on the axis): the smallest that every step fits, the largest none fits
        above = [d for d in facts.devices if d.bytes > HEADROOM * top]
        below = [d for d in facts.devices if d.bytes < low]
        said = ([f"all fit {above[0].label}"] if above and not drawn else []) + \
            ([f"none fits {below[-1].label}"] if below else [])
        if said:
            fig.add_annotation(xref=f"{xref} domain", x=0.01, xanchor="left", yref=f"{yref} domain", y=1,
                               yanchor="top", text="<br>".join(said), showarrow=False, align="left",
                               font={"size": 9, "color": "#444"})
    for key in SEGMENTS:  # a part only checkpointed bars hold: a legend-only plain swatch
        if key not in shown and any(p.segments.get(key) for f in designs for p in f.points):
            fig.add_trace(go.Bar(x=[None], y=[None], name=SEGMENTS[key], legendgroup=key,
                                 legendrank=list(SEGMENTS).index(key), marker={"color": COLOURS[key]},
                                 hoverinfo="skip"), row=1, col=1)
    note_if_empty(fig, len(designs), "no design to show")
    fig.update_layout(
        template="plotly_white", barmode="stack", bargap=0.2, bargroupgap=0.06, height=460, hovermode="closest",
        title={"text": f"Training step memory ({facts.dtype}, batch {facts.batch}, {OPTIMIZER_TEXT[facts.optimizer]}) "
                       "vs resolution", "font": {"size": 14}},
        margin={"l": 60, "r": 10, "t": 60, "b": 10},
        legend={"orientation": "h", "yanchor": "top", "y": -0.14, "xanchor": "left", "x": 0, "font": {"size": 11}},
    )
    fig.update_xaxes(type="category", tickfont={"size": 9}, showline=True, linecolor="#999")
    fig.update_yaxes(tickformat="~s", exponentformat="SI", showline=True, linecolor="#999", tickfont={"size": 9},
                     rangemode="tozero")
    fig.update_yaxes(title={"text": "bytes at the step's peak", "font": {"size": 12}}, col=1)
    fig.add_annotation(xref="paper", yref="paper", x=0.5, y=-0.07, yanchor="top", showarrow=False, font={"size": 11},
                       text="resolution R (px) · left bar: no checkpointing · right, hatched: checkpoint every block")
    points = [p for f in designs for p in f.points]
    wall_rows = [[f.model, d.label, *(f.walls[(d.label, ck)].text if (d.label, ck) in f.walls else "—"
                                      for ck in TRAIN_CHECKPOINTS)] for f in designs for d in facts.devices]
    rows = [[p.est.model, res_label(p.est), p.checkpoint, *(exact(p.memory.parts()[k]) for k, _ in PART_COLUMNS),
             p.memory.peak_at, exact(p.cost), exact(p.recompute)] for p in points]
    used = [k for k in SEGMENTS if any(p.segments.get(k) for p in points)]
    stacks = [[p.est.model, res_label(p.est), p.checkpoint, *(exact(p.segments.get(k, 0)) for k in used),
               exact(sum(p.segments.values()))] for p in points]
    notes = [f.note for f in facts.designs if f.note]
    caption = (
        f"One training step (forward, loss, backward, {OPTIMIZER_TEXT[facts.optimizer]} update) at batch "
        f"{facts.batch}, {precision_text(facts.dtype)}, math attention, by torch's GPU rules. Left bar of each pair: "
        "no checkpointing; right, hatched: torch.utils.checkpoint around every block. Each bar stacks the step's "
        "peak exactly: weights, optimizer state, batch; then, when the peak is in the backward (or forward), the "
        "activations the forward saves and the rest of that peak (gradients so far, a recomputed block, gradients "
        "in flight, net of freed tensors); when it is in the optimizer step, the gradients and the update's "
        "temporaries. Dashed: device memory." + (" " + "; ".join(notes) + "." if notes else ""))
    return Panel("training", "Training step memory by part, with and without checkpointing", caption, fig, [
        DataTable(f"Training step memory in bytes (vitcost.analytic.train_memory, device {facts.device}), and the "
                  f"step's cost in {unit}",
                  ["model", "res", "checkpoint", *(label for _, label in PART_COLUMNS), "peak in",
                   f"step cost ({unit})", f"recomputed ({unit})"], rows),
        DataTable("What each bar stacks, bottom to top, in bytes (the sum is the step peak)",
                  ["model", "res", "checkpoint", *(SEGMENTS[k] for k in used), "sum"], stacks),
        DataTable("Training memory wall: the largest square input whose step fits the device",
                  ["model", "device memory", *(CHECKPOINT_TEXT[ck] for ck in TRAIN_CHECKPOINTS)], wall_rows),
    ])
