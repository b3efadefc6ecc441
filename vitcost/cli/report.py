"""`vitcost report`: a self-contained HTML scaling report (plotly.js inlined, opens offline), or a
PNG of its figures."""

from __future__ import annotations

import enum
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer

from vitcost.cli.app import (
    BatchOpt,
    Convention,
    ConventionOpt,
    Dtype,
    DtypeOpt,
    ModelsOpt,
    ResOpt,
    SetOpt,
    app,
)
from vitcost.errors import VitcostError
from vitcost.vocab import Optimizer

DEFAULT_OUTPUT = Path("reports") / "scaling.html"


class ReportFormat(str, enum.Enum):
    html = "html"
    png = "png"


SUFFIXES = {ReportFormat.html: (".html", ".htm"), ReportFormat.png: (".png",)}


def _format_for(fmt: ReportFormat | None, output: str | None) -> ReportFormat:
    """The format asked for, or the one the output name implies (.png -> png, .html/.htm -> html);
    a name with another ending is an error (stdout, "-", takes --format, html by default)."""
    if output is None or output == "-":
        return fmt or ReportFormat.html
    suffix = Path(output).suffix.lower()
    implied = next((k for k, v in SUFFIXES.items() if suffix in v), None)
    if implied is None:
        from vitcost.cli.output import check_output

        check_output(output, SUFFIXES[fmt or ReportFormat.html])  # a device is fine; a file name must match
        return fmt or ReportFormat.html
    if fmt is not None and fmt is not implied:
        raise VitcostError(f"--format {fmt.value} does not match the output name {output}.")
    return implied


def _command(models: list[str] | None, set_items: list[str] | None, res: list[str], batch: int, dtype: str,
             convention: str, breakdown_res: str | None, devices: list[str], check: Path | None, profile: Path | None,
             fmt: ReportFormat, output: str, title: str | None, train: bool = True, optimizer: str = "adamw",
             hardware: list[str] | None = None) -> str:
    """The command line that reproduces this report, for its footer."""
    parts = ["vitcost", "report"]
    if models:
        parts += ["--models", *models]
    if set_items:
        parts += ["--set", *set_items]
    parts += ["--res", *res]
    if batch != 1:
        parts += ["--batch", str(batch)]
    if dtype != "fp32":
        parts += ["--dtype", dtype]
    if convention != "macs":
        parts += ["--convention", convention]
    if breakdown_res is not None:
        parts += ["--breakdown-res", breakdown_res]
    if devices:
        parts += ["--device-memory", *devices]
    if hardware:
        parts += ["--hardware", *hardware]
    if check is not None:
        parts += ["--check", str(check)]
    if profile is not None:
        parts += ["--profile", str(profile)]
    if not train:
        parts.append("--no-train")
    elif optimizer != "adamw":
        parts += ["--optimizer", optimizer]
    if title is not None:
        parts += ["--title", title]
    if fmt is ReportFormat.png:
        parts += ["--format", "png"]
    parts += ["-o", str(output)]
    return shlex.join(parts)


def profile_memory(name: str) -> str:
    """A device profile's memory as a --device-memory entry, NAME=SIZE, named by the profile."""
    from vitcost.analytic.hardware import GIB, get_hardware

    hw = get_hardware(name)
    if not hw.memory:
        raise VitcostError(f"the {name} profile has no memory figure to draw.")
    size = f"{hw.memory // GIB}GiB" if hw.memory % GIB == 0 else f"{hw.memory}B"
    return f"{hw.name}={size}"


def report_request(models: list[str] | None, set_items: list[str] | None, res: list[str], batch: int = 1,
                   dtype: Dtype = Dtype.fp32, convention: Convention = Convention.macs,
                   breakdown_res: str | None = None, device_memory: list[str] | None = None, check: Path | None = None,
                   profile: Path | None = None, train: bool = True, optimizer: str = "adamw",
                   title: str = "vitcost scaling report", command: str = "vitcost report",
                   hardware: list[str] | None = None) -> Any:
    """The report's options parsed once into a `ReportRequest`: designs, sizes, devices, optimizer and
    the device profiles of the latency panel."""
    from vitcost.analytic.hardware import get_hardware
    from vitcost.design import parse_models
    from vitcost.report.build import DEFAULT_DEVICE_MEMORY, ReportRequest, parse_devices
    from vitcost.vocab import parse_convention, parse_dtype, parse_optimizer, parse_res, parse_resolutions

    conv = parse_convention(convention).value
    devices = parse_devices(list(DEFAULT_DEVICE_MEMORY) if device_memory is None else device_memory)
    opt = parse_optimizer(optimizer)
    if not res:
        raise VitcostError("--res needs at least one resolution.")
    return ReportRequest(
        designs=parse_models(list(models) if models else None, list(set_items or [])),
        sizes=parse_resolutions(res), devices=devices, batch=batch, dtype=parse_dtype(dtype), convention=conv,
        breakdown_res=parse_res(breakdown_res) if breakdown_res is not None else None, check=check,
        profile=profile, train=train, optimizer=opt, title=title, command=command,
        hardware=tuple(get_hardware(name) for name in hardware or ()))


