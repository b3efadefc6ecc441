"""Write benchmarks/data/timm_gpu_infer.csv: the rows of timm's published GPU inference benchmarks
(pytorch-image-models, results/benchmark-infer-amp-nchw-*.csv; eager torch, fp16 autocast over fp32
weights, NCHW, torch.inference_mode; benchmark.py times 50 steps after 10 warm-up steps) whose model
maps to a vitcost design.

    python benchmarks/data/make_timm_gpu_infer.py GIT_DIR [-o benchmarks/data/timm_gpu_infer.csv]

GIT_DIR is a clone (or bare git directory) of huggingface/pytorch-image-models; the files are read
with `git show <commit>:<path>`. Only figures are kept (timm's own file is not copied): per GPU the
newest torch version's eager file, per row the timm name, size, batch, samples/s and ms per step, and
the vitcost design it maps to. A mapping is kept only when the design's parameter count equals timm's
`param_count` to its rounding (0.01 M) and its fvcore GMACs equal `infer_gmacs` (0.01 G); every row
that fails is left out and listed on stderr with the two figures, and so are the models DIFFERENT_GRAPH
names (the same parameters and MACs as a design, run as another graph).
"""

from __future__ import annotations

import argparse
import csv
import io
import subprocess
import sys
from pathlib import Path

COMMIT = "aa4b5850c1543fa488abf260f18390eda46cf85d"
REPO = "huggingface/pytorch-image-models"
# gpu -> (torch, cuda, file): the newest eager (non-dynamo) NCHW amp file per GPU at COMMIT
FILES = {
    "rtx3090": ("2.4.0", "12.4", "results/benchmark-infer-amp-nchw-pt240-cu124-rtx3090.csv"),
    "rtx4090": ("2.9.1", "12.8", "results/benchmark-infer-amp-nchw-pt291-cu128-4090.csv"),
    "rtx5090": ("2.9.1", "13.0", "results/benchmark-infer-amp-nchw-pt291-cu130-5090.csv"),
    "rtx-pro-6000-maxq": ("2.9.1", "13.0", "results/benchmark-infer-amp-nchw-pt291-cu130-pro6000maxq.csv"),
}

_SWINV2_L = "swinv2_b:embed_dim=192,heads=6-12-24-48"
_CONVNEXT_L = "convnext_base:dims=192-384-768-1536"
# timm model name -> vitcost design (a preset, or a preset with overrides); the size comes from each row
DESIGNS = {
    # ViT / DeiT (timm vision_transformer.py, deit.py)
    "vit_tiny_patch16_224": "vit_ti16", "vit_tiny_patch16_384": "vit_ti16",
    "vit_small_patch16_224": "vit_s16", "vit_small_patch16_384": "vit_s16",
    "vit_small_patch32_224": "vit_s16:patch=32", "vit_small_patch32_384": "vit_s16:patch=32",
    "vit_small_patch8_224": "vit_s16:patch=8",
    "vit_base_patch16_224": "vit_b16", "vit_base_patch16_384": "vit_b16",
    "vit_base_patch32_224": "vit_b32", "vit_base_patch32_384": "vit_b32",
    "vit_base_patch8_224": "vit_b16:patch=8",
    "vit_base_patch16_224_miil": "vit_b16:num_classes=11221",
    "vit_base_patch16_plus_240": "vit_b16:dim=896,heads=14",
    "vit_base_patch32_plus_256": "vit_b16:dim=896,heads=14,patch=32",
    "vit_large_patch16_224": "vit_l16", "vit_large_patch16_384": "vit_l16",
    "vit_large_patch32_224": "vit_l16:patch=32", "vit_large_patch32_384": "vit_l16:patch=32",
    "vit_large_patch14_224": "vit_l16:patch=14",
    "vit_huge_patch14_224": "vit_h14:num_classes=0",
    "deit_tiny_patch16_224": "vit_ti16", "deit_small_patch16_224": "vit_s16",
    "deit_base_patch16_224": "vit_b16", "deit_base_patch16_384": "vit_b16",
    "deit_tiny_distilled_patch16_224": "vit_ti16:class_tokens=2,distilled=true",
    "deit_small_distilled_patch16_224": "deit_s16_distilled",
    "deit_base_distilled_patch16_224": "deit_b16_distilled",
    "deit_base_distilled_patch16_384": "deit_b16_distilled",
    # ResNet-50
    "resnet50": "resnet50",
    # ConvNeXt (timm convnext.py)
    "convnext_tiny": "convnext_tiny", "convnext_small": "convnext_small", "convnext_base": "convnext_base",
    "convnext_large": _CONVNEXT_L,
    "convnext_xlarge": "convnext_base:dims=256-512-1024-2048",
    "convnext_xxlarge": "convnext_base:dims=384-768-1536-3072,depths=3-4-30-3",
    # Swin
    "swin_tiny_patch4_window7_224": "swin_t", "swin_small_patch4_window7_224": "swin_s",
    "swin_base_patch4_window7_224": "swin_b", "swin_large_patch4_window7_224": "swin_l",
    "swin_base_patch4_window12_384": "swin_b_384", "swin_large_patch4_window12_384": "swin_l:window=12",
    # Swin V2 (timm swin_transformer_v2.py; the 192-px models carry a 21841-class head)
    "swinv2_tiny_window8_256": "swinv2_t", "swinv2_small_window8_256": "swinv2_s",
    "swinv2_base_window8_256": "swinv2_b", "swinv2_tiny_window16_256": "swinv2_t_w16",
    "swinv2_small_window16_256": "swinv2_s_w16", "swinv2_base_window16_256": "swinv2_b_w16",
    "swinv2_base_window12to16_192to256": "swinv2_b_w16", "swinv2_base_window12to24_192to384": "swinv2_b_384",
    "swinv2_base_window12_192": "swinv2_b:window=12,num_classes=21841",
    "swinv2_large_window12_192": f"{_SWINV2_L},window=12,num_classes=21841",
    "swinv2_large_window12to16_192to256": f"{_SWINV2_L},window=16",
    "swinv2_large_window12to24_192to384": f"{_SWINV2_L},window=24",
    # MViTv2 (timm mvitv2.py; mvitv2_large: embed 144, depths 2-6-36-4, 2 heads doubling)
    "mvitv2_tiny": "mvitv2_t", "mvitv2_small": "mvitv2_s", "mvitv2_base": "mvitv2_b",
    "mvitv2_large": "mvitv2_b:dims=144-288-576-1152,depths=2-6-36-4,heads=2-4-8-16",
    # MLP-Mixer
    "mixer_s16_224": "mixer_s16", "mixer_b16_224": "mixer_b16", "mixer_l16_224": "mixer_l16",
    "mixer_s32_224": "mixer_s16:patch=32", "mixer_b32_224": "mixer_b16:patch=32",
    "mixer_l32_224": "mixer_l16:patch=32",
    # SAM image encoders (timm vision_transformer_sam.py)
    "samvit_base_patch16": "sam_vit_b", "samvit_large_patch16": "sam_vit_l", "samvit_huge_patch16": "sam_vit_h",
}
# timm models of these families left out whatever their figures: timm runs them as a different graph
# from the design with equal parameters and MACs.
DIFFERENT_GRAPH = {
    m: "conv_mlp=True: the MLP runs as 1x1 convs and LayerNorm2d on NCHW tensors, not as linears on NHWC"
    for m in ("convnext_atto", "convnext_femto", "convnext_pico", "convnext_nano")
}
COLUMNS = ("gpu", "torch", "cuda", "timm_model", "img_size", "batch", "infer_samples_per_sec", "infer_step_time_ms",
           "design", "family", "fit")
