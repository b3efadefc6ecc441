"""Golden figures: every number the analytic layer prints, for every preset, frozen as a regression guard.

They hold the analytic layer to the same numbers while its code is reorganised. They are not evidence
that a number is right: that is what the independent checks (hand derivations, papers, fvcore,
FlopCounterMode, measured memory) in the rest of the suite are for.

    python tests/golden/make_golden.py            # write tests/golden/figures.json.gz from this code
    python tests/golden/make_golden.py --check    # recompute every record and compare (exit 1 on a difference)
    python tests/golden/make_golden.py --add M..  # record new presets M.. (refused for a preset already held)

Per preset, at its published size and at one off the stage strides (so windows and pools pad), batch
1 and 2: params and the cost in every convention; the forward's memory at both levels (live tensors and
allocator, CPU with 1 and 2 threads, CUDA) for every dtype and attention kernel; the training step's
cost per kernel in every convention and phase; the training step's memory for every dtype, optimizer,
checkpoint setting and device (math and flash kernels; the other kernels and pure 16-bit training at
AdamW without checkpointing); the roofline time on every hardware preset; and, per preset at batch 1,
the inference and training memory walls on an 80 GB device.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIGURES = HERE / "figures.json.gz"

DTYPES = ("fp32", "fp16", "bf16")
KERNELS = ("math", "sdpa", "flash", "efficient")
CONVENTIONS = ("macs", "flops", "fvcore", "torch")
PHASES = ("forward", "backward", "step")
OPTIMIZERS = ("none", "sgd", "adamw")
CHECKPOINTS = (None, "block", 2)
DEVICES = ("cpu", "cuda")
HARDWARE = ("h100-sxm", "h100-pcie", "h200", "a100")
WALL_BUDGET = 80 * 10**9


def sizes(res: int) -> tuple[int, int]:
    """The preset's size and one off the stage strides (pixel presets: a smaller one)."""
    return (res, 20) if res <= 32 else (res, res + 40)


def presets() -> list[str]:
    """The image presets, by name. Clip presets (`Preset.frames`: sizes TxHxW) are held by tests/test_video.py."""
    from vitcost.zoo import PRESETS

    return sorted(name for name, p in PRESETS.items() if p.frames is None)


def configs() -> Iterator[tuple[str, int, int]]:
    from vitcost.zoo import PRESETS

    for name in presets():
        for res in sizes(PRESETS[name].res):
            for batch in (1, 2):
                yield name, res, batch


def _mem(pred: Any) -> list[Any]:
    return [pred.weights_bytes, pred.input_bytes, pred.activation_peak_bytes, pred.peak_at, pred.stored_score_bytes,
            pred.stored_score_peak_bytes, pred.allocator_peak_bytes, pred.allocator_peak_at]


def _train_mem(m: Any) -> list[Any]:
    return [*m.parts().values(), m.peak_at, m.recompute_macs, m.precision]


def record(name: str, res: int, batch: int) -> dict[str, Any]:
    """Every figure of one preset at one size and batch, keyed by what produced it."""
    from vitcost import estimate
    from vitcost.analytic.hardware import get_hardware
    from vitcost.analytic.memory import predict_memory
    from vitcost.analytic.roofline import roofline
    from vitcost.analytic.train_memory import train_memory
    from vitcost.analytic.training import train_cost
    from vitcost.vocab import Kernel, Optimizer, parse_checkpoint

    out: dict[str, Any] = {}
    base = estimate(name, res, batch)
    out["params"] = base.params
    out["count"] = [base.count(c) for c in CONVENTIONS]
    out["tokens"] = base.tokens
    for dtype in DTYPES:
        for kernel in KERNELS:
            e = estimate(name, res, batch, dtype, kernel)
            out[f"fwd {dtype} {kernel}"] = [e.attn_matrix_elems, e.attn_matrix_bytes, e.attn_matrix_peak_bytes,
                                           e.activation_peak_bytes]
            for device, threads in (("cpu", 1), ("cpu", 2), ("cuda", 1)):
                out[f"mem {dtype} {kernel} {device} {threads}"] = _mem(predict_memory(e, None, device, threads))
            if dtype != "fp16":
                for hw in HARDWARE:
                    out[f"roofline {dtype} {kernel} {hw}"] = repr(roofline(e, get_hardware(hw)).time_s)
    for kernel in KERNELS:
        tc = train_cost(base, Kernel(kernel))
        out[f"train_cost {kernel}"] = [tc.count(c, p) for c in CONVENTIONS if c != "fvcore" for p in PHASES]
    for dtype in DTYPES:
        for kernel in KERNELS:
            e = estimate(name, res, batch, dtype, kernel)
            grid = [(o, c, d) for o in OPTIMIZERS for c in CHECKPOINTS for d in DEVICES] \
                if kernel in ("math", "flash") else [("adamw", None, d) for d in DEVICES]
            for opt, ckpt, device in grid:
                key = f"train {dtype} {kernel} {opt} {ckpt} {device}"
                out[key] = _guard(lambda: _train_mem(  # noqa: B023
                    train_memory(e, Optimizer(opt), parse_checkpoint(ckpt), None, device)))  # noqa: B023
            if dtype != "fp32":
                for device in DEVICES:
                    out[f"train {dtype} {kernel} adamw None {device} half"] = _guard(
                        lambda: _train_mem(train_memory(e, Optimizer.adamw, 0, None, device, precision="half")))  # noqa: B023
    return out


