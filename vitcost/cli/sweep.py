"""`vitcost sweep`: search a design space under limits and print its Pareto front (no torch)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from vitcost.cli.app import AmpOpt, AttnOpt, ConventionOpt, Format, FormatOpt, ModeOpt, OutputOpt, app, emit
from vitcost.vocab import Convention, Dtype, Kernel, Optimizer

PROGRESS_FROM = 2_000  # points: a sweep at least this long shows a progress bar on a terminal


@app.command()
def sweep(
    base: Annotated[str, typer.Argument(help="The design the sweep starts from: a preset, a spec file, either with "
                                             ":field=value overrides.")],
    vary: Annotated[list[str] | None, typer.Option(
        "--vary", "-v", help="FIELD=V1,V2,... or FIELD=LO..HI[:STEP] (inclusive; depth=6..24:6 is 6, 12, 18, 24). "
        "Give --vary once per field; several make a grid.")] = None,
    res: Annotated[list[str] | None, typer.Option(
        "--res", "-r", help="Input resolutions, N, HxW or TxHxW (a clip of T frames); several may follow one flag. "
        "Default: 224.")] = None,
    batch: Annotated[list[int] | None, typer.Option(
        "--batch", "-b", help="Batch sizes; several may follow one flag. Default: 1.")] = None,
    dtype: Annotated[list[Dtype] | None, typer.Option(
        "--dtype", help="Element types; several may follow one flag (--mode train: bf16/fp16 = mixed precision "
        "under autocast). Default: fp32.")] = None,
    hardware: Annotated[list[str] | None, typer.Option(
        "--hardware", help="Device profiles for time and img/s (`vitcost hardware` lists them); several may follow "
        "one flag.")] = None,
    attn: AttnOpt = Kernel.math,
    amp: AmpOpt = None,
    mode: ModeOpt = "inference",
    optimizer: Annotated[Optimizer | None, typer.Option(
        help="--mode train: none, sgd (with momentum) or adamw (the default).")] = None,
    checkpoint: Annotated[str | None, typer.Option(
        help="--mode train: activation checkpointing, none (the default), block, or N blocks per run.")] = None,
    convention: ConventionOpt = Convention.macs,
    limit: Annotated[list[str] | None, typer.Option(
        "--limit", "-l", help="COLUMN<=VALUE (or <, >=, >), e.g. train_peak<=80GiB, time<=250ms, params<=300M; "
        "several --limit all apply. A design that breaks one is dropped and counted.")] = None,
    pareto: Annotated[str | None, typer.Option(
        "--pareto", "-p", help="Objectives, comma-separated, minimised (max: before one maximises it), e.g. "
        "macs,activation_peak,time or train_peak,max:img/s. Prints the designs no other beats in all of them.")]
    = None,
    all_rows: Annotated[bool, typer.Option(
        "--all", help="Print every design that passed the limits, with a pareto column, not only the front.")]
    = False,
    sample: Annotated[int | None, typer.Option(
        help="Draw this many distinct valid designs at random instead of the whole grid.")] = None,
    seed: Annotated[int, typer.Option(help="The random seed of --sample.")] = 0,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Processes to cost the designs in.")] = 1,
    max_designs: Annotated[int, typer.Option(
        "--max-designs", help="Refuse a grid of more designs than this unless --sample draws from it.")] = 1_000_000,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """Search a design space under limits and print its Pareto front.

    Every field of the base design can vary; --res, --batch, --dtype and --hardware may take several values
    each and are crossed with the grid. Each row is exactly what `vitcost compare` prints for its design
    (the label: the base with the fields that differ from it, pasteable to -m) at that resolution, batch,
    dtype and device.

    Columns for --limit and --pareto are compare's JSON keys: params, tokens, macs, flops, fvcore, torch,
    attn_matrix_bytes, attn_matrix_peak_bytes, activation_peak_bytes (inference); train_cost, forward_cost,
    train_peak_bytes (--mode train); time_s and images_per_s (with --hardware; time is per batch). Short
    names: activation_peak, attn_matrix_peak, attn_matrix, train_peak, time, img/s. Sizes read as everywhere
    (80GB, 80GiB; a bare number is GB), times as 250ms or 1.5s, counts as 300M or 2G.

    Designs that cannot run (heads that do not divide the width) or break a limit are dropped and counted
    by reason: on stderr under a table, as `dropped` in JSON ({"rows": [...], "dropped": {...},
    "evaluated": N}). -o FILE.html draws the front offline with the table behind it.

    Example: [bold]vitcost sweep vit_l16 --vary depth=12..32:4 --vary dim=768,1024,1280 -r 1024 -b 32
    --dtype bf16 --mode train --hardware h100-sxm --limit train_peak<=80GiB --pareto time,max:params[/bold].
    """
    from vitcost.cli.output import check_output
    from vitcost.errors import VitcostError
    from vitcost.report.sweep import parse_plan, run

    output = check_output(output)
    html = output is not None and output.lower().endswith((".html", ".htm"))
    p = parse_plan(base, vary, res=res or ["224"], batch=batch or [1], dtype=dtype or [Dtype.fp32],
                   hardware=hardware, attn=attn, amp=amp, mode=mode, optimizer=optimizer.value if optimizer else None,
                   checkpoint=checkpoint, convention=convention.value, limits=limit, pareto=pareto, sample=sample,
                   seed=seed, max_designs=max_designs)
    if jobs < 1:
        raise VitcostError(f"--jobs must be at least 1, got {jobs}.")
    if html and len(p.objectives) < 2:
        raise VitcostError("-o FILE.html draws the front: give --pareto with two or three objectives.")
    planned = p.total if p.sample is None else min(p.sample, p.total)
    with _progress(planned) as progress:
        result = run(p, all_rows=all_rows or html, jobs=jobs, progress=progress)
    _emit(p, result, fmt, output, html, all_rows or not p.objectives)


def _progress(planned: int):
    """A progress bar on stderr for a long sweep on a terminal; otherwise nothing."""
    import contextlib

    if planned < PROGRESS_FROM or not sys.stderr.isatty():
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    @contextlib.contextmanager
    def bar():
        with Progress("costing designs", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=Console(stderr=True), transient=True) as prog:
            task = prog.add_task("sweep", total=planned)
            yield lambda done, total: prog.update(task, completed=done)

    return bar()


def _emit(p, result, fmt: Format, output: str | None, html: bool, show_all: bool) -> None:
    from vitcost.report import formats
    from vitcost.report.sweep_view import summary, sweep_caption, sweep_cells

    train = p.mode.value == "train"
    rows = result.rows if show_all else [r for r in result.rows if r["pareto"]]
    line = summary(result.evaluated, result.survivors, result.front if p.objectives else None, result.dropped,
                   None if result.short is None else (result.short, p.sample))
    columns = [lim.key for lim in p.limits] + [o.key for o in p.objectives]
    header, cells = sweep_cells(rows, columns, p.convention, train, pareto=show_all and bool(p.objectives))
    title = _title(p)
    if html:
        from vitcost.analytic.cost import CONVENTIONS
        from vitcost.report.sweep_view import sweep_page

        page = sweep_page(result.rows, [(o.key, o.maximise) for o in p.objectives], header, cells, title, line,
                          "vitcost " + " ".join(sys.argv[1:]), dict(CONVENTIONS), p.convention)
        emit(page, output)
        sys.stderr.write(line + "\n")
        return
    if fmt is Format.json:
        emit(formats.to_json({"rows": rows, "dropped": result.dropped, "evaluated": result.evaluated}), output)
    elif fmt is Format.csv:
        emit(formats.to_csv(rows), output)
        sys.stderr.write(line + "\n")
    elif fmt is Format.markdown or output is not None:
        caption = sweep_caption(rows, train)
        emit(f"**{title}**\n\n" + formats.to_markdown(header, cells) + (f"\n{caption}\n" if caption else "")
             + f"\n{line}\n", output)
    else:
        from vitcost.report.boxtable import box_table

        emit(box_table(header, cells, right=set(range(1, len(header))), title=title,
                       caption=sweep_caption(rows, train)), None)
        sys.stderr.write(line + "\n")


def _title(p) -> str:
    what = "one training step" if p.mode.value == "train" else "one forward"
    ckpt = {0: "none", 1: "block"}.get(p.checkpoint, p.checkpoint)
    opts = f", {p.optimizer.value}, checkpoint {ckpt}" if p.mode.value == "train" else ""
    amp = " autocast" if p.amp and p.mode.value == "inference" else ""
    front = f", front of {', '.join(o.text for o in p.objectives)}" if p.objectives else ""
    return (f"vitcost sweep {p.base} — {what}{amp}, {p.attn.value} "
            f"attention{opts}, {p.convention} convention{front}")
