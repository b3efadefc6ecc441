"""`vitcost calibrate`: measure this machine and write a device profile the per-op time model reads."""

from __future__ import annotations

import enum
import os
import re
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from vitcost.cli.app import app
from vitcost.errors import VitcostError


class CalibrateDevice(str, enum.Enum):
    cpu = "cpu"
    cuda = "cuda"


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _check(device: CalibrateDevice, threads: int | None, name: str) -> None:
    if not NAME.fullmatch(name) or name.lower().endswith(".toml"):
        raise VitcostError(f"--name {name!r} is not a profile name: letters, digits, '.', '_' and '-', no .toml.")
    if threads is not None:
        cores = usable_cores()
        if threads < 1 or threads > cores:
            raise VitcostError(f"--threads {threads} is outside 1..{cores}, the cores this process may use.")
        if device is CalibrateDevice.cuda:
            raise VitcostError("--threads is for --device cpu (the CUDA ladder's speed is the GPU's).")


@app.command()
def calibrate(
    device: Annotated[CalibrateDevice, typer.Option(help="What to measure: this machine's CPU or its CUDA device.")]
    = CalibrateDevice.cpu,
    threads: Annotated[int | None, typer.Option(
        help="CPU intra-op threads (torch.set_num_threads) the figures are measured at and hold for; default: "
             "torch's current count. At most the cores this process may use.")] = None,
    output: Annotated[str | None, typer.Option(
        "--output", "-o", help="Write the profile to this file (replaced atomically). Default: NAME.toml in the "
        "user profile directory, so that --hardware NAME reads it.")] = None,
    name: Annotated[str | None, typer.Option(
        help="The profile's name (its file's stem); default: cpu-calibrated or cuda-calibrated.")] = None,
    quick: Annotated[bool, typer.Option(
        "--quick", help="A short ladder (a few calls per kernel class, ~1/3 of the time): a smoke test, not "
        "a profile to trust.")] = False,
) -> None:
    """Measure this machine with micro-benchmarks and write a device profile fitted on them.

    The ladder: GEMMs per dtype (fp32; bf16 and fp16 where the device runs them) and math-path
    attention's batched products; dense, pointwise, stem and depthwise convolutions; fused attention
    without a mask (flash) and with one (the memory-efficient path); adds, LayerNorm, softmax, GELU,
    copies, rolls and pads; relative-position and neighbourhood gathers; and a one-element op for the per-call floor.
    Each call is timed over 5 repeats (median per call; spread = (max - min) / median). From them
    come the matmul peaks per dtype, the vector peak, the bandwidth, the per-kernel floor and the
    time model's \\[efficiency.<class>] tables (fraction, half_work), each with its source, and a
    \\[calibration] record of every run. About 30-60 s on a 2-core CPU. A median spread above 10% (a
    busy machine) is warned about: the figures then hold for a machine as busy.

    Examples: [bold]vitcost calibrate --threads 1[/bold], then [bold]vitcost compare -m vit_s16 --hardware
    cpu-calibrated --dtype fp32[/bold]; [bold]vitcost calibrate --device cuda -o h100-mine.toml[/bold].
    """
    from vitcost.cli.output import check_output, write_output

    name = name or f"{device.value}-calibrated"
    _check(device, threads, name)
    output = check_output(output)
    from vitcost.analytic.hardware import profile_toml, user_dir
    from vitcost.measure.calibrate import SPREAD_WARN, calibrated_profile, ladder, machine, median_spread

    m = machine(device.value, threads)
    import torch

    dev = torch.device(device.value)
    benches = ladder(dev, quick)
    t0 = time.perf_counter()
    samples = _run(benches, dev)
    seconds = time.perf_counter() - t0
    hw = calibrated_profile(m, samples, name, seconds)
    if output is None:
        path = user_dir() / f"{name}.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        output = str(path)
    write_output(output, profile_toml(hw).encode())
    spread = median_spread(samples)
    if spread > SPREAD_WARN:
        sys.stderr.write(f"vitcost: warning: the repeated runs spread by {spread:.0%} (median over the ladder; "
                         "a busy machine): the figures hold for a machine this busy.\n")
    typer.echo(_summary(hw, output, name, seconds, len(samples)))


def _run(benches: list[Any], dev: Any) -> list[Any]:
    """The ladder with a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vitcost.measure.calibrate import run_ladder

    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("calibrating", total=len(benches))

        def step(b: Any) -> None:
            bar.update(task, description=f"calibrating: {b.name}")
            bar.advance(task)

        return run_ladder(benches, dev, on_step=step)


def _summary(hw: Any, output: str, name: str, seconds: float, n: int) -> str:
    peaks = ", ".join(f"{d} {f / 1e9:.3g}" for d, f in hw.matmul_flops.items())
    eff = ", ".join(f"{c} {e.fraction:.2f} (half at {e.half_work:.3g})" for c, e in hw.efficiency.items())
    from vitcost.analytic.hardware import user_dir

    use = name if Path(output).parent.resolve() == user_dir().resolve() else output
    return (f"{hw.name}: {n} calls in {seconds:.1f} s -> {output}\n"
            f"  matmul peaks GFLOP/s: {peaks}; vector {hw.vector_flops / 1e9:.3g} GFLOP/s; "
            f"bandwidth {hw.bandwidth / 1e9:.3g} GB/s; per-call floor {hw.launch_overhead * 1e6:.3g} us\n"
            f"  efficiency (fraction of the roof, work at half of it): {eff}\n"
            f"  use it: --hardware {use}")

