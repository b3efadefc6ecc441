"""Measure timm's own builds of the modern ViT designs vitcost names after them: parameters, the fvcore
count and the FlopCounterMode count of one forward (batch 1, eval mode, timm's default attention path),
at timm's default resolution and at a second one. The figures are the independent reference that
tests/test_modern_vit.py holds vitcost's analytic counts to; they are written to
tests/data/timm_designs.json with the timm and torch versions that produced them.

Run with the timm virtualenv (timm is never a dependency of vitcost or of its tests):
    PYTHONPATH=$PWD /work/timm-venv/bin/python benchmarks/measure_timm_designs.py [-o tests/data/timm_designs.json]
"""

from __future__ import annotations

import argparse
import json
import sys

# timm name -> the two resolutions measured (timm's default first)
DESIGNS: dict[str, tuple[int, int]] = {
    "samvit_base_patch16_224": (224, 288),
    "vit_base_patch16_gap_224": (224, 288),
    "vit_base_patch16_reg4_gap_256": (256, 320),
    "vit_medium_patch16_reg4_gap_256": (256, 320),
    "eva02_small_patch14_224": (224, 280),
    "eva02_base_patch14_224": (224, 280),
    "eva02_large_patch14_224": (224, 280),
    "mvitv2_large": (224, 256),
}


def measure(name: str, res: int) -> dict:
    import timm
    import torch

    from vitcost.measure.counting import count

    torch.manual_seed(0)
    model = timm.create_model(name, img_size=res).eval()
    with torch.no_grad():
        c = count(model, (1, 3, res, res), method="real")
    return {
        "res": res,
        "params": sum(p.numel() for p in model.parameters()),
        "fvcore": c.total("fvcore", "fvcore"),
        "fvcore_macs": c.total("fvcore", "macs"),
        "torch": c.total("torch", "torch"),
        "num_classes": model.num_classes,
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", default=None, help="write the JSON here (default: print it)")
    ap.add_argument("--only", nargs="*", default=None, help="timm names to measure (default: all)")
    args = ap.parse_args(argv)
    import timm
    import torch

    out = {"source": f"timm {timm.__version__}, torch {torch.__version__}, fvcore via vitcost.measure.counting.count; "
                     "command: PYTHONPATH=$PWD /work/timm-venv/bin/python benchmarks/measure_timm_designs.py "
                     "-o tests/data/timm_designs.json",
           "designs": {}}
    for name, sizes in DESIGNS.items():
        if args.only and name not in args.only:
            continue
        out["designs"][name] = [measure(name, r) for r in sizes]
        print(name, out["designs"][name], file=sys.stderr, flush=True)
    text = json.dumps(out, indent=1) + "\n"
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        print(text)


if __name__ == "__main__":
    main()
