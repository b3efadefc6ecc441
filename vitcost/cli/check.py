"""`vitcost check`: the analytic model against fvcore and torch's FlopCounterMode, layer by layer, on the
torch reference models; or fvcore and FlopCounterMode counts of any module (`--module`)."""

from __future__ import annotations

import importlib
import math
import os
import sys
from typing import Annotated, Any

import typer

from vitcost.cli.app import BatchOpt, Format, FormatOpt, ModelsOpt, OutputOpt, ResOpt, SetOpt, app, choices, emit
from vitcost.errors import VitcostError
from vitcost.measure.check import ATTN_PATHS
from vitcost.measure.counting import COUNTED_CONVENTIONS, METHODS
from vitcost.measure.counting_meta import first_line
from vitcost.vocab import RunMode, parse_run_mode, res_label

DEFAULT_RES = ["224"]


# The choices are the core's lists, as they are: the conventions a counter gives, the reference nets'
# attention paths (and both), the counting methods
CheckConvention = choices("CheckConvention", COUNTED_CONVENTIONS)
AttnPath = choices("AttnPath", (*ATTN_PATHS, "both"))
Method = choices("Method", METHODS)


def parse_input_shape(text: str) -> tuple[int, ...]:
    """"1x3x224x224" -> (1, 3, 224, 224); anything else raises VitcostError."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if not shape or any(n <= 0 for n in shape):
        raise VitcostError(f"--input {text!r} is not a shape of positive whole numbers like 1x3x224x224.")
    return shape


def load_factory_module(target: str) -> Any:
    """Import `package.module:factory` (the working directory importable, as with `python -m`), call the
    factory with no arguments and return the torch module it builds, in eval mode."""
    import torch

    modname, sep, attr = target.partition(":")
    if not sep or not modname or not attr:
        raise VitcostError(f"--module {target!r} must look like package.module:factory.")
    if modname.endswith(".py") or "/" in modname or os.sep in modname:
        spelled = modname.removesuffix(".py").strip("./").replace("/", ".").replace(os.sep, ".")
        raise VitcostError(f"--module takes a module, not a file path: {modname!r} is a path; give "
                           f"{spelled}:{attr} (importable from the working directory).")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(modname)
    except Exception as e:  # ImportError, SyntaxError, or anything its top level raises
        raise VitcostError(f"cannot import {modname}: {type(e).__name__}: {first_line(e)}") from None
    for name in attr.split("."):
        if not hasattr(obj, name):
            raise VitcostError(f"{modname} has no attribute {attr!r}.")
        obj = getattr(obj, name)
    if not callable(obj):
        raise VitcostError(f"{target} is not callable; give a function or class that builds the model.")
    try:
        module = obj()
    except SystemExit as e:  # the factory ended the process: say so, never exit 0 with no output
        raise VitcostError(f"{target}() called sys.exit({e.code!r}) instead of returning a model.") from None
    except Exception as e:
        raise VitcostError(f"{target}() raised {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(module, torch.nn.Module):
        raise VitcostError(f"{target}() returned {type(module).__name__}, not a torch.nn.Module.")
    return module.eval()


def _runs(models: list[str] | None, set_items: list[str] | None, res: list[str], attn: AttnPath
          ) -> list[tuple[Any, tuple[int, int], str]]:
    from vitcost.design import resolve_designs
    from vitcost.vocab import parse_resolutions
    from vitcost.zoo import DEFAULT_MODELS

    designs = resolve_designs(list(models or DEFAULT_MODELS), set_items)
    sizes = parse_resolutions(res)
    paths = list(ATTN_PATHS) if attn is AttnPath.both else [attn.value]
    return [(d, hw, a) for d in designs for hw in sizes for a in paths]


def _progress() -> Any:
    """A progress bar on stderr, so stdout carries only the results; drawn only on a terminal, so that
    a log or a pipe gets nothing but the results and, on error, one line."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def _check_models(runs: list[tuple[Any, tuple[int, int], str]], batch: int, convention: str, tol: float,
                  method: str, mode: str = "inference") -> list[Any]:
    import torch  # noqa: F401  (a missing torch is one line before any progress line)

    from vitcost.analytic.estimate import evaluate
    from vitcost.measure.check import check_countable, check_model

    for design, hw, _ in runs:  # a size a design cannot take is an error before anything is counted
        check_countable(evaluate(design, hw, batch))

    results = []
    with _progress() as progress:
        task = progress.add_task("counting", total=len(runs))
        for i, (design, hw, attn) in enumerate(runs, 1):
            line = f"counting {design.name} {res_label(hw)} {attn}" + (" training step" if mode == "train" else "")
            progress.update(task, description=line)
            if progress.disable:  # no bar (a log, a pipe): one line per count instead
                sys.stderr.write(f"vitcost: {line} ({i}/{len(runs)})\n")
            results.append(check_model(design, hw, batch, attn, convention, tol, method, mode=mode))
            progress.advance(task)
    return results


