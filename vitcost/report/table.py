"""The `compare` table: human units, one row per model x resolution."""

from __future__ import annotations

from typing import Any

from vitcost.report.units import binary_bytes, fixed, giga, ratio, seconds


def _bytes_or_dash(n: float | None) -> str:
    return "—" if n is None else binary_bytes(n)


def time_cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The time columns of rows that have them (`--hardware`): time per batch and images per second."""
    if not rows or "time_s" not in rows[0]:
        return [], [[] for _ in rows]
    return ["time", "img/s"], [[seconds(r["time_s"]), "—" if r["images_per_s"] is None else
                                f"{r['images_per_s']:,.0f}" if r["images_per_s"] >= 100 else
                                f"{r['images_per_s']:.3g}"] for r in rows]


def time_caption(rows: list[dict[str, Any]], what: str = "one forward of the batch") -> str:
    """The caption line of the time columns: the device and what the time is."""
    if not rows or "time_s" not in rows[0]:
        return ""
    from vitcost.analytic.roofline import TIME_MODELS

    models = "; ".join(TIME_MODELS[m] for m in dict.fromkeys(r.get("time_model", "roofline") for r in rows))
    return f"\ntime: {what} on {rows[0]['hardware']}, {models}; img/s: batch / time"


def compare_cells(rows: list[dict[str, Any]], convention: str) -> tuple[list[str], list[list[str]]]:
    unit = "GMACs" if convention == "macs" else f"GFLOPs ({convention})"
    header = ["model", "res", "tokens", "params", unit, "attn mem", "peak/layer", "act peak", "growth", "~R^k",
              "scaling"]
    cells = [[r["model"], str(r["res"]), f"{r['tokens']:,}", f"{fixed(r['params'], 10**6, 1)}M",
              giga(r["cost"]), _bytes_or_dash(r["attn_matrix_bytes"]),
              _bytes_or_dash(r["attn_matrix_peak_bytes"]), _bytes_or_dash(r["activation_peak_bytes"]),
              ratio(r["growth"]), "—" if r.get("slope") is None else f"{r['slope']:.2f}", r["complexity"]]
             for r in rows]
    extra, more = time_cells(rows)
    return header[:-1] + extra + header[-1:], [c[:-1] + m + c[-1:] for c, m in zip(cells, more)]


def params_note(rows: list[dict[str, Any]]) -> str:
    """Say which models' parameters changed across the resolutions shown, and why."""
    seen: dict[str, set[int]] = {}
    fam: dict[str, str] = {}
    for r in rows:
        seen.setdefault(r["model"], set()).add(r["params"])
        fam[r["model"]] = r["family"]
    moving = [m for m, p in seen.items() if len(p) > 1]
    if not moving:
        return ""
    from vitcost.analytic.registry import family_named

    return "params change with resolution for " + "; ".join(
        f"{m} ({family_named(fam[m]).params_follow_res})" for m in moving) + "."


def linear_note(rows: list[dict[str, Any]]) -> str:
    """For linear-attention designs: the activation-peak saving against softmax attention, per resolution."""
    saved: dict[str, list[str]] = {}
    for r in rows:
        if r.get("linear_attn_saving") is not None:
            saved.setdefault(r["model"], []).append(f"{r['linear_attn_saving']:.0%} at {r['res']}")
    return "; ".join(f"{m}'s linear attention saves {', '.join(s)} of the activation peak of softmax attention "
                     "(the course quotes ~60%)" for m, s in saved.items()) + ("." if saved else "")


def hybrid_note(rows: list[dict[str, Any]]) -> str:
    """For window + global hybrids (SAM, ViTDet): how much of the attention-score memory the few global
    blocks hold at each resolution shown, the O((HW)^2) term overtaking the O(HWC) windows."""
    shares: dict[str, list[str]] = {}
    for r in rows:
        if r.get("global_attn_share") is not None:
            shares.setdefault(r["model"], []).append(f"{r['global_attn_share']:.0%} at {r['res']}")
    return "; ".join(f"{m}'s global blocks hold {', '.join(s)} of the attention-score memory"
                     for m, s in shares.items()) + ("." if shares else "")


