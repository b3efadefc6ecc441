"""Predicted vs measured forward memory and time, one real preset per family, and the cost of solving
the memory wall.

For each family a preset runs at a small resolution through `vitcost profile`'s engine, with the
math and the fused (SDPA) attention kernel. Printed per row: measured / predicted peak activation
memory (target: within 10%), whether the measured attention-score bytes equal the prediction, and
measured / roofline time with the achieved throughput. On the CPU the roofline uses the indicative
`cpu` preset, so its time ratio says how far this machine is from those figures, not how good the
model is. Last, the wall-clock time of `memory_wall` per preset (it solves polynomials; no forwards).

    python benchmarks/bench_profile.py [--device cpu|cuda] [--threads 2] [--repeats 3] [--dtype fp32]
"""

from __future__ import annotations

import argparse
import sys
import time

from vitcost.analytic.memory_wall import memory_wall
from vitcost.measure.profile import ProfileConfig, ProfileSession

# (preset, resolution): small enough for a shared CPU, real architectures.
CPU_CASES = [("igpt_s", 32), ("vit_ti16", 224), ("swin_t", 224), ("mvitv2_t", 224), ("mixer_s16", 224)]
GPU_CASES = [("igpt_s", 64), ("vit_b16", 512), ("swin_t", 512), ("mvitv2_t", 512), ("mixer_b16", 512)]
MEM_TARGET = 0.10


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "fp16", "bf16"])
    args = parser.parse_args()
    cases = CPU_CASES if args.device == "cpu" else GPU_CASES
    print(f"{'model':10s} {'res':>5s} {'attn':5s} {'kernel':12s} {'mem meas/pred':>13s} {'scores equal':>12s} "
          f"{'time meas/pred':>14s} {'GFLOP/s':>9s}")
    worst = 0.0
    for attn in ("math", "sdpa"):
        for model, res in cases:
            cfg = ProfileConfig(models=[model], res=[res], device=args.device, dtype=args.dtype, attn=attn,
                                repeats=args.repeats, warmup=1, threads=args.threads)
            (row,) = list(ProfileSession(cfg).rows())
            if row["status"] != "ok":
                print(f"{model:10s} {res:>5d} {attn:5s} {row['status']}: {row['note']}")
                continue
            worst = max(worst, abs(row["mem_ratio"] - 1))
            same = row["measured_attn_bytes"] == row["predicted_attn_bytes"]
            print(f"{model:10s} {res:>5d} {attn:5s} {row['attn_backend']:12s} {row['mem_ratio']:13.3f} "
                  f"{'yes' if same else 'NO':>12s} {row['time_ratio']:14.2f} {row['achieved_tflops'] * 1e3:9.1f}")
    verdict = "met" if worst <= MEM_TARGET else "NOT met"
    print(f"worst memory deviation: {worst:.1%} (target <= {MEM_TARGET:.0%}: {verdict})")
    print("\nmemory wall (80 GiB, bf16, batch 1, math), solved:")
    from vitcost.design import parse_design
    from vitcost.vocab import Dtype, Kernel

    for model in ("igpt_l", "vit_b16", "swin_t", "mvitv2_t", "mixer_b16"):
        t0 = time.perf_counter()
        w = memory_wall(parse_design(model), 80 * 2**30, 1, Dtype.bf16, Kernel.math)
        ms = (time.perf_counter() - t0) * 1e3
        print(f"  {model:10s} largest input {w.res:>6} px  (limited by {w.limited_by}; solved in {ms:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
