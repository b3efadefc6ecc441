"""The per-op time model on this CPU after `vitcost calibrate`, against measured forwards and training steps.

Every family at two sizes and two batches: the reference nets (vitcost/nets, eager fp32, math-path
attention), and with --timm timm's own models run in the separate timm virtualenv (a subprocess, as
benchmarks/measure_timm_designs.py does: timm is never a dependency of vitcost). Each row is timed
(median of repeats after a warm-up, torch's thread count fixed) and predicted with the calibrated profile:
the forward by `roofline.forward_time` (the per-op model: `time_model`), the training step (zero_grad,
forward, cross-entropy, backward, AdamW step) by `train_time.step_time`. It prints predicted / measured
per row, then per family and overall the median ratio and the fractions within 10% and 25%, with the
machine's load average at the start and the end. With one thread (the default) calibrate and the runs
read the thread's CPU time (`timing.cpu_clock`): on a machine shared with other processes the wall
clock measures the scheduler (two threads on two busy cores wait a scheduler tick at every parallel
region), the thread's CPU time what the run costs on an idle core.

    PYTHONPATH=$PWD python benchmarks/bench_time_vs_measured.py [--hardware FILE|NAME] [--threads 1]
        [--timm] [--quick] [-o reports/time_vs_measured.txt]

Without --hardware it first runs `vitcost calibrate` at --threads into a temporary profile.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMM_PYTHON = "/work/timm-venv/bin/python"

# family -> (design, the two sizes); every size runs at batches BATCHES
ROWS: dict[str, tuple[str, tuple[int, int]]] = {
    "pixel": ("igpt_s:depth=2", (16, 24)),
    "vit": ("vit_ti16", (112, 224)),
    "swin": ("swin_t", (112, 224)),
    "swinv2": ("swinv2_t", (128, 192)),
    "mvit": ("mvitv2_t", (112, 224)),
    "nat": ("nat_mini", (112, 224)),
    "mixer": ("mixer_s16", (112, 224)),
    "convnext": ("convnext_tiny", (112, 224)),
    "resnet": ("resnet50", (112, 224)),
}
BATCHES = (1, 2)
# timm's models beside the vitcost design they are: (timm name, vitcost design, family)
TIMM = [("vit_tiny_patch16_224", "vit_ti16", "vit"), ("swin_tiny_patch4_window7_224", "swin_t", "swin"),
        ("convnext_tiny", "convnext_tiny", "convnext"), ("resnet50", "resnet50", "resnet"),
        ("mixer_s16_224", "mixer_s16", "mixer")]
TIMM_SIZES = (224,)


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def calibrate(threads: int, path: Path) -> None:
    cmd = [sys.executable, "-m", "vitcost", "calibrate", "--threads", str(threads), "-o", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode:
        raise SystemExit(f"calibrate failed: {out.stderr.strip()}")
    sys.stderr.write(out.stdout + out.stderr)


def measure_net(design: str, res: int, batch: int, threads: int, repeats: int, train: bool) -> float:
    """Median seconds of a forward (or a training step) of vitcost's reference net."""
    import torch

    from vitcost.measure.timing import time_forward
    from vitcost.measure.train_memory import time_train_step
    from vitcost.nets import build

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    net = build(design, res, attn="math", device="cpu").eval()
    x = torch.randn(batch, 3, res, res)
    if train:
        timing, _ = time_train_step(net, x, optimizer="adamw", warmup=1, repeats=max(repeats - 2, 1))
    else:
        timing = time_forward(net, x, warmup=1, repeats=repeats, threads=threads)
    return timing.median_s


TIMM_SCRIPT = r"""
import json, sys, torch, timm
from vitcost.measure.timing import time_forward
from vitcost.measure.train_memory import time_train_step
name, res, batch, threads, repeats, train = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \
    int(sys.argv[5]), sys.argv[6] == "1"
torch.manual_seed(0)
torch.set_num_threads(threads)
net = timm.create_model(name, img_size=res).eval() if "resnet" not in name and "convnext" not in name \
    else timm.create_model(name).eval()
x = torch.randn(batch, 3, res, res)
if train:
    t, _ = time_train_step(net, x, optimizer="adamw", warmup=1, repeats=max(repeats - 2, 1))
else:
    t = time_forward(net, x, warmup=1, repeats=repeats, threads=threads)
print(json.dumps({"median_s": t.median_s}))
"""


def measure_timm(name: str, res: int, batch: int, threads: int, repeats: int, train: bool) -> float:
    cmd = [TIMM_PYTHON, "-c", TIMM_SCRIPT, name, str(res), str(batch), str(threads), str(repeats),
           "1" if train else "0"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1])
    return json.loads(out.stdout.strip().splitlines()[-1])["median_s"]


