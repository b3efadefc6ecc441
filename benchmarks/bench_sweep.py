"""The cost of `vitcost sweep`: per design against a library estimate of the same design, and a whole
sweep of about 100,000 designs on this machine (wall time and peak memory of the process tree).

1. Per design, in one run: --sample N designs of the grid below, costed by the sweep (`run` of a plan,
   rows, limits and front included), then the same designs (their labels, sizes, batches, dtypes) through
   the library: `vitcost.estimate(...)` alone (the walk; its memory figures are computed when read), and
   `estimate_row(estimate(...), hardware)` (every figure an inference row has: params, counts, attention and
   activation memory, roofline time). Target: the sweep within 2x of the estimate that gives the same
   figures, `estimate_row(estimate(...), hardware)`; the ratio to the bare walk is printed beside it. Inference and
   --mode train, each with --hardware; a training row also models the step (backward, optimizer, memory
   over the step), which no `estimate` does, so its ratio says what that costs.
2. The whole grid, 99,000 ViT designs (depth x width x heads x patch x MLP ratio x resolution x batch)
   through the command line with --jobs, without and with --hardware, objectives on the front only; memory sampled
   every 50 ms over the command and its workers. Target: under two minutes and 1 GiB on two cores.
   A training sweep is not run to 100,000 designs; its per-design cost (part 1) says what one would take.

    python benchmarks/bench_sweep.py [--sample 300] [--jobs 2] [--skip-full]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

VARY = ["depth=4..24:2", "dim=192..1536:96", "heads=6,12,24", "patch=8,14,16,32", "mlp_ratio=3,4"]
RES = [224, 384, 512, 768, 1024]
BATCH = [1, 8, 32, 64, 128]
FULL_TARGET_S = 120.0
FULL_TARGET_BYTES = 2**30
PER_DESIGN_TARGET = 2.0


def per_design(sample: int, train: bool) -> None:
    import vitcost
    from vitcost.analytic.hardware import get_hardware
    from vitcost.report.rows import estimate_row
    from vitcost.report.sweep import parse_plan, run

    hw = get_hardware("h100-sxm")
    opts = {"res": RES, "batch": BATCH, "dtype": "bf16", "hardware": hw, "sample": sample, "seed": 1}
    if train:
        opts.update(mode="train", res=[224, 384], batch=[8])
    p = parse_plan("vit_b16", VARY, **opts)
    run(parse_plan("vit_b16", VARY, **{**opts, "sample": 20}))  # warm the imports
    sweep, est, est_row = [], [], []
    for _ in range(3):  # interleaved rounds, the least of each: a shared machine's noise hits all three alike
        t0 = time.perf_counter()
        result = run(p, all_rows=True)
        sweep.append((time.perf_counter() - t0) / result.evaluated)
        rows = result.rows
        t0 = time.perf_counter()
        for r in rows:
            vitcost.estimate(r["label"], r["res"], r["batch"], r["dtype"])
        est.append((time.perf_counter() - t0) / len(rows))
        t0 = time.perf_counter()
        for r in rows:
            estimate_row(vitcost.estimate(r["label"], r["res"], r["batch"], r["dtype"]), hw)
        est_row.append((time.perf_counter() - t0) / len(rows))
    sweep_s = min(sweep)
    e, er = min(est), min(est_row)
    what = "train step" if train else "inference"
    print(f"{what:10s}: {result.evaluated} designs ({len(rows)} valid); per design: sweep {sweep_s * 1e3:.2f} ms, "
          f"estimate() {e * 1e3:.2f} ms, estimate_row(hw) {er * 1e3:.2f} ms")
    ratio = sweep_s / er
    if train:  # the step model (backward, optimizer, memory over the step) is what a training row adds
        print(f"{'':10s}  sweep / estimate_row(hw) = {ratio:.2f}x (a training row also models the step, which "
              f"no estimate does); 100,000 such designs: {sweep_s * 1e5:.0f} s on one process")
        return
    print(f"{'':10s}  sweep / estimate_row(hw) = {ratio:.2f}x (the same figures; target <= {PER_DESIGN_TARGET}x: "
          f"{'met' if ratio <= PER_DESIGN_TARGET else 'NOT met'}); sweep / estimate() = {sweep_s / e:.2f}x; "
          f"100,000 such designs: {sweep_s * 1e5:.0f} s on one process")


def full(jobs: int, hardware: bool) -> None:
    import psutil

    cmd = [sys.executable, "-m", "vitcost", "sweep", "vit_b16"]
    for v in VARY:
        cmd += ["--vary", v]
    cmd += ["-r", *map(str, RES), "-b", *map(str, BATCH), "--dtype", "bf16", "--jobs", str(jobs), "-f", "json"]
    cmd += ["--pareto", "macs,activation_peak,time" if hardware else "macs,activation_peak,max:params"]
    if hardware:
        cmd += ["--hardware", "h100-sxm"]
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "front.json")
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd + ["-o", out], stderr=subprocess.PIPE)
        ps = psutil.Process(proc.pid)
        peak, cpu = 0, {}
        while proc.poll() is None:
            try:
                tree = [ps, *ps.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
                for p in tree:
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system
            except psutil.Error:
                pass
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        err = proc.stderr.read().decode()
        if proc.returncode:
            raise SystemExit(f"sweep failed: {err}")
        import json

        data = json.load(open(out))
    ok = wall < FULL_TARGET_S and peak < FULL_TARGET_BYTES
    busy = sum(cpu.values())
    print(f"full sweep, --jobs {jobs}{', --hardware h100-sxm' if hardware else ''}: {data['evaluated']:,} designs in "
          f"{wall:.1f} s wall ({wall / data['evaluated'] * 1e3:.2f} ms each), {busy:.1f} CPU s over all processes "
          f"(on {jobs} idle cores: ~{busy / jobs:.0f} s), peak RSS {peak / 2**20:.0f} MiB (all processes), "
          f"{len(data['rows'])} on the front (target < {FULL_TARGET_S:.0f} s and < 1 GiB: "
          f"{'met' if ok else 'NOT met'})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--skip-full", action="store_true")
    args = parser.parse_args()
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (the machine is shared)")
    print(f"grid: vit_b16 x {' x '.join(VARY)} x res {RES} x batch {BATCH}, bf16; cores: {os.cpu_count()}")
    per_design(args.sample, train=False)
    per_design(max(args.sample // 3, 20), train=True)
    if not args.skip_full:
        full(args.jobs, hardware=False)
        full(args.jobs, hardware=True)
    print(f"load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())} (the machine is shared)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
