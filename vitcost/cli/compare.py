"""`vitcost compare`, `vitcost models`, `vitcost formula`: the analytic views (no torch, no sympy
on the compare path)."""

from __future__ import annotations

import enum
from typing import Annotated, Any

import typer

from vitcost.cli.app import (
    AmpOpt,
    AttnOpt,
    BandwidthOpt,
    BatchOpt,
    Convention,
    ConventionOpt,
    Dtype,
    DtypeOpt,
    Format,
    FormatOpt,
    HardwareOpt,
    ModelsOpt,
    ModeOpt,
    OutputOpt,
    PeakOpt,
    ResOpt,
    SetOpt,
    app,
    emit,
    hardware_option,
)
from vitcost.vocab import Kernel, Optimizer, RunMode, parse_run_mode, res_label

DEFAULT_RES = ["224", "512", "1024"]


class SpecFormat(str, enum.Enum):
    toml = "toml"
    json = "json"


@app.command()
def compare(
    models: ModelsOpt = None,
    set_items: SetOpt = None,
    res: ResOpt = None,
    batch: BatchOpt = 1,
    dtype: DtypeOpt = Dtype.fp32,
    attn: AttnOpt = Kernel.math,
    convention: ConventionOpt = Convention.macs,
    fmt: FormatOpt = Format.table,
    patch: Annotated[int | None, typer.Option(help="Shorthand for --set patch=N (every model).")] = None,
    window: Annotated[int | None, typer.Option(help="Shorthand for --set window=N (every model).")] = None,
    output: OutputOpt = None,
    mode: ModeOpt = "inference",
    optimizer: Annotated[Optimizer | None, typer.Option(
        help="--mode train: none, sgd (with momentum) or adamw (the default).")] = None,
    checkpoint: Annotated[str | None, typer.Option(
        help="--mode train: activation checkpointing, none (the default), block, or N blocks per checkpointed "
             "run.")] = None,
    device_memory: Annotated[str | None, typer.Option(
        "--device-memory", help="--mode train: also solve the training memory wall for a device of this size "
        "(e.g. 80GB, 141GiB): the largest square input at --batch, and the largest batch at each --res, whose "
        "step fits.")] = None,
    hardware: HardwareOpt = None,
    peak_tflops: PeakOpt = None,
    bandwidth: BandwidthOpt = None,
    amp: AmpOpt = None,
) -> None:
    """Compare designs across resolutions: tokens, params, cost, attention and activation memory, growth.

    Defaults: the five attention archetypes (igpt_l, vit_b16, swin_t, mvitv2_t, mixer_b16) at 224, 512 and
    1024 px. Columns: spatial tokens of the first stage; params; cost in the chosen convention; attention
    scores of all layers and of the largest layer, in bytes of --dtype, as if materialised (the same for
    every --attn: a fused kernel keeps them on chip, which the activation peak reflects); the forward's
    activation peak
    (on top of weights and input, for --attn); growth against the smallest resolution; the asymptotic
    class. Each row is labelled by the design it came from (preset, spec file, overrides); JSON rows
    carry the full effective spec.

    With --mode train each row is one training step: its cost (forward + backward, and the forward that
    checkpointing runs again) and its memory part by part (weights, gradients, optimizer state, saved
    activations, the step's peak); --dtype bf16/fp16 means mixed precision under autocast (--no-amp: the
    model itself in 16 bits).

    With --hardware each row also has the time of one forward (--mode train: one step) of the batch on that
    device, a roofline, and the images per second; --amp makes inference autocast over fp32 weights, as
    timm's benchmark.py --amp runs it.

    Examples: [bold]vitcost compare --res 224 512 1024[/bold];
    [bold]vitcost compare -m vit_b16 swin_t -r 224 --batch 256 --dtype bf16 --amp --hardware rtx4090[/bold];
    [bold]vitcost compare -m vit_b16 swin -r 224 384x640 --format json[/bold];
    [bold]vitcost compare -m my_swin.toml vit_l16 --set vit_l16:patch=14 -r 1024[/bold].
    """
    from vitcost.cli.output import check_output
    from vitcost.design import parse_models
    from vitcost.errors import VitcostError
    from vitcost.report.rows import compare_estimates, compare_rows
    from vitcost.vocab import parse_checkpoint, parse_resolutions

    output = check_output(output)
    set_items = list(set_items or []) + [f"{k}={v}" for k, v in (("patch", patch), ("window", window))
                                         if v is not None]
    if amp and dtype is Dtype.fp32:
        raise VitcostError("--amp is autocast to 16 bits: give --dtype fp16 or bf16 with it, not fp32.")
    hw = hardware_option(hardware, peak_tflops, bandwidth, dtype)
    train = parse_run_mode(mode) is RunMode.train
    if not train and (optimizer is not None or checkpoint is not None or device_memory is not None):
        raise VitcostError("--optimizer, --checkpoint and --device-memory describe a training step: add --mode train.")
    every = parse_checkpoint(checkpoint)
    designs, sizes = parse_models(models, set_items), parse_resolutions(res or DEFAULT_RES)
    if train:
        precision = "half" if amp is False and dtype is not Dtype.fp32 else "autocast"
        _compare_train(compare_estimates(designs, sizes, batch, dtype, attn), convention, fmt, output,
                       optimizer or Optimizer.adamw, every, device_memory, hw, precision)
        return
    rows = compare_rows(compare_estimates(designs, sizes, batch, dtype, attn, bool(amp)), convention.value, hw)
    if fmt is Format.table and output is None:
        from vitcost.report.table import render_compare

        emit(render_compare(rows, convention.value, batch, dtype.value, attn.value), None)
        return
    precision = f"{dtype.value} autocast" if amp else dtype.value
    timing = f", time on {hw.label}" if hw is not None else ""
    emit(_format(rows, fmt, convention.value, f"batch {batch}, {precision}, {attn.value} attention{timing}"), output)