def _emit_checks(results: list[Any], fmt: Format, by_layer: bool, output: str | None) -> None:
    from vitcost.report import check_tables as render
    from vitcost.report import formats

    if fmt is Format.json:
        text = formats.to_json([r.row(by_layer) for r in results])
    elif fmt is Format.csv:
        text = formats.to_csv(render.check_csv_rows(results, by_layer))
    elif fmt is Format.markdown or output is not None:
        text = render.render_check_markdown(results, by_layer)
    else:
        text = render.render_check_table(results, by_layer)
    emit(text, output)


def _check_module(target: str, input_shape: str, convention: str, method: str, top: int, fmt: Format,
                  output: str | None) -> None:
    from vitcost.measure.counting import count
    from vitcost.report import check_tables as render
    from vitcost.report import formats

    shape = parse_input_shape(input_shape)
    module = load_factory_module(target)
    with _progress() as progress:
        progress.add_task(f"counting {target} on {'x'.join(map(str, shape))}", total=None)
        counts = count(module, shape, method=method)
    report = render.module_report(target, counts, convention, top)
    if fmt is Format.json:
        text = formats.to_json([report])
    elif fmt is Format.csv:
        text = formats.to_csv(render.module_csv_rows(report))
    else:
        text = render.render_module_table(report, markdown=fmt is Format.markdown or output is not None)
    emit(text, output)


_FLAGS = {"models": "--models", "set_items": "--set", "res": "--res", "batch": "--batch", "attn": "--attn",
          "tol": "--tol", "by_layer": "--by-layer", "mode": "--mode"}


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the option was given on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


