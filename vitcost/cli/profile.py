"""`vitcost profile`: predicted vs measured forward time and memory, a roofline, and the memory wall."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from vitcost.cli.app import (
    AmpOpt,
    BandwidthOpt,
    BatchOpt,
    Dtype,
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
    choices,
    emit,
)
from vitcost.errors import VitcostError
from vitcost.vocab import DEVICES, Kernel, Optimizer, parse_run_mode

Device = choices("Device", ("auto", *DEVICES))  # auto: cuda when available


DEFAULT_RES = ["224"]


@app.command()
def profile(
    models: ModelsOpt = None,
    set_items: SetOpt = None,
    res: ResOpt = None,
    device: Annotated[Device, typer.Option(help="Where to run the forwards: auto picks cuda when available.")]
    = Device.auto,
    dtype: Annotated[Dtype, typer.Option(
        help="Element type of weights, input and activations: the forwards run in it, memory is counted in it, "
             "and the roofline uses its peak.")] = Dtype.fp32,
    batch: BatchOpt = 1,
    attn: Annotated[Kernel, typer.Option(
        help="Attention kernel: math materialises the scores (explicit q@k^T, softmax, @v); sdpa lets torch pick a "
             "fused kernel; flash and efficient force that SDPA backend (a run where it is unavailable is skipped).")]
    = Kernel.math,
    repeats: Annotated[int, typer.Option(help="Timed forwards per configuration (median and spread reported).")] = 5,
    warmup: Annotated[int, typer.Option(help="Untimed forwards before timing.")] = 2,
    threads: Annotated[int | None, typer.Option(
        help="CPU intra-op threads (torch.set_num_threads); default: the thread count a calibrated --hardware "
             "profile was measured at, else torch's current count, recorded.")] = None,
    device_memory: Annotated[list[str] | None, typer.Option(
        "--device-memory", help="Device memory for the memory wall, e.g. 80GB, 141GiB, 512MiB (GB = 10^9 bytes, "
        "GiB = 2^30; a bare number is GB). Default: the hardware profile's, or the machine's memory for cpu.")] = None,
    hardware: HardwareOpt = None,
    peak_tflops: PeakOpt = None,
    bandwidth: BandwidthOpt = None,
    amp: AmpOpt = None,
    predict_only: Annotated[bool, typer.Option(
        "--predict-only", help="Run nothing: the prediction, the roofline and the memory wall only. Does not import "
        "torch or look for a GPU: give --hardware (and --device-memory) to predict for one.")]
    = False,
    max_seconds: Annotated[float | None, typer.Option(
        "--max-seconds", help="Skip configurations whose roofline time per forward exceeds this.")] = None,
    mode: ModeOpt = "inference",
    optimizer: Annotated[Optimizer | None, typer.Option(
        help="--mode train: none, sgd (with momentum) or adamw (the default).")] = None,
    checkpoint: Annotated[str | None, typer.Option(
        help="--mode train: activation checkpointing, none (the default), block, or N blocks per checkpointed "
             "run.")] = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """Measure forwards and put them beside the prediction: peak memory, time, achieved TFLOP/s.

    For each model and resolution the analytic model predicts the peak forward memory (weights and
    input apart, activations alive at the peak, attention scores on the math path) and a roofline
    time; then the reference module runs on the device: one forward under a live-tensor tracker
    (CUDA: the allocator's peak) and timed forwards. A configuration whose predicted memory exceeds
    the free memory is skipped with the figure it needs; an out-of-memory error is marked oom and the
    sweep goes on. Every row records the device, torch version, dtype, batch, attention kernel and
    threads. The memory wall is the largest square input whose forward fits in --device-memory.
    --hardware picks the roofline's device profile (default: matched from the CUDA device's name, the
    indicative cpu profile on the CPU); --amp runs the float32 net under autocast at --dtype, as timm's
    benchmark.py --amp does (no predicted activation memory or memory wall then).

    With --mode train each row is one training step: the predicted parts (weights, gradients, optimizer
    state, saved activations, backward and step peaks), the step's FLOPs and roofline time, beside a real
    step of the reference net measured part by part and timed (median of --repeats steps after --warmup).

    Examples: [bold]vitcost profile -m vit_b16 swin_t -r 224 512 1024 --device cuda --dtype bf16 --attn flash[/bold];
    [bold]vitcost profile -m vit_ti16 -r 64 --device cpu --threads 2 -f json -o profile.json[/bold];
    [bold]vitcost profile -m igpt_l vit_l16 --predict-only --device-memory 80GB --dtype bf16[/bold];
    [bold]vitcost profile -m vit_s16 swin_t -r 224 --mode train --optimizer adamw --checkpoint block[/bold].
    """
    from vitcost.analytic.hardware import TB
    from vitcost.cli.output import check_output
    from vitcost.measure.profile import ProfileConfig, ProfileSession
    from vitcost.vocab import parse_bytes, parse_threads
    from vitcost.zoo import DEFAULT_MODELS

    output = check_output(output)  # before the sweep, not after it
    if threads is not None:
        threads = parse_threads(threads)
    cfg = ProfileConfig(models=list(models or DEFAULT_MODELS), set_items=set_items, res=list(res or DEFAULT_RES),
                        device=device.value, dtype=dtype, batch=batch, attn=attn, repeats=repeats, warmup=warmup,
                        device_memory=_one_size(device_memory, parse_bytes),
                        hardware=hardware, peak_tflops=peak_tflops,
                        bandwidth=bandwidth * TB if bandwidth is not None else None, predict_only=predict_only,
                        threads=threads, max_seconds=max_seconds, mode=parse_run_mode(mode).value, optimizer=optimizer,
                        checkpoint=checkpoint, amp=amp)
    session = ProfileSession(cfg)
    rows = _run_with_progress(session)
    if fmt is Format.table and output is None:
        from vitcost.report.profile_tables import profile_renderables
        from vitcost.report.table import wide_console

        console = wide_console()
        for renderable in profile_renderables(rows, session.walls(), session):
            console.print(renderable)
        return
    emit(_format(rows, fmt, session), output)


def _run_with_progress(session: Any) -> list[dict[str, Any]]:
    """Run every configuration with a progress bar on stderr (stdout stays clean for the results)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vitcost.vocab import res_label

    rows: list[dict[str, Any]] = []
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("profile", total=len(session.plan))
        for p, res in session.plan:
            label = f"{p.name} @ {res_label(res)}"
            bar.update(task, description=("predicting " if session.cfg.predict_only else "profiling ") + label)
            rows.append(session.run(p, res))
            bar.advance(task)
    return rows


def _format(rows: list[dict[str, Any]], fmt: Format, session: Any) -> str:
    from vitcost.report import formats
    from vitcost.report.profile_tables import profile_cells, profile_title, train_cells

    if fmt is Format.json:
        return formats.to_json(rows)
    if fmt is Format.csv:
        return formats.to_csv(rows)
    # markdown, or a table sent to a file: the table's title line comes along
    cells = train_cells if session.cfg.mode == "train" else profile_cells
    return f"**{profile_title(session)}**\n\n" + formats.to_markdown(*cells(rows))


def _one_size(values: list[str] | None, parse: Any) -> int | None:
    """--device-memory takes several values on `report` (one line each); the memory wall needs one."""
    if not values:
        return None
    if len(values) > 1:
        raise VitcostError(f"--device-memory takes one size here, got {len(values)}: {' '.join(values)}.")
    return parse(values[0])