@app.command()
def report(
    models: ModelsOpt = None,
    set_items: SetOpt = None,
    res: ResOpt = None,
    batch: BatchOpt = 1,
    dtype: DtypeOpt = Dtype.fp32,
    convention: ConventionOpt = Convention.macs,
    breakdown_res: Annotated[str | None, typer.Option(
        "--breakdown-res", help="Resolution of the per-part breakdown (N, HxW or TxHxW). Default: the largest "
        "--res.")] = None,
    device_memory: Annotated[list[str] | None, typer.Option(
        "--device-memory", help="Device memory lines on the memory plot: sizes such as 80GB, 24GiB, or "
        "NAME=SIZE; several may follow one flag. Default: H100=80GB H200=141GB (none with --hardware).")] = None,
    hardware: Annotated[list[str] | None, typer.Option(
        "--hardware", help="Device profiles (names, see `vitcost hardware`, or .toml files): each one's memory is "
        "drawn as a line beside any --device-memory, and a latency figure times every design and --res on each "
        "(a 16-bit --dtype as autocast over fp32 weights); several may follow one flag.")] = None,
    check: Annotated[Path | None, typer.Option(
        "--check", help="JSON rows from `vitcost check --format json`: adds analytic vs fvcore vs "
        "FlopCounterMode.")] = None,
    profile: Annotated[Path | None, typer.Option(
        "--profile", help="JSON rows from `vitcost profile --format json`: adds predicted vs measured time "
        "and memory.")] = None,
    train: Annotated[bool, typer.Option(
        "--train/--no-train", help="Add (default) or leave out the training-step figure: per design and --res, "
        "the memory of one step (forward, loss, backward, optimizer update) at --batch and --dtype (bf16/fp16: "
        "mixed precision under autocast, fp32 weights), without and with activation checkpointing per block, "
        "stacked part by part up to the step's peak, against --device-memory; its tables give exact bytes and "
        "the largest square input that trains on each device.")] = True,
    optimizer: Annotated[Optimizer | None, typer.Option(
        "--optimizer", help="The training figure's optimizer, whose state stays in memory: adamw (two fp32 "
        "buffers per weight, the default), sgd (with momentum: one) or none.")] = None,
    fmt: Annotated[ReportFormat | None, typer.Option(
        "--format", "-f", help="html (interactive, self-contained) or png (a screenshot of the figures, needs "
        "headless Chromium). Default: from the output name.")] = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Where to write the report (.html or .png; - for stdout). Default: "
        "reports/scaling.html, or reports/scaling.png with --format png.")] = None,
    title: Annotated[str | None, typer.Option("--title", help="Title at the top of the report.")] = None,
) -> None:
    """Write a scaling report: one HTML file that opens offline (plotly.js inlined, nothing fetched).

    Figures:
    • cost vs resolution, log-log, each line's fitted slope beside its analytic exponent
    • attention-matrix memory vs resolution, device-memory lines and the memory wall
    • the cost split by part (scores, projections, MLP, pooling, other) at --breakdown-res
    • where attention overtakes projections + MLP (ViT: N = 6d tokens)
    • the memory of one training step by part, with and without checkpointing per block (--no-train: left out)
    • with --hardware: time per forward vs resolution on each device, and FLOPs against time
    • with --check / --profile: analytic vs counted vs measured, around y = x
    Hover shows exact values; the tables behind every figure, the conventions, versions and date are in the page.

    Example: [bold]vitcost report --res 224 384 512 768 1024 -o reports/scaling.html[/bold]
    """
    from vitcost.cli.output import check_output, write_output
    from vitcost.report.build import DEFAULT_DEVICE_MEMORY, DEFAULT_RES, DEFAULT_TITLE

    kind = _format_for(fmt, output)
    if optimizer is not None and not train:
        raise VitcostError("--optimizer sets the training figure, which --no-train leaves out; drop one of them.")
    opt = (optimizer or Optimizer.adamw).value
    if output is None:
        output = str(DEFAULT_OUTPUT.with_suffix(".png") if kind is ReportFormat.png else DEFAULT_OUTPUT)
        Path(output).parent.mkdir(parents=True, exist_ok=True)  # the default folder, reports/
    check_output(output)
    res = list(res or DEFAULT_RES)
    devices = list(device_memory) if device_memory is not None else [] if hardware else list(DEFAULT_DEVICE_MEMORY)
    devices += [profile_memory(name) for name in hardware or []]
    req = report_request(
        models, set_items, res, batch, dtype, convention, breakdown_res, devices, check, profile, train, opt,
        title or DEFAULT_TITLE, _command(models, set_items, res, batch, dtype.value, convention.value, breakdown_res,
                                         list(device_memory or []), check, profile, kind, output, title, train, opt,
                                         list(hardware or [])), list(hardware or []))
    if kind is ReportFormat.png:
        from vitcost.report.build import render_png

        data = render_png(req)
    else:
        from vitcost.report.build import render_report

        data = render_report(req).encode("utf-8")
    write_output(output, data)
    if output != "-":
        typer.echo(f"wrote {output} ({len(data) / 1e6:.1f} MB)", err=True)