@app.command()
def check(
    ctx: typer.Context,
    models: ModelsOpt = None,
    set_items: SetOpt = None,
    res: ResOpt = None,
    batch: BatchOpt = 1,
    attn: Annotated[AttnPath, typer.Option(
        "--attn", help="Attention path of the reference models: math (explicit scores), sdpa (fused "
        "F.scaled_dot_product_attention) or both.")] = AttnPath.both,
    convention: Annotated[CheckConvention, typer.Option(
        "--convention", "-c", help="Convention all three columns are shown in: fvcore (1 per MAC + 5 per "
        "LayerNorm element), torch (2 per MAC) or macs. Default: fvcore; torch with --mode train.")
    ] = CheckConvention.fvcore,
    mode: Annotated[str, typer.Option(
        "--mode", help="inference (or infer): one forward; train: one training step (forward + loss.backward()), "
        "against FlopCounterMode alone (fvcore counts no backward), in the torch or macs convention.")]
    = "inference",
    tol: Annotated[float, typer.Option(
        "--tol", min=0.0, help="Relative tolerance per layer and in total; 0 demands exact agreement.")] = 0.0,
    by_layer: Annotated[bool, typer.Option(
        "--by-layer", help="Show the per-layer join and mark the first layer that disagrees.")] = False,
    method: Annotated[Method, typer.Option(
        "--method", help="real: count a real forward; meta: a forward on the meta device (no memory); auto: "
        "meta when a real count might not fit (1.5x its predicted memory exceeds the least of the available "
        "memory, the address-space limit and the cgroup's memory.max), which real refuses up front.")
    ] = Method.auto,
    module: Annotated[str | None, typer.Option(
        "--module", help="Count your own model instead: package.module:factory, a function or class that "
        "builds it with no arguments (the working directory is importable).")] = None,
    input_shape: Annotated[str | None, typer.Option(
        "--input", help="Input shape for --module, e.g. 1x3x224x224.")] = None,
    top: Annotated[int, typer.Option("--top", min=1, help="Modules listed for --module, largest first.")] = 10,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """Cross-check the analytic counts against fvcore and torch's FlopCounterMode, layer by layer.

    For each model x resolution x attention path, builds the torch reference model, counts one forward
    with fvcore (fused attention counted) and with FlopCounterMode, and joins both with the analytic
    estimate on the dotted layer paths. Exit code 1 if any layer or total differs by more than --tol,
    so a CI job can run it. Models too large to run are counted on the meta device (method meta).
    Defaults: the five attention archetypes (igpt_l, vit_b16, swin_t, mvitv2_t, mixer_b16), 224 px,
    both attention paths, the fvcore convention; the default run takes about two minutes on two CPU
    cores (progress goes to stderr, a line per count when stderr is not a terminal).

    Examples:
    [bold]vitcost check --models vit_b16 swin_t mvitv2_t mixer_b16 igpt_s --res 224 320[/bold]
    [bold]vitcost check -m swin_t -r 320 --attn sdpa --by-layer[/bold]
    [bold]vitcost check -m my_design.toml vit_b16:class_tokens=0,window=14,global_blocks=2-5-8-11 -r 448[/bold]
    [bold]vitcost check -m vit --res 224 --batch 2 --convention torch --format json -o check.json[/bold]
    [bold]vitcost check -m convnext_tiny swin_t --mode train --by-layer[/bold] (forward + backward)
    [bold]vitcost check --module vitcost.nets.examples:small_cnn --input 1x3x224x224[/bold] (any model)
    """
    from vitcost.cli.output import check_output

    output = check_output(output)
    given = {name for name in ctx.params if _given(ctx, name)}
    if module is not None:
        stray = [_FLAGS[n] for n in ("models", "set_items", "res", "batch", "attn", "tol", "by_layer", "mode")
                 if n in given]
        if stray:
            verb = "does" if len(stray) == 1 else "do"
            raise VitcostError(f"{', '.join(stray)} {verb} not apply with --module, which counts your model on "
                               "--input; leave them out.")
        if input_shape is None:
            raise VitcostError("--module needs --input, the input shape, e.g. --input 1x3x224x224.")
        _check_module(module, input_shape, convention.value, method.value, top, fmt, output)
        return
    if input_shape is not None or "top" in given:
        raise VitcostError(f"{'--input' if input_shape is not None else '--top'} applies only with --module.")
    mode = parse_run_mode(mode)
    if mode is RunMode.train:
        if "convention" in given and convention is CheckConvention.fvcore:
            raise VitcostError("--mode train cannot use --convention fvcore: fvcore counts no backward; use torch "
                               "or macs.")
        if "convention" not in given:
            convention = CheckConvention.torch
    if not math.isfinite(tol):
        raise VitcostError(f"--tol must be a finite number of at least 0, got {tol}.")
    runs = _runs(models, set_items, res or DEFAULT_RES, attn)
    results = _check_models(runs, batch, convention.value, tol, method.value, mode.value)
    _emit_checks(results, fmt, by_layer, output)
    if any(r.status != "PASS" for r in results):
        raise typer.Exit(1)
