"""`vitcost savings`: what each training optimisation saves, computed for one design (no torch)."""

from __future__ import annotations

from typing import Annotated

import typer

from vitcost.cli.app import (
    AttnOpt,
    BandwidthOpt,
    BatchOpt,
    DtypeOpt,
    Format,
    FormatOpt,
    ModeOpt,
    OutputOpt,
    PeakOpt,
    app,
    emit,
    emit_rows,
    hardware_option,
)
from vitcost.vocab import Dtype, Kernel, Optimizer, RunMode, parse_resolutions, parse_run_mode


@app.command()
def savings(
    model: Annotated[str, typer.Argument(help="A design: a preset, a spec file, either with :field=value overrides.")],
    res: Annotated[list[str] | None, typer.Option(
        "--res", "-r", help="Input resolutions: N for NxN, HxW, or TxHxW for a clip of T frames; several may follow "
        "one flag (one table each). Default: 224.")] = None,
    batch: BatchOpt = 1,
    dtype: DtypeOpt = Dtype.fp32,
    attn: AttnOpt = Kernel.math,
    optimizer: Annotated[Optimizer, typer.Option(help="The step's optimizer: none, sgd (momentum) or adamw.")]
    = Optimizer.adamw,
    hardware: Annotated[str, typer.Option(
        help="Device profile for the time column: a name (`vitcost hardware` lists them) or a .toml profile file.")]
    = "h100-sxm",
    mode: ModeOpt = "train",
    peak_tflops: PeakOpt = None,
    bandwidth: BandwidthOpt = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """The course's optimisation table, computed for your design at your resolution and batch.

    For one training step (forward, backward, optimizer): the baseline as given, then mixed precision
    (bf16 autocast), activation checkpointing every block and every 2 blocks, a fused (flash) attention
    kernel, linear attention (for ViT-style designs), and the course's attention-sparsity row as token
    pruning (EViT: keep rate 0.7 at blocks 4, 7, 10 of 12, scaled to the depth; ViT designs with a class
    token) and top-k sparse attention (each query keeps a quarter of the keys). Each row: the step's peak
    memory and how much it saves, the step's FLOPs (checkpointing's recomputed forward included) and its
    time on --hardware with the speed-up — beside the course's guesses (mixed precision ~50% memory and
    1.5-2x, checkpointing ~75% at 0.8x, linear attention ~60%, sparsity 10-30% and 1.2-1.5x). The time is
    the per-op model (the forward's kernels fitted on measured runs, their backward kernels, the update)
    on a profile that carries fitted efficiencies and a batch as large as the measured runs', for every
    row (an fp32 row at the fp32 peaks), else a roofline. Every figure comes from the same memory, FLOP
    and time models as `compare --mode train` and `profile`.

    --mode inference gives the same table for one forward (its memory: weights, input and the activation
    peak; its FLOPs and time, as compare shows them), without the checkpointing rows.

    Several --res give one table per size (JSON/CSV: one list of rows, each with its res).

    Example: [bold]vitcost savings vit_b16 --res 1024 --batch 32[/bold]
    """
    from vitcost.analytic.roofline import TIME_MODELS
    from vitcost.analytic.savings import savings as compute
    from vitcost.analytic.train_time import TRAIN_TIME_MODELS
    from vitcost.cli.output import check_output
    from vitcost.design import parse_design
    from vitcost.report import formats
    from vitcost.report.rows import saving_row
    from vitcost.report.table import savings_cells

    output = check_output(output)
    hw = hardware_option(hardware, peak_tflops, bandwidth, dtype)
    design, sizes = parse_design(model), parse_resolutions(res or ["224"])
    inference = parse_run_mode(mode) is RunMode.inference
    tables = [compute(design, size, batch, dtype, attn, optimizer, hw, parse_run_mode(mode)) for size in sizes]
    data = [saving_row(r) for rows, _ in tables for r in rows]
    if emit_rows(data, fmt, output):
        return
    texts = []
    for rows, skipped in tables:
        base = rows[0].estimate
        mine = [saving_row(r) for r in rows]
        title = (f"vitcost savings — {base.model} at {mine[0]['res']}, batch {base.batch}, {base.dtype.value}, "
                  f"{base.attn.value} attention, " + ("inference" if inference else optimizer.value)
                 + f"; time: {mine[0]['time_model']} on {hw.label}")
        header, cells = savings_cells(mine, "forward memory" if inference else "step memory")
        notes = [f"left out: {s}" for s in skipped]
        if fmt is Format.markdown or output is not None:
            texts.append(f"**{title}**\n\n" + formats.to_markdown(header, cells) + "".join(f"\n{n}" for n in notes))
        else:
            from vitcost.report.boxtable import box_table

            what = ("memory: the forward's peak (weights, input, activations); FLOPs: the forward's" if inference
                    else "memory: the training step's peak (weights, gradients, optimizer state, activations); "
                    "FLOPs: forward + backward (+ recomputed forward)")
            how = TIME_MODELS[mine[0]["time_model"]] if inference else TRAIN_TIME_MODELS[mine[0]["time_model"]]
            caption = what + "; time: " + how + "; course: the quoted guesses" + "".join(f"\n{n}" for n in notes)
            texts.append(box_table(header, cells, right=set(range(1, len(header) - 2)), title=title,
                                   caption=caption))
    emit("\n\n".join(texts), output)
