"""vitcost's training-step time model (`vitcost.analytic.train_time`) against timm's published training
benchmarks on the RTX 3090 (benchmarks/data/timm_gpu_train.csv: torch 1.12, eager, fp16 autocast over fp32
weights, NCHW; zero_grad in place, forward + cross-entropy, backward, SGD with Nesterov momentum).

    python benchmarks/bench_train_time_vs_timm_gpu.py [--rows]

Nothing is fitted on these rows: the device is the RTX 3090 profile (`vitcost/devices/rtx3090.toml`),
whose per-class efficiencies were fitted on timm's inference rows of torch 2.4
(benchmarks/bench_time_vs_timm_gpu.py); every row here is a test. timm 0.6 on torch 1.12 had no
scaled_dot_product_attention: every attention runs the math path (explicit products and softmax), so
the designs are estimated with the math kernel.

Two figures per row: the step time predicted / measured, and the step's share of the forward,
(predicted step / predicted forward) / (measured step / measured forward, per image, from the same
run's inference rows): the second is free of the efficiencies' carry-over from torch 2.4 to 1.12, and
tests the backward and update alone. Prints per row, then per family and overall the median ratio and
the fractions within 10% and 25%.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

from bench_time_vs_timm_gpu import summary as bench_summary

from vitcost import estimate
from vitcost.analytic.hardware import get_hardware
from vitcost.analytic.time_model import forward_time, time_device
from vitcost.analytic.train_time import train_step_time
from vitcost.vocab import Optimizer

DATA = Path(__file__).parent / "data" / "timm_gpu_train.csv"
# timm's benchmark on torch 1.12: gradients zeroed in place, for-loop (per tensor) optimizer kernels
RUNTIME = {"optimizer": Optimizer.sgd, "set_to_none": False, "foreach": False}


def load_rows() -> list[dict]:
    with DATA.open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def summary(label: str, ratios: list[float]) -> str:
    return f"  {label:<10} {bench_summary(ratios)}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", action="store_true", help="print every row")
    args = ap.parse_args(argv)
    device = time_device(get_hardware("rtx3090"))
    step_ratio: dict[str, list[float]] = defaultdict(list)
    share_ratio: dict[str, list[float]] = defaultdict(list)
    lines = []
    for r in load_rows():
        size, batch = int(r["img_size"]), int(r["train_batch"])
        est = estimate(r["design"], size, batch, "fp16", "math")
        step = train_step_time(est, device, **RUNTIME)
        measured = float(r["train_step_time_ms"]) / 1e3
        ratio = step / measured
        step_ratio[r["family"]].append(ratio)
        share = ""
        if r["infer_step_time_ms"]:
            fwd = forward_time(est, device)
            measured_share = (measured / batch) / (float(r["infer_step_time_ms"]) / 1e3 / int(r["infer_batch"]))
            s = (step / fwd) / measured_share
            share_ratio[r["family"]].append(s)
            share = f"  step/forward {step / fwd:4.2f} vs {measured_share:4.2f} ({s:4.2f})"
        lines.append(f"  {r['timm_model']:<36} {size:>4} {batch:>4}  measured {measured * 1e3:8.1f} ms  "
                     f"predicted {step * 1e3:8.1f} ms  ratio {ratio:4.2f}{share}")
    print(f"training step, RTX 3090 (torch 1.12, fp16 autocast, SGD), {sum(map(len, step_ratio.values()))} rows; "
          f"device: {device.name}, efficiencies {device.source}")
    if args.rows:
        print("\n".join(lines))
    print("\npredicted / measured step time:")
    for fam, ratios in sorted(step_ratio.items()):
        print(summary(fam, ratios))
    print(summary("all", [x for v in step_ratio.values() for x in v]))
    print("\nstep's share of the forward, predicted / measured:")
    for fam, ratios in sorted(share_ratio.items()):
        print(summary(fam, ratios))
    print(summary("all", [x for v in share_ratio.values() for x in v]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
