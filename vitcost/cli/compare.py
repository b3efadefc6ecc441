"""`vitcost compare`, `vitcost models`, `vitcost formula`: the analytic views (no torch, no sympy
on the compare path)."""

from __future__ import annotations

from typing import Annotated

import typer

from vitcost.cli.app import (
    BatchOpt,
    Convention,
    ConventionOpt,
    Dtype,
    DtypeOpt,
    Format,
    FormatOpt,
    ModelsOpt,
    OutputOpt,
    ResOpt,
    app,
    emit,
)

DEFAULT_RES = ["224", "512", "1024"]


@app.command()
def compare(
    models: ModelsOpt = None,
    res: ResOpt = None,
    batch: BatchOpt = 1,
    dtype: DtypeOpt = Dtype.fp32,
    convention: ConventionOpt = Convention.macs,
    fmt: FormatOpt = Format.table,
    patch: Annotated[int | None, typer.Option(help="Override the patch size (ViT, Mixer, Swin).")] = None,
    window: Annotated[int | None, typer.Option(help="Override the attention window (Swin).")] = None,
    output: OutputOpt = None,
) -> None:
    """Compare models across resolutions: tokens, params, cost, attention-matrix memory, growth.

    Defaults: one model per family (igpt_l, vit_b16, swin_t, mvitv2_t, mixer_b16) at 224, 512 and
    1024 px. Columns: spatial tokens of the first stage; params; cost in the chosen convention; attention
    scores of all layers and of the largest layer, in bytes of --dtype; growth against the smallest
    resolution; the asymptotic class.

    Example: [bold]vitcost compare --res 224 512 1024[/bold], or
    [bold]vitcost compare -m vit_b16 swin -r 224 384x640 --format json[/bold].
    """
    from vitcost.report.rows import compare_rows

    rows = compare_rows(models, res or DEFAULT_RES, batch=batch, dtype=dtype.value, convention=convention.value,
                        patch=patch, window=window)
    if fmt is Format.table and output is None:
        from vitcost.report.table import render_compare

        emit(render_compare(rows, convention.value, batch, dtype.value), None)
        return
    emit(_format(rows, fmt, convention.value), output)


def _format(rows: list[dict], fmt: Format, convention: str) -> str:
    from vitcost.report import formats
    from vitcost.report.table import compare_cells

    if fmt is Format.json:
        return formats.to_json(rows)
    if fmt is Format.csv:
        return formats.to_csv(rows)
    return formats.to_markdown(*compare_cells(rows, convention))  # markdown, or a table sent to a file


@app.command()
def models(fmt: FormatOpt = Format.table) -> None:
    """List the presets with their source, published params/GMACs and vitcost's own figures.

    vitcost's figures are at the preset's resolution in the fvcore convention, which is how timm's
    published figures were counted.
    """
    from vitcost.analytic.estimate import estimate
    from vitcost.zoo import PRESETS

    rows = []
    for p in PRESETS.values():
        e = estimate(p.name, p.res)
        rows.append({"model": p.name, "family": p.family, "res": p.res, "source": p.source,
                     "aliases": " ".join(p.aliases), "published_params_m": p.params_m,
                     "published_gmacs": p.gmacs, "params": e.params, "fvcore": e.count("fvcore")})
    if fmt is Format.json or fmt is Format.csv:
        from vitcost.report import formats

        emit(formats.to_json(rows) if fmt is Format.json else formats.to_csv(rows), None)
        return

    def pub(x: float | None, unit: str) -> str:
        return "—" if x is None else f"{x:g}{unit}"

    header = ["model", "family", "res", "params", "published", "GMACs (fvcore)", "published", "source"]
    cells = [[r["model"], r["family"], str(r["res"]), f"{r['params'] / 1e6:.2f}M", pub(r["published_params_m"], "M"),
              f"{r['fvcore'] / 1e9:.2f}", pub(r["published_gmacs"], ""), r["source"]] for r in rows]
    if fmt is Format.markdown:
        from vitcost.report.formats import to_markdown

        emit(to_markdown(header, cells), None)
        return
    from rich.table import Table

    from vitcost.report.table import wide_console

    table = Table(title="vitcost presets", header_style="bold")
    for h in header:
        table.add_column(h)
    for c in cells:
        table.add_row(*c)
    wide_console().print(table)


@app.command()
def formula(
    kind: Annotated[str, typer.Argument(help="global_attention, window_attention, or a model name.")],
    latex: Annotated[bool, typer.Option("--latex", help="Print only the LaTeX form.")] = False,
) -> None:
    """Print the symbolic MACs of an attention kind or a model, pretty and as LaTeX.

    global_attention and window_attention give the Swin paper's Eq. 1 and 2 in h, w, C, M; a model
    name gives its total MACs in H, W, exact (with floors where the network rounds).
    """
    import sympy

    from vitcost.analytic.symbolic import KINDS, leading
    from vitcost.analytic.symbolic import formula as build

    expr = build(kind)
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