def _compare_train(ests: list[Any], convention: Convention, fmt: Format, output: str | None, optimizer: Optimizer,
                   checkpoint: int, device_memory: str | None = None, hardware: Any = None,
                   precision: str = "autocast") -> None:
    from vitcost.report import formats
    from vitcost.report.rows import train_rows, train_walls
    from vitcost.report.table import render_train_compare, train_cells, train_wall_cells
    from vitcost.vocab import parse_size

    budget = parse_size(device_memory) if device_memory is not None else None
    rows = train_rows(ests, convention.value, optimizer, checkpoint, hardware, precision)
    walls = train_walls(ests, budget[0], optimizer, checkpoint, precision) if budget else []
    first = ests[0]
    batch, dtype, attn, ckpt = first.batch, first.dtype, first.attn, {0: "none", 1: "block"}.get(checkpoint, checkpoint)
    if walls and fmt is Format.json:
        for row in rows:  # each row says the walls of its design
            row["train_memory_wall"] = next(w for w in walls if w["model"] == row["model"])
    if fmt is Format.table and output is None:
        emit(render_train_compare(rows, convention.value, batch, dtype.value, attn.value, optimizer.value, ckpt), None)
        if walls:
            from vitcost.report.boxtable import box_table

            header, cells = train_wall_cells(walls)
            emit(box_table(header, cells, right=set(range(1, len(header))),
                           title=f"training memory wall — what fits in {budget[1]}"), None)
    elif fmt is Format.json:
        emit(formats.to_json(rows), output)
    elif fmt is Format.csv:
        emit(formats.to_csv(rows), output)
    else:
        timing = f", time on {hardware.label}" if hardware is not None else ""
        mode = " (the model in 16 bits)" if precision == "half" else ""
        emit(f"**vitcost compare --mode train** — batch {batch}, {dtype.value}{mode}, {attn.value} attention, "
             f"{optimizer.value}, checkpoint {ckpt}, {convention.value} convention{timing}\n\n"
             + formats.to_markdown(*train_cells(rows, convention.value)), output)


def _format(rows: list[dict], fmt: Format, convention: str, context: str) -> str:
    from vitcost.report import formats
    from vitcost.report.table import compare_cells

    if fmt is Format.json:
        return formats.to_json(rows)
    if fmt is Format.csv:
        return formats.to_csv(rows)
    # markdown, or a table sent to a file: the table's title line comes along
    return f"**vitcost compare** — {context}, {convention} convention\n\n" + formats.to_markdown(
        *compare_cells(rows, convention))


