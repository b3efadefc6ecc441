"""The typer app, its shared options, and the error edge: every domain or usage error becomes one
line on stderr and exit code 2; stdout carries only results, so it pipes cleanly."""

from __future__ import annotations

import enum
import os
import sys
from typing import Annotated

import typer

from vitcost.errors import VitcostError
from vitcost.vocab import Convention, Dtype, Kernel

app = typer.Typer(
    name="vitcost",
    help="What will this attention design cost at 1024 px? Analytic FLOPs/MACs, params, attention and "
         "activation memory of pixel, ViT (DeiT, SAM/ViTDet, linear attention), Swin, Swin V2, MViTv2, NAT/DiNAT, "
         "MLP-Mixer, ConvNeXt and ResNet designs — presets or your own spec files — cross-checked against "
         "fvcore, torch's FlopCounterMode and measured forwards.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        from vitcost.version import __version__

        typer.echo(f"vitcost {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """What will this attention design cost at 1024 px?"""  # keeps `vitcost CMD` a group of one or many


# The module that defines each command. `main` imports only the one it runs: typer builds the options
# of every registered command on each call, which would tax `vitcost compare` with all the others'.
COMMANDS: dict[str, str] = {"compare": "compare", "models": "compare", "formula": "compare", "spec": "compare",
                            "check": "check", "profile": "profile", "report": "report",
                            "savings": "savings", "hardware": "hardware", "sweep": "sweep",
                            "calibrate": "calibrate"}


def load_commands(modules: list[str] | None = None) -> None:
    """Register the commands of `modules` (default: all) on `app`."""
    import importlib

    for module in sorted(set(COMMANDS.values()) if modules is None else set(modules)):
        importlib.import_module(f"vitcost.cli.{module}")


def _command_module(args: list[str]) -> str | None:
    first = next((a for a in args if not a.startswith("-")), None)
    return COMMANDS.get(first) if first else None


def choices(name: str, values: tuple[str, ...]) -> type[enum.Enum]:
    """A CLI choice type made from one of the core's lists of allowed values, so that the list is written
    once (in the layer that acts on it) and the CLI offers exactly it."""
    return enum.Enum(name, [(v, v) for v in values], type=str)  # type: ignore[return-value]


class Format(str, enum.Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


# Options that take several values after one flag (`--res 224 512 1024`); see `_spread_multi`.
MULTI_VALUE = {"--res", "-r", "--models", "-m", "--device-memory", "--set"}

ModelsOpt = Annotated[list[str] | None, typer.Option(
    "--models", "-m", help="Designs: preset names or aliases, family names (pixel, vit, swin, swinv2, mvit, "
    "mvit1, mixer, nat, convnext, resnet: every image preset of it; clip presets by name), spec files "
    "(.toml/.json, see `vitcost spec`), each optionally with field overrides, e.g. vit_b16:patch=14,depth=24 "
    "or swin_t:depths=2-2-18-2. Several may follow one flag. Default: the five archetypes igpt_l, vit_b16, "
    "swin_t, mvitv2_t, mixer_b16. See `vitcost models`.")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", "-s", help="Field overrides: MODEL:field=value,... changes that model (adding it when not listed); "
    "field=value,... changes every model. An unknown field, a wrong type or a value that changes nothing is an "
    "error. Several may follow one flag.")]
AttnOpt = Annotated[Kernel, typer.Option(
    "--attn", help="Attention kernel the memory figures assume: math materialises the scores; sdpa, flash and "
    "efficient are fused (scores stay on chip).")]
ResOpt = Annotated[list[str] | None, typer.Option(
    "--res", "-r", help="Input resolutions: N for NxN, HxW, or TxHxW for a clip of T frames (families with a time "
    "axis); several may follow one flag.")]
def _batch(value: int) -> int:
    """--batch, checked where it is parsed: a whole number of at least 1."""
    from vitcost.vocab import whole

    return whole(value, "batch")


BatchOpt = Annotated[int, typer.Option("--batch", "-b", help="Batch size.", callback=_batch)]
DtypeOpt = Annotated[Dtype, typer.Option("--dtype", help="Element type for memory figures (compare --mode train: "
                                                          "bf16/fp16 = mixed precision under autocast).")]
ConventionOpt = Annotated[Convention, typer.Option(
    "--convention", "-c", help="Counting convention: macs (papers' 'FLOPs'), flops (2 per MAC + "
    "non-matmul ops), fvcore (fvcore's handles, fused attention counted), torch (FlopCounterMode).")]
ModeOpt = Annotated[str, typer.Option(
    "--mode", help="inference (or infer): one forward; train: one training step (forward, loss, backward, "
    "optimizer step).")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.")]
HardwareOpt = Annotated[str | None, typer.Option(
    "--hardware", help="Device profile for the time figures: a name (`vitcost hardware` lists the built-in ones and "
    "those in the user profile directory) or a .toml profile file.")]
PeakOpt = Annotated[float | None, typer.Option(
    "--peak-tflops", help="Override the --hardware profile's matmul peak for --dtype, TFLOP/s; the other dtypes' "
    "peaks and the vector peak scale with it.")]
BandwidthOpt = Annotated[float | None, typer.Option(
    "--bandwidth", help="Override the --hardware profile's memory bandwidth, TB/s.")]
AmpOpt = Annotated[bool | None, typer.Option(
    "--amp/--no-amp", help="--amp: autocast at --dtype fp16/bf16 over fp32 weights and input, as timm's "
    "benchmark.py --amp runs it (no activation-memory figure then: its tensors have several widths). Default: "
    "pure 16-bit inference. With --mode train autocast is the default (--amp changes nothing) and --no-amp "
    "trains the model itself in 16 bits.")]
OutputOpt = Annotated[str | None, typer.Option(
    "--output", "-o", help="Write the output to this file instead of stdout (- for stdout). A file is replaced "
    "atomically, a symlink written through, a read-only file refused.")]


def hardware_option(name: str | None, peak_tflops: float | None, bandwidth: float | None, dtype: str):
    """The --hardware profile with --peak-tflops / --bandwidth (TB/s) applied; None without --hardware."""
    if name is None:
        if peak_tflops is not None or bandwidth is not None:
            raise VitcostError("--peak-tflops and --bandwidth override a --hardware profile: give --hardware too.")
        return None
    from vitcost.analytic.hardware import TB, get_hardware

    return get_hardware(name).override(peak_tflops, bandwidth * TB if bandwidth is not None else None, str(dtype))


def emit(text: str, output: str | None) -> None:
    """Print `text`, or write it to `output` (see `vitcost.cli.output`: atomic for regular files, through
    symlinks, directly to devices; "-" is stdout)."""
    from vitcost.cli.output import write_output

    write_output(output, (text if text.endswith("\n") else text + "\n").encode())


def emit_rows(rows: list[dict], fmt: Format, output: str | None) -> bool:
    """Emit `rows` when `fmt` is a machine-readable format (JSON, CSV) and say so; False for the human ones."""
    if fmt not in (Format.json, Format.csv):
        return False
    from vitcost.report import formats

    emit(formats.to_json(rows) if fmt is Format.json else formats.to_csv(rows), output)
    return True


def _looks_like_flag(token: str) -> bool:
    if not token.startswith("-") or token == "-":
        return False
    try:
        float(token)
        return False  # a negative number is a value (and gets a proper error later)
    except ValueError:
        return True


# Options that take several values on one command only (elsewhere they take one).
MULTI_VALUE_OF = {"report": {"--hardware"}, "sweep": {"--hardware", "--batch", "-b", "--dtype"}}


def _spread_multi(argv: list[str]) -> list[str]:
    """`--res 224 512` -> `--res 224 --res 512`, so several values may follow one flag."""
    multi = MULTI_VALUE | MULTI_VALUE_OF.get(_command_module(argv) or "", set())
    out: list[str] = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        out.append(tok)
        i += 1
        if tok == "--":
            out.extend(argv[i:])
            break
        if tok in multi:
            first = True
            while i < len(argv) and not _looks_like_flag(argv[i]):
                if not first:
                    out.append(tok)
                out.append(argv[i])
                first = False
                i += 1
    return out


def fail(message: str, code: int = 2) -> None:
    """One line on stderr, then exit."""
    sys.stderr.write(f"vitcost: error: {message}\n")
    raise SystemExit(code)


# Imported by the commands that build, count or run torch models; missing ones get one line, not a traceback.
OPTIONAL_DEPENDENCIES = {"torch", "fvcore", "psutil", "iopath"}


def _click_exceptions():
    """click's exception classes: vendored inside typer since 0.22, the click package before."""
    try:
        from typer._click import exceptions
    except ImportError:  # older typer, built on click
        from click import exceptions
    return exceptions


def main(argv: list[str] | None = None) -> None:
    click = _click_exceptions()
    exits = tuple({typer.Exit, getattr(click, "Exit", typer.Exit)})
    no_args_help = getattr(click, "NoArgsIsHelpError", ())  # click >= 8.2
    args = _spread_multi(list(sys.argv[1:] if argv is None else argv))
    module = _command_module(args)
    try:
        load_commands([module] if module else None)  # all of them for `--help` or an unknown command
        rv = app(args=args, prog_name="vitcost", standalone_mode=False)
    except exits as e:
        raise SystemExit(e.exit_code) from None
    except no_args_help:  # bare `vitcost`: the help was printed
        raise SystemExit(0) from None
    except click.UsageError as e:
        message = e.format_message().strip().replace("\n", " ")
        hint = f" (see `{e.ctx.command_path} --help`)" if e.ctx is not None else ""
        fail(message + hint)
    except VitcostError as e:
        fail(str(e))
    except ModuleNotFoundError as e:
        if e.name not in OPTIONAL_DEPENDENCIES:
            raise
        fail(f"this command needs {e.name}, which is not installed: pip install 'vitcost[torch]'.")
    except (typer.Abort, KeyboardInterrupt):
        _interrupted()
    except BrokenPipeError:
        _broken_pipe()
    if rv == EXIT_INTERRUPTED:  # typer turns Ctrl-C into Exit(130) without a word
        _interrupted()
    raise SystemExit(rv if isinstance(rv, int) else 0)


EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 1  # as click exits when stdout's reader went away mid-write


def _interrupted() -> None:
    sys.stderr.write("vitcost: interrupted\n")
    raise SystemExit(EXIT_INTERRUPTED) from None


def _broken_pipe() -> None:
    """The reader of stdout went away (`vitcost formula X | head -1`): leave quietly. stdout is pointed
    at /dev/null so that Python's own flush at exit does not raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(EXIT_BROKEN_PIPE) from None
