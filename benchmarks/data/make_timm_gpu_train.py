"""Write benchmarks/data/timm_gpu_train.csv: timm's published GPU training-step benchmarks on the RTX 3090
(pytorch-image-models, results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv: torch 1.12, timm
0.6.x code, eager, fp16 autocast over fp32 weights, NCHW) for the models that map to a vitcost design,
beside the same models' inference rows from the same run (benchmark-infer-amp-nchw-pt112-cu113-rtx3090.csv).

    python benchmarks/data/make_timm_gpu_train.py GIT_DIR [-o benchmarks/data/timm_gpu_train.csv]

How timm's benchmark.py times a training step (TrainBenchmarkRunner): `optimizer.zero_grad()` (torch
1.12: gradients zeroed in place, not set to None), the forward and a cross-entropy loss under autocast,
`loss.backward()` (no gradient scaler), `optimizer.step()` with timm's `sgd` (momentum 0.9, Nesterov, no
weight decay); train_step_time is the mean ms per step. The design map is make_timm_gpu_infer's; a row is
kept only when the design's parameter count equals timm's `param_count` to its rounding (0.01 M), and
the inference row only when its fvcore GMACs equal timm's `infer_gmacs` too. Only figures are kept.
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_timm_gpu_infer import DESIGNS, DIFFERENT_GRAPH, REPO, _agrees, write_rows  # noqa: E402

COMMIT = "c865028c34fc05cc7deea8e753b30d8cd1952591"  # the last commit holding both pt112 files
TRAIN = "results/benchmark-train-amp-nchw-pt112-cu113-rtx3090.csv"
INFER = "results/benchmark-infer-amp-nchw-pt112-cu113-rtx3090.csv"
COLUMNS = ("gpu", "torch", "timm_model", "img_size", "train_batch", "train_step_time_ms", "infer_batch",
           "infer_step_time_ms", "design", "family")


def _read(git_dir: Path, path: str) -> dict[str, dict[str, str]]:
    text = subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{COMMIT}:{path}"], check=True,
                          capture_output=True, text=True).stdout
    return {r["model"]: r for r in csv.DictReader(io.StringIO(text))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("git_dir", type=Path)
    ap.add_argument("-o", "--out", type=Path, default=Path(__file__).with_name("timm_gpu_train.csv"))
    args = ap.parse_args(argv)
    from vitcost import estimate

    train, infer = _read(args.git_dir, TRAIN), _read(args.git_dir, INFER)
    rows, left_out = [], []
    for model, r in train.items():
        design = DESIGNS.get(model)
        if design is None or model in DIFFERENT_GRAPH:
            continue
        size = int(r["train_img_size"])
        est = estimate(design, res=size)
        params_m, gmacs = est.params / 1e6, est.count("fvcore") / 1e9
        if not _agrees(params_m, float(r["param_count"])):
            left_out.append(f"{model} {size}: {design} has {params_m:.3f} M, timm {r['param_count']} M")
            continue
        i = infer.get(model)
        inf = (i["infer_batch_size"], i["infer_step_time"]) if i and int(i["infer_img_size"]) == size \
            and _agrees(gmacs, float(i["infer_gmacs"])) else ("", "")
        rows.append(("rtx3090", "1.12", model, size, int(r["train_batch_size"]), r["train_step_time"], *inf,
                     design, est.family))
    out = io.StringIO()
    out.write(f"# timm's published GPU training-step benchmarks (RTX 3090, torch 1.12), the rows that map to a\n"
              f"# vitcost design, with the same models' inference rows from the same run.\n"
              f"# Source: github.com/{REPO} at commit {COMMIT}: {TRAIN}, {INFER}\n"
              "# How they ran: benchmark.py --amp (fp16 autocast over fp32 weights), eager, NCHW; a step is\n"
              "# zero_grad (in place), forward + cross-entropy, backward, SGD (momentum 0.9, Nesterov);\n"
              "# *_step_time_ms = mean ms per batch. design: params equal to timm's to 0.01 M.\n"
              f"# Written by benchmarks/data/make_timm_gpu_train.py; {len(left_out)} mapped rows left out.\n")
    write_rows(out, COLUMNS, rows, args.out, left_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
