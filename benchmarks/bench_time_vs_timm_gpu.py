"""vitcost's per-op time model (`vitcost.analytic.time_model`) against timm's published GPU inference
benchmarks (benchmarks/data/timm_gpu_infer.csv: eager torch, fp16 autocast over fp32 weights, NCHW,
timm's own batch sizes), with today's roofline (`vitcost.analytic.roofline`, vendor peaks, 2 bytes per
activation) as the baseline.

    python benchmarks/bench_time_vs_timm_gpu.py [--rows] [--write-profiles]

Per GPU, the time model's parameters (DEVICE_PARAMS: gemm, conv, flash, depthwise and memory
efficiencies, and the per-kernel floor) are fitted only on the rows marked `fit` (224 px ViT/DeiT,
ResNet, ConvNeXt, Swin, Mixer) by least squares on log(predicted / measured); every other row (other
sizes, Swin V2, MViTv2, SAM) is the test. The memory-efficient attention kernel has no row here (no
timm model in the set reaches it): it carries the flash kernel's figures.

Attention path per family as timm runs it (timm.layers.use_fused_attn): ViT/DeiT call SDPA (flash);
SAM calls SDPA with its decomposed relative-position bias as attn_mask, but with 3-D q, k, v, which
the fused kernels refuse: SDPA's math composite (in fp32 on torch >= 2.5); Swin's fused path is
experimental (off by default), Swin V2 (cosine attention) and MViTv2 compute the scores explicitly: the
math path. Convolutions run NCHW (timm's benchmark without --channels-last).

Prints per row: gpu, design, size, batch, measured and predicted ms per batch, their ratio and
fit/test; then per GPU and overall the median ratio and the fractions within 10% and 25%, for the
fitting and test rows apart, for the time model and for the roofline. `--write-profiles` writes the
fitted figures into the device profiles (vitcost/devices/*.toml: the launch floor and the [efficiency]
classes; names, peaks and sources stay).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from vitcost import estimate
from vitcost.analytic.hardware import get_hardware
from vitcost.analytic.roofline import roofline
from vitcost.analytic.time_model import (
    CLASSES,
    MATMUL_CLASSES,
    MAX_FRACTION,
    Efficiency,
    TimeDevice,
    efficiency_table,
    kernels,
)

DATA = Path(__file__).parent / "data" / "timm_gpu_infer.csv"
PROFILES = Path(__file__).parent.parent / "vitcost" / "devices"

# The GPUs timm publishes eager benchmarks for. Their vendor peaks and bandwidth are the device profiles'
# (`vitcost/devices/<gpu>.toml`, each figure with its source): one copy of every figure.
VENDOR = {gpu: get_hardware(gpu) for gpu in ("rtx3090", "rtx4090", "rtx5090", "rtx-pro-6000-maxq")}
# Cards timm has no file for carry the fitted figures of a card of the same architecture (none of timm's
# cards is a Hopper: H100/H200 take the Ada card's, the nearest generation) until they are measured.
ASSUMED_FROM = {"a100": "rtx3090", "l4": "rtx4090", "l40s": "rtx4090", "h100-sxm": "rtx4090",
                "h100-pcie": "rtx4090", "h200": "rtx4090"}
# The parameters fitted per GPU, as (class, field) or "launch_s", with their starting points.
FITTED = [("gemm", "fraction", 0.8), ("gemm", "half_work", 2e9), ("conv", "fraction", 0.6),
          ("conv", "half_work", 2e9), ("flash", "fraction", 0.6), ("depthwise", "fraction", 0.3),
          ("memory", "fraction", 0.8), ("launch_s", None, 5e-6)]
# Bounds of the search, in the parameters' own units.
# The launch floor is bounded to what eager torch's dispatch costs (a few microseconds per kernel).
BOUNDS = {"fraction": (0.02, MAX_FRACTION), "half_work": (1e3, 1e13), None: (1e-6, 2e-5)}


def runtime(row: dict) -> tuple[str, dict]:
    """The attention kernel timm's model takes, and the time model's runtime keywords for the row (see the
    module docstring)."""
    if row["design"].startswith("sam"):
        # SDPA's fused kernels take only 4-D q, k, v; timm's SAM hands it [B*heads, N, d]: the math composite,
        # which torch >= 2.5 runs in fp32 for 16-bit inputs (allow_fp16_bf16_reduction_math_sdp off)
        major, minor = (int(x) for x in row["torch"].split(".")[:2])
        return "math", {"math_scores": "fp32" if (major, minor) >= (2, 5) else "fp16"}
    return ("sdpa" if row["family"] == "vit" else "math"), {}


def load_rows() -> list[dict]:
    with DATA.open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


class RowKernels:
    """One row's kernels as arrays (device-independent), so a fit evaluates thousands of devices fast."""

    def __init__(self, ks: list) -> None:
        self.cls = np.array([CLASSES.index(k.cls) for k in ks])
        self.flops = np.array([k.flops for k in ks])
        self.other = np.array([k.other_flops for k in ks])
        self.bytes = np.array([k.bytes for k in ks])
        self.matmul = np.isin(self.cls, [CLASSES.index(c) for c in MATMUL_CLASSES])

    def time(self, dev: TimeDevice) -> float:
        """The same sum as `time_model.forward_time`, vectorised."""
        return float(self.times(dev).sum())

    def by_class(self, dev: TimeDevice) -> dict[str, float]:
        """Share of the predicted time per kernel class."""
        t = self.times(dev)
        return {c: float(t[self.cls == i].sum() / t.sum()) for i, c in enumerate(CLASSES) if (self.cls == i).any()}

    def times(self, dev: TimeDevice) -> np.ndarray:
        """Each kernel's time, as `time_model.kernel_time`."""
        frac = np.array([dev.eff(c).fraction if c in dev.efficiency else 1.0 for c in CLASSES])[self.cls]
        half = np.array([dev.eff(c).half_work if c in dev.efficiency else 0.0 for c in CLASSES])[self.cls]
        peak = dev.peak("fp16")
        mem_frac = dev.eff("memory").fraction
        compute = np.where(self.matmul, (self.flops + half) / (peak * frac), self.other / dev.vector_flops)
        memory = np.where(self.matmul, self.bytes / (dev.bandwidth * mem_frac),
                          (self.bytes + half) / (dev.bandwidth * frac))
        return np.maximum(np.maximum(compute, memory), dev.launch_s)