def walls(name: str) -> dict[str, Any]:
    from vitcost.analytic.hardware import get_hardware
    from vitcost.analytic.memory_wall import memory_wall, train_memory_wall
    from vitcost.analytic.savings import savings
    from vitcost.design import parse_design
    from vitcost.vocab import Dtype, Kernel, Optimizer
    from vitcost.zoo import PRESETS

    out: dict[str, Any] = {}
    design = parse_design(name)
    for dtype, kernel in ((Dtype.fp32, Kernel.math), (Dtype.bf16, Kernel.flash)):
        w = _guard(lambda: memory_wall(design, WALL_BUDGET, 1, dtype, kernel))  # noqa: B023
        out[f"wall {dtype.value} {kernel.value}"] = w if isinstance(w, str) else [w.res, w.total_bytes, w.next_res,
                                                                        w.next_total_bytes, w.limited_by]
        t = _guard(lambda: train_memory_wall(design, WALL_BUDGET, dtype=dtype, attn=kernel,  # noqa: B023
                                             optimizer=Optimizer.adamw, checkpoint=1))
        out[f"train_wall {dtype.value} {kernel.value}"] = t if isinstance(t, str) else [
            t.value, t.step_peak, t.next_value, t.next_step_peak, t.limited_by]
    try:
        r = PRESETS[name].res
        rows, skipped = savings(design, (r, r), 1, Dtype.fp32, Kernel.math, Optimizer.adamw, get_hardware("h100-sxm"))
        out["savings"] = [[r.technique, r.memory_bytes, r.flops, repr(r.time_s)] for r in rows] + skipped
    except Exception as err:  # a known defect is recorded as such, so that its fix shows as a change
        out["savings"] = f"crash: {type(err).__name__}"
    return out


def _guard(fn: Any) -> Any:
    """The figure, or the error's message when the library refuses (the refusal is a figure too)."""
    from vitcost.errors import VitcostError

    try:
        return fn()
    except VitcostError as err:
        return f"error: {err}"


def compute(only: set[str] | None = None) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    for name, res, batch in configs():
        if only is None or name in only:
            figures[f"{name} {res} {batch}"] = record(name, res, batch)
    for name in presets():
        if only is None or name in only:
            figures[f"{name} walls"] = walls(name)
    return figures


def load() -> dict[str, Any]:
    with gzip.open(FIGURES, "rt") as f:
        return json.load(f)


def diff(expected: dict[str, Any], got: dict[str, Any], allowed: Any = None) -> list[str]:
    """The figures that differ, one line each; `allowed(record key, figure key)` says which may move."""
    lines = []
    for key, figures in got.items():
        want = expected.get(key)
        if want is None:
            lines.append(f"{key}: not in the golden file")
            continue
        for fkey, value in figures.items():
            if json.loads(json.dumps(value)) != want.get(fkey) and not (allowed and allowed(key, fkey)):
                lines.append(f"{key} / {fkey}: golden {want.get(fkey)!r}, now {value!r}")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed figures")
    parser.add_argument("--models", nargs="*", help="only these presets")
    parser.add_argument("--add", nargs="+", metavar="PRESET", help="record these new presets, keeping every other "
                        "record as it is")
    args = parser.parse_args()
    only = set(args.add or args.models or ()) or None
    figures = compute(only)
    if args.add:
        held = load()
        known = {key.split(" ", 1)[0] for key in held}
        if only & known:
            parser.error(f"already recorded: {', '.join(sorted(only & known))} (use --check)")
        figures = {**held, **figures}
    elif args.check:
        lines = diff(load(), figures)
        print("\n".join(lines[:50]) or f"golden: {sum(len(v) for v in figures.values())} figures equal")
        return 1 if lines else 0
    with gzip.open(FIGURES, "wt", compresslevel=9) as f:
        json.dump(figures, f, sort_keys=True, separators=(",", ":"))
    print(f"wrote {FIGURES.relative_to(Path.cwd()) if FIGURES.is_relative_to(Path.cwd()) else FIGURES}: "
          f"{len(figures)} records, {sum(len(v) for v in figures.values())} figures")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))
    sys.exit(main())