def window_note(rows: list[dict[str, Any]]) -> str:
    """Designs whose attention window is larger than their token grid: the grid is zero-padded to whole
    windows (as ViTDet and SAM pad), so the windowed blocks pay for the padded tokens."""
    padded: dict[tuple[str, int], list[str]] = {}
    for r in rows:
        spec = r.get("spec") or {}
        window, patch = spec.get("window") or 0, spec.get("patch") or 0
        if window and patch:
            gh, gw = r["height"] // patch, r["width"] // patch
            if window > gh or window > gw:
                padded.setdefault((r["model"], window), []).append(f"{gh}x{gw} at {r['res']}")
    return "; ".join(f"{m}'s window {w} is larger than its token grid ({', '.join(g)}): the grid is zero-padded "
                     "to whole windows and the windowed blocks pay for the padding"
                     for (m, w), g in padded.items()) + ("." if padded else "")


AMP_NOTE = ("\n—: under autocast (--amp) tensors have several widths (16-bit matmul outputs; fp32 norms, softmax "
            "and residual stream), which the activation-memory model does not carry: no figure rather than a wrong one")


def render_compare(rows: list[dict[str, Any]], convention: str, batch: int, dtype: str, attn: str = "math") -> str:
    """The compare table as text (box-drawn, see boxtable.py), with its caption and notes."""
    from vitcost.report.boxtable import box_table

    header, cells = compare_cells(rows, convention)
    sections = [i for i in range(1, len(rows)) if rows[i]["model"] != rows[i - 1]["model"]]
    amp = bool(rows) and rows[0].get("amp")
    caption = ("attn mem: attention scores of all layers as if materialised (whatever --attn); peak/layer: the "
               "largest layer's; act peak: the forward's "
               "activation peak on top of weights and input; growth: cost vs the smallest resolution; ~R^k: the "
               "local exponent of cost in the input side R since the row above (2 = linear in tokens, 4 = quadratic)"
               + time_caption(rows) + (AMP_NOTE if amp else ""))
    for note in (params_note(rows), hybrid_note(rows), linear_note(rows), window_note(rows)):
        if note:
            caption += f"\nNote: {note}"
    return box_table(header, cells, right=set(range(1, len(header) - 1)), sections=sections, caption=caption,
                     title=f"vitcost compare — batch {batch}, {dtype}{' autocast (fp32 weights)' if amp else ''}, "
                           f"{attn} attention, {convention} convention")


def wide_console():
    """A rich console; when stdout is not a terminal (a pipe, a log), wide enough for the table."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=max(console.width, 120))


def models_cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The preset list: vitcost's params and fvcore GMACs beside the published ones."""
    def pub(x: float | None, unit: str) -> str:
        return "—" if x is None else f"{x:g}{unit}"

    header = ["model", "family", "res", "params", "published", "GMACs (fvcore)", "published", "scaling", "source"]
    cells = [[r["model"], r["family"], str(r["res"]), f"{r['params'] / 1e6:.2f}M", pub(r["published_params_m"], "M"),
              f"{r['fvcore'] / 1e9:.2f}", pub(r["published_gmacs"], ""), r["complexity"], r["source"]]
             for r in rows]
    return header, cells


def render_models(rows: list[dict[str, Any]]) -> None:
    """Print the preset list as a rich table on stdout."""
    from rich.table import Table

    header, cells = models_cells(rows)
    table = Table(title="vitcost presets", header_style="bold")
    names = max((len(c[0]) for c in cells), default=0)
    for h in header:  # the names in full, so that they can be pasted back as -m
        table.add_column(h, no_wrap=h == "model", min_width=names if h == "model" else None)
    for c in cells:
        table.add_row(*c)
    wide_console().print(table)


