"""`vitcost hardware`: the device profiles the time figures can use (no torch)."""

from __future__ import annotations

from typing import Annotated

import typer

from vitcost.cli.app import Format, FormatOpt, OutputOpt, app, emit, emit_rows


@app.command()
def hardware(
    name: Annotated[str | None, typer.Argument(
        help="A profile's name or .toml file: print it as a profile file, every figure with its source (copy it "
             "into the user profile directory under a new name, edit it, and use that name with --hardware); the "
             "indicative cpu profile, whose figures scale with the threads, as its file is written.")] = None,
    fmt: FormatOpt = Format.table,
    output: OutputOpt = None,
) -> None:
    """List every known device profile: peaks per dtype, vector peak, bandwidth, memory and sources.

    Built-in profiles ship with vitcost; a TOML file in the user profile directory
    ($XDG_CONFIG_HOME/vitcost/devices/, else ~/.config/vitcost/devices/) is a hardware name like them
    (its file name without .toml), and a profile file's path works wherever --hardware is taken.
    Every figure carries its source: a vendor document, a derivation from one, or an assumption.

    Examples: [bold]vitcost hardware[/bold];
    [bold]vitcost hardware rtx4090 > ~/.config/vitcost/devices/my4090.toml[/bold].
    """
    from vitcost.analytic.hardware import get_hardware, known_hardware, profile_toml, user_dir
    from vitcost.cli.output import check_output
    from vitcost.report import formats

    output = check_output(output)
    if name is not None:
        hw = get_hardware(name)
        path = known_hardware().get(hw.key)
        emit(path.read_text(encoding="utf-8") if hw.per_thread and path else profile_toml(hw), output)
        return
    rows = []
    for key, path in known_hardware().items():
        hw = get_hardware(key)
        rows.append({"hardware": key, "name": hw.name, "indicative": hw.indicative,
                     **{f"{d}_tflops": hw.matmul_flops[d] / 1e12 for d in ("fp32", "fp16", "bf16")},
                     "vector_tflops": hw.vector_flops / 1e12, "bandwidth_tbps": hw.bandwidth / 1e12,
                     "memory_bytes": hw.memory or None, "file": str(path), "sources": dict(hw.sources)})
    if emit_rows(rows, fmt, output):
        return
    from vitcost.report.table import hardware_cells

    header, cells, notes = hardware_cells(rows)
    caption = (f"peaks: dense TFLOP/s (fp16/bf16 with the fp32 accumulate torch uses); vector: elementwise work; "
               f"user profiles: {user_dir()}\nsources:\n" + "\n".join(notes))
    if fmt is Format.markdown or output is not None:
        emit("**vitcost hardware** — device profiles\n\n" + formats.to_markdown(header, cells) + "\n\n"
             + caption.replace("\n", "\n\n"), output)
        return
    from vitcost.report.boxtable import box_table

    emit(box_table(header, cells, right=set(range(2, len(header))), title="vitcost hardware — device profiles",
                   caption=caption), None)