def device_from(gpu: str, x: list[float]) -> TimeDevice:
    """A TimeDevice for `gpu` with the FITTED parameters `x`; the efficient kernel carries flash's figures."""
    hw = VENDOR[gpu]
    vals: dict[str, dict[str, float]] = defaultdict(dict)
    launch = 0.0
    for (cls, fld, _), v in zip(FITTED, x):
        if fld is None:
            launch = v
        else:
            vals[cls][fld] = v
    eff = {c: Efficiency(v["fraction"], v.get("half_work", 0.0)) for c, v in vals.items()}
    eff["efficient"] = eff["flash"]
    return TimeDevice(gpu, hw.matmul_flops, hw.vector_flops, hw.bandwidth, launch, eff,
                      f"fitted on timm's 224-px eager rows ({gpu}); efficient = flash (no row reaches it)")


def _clip(x: np.ndarray) -> np.ndarray:
    lo = np.array([math.log(BOUNDS[f][0]) for _, f, _ in FITTED])
    hi = np.array([math.log(BOUNDS[f][1]) for _, f, _ in FITTED])
    return np.clip(x, lo, hi)


def nelder_mead(f, x0: np.ndarray, steps: int = 3000, scale: float = 0.5) -> np.ndarray:
    """Minimise f over log-parameters (Nelder & Mead 1965; standard reflection/expansion/contraction/shrink)."""
    n = len(x0)
    simplex = [x0] + [x0 + scale * np.eye(n)[i] for i in range(n)]
    vals = [f(_clip(s)) for s in simplex]
    for _ in range(steps):
        order = np.argsort(vals)
        simplex, vals = [simplex[i] for i in order], [vals[i] for i in order]
        if vals[-1] - vals[0] < 1e-10:
            break
        centroid = np.mean(simplex[:-1], axis=0)
        xr = centroid + (centroid - simplex[-1])
        fr = f(_clip(xr))
        if fr < vals[0]:
            xe = centroid + 2 * (centroid - simplex[-1])
            fe = f(_clip(xe))
            simplex[-1], vals[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < vals[-2]:
            simplex[-1], vals[-1] = xr, fr
        else:
            xc = centroid + 0.5 * (simplex[-1] - centroid)
            fc = f(_clip(xc))
            if fc < vals[-1]:
                simplex[-1], vals[-1] = xc, fc
            else:
                simplex = [simplex[0]] + [simplex[0] + 0.5 * (s - simplex[0]) for s in simplex[1:]]
                vals = [vals[0]] + [f(_clip(s)) for s in simplex[1:]]
    return _clip(simplex[int(np.argmin(vals))])


def fit(gpu: str, rows: list[tuple[RowKernels, float]]) -> TimeDevice:
    """Least squares on log(predicted / measured) over the fitting rows; restarts from the best point."""
    def loss(logx: np.ndarray) -> float:
        dev = device_from(gpu, list(np.exp(logx)))
        return sum(math.log(rk.time(dev) / m) ** 2 for rk, m in rows)

    x = np.log([v for _, _, v in FITTED])
    for _ in range(4):
        x = nelder_mead(loss, x)
    return device_from(gpu, list(np.exp(x)))


def write_profile(name: str, dev: TimeDevice) -> None:
    """Replace the launch floor and the [efficiency] class lines of vitcost/devices/<name>.toml with `dev`'s
    figures; every other line (names, peaks, sources) stays as it is. Written whole, then renamed."""
    path = PROFILES / f"{name}.toml"
    text = path.read_text()
    text = re.sub(r"(\[launch_overhead\]\nus = )[^\n]+", rf"\g<1>{dev.launch_s * 1e6:.3g}", text)
    for cls, t in efficiency_table(dev).items():
        line = f"{cls} = {{ fraction = {t['fraction']:.3g}, half_work = {t['half_work']:.3g} }}"
        text, n = re.subn(rf"(?m)^{cls} = \{{[^\n]*\}}$", line, text)
        if n != 1:
            raise SystemExit(f"{path}: expected one `{cls} = {{...}}` line in [efficiency], found {n}")
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def summary(ratios: list[float]) -> str:
    if not ratios:
        return "no rows"
    within = lambda t: sum(abs(r - 1) <= t for r in ratios) / len(ratios)  # noqa: E731
    return (f"n={len(ratios):3d}  median {statistics.median(ratios):5.2f}  within 10%: {within(0.10):4.0%}  "
            f"within 25%: {within(0.25):4.0%}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", action="store_true", help="print every row, not only the summaries")
    ap.add_argument("--write-profiles", action="store_true",
                    help="write the fitted figures into vitcost/devices/<gpu>.toml (and the cards assumed from them)")
    args = ap.parse_args(argv)
    rows = load_rows()
    est_cache: dict = {}
    prepared = []
    for r in rows:
        attn, keywords = runtime(r)
        key = (r["design"], int(r["img_size"]), int(r["batch"]), attn, tuple(keywords.items()))
        if key not in est_cache:
            est = estimate(r["design"], res=key[1], batch=key[2], dtype="fp16", attn=attn)
            est_cache[key] = (est, RowKernels(kernels(est, amp=True, **keywords)))
        prepared.append((r, *est_cache[key], float(r["infer_step_time_ms"]) / 1e3))

    results = []  # (gpu, row, measured, predicted, roofline)
    devices = {}
    for gpu in VENDOR:
        mine = [p for p in prepared if p[0]["gpu"] == gpu]
        dev = devices[gpu] = fit(gpu, [(rk, m) for r, _, rk, m in mine if r["fit"] == "fit"])
        hw = VENDOR[gpu]
        for r, est, rk, m in mine:
            results.append((gpu, r, m, rk.time(dev), roofline(est, hw).time_s, rk))

    print("vitcost time model vs timm's published GPU inference benchmarks (eager, fp16 autocast, NCHW)")
    print(f"data: {DATA.relative_to(Path(__file__).parent.parent)} ({len(rows)} rows)\n")
    print("Fitted parameters per GPU (fraction of the vendor roof; half_work in FLOPs per launch; launch floor):")
    for gpu, dev in devices.items():
        t = efficiency_table(dev)
        parts = [f"{c} {t[c]['fraction']:.2f}" + (f"/{t[c]['half_work']:.2g}" if t[c]["half_work"] else "")
                 for c in ("gemm", "conv", "flash", "depthwise", "memory")]
        print(f"  {gpu:18s} {'  '.join(parts)}  launch {dev.launch_s * 1e6:.1f} us")
    if args.rows:
        print(f"\n{'gpu':18s} {'timm model':36s} {'design':58s} {'size':>4s} {'batch':>5s} {'measured':>9s} "
              f"{'predicted':>9s} {'ratio':>6s} {'roofline':>8s} set")
        for gpu, r, m, p, rf, _ in results:
            print(f"{gpu:18s} {r['timm_model']:36s} {r['design']:58s} {r['img_size']:>4s} {r['batch']:>5s} "
                  f"{m * 1e3:9.1f} {p * 1e3:9.1f} {p / m:6.2f} {rf / m:8.2f} {r['fit']}")
    print("\nSummary (ratio = predicted / measured time per batch):")
    for gpu in [*VENDOR, "all"]:
        sel = [x for x in results if gpu in ("all", x[0])]
        for part in ("fit", "test"):
            s = [x for x in sel if x[1]["fit"] == part]
            print(f"  {gpu:18s} {part:4s}  time model: {summary([x[3] / x[2] for x in s])}")
            print(f"  {'':18s} {'':4s}  roofline:   {summary([x[4] / x[2] for x in s])}")
    print("\nEfficiency tables for the device profiles (fraction of the vendor roof, half_work per launch):")
    for name, gpu in [*((g, g) for g in VENDOR), *ASSUMED_FROM.items()]:
        dev = devices[gpu]
        origin = dev.source if name == gpu else f"assumed from {gpu}"
        print(f"  # {name}: {origin}\n  launch_s = {dev.launch_s:.3g}\n  [efficiency]")
        for cls, t in efficiency_table(dev).items():
            print(f"  {cls} = {{ fraction = {t['fraction']:.3g}, half_work = {t['half_work']:.3g} }}")
        if args.write_profiles:
            write_profile(name, dev)
    print("\nTest rows by family (all GPUs), time model:")
    fam: dict[str, list[float]] = defaultdict(list)
    for _, r, m, p, _, _ in results:
        if r["fit"] == "test":
            fam[r["family"] if not r["design"].startswith("sam") else "sam"].append(p / m)
    for f, rs in sorted(fam.items()):
        print(f"  {f:10s} {summary(rs)}")
    print("\nLargest misses per set, with the predicted time's share per kernel class:")
    for part in ("fit", "test"):
        worst = sorted((x for x in results if x[1]["fit"] == part), key=lambda x: -abs(math.log(x[3] / x[2])))[:8]
        for gpu, r, m, p, _, rk in worst:
            by_class = sorted(rk.by_class(devices[gpu]).items(), key=lambda kv: -kv[1])
            shares = "  ".join(f"{c} {v:.0%}" for c, v in by_class)
            print(f"  {part:4s} {gpu:18s} {r['timm_model']:36s} {r['img_size']:>4s} {p / m:5.2f}  {shares}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