def train_cells(rows: list[dict[str, Any]], convention: str) -> tuple[list[str], list[list[str]]]:
    """The training table: the step's cost and its memory, part by part."""
    unit = "train GMACs" if convention == "macs" else f"train GFLOPs ({convention})"
    header = ["model", "res", "tokens", "params", unit, "weights", "grads", "opt state", "act saved", "step peak",
              "peak in"]
    cells = [[r["model"], str(r["res"]), f"{r['tokens']:,}", f"{fixed(r['params'], 10**6, 1)}M", giga(r["train_cost"]),
              binary_bytes(r["memory"]["weights"]), binary_bytes(r["memory"]["gradients"]),
              binary_bytes(r["memory"]["optimizer_state"]), binary_bytes(r["memory"]["activations_saved"]),
              binary_bytes(r["train_peak_bytes"]), r["peak_at"]] for r in rows]
    extra, more = time_cells(rows)
    return header[:-1] + extra + header[-1:], [c[:-1] + m + c[-1:] for c, m in zip(cells, more)]


def render_train_compare(rows: list[dict[str, Any]], convention: str, batch: int, dtype: str, attn: str,
                         optimizer: str, checkpoint: str) -> str:
    """The training compare table as text, with its caption."""
    from vitcost.report.boxtable import box_table

    header, cells = train_cells(rows, convention)
    sections = [i for i in range(1, len(rows)) if rows[i]["model"] != rows[i - 1]["model"]]
    half = bool(rows) and rows[0].get("precision") == "half"
    precision = "fp32" if dtype == "fp32" else f"{dtype} (the model in 16 bits)" if half else \
        f"{dtype} autocast (fp32 weights)"
    caption = ("train cost: forward + backward of one step (+ the forward checkpointing runs again); act saved: what "
               "autograd keeps for the backward; step peak: weights + optimizer state + batch + the largest of the "
               "forward, backward and optimizer phases; peak in: where it is reached (CPU autocast lists, torch's "
               "CPU optimizer)" + time_caption(rows, "one training step of the batch"))
    return box_table(header, cells, right=set(range(1, len(header) - 1)), sections=sections, caption=caption,
                     title=f"vitcost compare --mode train — batch {batch}, {precision}, {attn} attention, {optimizer}, "
                           f"checkpoint {checkpoint}, {convention} convention")


def savings_cells(rows: list[dict[str, Any]], memory: str = "step memory") -> tuple[list[str], list[list[str]]]:
    """The optimisation table: each technique's step (or forward) against the baseline, beside the course's
    guesses; `memory` heads the memory column."""
    header = ["technique", memory, "saved", "GFLOPs", "x FLOPs", "time", "speed-up", "course: saved",
              "course: speed"]
    cells = [[r["technique"], binary_bytes(r["step_peak_bytes"]), f"{r['memory_saved']:.0%}",
              giga(r["flops"]), f"{r['flops_ratio']:.2f}", seconds(r["time_s"]), f"{r['speedup']:.2f}x",
              r["course_memory_saved"] or "—", r["course_speedup"] or "—"] for r in rows]
    return header, cells


def train_wall_cells(walls: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The training memory wall per design: the largest square input at the batch, the largest batches."""
    header = ["model", "largest input", "step peak there", "largest batch"]
    cells = [[w["model"], "none fits" if w["largest_res"] is None else f"{w['largest_res']} (batch {w['batch']})",
              binary_bytes(w["res_step_peak_bytes"]) if w["largest_res"] else "—",
              ", ".join(f"{b if b is not None else 0} at {r}" for r, b in w["largest_batch"].items())]
             for w in walls]
    return header, cells


def hardware_cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], list[str]]:
    """The device profiles: peaks, bandwidth and memory per profile, and one note per distinct source."""
    header = ["hardware", "name", "fp32", "fp16", "bf16", "vector", "TB/s", "memory"]
    cells = [[r["hardware"], r["name"] + (" (indicative)" if r["indicative"] else ""),
              *(f"{r[k]:g}" for k in ("fp32_tflops", "fp16_tflops", "bf16_tflops", "vector_tflops",
                                       "bandwidth_tbps")),
              _bytes_or_dash(r["memory_bytes"])] for r in rows]
    notes = []
    for r in rows:
        by_source: dict[str, list[str]] = {}
        for figure, source in r["sources"].items():
            by_source.setdefault(source, []).append(figure)
        notes += [f"  {r['hardware']} {', '.join(figures)}: {source}" for source, figures in by_source.items()]
    return header, cells, notes