@app.command()
def models(fmt: FormatOpt = Format.table, output: OutputOpt = None) -> None:
    """List the presets with their source, published params/GMACs and vitcost's own figures.

    vitcost's figures are at the preset's resolution in the fvcore convention, which is how timm's
    published figures were counted; `scaling` is the family's complexity class.
    """
    from vitcost.analytic.estimate import evaluate
    from vitcost.cli.output import check_output
    from vitcost.design import parse_design
    from vitcost.report import formats
    from vitcost.report.table import models_cells
    from vitcost.zoo import PRESETS

    output = check_output(output)
    rows = []
    for p in PRESETS.values():
        e = evaluate(parse_design(p.name), p.size)
        rows.append({"model": p.name, "family": p.family, "res": res_label(p.size), "source": p.source,
                     "aliases": " ".join(p.aliases), "published_params_m": p.params_m,
                     "published_gmacs": p.gmacs, "params": e.params, "fvcore": e.count("fvcore"),
                     "complexity": e.complexity})
    if fmt is Format.json or fmt is Format.csv:
        emit(formats.to_json(rows) if fmt is Format.json else formats.to_csv(rows), output)
    elif fmt is Format.markdown or output is not None:
        emit("**vitcost presets** — params and GMACs (fvcore) at each preset's resolution\n\n"
             + formats.to_markdown(*models_cells(rows)), output)
    else:
        from vitcost.report.table import render_models

        render_models(rows)


@app.command()
def formula(
    kind: Annotated[str, typer.Argument(help="global_attention, window_attention, local_attention, conv, or a "
                                              "model (a preset, a spec file, or either with overrides).")],
    latex: Annotated[bool, typer.Option("--latex", help="Print only the LaTeX form.")] = False,
) -> None:
    """Print the symbolic MACs of an attention kind or a model, pretty and as LaTeX.

    global_attention and window_attention give the Swin paper's Eq. 1 and 2 in h, w, C, M;
    local_attention the neighbourhood attention of NAT's Table 1 in H, W, D, K; conv one K x K
    convolution in H, W, Cin, Cout, K (the course's contrast: O(HW·D·K²) against O(HW·Cin·Cout·K²));
    a model gives its total MACs in H, W, exact (with floors where the network rounds).
    """
    import sympy

    from vitcost.analytic.symbolic import KINDS, leading
    from vitcost.analytic.symbolic import formula as build
    from vitcost.design import parse_formula

    expr = build(parse_formula(kind))
    if latex:
        typer.echo(sympy.latex(expr))
        return
    title = KINDS.get(kind, f"{kind}: total MACs of one forward, batch 1, input H x W")
    typer.echo(title)
    typer.echo(sympy.pretty(expr, use_unicode=True))
    approx = leading(expr)
    if approx != expr:
        typer.echo("\nwith H, W divisible by every stride:")
        typer.echo(sympy.pretty(approx, use_unicode=True))
    typer.echo(f"\nLaTeX: {sympy.latex(expr)}")


@app.command()
def spec(
    model: Annotated[str, typer.Argument(help="A preset name or alias, a spec file, either with :field=value "
                                              "overrides.")],
    fmt: Annotated[SpecFormat, typer.Option("--format", "-f", help="toml (commented, for editing) or json.")]
    = SpecFormat.toml,
    output: OutputOpt = None,
) -> None:
    """Write a design as a spec file you can edit: every field with its meaning.

    The file goes anywhere a model name goes (compare, check, profile, report), and its rows are
    labelled with the file's name.

    Example: [bold]vitcost spec swin_t > my_swin.toml[/bold], edit it, then
    [bold]vitcost compare -m my_swin.toml swin_t --res 224 1024[/bold].
    """
    from vitcost.design import parse_design, spec_dict, spec_toml

    design = parse_design(model)
    if fmt is SpecFormat.json:
        import json

        frames = {"frames": design.frames} if design.frames else {}
        emit(json.dumps({**spec_dict(design.spec), "res": design.res, **frames}, indent=2), output)
        return
    from vitcost.zoo import PRESETS

    p = PRESETS.get(design.preset or "")
    note = p.source if p is not None and design.name == p.name else ""
    emit(spec_toml(design, note), output)