# The rows the time model's per-GPU parameters are fitted on; every other row tests them.
FIT_FAMILIES = ("vit", "resnet", "convnext", "swin", "mixer")
FIT_SIZE = 224


def _agrees(ours: float, theirs: float) -> bool:
    """Equal to timm's 2-decimal rounding (half a unit of the last place, plus float slack)."""
    return abs(ours - theirs) <= 0.005 + 1e-9 or round(ours, 2) == theirs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("git_dir", type=Path)
    ap.add_argument("-o", "--out", type=Path, default=Path(__file__).with_name("timm_gpu_infer.csv"))
    args = ap.parse_args(argv)
    from vitcost import estimate

    rows, left_out, checked = [], [], {}
    for gpu, (torch_v, cuda_v, path) in FILES.items():
        text = subprocess.run(["git", f"--git-dir={args.git_dir}", "show", f"{COMMIT}:{path}"], check=True,
                              capture_output=True, text=True).stdout
        for r in csv.DictReader(io.StringIO(text)):
            design = DESIGNS.get(r["model"])
            if r["model"] in DIFFERENT_GRAPH:
                left_out.append(f"{gpu} {r['model']} {r['infer_img_size']}: {DIFFERENT_GRAPH[r['model']]}")
            if design is None:
                continue
            size = int(r["infer_img_size"])
            key = (design, size)
            if key not in checked:
                est = estimate(design, res=size)
                checked[key] = (est.params / 1e6, est.count("fvcore") / 1e9, est.family)
            params_m, gmacs, family = checked[key]
            if not (_agrees(params_m, float(r["param_count"])) and _agrees(gmacs, float(r["infer_gmacs"]))):
                left_out.append(f"{gpu} {r['model']} {size}: {design} has {params_m:.3f} M / {gmacs:.3f} GMACs, "
                                f"timm {r['param_count']} M / {r['infer_gmacs']} GMACs")
                continue
            fit = family in FIT_FAMILIES and size == FIT_SIZE and not design.startswith("sam")
            rows.append((gpu, torch_v, cuda_v, r["model"], size, int(r["infer_batch_size"]),
                         r["infer_samples_per_sec"], r["infer_step_time"], design, family, "fit" if fit else "test"))
    out = io.StringIO()
    out.write(f"# timm's published GPU inference benchmarks, the rows that map to a vitcost design.\n"
              f"# Source: github.com/{REPO} at commit {COMMIT},\n")
    for gpu, (_, _, path) in FILES.items():
        out.write(f"#   {path} ({gpu})\n")
    out.write("# How they ran: benchmark.py --amp (fp16 autocast over fp32 weights), eager, NCHW, inference_mode,\n"
              "# cudnn.benchmark; infer_step_time_ms = mean ms per batch over 50 steps after 10 warm-up steps.\n"
              "# design: the vitcost design (params and fvcore GMACs equal to timm's to 0.01); fit: the rows the\n"
              "# time model's per-GPU parameters are fitted on (224 px ViT/DeiT/ResNet/ConvNeXt/Swin/Mixer).\n"
              f"# Written by benchmarks/data/make_timm_gpu_infer.py; {len(left_out)} mapped rows left out "
              "(params or GMACs differ, or timm runs another graph).\n")
    write_rows(out, COLUMNS, rows, args.out, left_out)
    return 0


def write_rows(out: io.StringIO, columns: tuple[str, ...], rows: list[tuple], path: Path, left_out: list[str]) -> None:
    """The header comment in `out`, then the CSV rows, written to `path` at once; what was left out to stderr."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(out.getvalue())
    tmp.replace(path)
    print(f"{len(rows)} rows -> {path}; {len(left_out)} left out:", file=sys.stderr)
    for line in left_out:
        print("  " + line, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
