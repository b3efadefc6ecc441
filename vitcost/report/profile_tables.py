"""The `profile` tables: predicted vs measured memory and time per row, in human units, and the
memory wall per model. The rows and walls are plain dicts (see `vitcost.measure.profile`); the
session is read by its attributes only (cfg, env, hw, budget), for the title and caption."""

from __future__ import annotations

from typing import Any

from vitcost.analytic.roofline import TIME_MODELS
from vitcost.analytic.train_time import TRAIN_TIME_MODELS
from vitcost.report.units import seconds

PROFILE_HEADER = ["model", "res", "status", "kernel", "live pred", "live meas", "ratio", "alloc pred", "alloc meas",
                  "ratio", "time pred", "time meas", "ratio", "TFLOP/s", "of peak", "note"]
TRAIN_HEADER = ["model", "res", "status", "step pred", "step meas", "ratio", "saved pred", "saved meas", "ratio",
                "alloc meas", "time pred", "time meas", "ratio", "note"]
WALL_HEADER = ["model", "largest input", "needs", "next size", "needs", "limited by"]


def _bytes(n: Any) -> str:
    from vitcost.report.units import binary_bytes

    return "—" if n is None else binary_bytes(n)


def _ratio(x: Any) -> str:
    return "—" if x is None else f"{x:.3g}x"


def _over(measured: Any, predicted: Any) -> Any:
    return measured / predicted if measured is not None and predicted else None


