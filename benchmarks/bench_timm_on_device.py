"""timm's models timed eager on this machine's device, beside vitcost's predicted time for the same design.

As timm's `benchmark.py --amp` runs inference: eager torch, fp16 autocast over fp32 weights, NCHW, timm's
own attention choice (`timm.layers.use_fused_attn`), CUDA events around each forward after warm-up. For
each (model, batch) it prints and writes one row: the device, torch and timm versions, dtype, the attention
kernel timm used, the measured median ms per batch, and vitcost's prediction (`vitcost.analytic.time_model`)
on every profile given with `--hardware` (a built-in name or a file `vitcost calibrate` wrote), with the
ratio predicted / measured.

    python benchmarks/bench_timm_on_device.py --hardware h200 reports/gpu/h200-calibrated.toml -o rows.json

Needs timm (not a dependency of vitcost): run it where timm is installed. `--device cpu --smoke` runs
the same path on the CPU with the smallest batches (a check of the script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from bench_time_vs_timm_gpu import runtime  # noqa: E402  (timm's attention path per design, one rule)

# timm model, img size, vitcost design, family, and the two batch sizes timed (a small and a large one)
MODELS = [
    ("vit_base_patch16_224", 224, "vit_b16", "vit", (32, 256)),
    ("swin_tiny_patch4_window7_224", 224, "swin_t", "swin", (32, 256)),
    ("convnext_tiny", 224, "convnext_tiny", "convnext", (32, 256)),
    ("samvit_base_patch16", 1024, "sam_vit_b", "vit", (2, 8)),
]


def time_model(name: str, res: int, batch: int, device: str, warmup: int, repeats: int) -> tuple[float, str]:
    """Median seconds per forward of timm's `name` at `batch` x 3 x res x res, fp16 autocast, and the attention
    path its layers take (sdpa: F.scaled_dot_product_attention, math: the explicit softmax, none: no
    attention), read off the modules' `fused_attn` flags."""
    import timm
    import torch

    from vitcost.measure.timing import time_forward

    torch.manual_seed(0)
    kw = {} if name.startswith(("convnext", "resnet")) else {"img_size": res}
    net = timm.create_model(name, pretrained=False, **kw).to(device).eval()
    flags = [m.fused_attn for m in net.modules() if hasattr(m, "fused_attn")]
    kernel = ("sdpa" if all(flags) else "math") if flags else "none"
    x = torch.randn(batch, 3, res, res, device=device)
    amp = torch.float16 if device == "cuda" else torch.bfloat16
    timing = time_forward(net, x, warmup=warmup, repeats=repeats,
                          context=lambda: torch.autocast(device_type=device, dtype=amp))
    del net, x
    if device == "cuda":
        torch.cuda.empty_cache()
    return timing.median_s, kernel


def predict(design: str, family: str, res: int, batch: int, profiles: list[str]) -> dict[str, float]:
    """vitcost's forward time of the design on each profile (the per-op time model under autocast), with
    the attention path timm takes for it (`bench_time_vs_timm_gpu.runtime`)."""
    import torch

    from vitcost import estimate
    from vitcost.analytic.hardware import get_hardware
    from vitcost.analytic.time_model import forward_time, time_device

    attn, keywords = runtime({"design": design, "family": family, "torch": torch.__version__})
    est = estimate(design, res=res, batch=batch, dtype="fp16", attn=attn)
    return {p: forward_time(est, time_device(get_hardware(p)), amp=True, **keywords) for p in profiles}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hardware", nargs="*", default=[], help="profiles to predict with (names or files)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--smoke", action="store_true", help="batch 1, no SAM: a check of the script, not a measurement")
    ap.add_argument("-o", "--output", help="write the rows as JSON here")
    args = ap.parse_args(argv)

    import timm
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_timm_on_device: torch sees no CUDA device (use --device cpu --smoke for a check)")
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    rows = []
    print(f"device {gpu}, torch {torch.__version__}, timm {timm.__version__}, fp16 autocast, NCHW, eager")
    print(f"{'timm model':30s} {'res':>5s} {'batch':>5s} {'kernel':>6s} {'measured':>10s}  predicted (ratio)")
    for name, res, design, family, batches in MODELS:
        if args.smoke:
            if name.startswith("samvit"):
                continue  # SAM's encoder is built for 1024 px: too slow for a CPU check
            batches = (1,)
        for batch in batches:
            seconds, kernel = time_model(name, res, batch, args.device, args.warmup, args.repeats)
            pred = predict(design, family, res, batch, args.hardware)
            rows.append({"device": gpu, "torch": torch.__version__, "timm": timm.__version__, "dtype": "fp16 autocast",
                         "timm_model": name, "design": design, "res": res, "batch": batch, "kernel": kernel,
                         "measured_s": seconds, "predicted_s": pred})
            shown = "  ".join(f"{p}: {t * 1e3:.1f} ms ({t / seconds:.2f})" for p, t in pred.items())
            print(f"{name:30s} {res:5d} {batch:5d} {kernel:>6s} {seconds * 1e3:8.2f}ms  {shown}", flush=True)
    for p in args.hardware:
        ratios = [r["predicted_s"][p] / r["measured_s"] for r in rows]
        if ratios:
            within = sum(abs(r - 1) <= 0.25 for r in ratios) / len(ratios)
            print(f"{p}: median ratio {statistics.median(ratios):.2f}, {within:.0%} within 25%")
    if args.output:
        Path(args.output).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