def predict(design: str, res: int, batch: int, hw, train: bool) -> tuple[float, str]:
    from vitcost import estimate
    from vitcost.analytic.roofline import forward_time
    from vitcost.analytic.train_time import step_time
    from vitcost.vocab import Optimizer

    est = estimate(design, res, batch=batch, dtype="fp32")
    if train:
        return step_time(est, hw, None, Optimizer.adamw, amp=False)
    ft = forward_time(est, hw)
    return ft["time_s"], ft["time_model"]


def summary(ratios: list[float]) -> str:
    if not ratios:
        return "no rows"
    med = statistics.median(ratios)
    w10 = sum(abs(r - 1) <= 0.10 for r in ratios) / len(ratios)
    w25 = sum(abs(r - 1) <= 0.25 for r in ratios) / len(ratios)
    return f"{len(ratios):3d} rows  median {med:5.2f}  within 10%: {w10:4.0%}  within 25%: {w25:4.0%}"


def plan(args) -> list[tuple[str, str, str, int, int]]:
    """(source, family, design or timm name, res, batch) of every row."""
    rows = []
    for fam, (design, sizes) in ROWS.items():
        for res in sizes[:1] if args.quick else sizes:
            rows += [("vitcost", fam, design, res, b) for b in (BATCHES[:1] if args.quick else BATCHES)]
    if args.timm:
        rows += [("timm", fam, name, res, b) for name, _, fam in TIMM for res in TIMM_SIZES for b in BATCHES]
    return rows


def run(args, hw, lines: list[str]) -> dict[str, dict[str, list[float]]]:
    ratios: dict[str, dict[str, list[float]]] = {"forward": defaultdict(list), "train": defaultdict(list)}
    design_of = {name: design for name, design, _ in TIMM}
    head = f"{'mode':7s} {'source':7s} {'family':8s} {'model':30s} {'res':>4s} {'b':>2s} " \
           f"{'predicted':>10s} {'measured':>10s} {'ratio':>6s}  model"
    lines += [head, "-" * len(head)]
    for mode in ("forward", "train"):
        for source, fam, name, res, batch in plan(args):
            design = design_of.get(name, name) if source == "timm" else name
            measure = measure_timm if source == "timm" else measure_net
            try:
                measured = measure(name, res, batch, args.threads, args.repeats, mode == "train")
            except Exception as err:  # noqa: BLE001  (a row that cannot run is reported, not fatal)
                lines.append(f"{mode:7s} {source:7s} {fam:8s} {name:30s} {res:4d} {batch:2d}  failed: {err}")
                continue
            predicted, how = predict(design, res, batch, hw, mode == "train")
            r = predicted / measured
            ratios[mode][fam].append(r)
            lines.append(f"{mode:7s} {source:7s} {fam:8s} {name:30s} {res:4d} {batch:2d} {predicted * 1e3:8.1f}ms "
                         f"{measured * 1e3:8.1f}ms {r:6.2f}  {how}")
            print(lines[-1], file=sys.stderr, flush=True)
    return ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hardware", help="a calibrated profile (name or file); default: calibrate now")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--timm", action="store_true", help="also timm's models, in the timm virtualenv")
    ap.add_argument("--quick", action="store_true", help="one size and one batch per family")
    ap.add_argument("-o", "--output")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from vitcost.analytic.hardware import get_hardware

    t0 = time.time()
    clock = "the thread's CPU time" if args.threads == 1 else "the wall clock"
    lines = [f"bench_time_vs_measured: this CPU, eager fp32, {args.threads} thread(s), timed by {clock}; "
             f"load average at start: {load()}"]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.hardware
        if path is None:
            path = str(Path(tmp) / "calibrated.toml")
            calibrate(args.threads, Path(path))
        hw = get_hardware(path)
    cal = hw.calibration
    lines.append(f"profile: {hw.name}; {cal.get('date', '?')}, torch {cal.get('torch', '?')}, "
                 f"{cal.get('threads', '?')} thread(s), median spread of its repeats {cal.get('median_spread', '?')}")
    lines.append("ratio = predicted / measured (median of repeats); model: which time model gave the prediction")
    lines.append("")
    ratios = run(args, hw, lines)
    lines.append("")
    for mode in ("forward", "train"):
        lines.append(f"{mode}:")
        for fam, rs in ratios[mode].items():
            lines.append(f"  {fam:9s} {summary(rs)}")
        lines.append(f"  {'overall':9s} {summary([r for rs in ratios[mode].values() for r in rs])}")
    lines.append("")
    lines.append(f"load average at end: {load()}; bench wall time {time.time() - t0:.0f} s")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.output:
        Path(args.output).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