def profile_cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The table's header and cells (human units); ratios are measured / predicted. Memory at two levels:
    live tensors (the tracker's peak) and the allocator (live tensors plus kernel scratch)."""
    cells = []
    for r in rows:
        measured = _measured_time(r)
        tflops = r.get("achieved_tflops")
        frac = r.get("peak_fraction")
        cells.append([str(r["model"]), str(r["res"]), str(r["status"]), str(r.get("attn_backend") or r["attn"]),
                      _bytes(r.get("predicted_mem_bytes")), _bytes(r.get("measured_tensor_peak_bytes")),
                      _ratio(_over(r.get("measured_tensor_peak_bytes"), r.get("predicted_mem_bytes"))),
                      _bytes(r.get("predicted_alloc_bytes")), _bytes(r.get("measured_alloc_bytes")),
                      _ratio(r.get("alloc_ratio")), seconds(r.get("predicted_time_s")), measured,
                      _ratio(r.get("time_ratio")), "—" if tflops is None else f"{tflops:.3g}",
                      "—" if frac is None else f"{frac:.1%}", str(r.get("note") or "")])
    return PROFILE_HEADER, cells


def _measured_time(r: dict[str, Any]) -> str:
    spread = r.get("time_spread_s")
    measured = seconds(r.get("measured_time_s"))
    if r.get("measured_time_s") and spread:
        measured += f" ±{spread / 2 / r['measured_time_s']:.0%}"
    return measured


def train_cells(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """--mode train: the step peak and the saved activations (live tensors) and the step time, predicted
    vs measured, with the allocator's measured step peak beside them; ratios are measured / predicted."""
    cells = []
    for r in rows:
        saved_p, saved_m = r.get("predicted_activations_saved_bytes"), r.get("measured_activations_saved_bytes")
        cells.append([str(r["model"]), str(r["res"]), str(r["status"]), _bytes(r.get("predicted_step_peak_bytes")),
                      _bytes(r.get("measured_step_peak_bytes")), _ratio(r.get("step_peak_ratio")), _bytes(saved_p),
                      _bytes(saved_m), _ratio(_over(saved_m, saved_p)), _bytes(r.get("measured_alloc_step_peak_bytes")),
                      seconds(r.get("predicted_time_s")), _measured_time(r), _ratio(r.get("time_ratio")),
                      str(r.get("note") or "")])
    return TRAIN_HEADER, cells


def profile_title(session: Any) -> str:
    """The table's title: device, torch, threads, batch, dtype and kernel, and in train mode the optimizer and
    the checkpointing (also heads the Markdown export)."""
    cfg, env = session.cfg, session.env
    where = f"{env.device_name} ({env.device}, torch {env.torch_version or 'absent'}, threads={env.threads})"
    mode = getattr(cfg, "mode", "inference")
    train = (f"; mode train, optimizer {cfg.optimizer}, checkpoint {cfg.checkpoint}" if mode == "train" else "")
    return (f"vitcost profile — {'predicted for' if cfg.predict_only else 'measured on'} {where}; batch {cfg.batch}, "
            f"{cfg.dtype}{' autocast' if (train or getattr(cfg, 'amp', False)) and str(cfg.dtype) != 'fp32' else ''}, "
            f"attention {cfg.attn}{train}")


def _time_models(rows: list[dict[str, Any]], models: dict[str, str]) -> str:
    """The time models the rows' predictions came from, in words (each row's `time_model`)."""
    used = [m for m in models if any(r.get("time_model") == m for r in rows)] or ["roofline"]
    return "; ".join(models[m] for m in used)


def profile_renderables(rows: list[dict[str, Any]], walls: list[dict[str, Any]], session: Any) -> list[Any]:
    """What `vitcost profile` prints, as rich renderables in order: the predicted-vs-measured table,
    one line per row that carries a note, and the memory-wall table (when there are walls)."""
    from rich.table import Table
    from rich.text import Text

    cfg, hw = session.cfg, session.hw
    title = profile_title(session)
    train = getattr(cfg, "mode", "inference") == "train"
    train_caption = ("step: one training step's peak live tensors, everything resident included (weights, optimizer "
                     "state, batch; measured by a tensor tracker per phase); saved: the activations the forward leaves "
                     "for the backward; alloc meas: the allocator's step peak (CUDA's max_memory_allocated, on the CPU "
                     f"torch.profiler's memory records). time: {_time_models(rows, TRAIN_TIME_MODELS)} on {hw.label}"
                     f"{' (indicative figures)' if hw.indicative else ''}; measured median of whole steps ± half the "
                     "interquartile range. ratio = measured / predicted.")
    caption = train_caption if train else (
               "live: peak live tensors on top of weights and input (measured by a tensor tracker); alloc: the "
               "allocator level, live tensors plus the kernels' scratch buffers (measured by CUDA's "
               "max_memory_allocated, on the CPU by torch.profiler's memory records). time: "
               + (f"{_time_models(rows, TIME_MODELS)} on {hw.label}"
                  if any(r.get("time_model") == "per-op" for r in rows) else
                  f"roofline on {hw.label} at {hw.peak(cfg.dtype) / 1e12:g} TFLOP/s and {hw.bandwidth / 1e12:g} TB/s")
               + f"{' (indicative figures)' if hw.indicative else ''}; measured median ± half the interquartile "
               "range. ratio = measured / predicted. TFLOP/s = 2 x MACs / measured time."
               + (" Predicted live and alloc: — under autocast (--amp), whose tensors have several widths (16-bit "
                  "matmul outputs; fp32 norms, softmax and residual stream) that the activation-memory model does "
                  "not carry." if getattr(cfg, "amp", False) else ""))
    header, cells = train_cells(rows) if train else profile_cells(rows)
    header, cells = header[:-1], [c[:-1] for c in cells]  # notes are listed under the table
    table = Table(title=title, caption=caption, header_style="bold")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i in (0, 2, 3, len(header) - 1) else "right",
                         no_wrap=i != len(header) - 1)
    prev = None
    for r, c in zip(rows, cells):
        if prev is not None and r["model"] != prev:
            table.add_section()
        prev = r["model"]
        table.add_row(*c)
    out: list[Any] = [table]
    # Text.from_markup renders a note exactly as console.print(str, highlight=False) would.
    out += [Text.from_markup(f"  {r['model']} @ {r['res']}: {r['status']} — {r['note']}") for r in rows
            if r.get("note")]
    if walls:
        wt = Table(title=f"memory wall — largest square input whose forward fits in "
                         f"{_bytes(session.budget)} (weights + input + activation peak)", header_style="bold")
        for h in WALL_HEADER:
            wt.add_column(h, justify="left" if h in ("model", "limited by") else "right")
        for w in walls:
            res = "none fits" if w["memory_wall_res"] is None else f"{w['memory_wall_res']}"
            wt.add_row(w["model"], res, _bytes(w["total_bytes"] or None), str(w["next_res"]),
                       _bytes(w["next_total_bytes"] or None), w["limited_by"])
        out.append(wt)
    return out
