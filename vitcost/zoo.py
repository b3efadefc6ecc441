"""Named presets: one data line each, with the source of the configuration and its published
parameters and MACs ("FLOPs" in the papers). Published figures are timm's fvcore counts unless
the source says otherwise (see tests/data/published.md)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from vitcost.errors import VitcostError
from vitcost.specs import (
    SPEC_TYPES,
    BiFormerSpec,
    ConvNeXtSpec,
    MixerSpec,
    MViTSpec,
    MViTv1Spec,
    NATSpec,
    PixelSpec,
    ResNetSpec,
    Spec,
    SwinSpec,
    SwinV2Spec,
    ViTSpec,
)
from vitcost.vocab import Res


class Preset(NamedTuple):
    """A named design with its source and published figures (a NamedTuple: cheap to build at import)."""

    name: str
    spec: Spec
    res: int  # the resolution the published figures refer to
    source: str
    params_m: float | None = None  # published parameters, millions
    gmacs: float | None = None  # published GMACs at `res`
    aliases: tuple[str, ...] = ()
    frames: int | None = None  # the clip length T the published figures refer to (a video preset), else None

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def size(self) -> Res:
        """The input the published figures refer to: res x res, a clip of `frames` frames for a video preset."""
        return Res(self.res, self.res, self.frames)


def _swin(c: int, depths: tuple[int, ...], window: int = 7) -> SwinSpec:
    return SwinSpec(embed_dim=c, depths=depths, heads=tuple(c // 32 * 2**i for i in range(4)), window=window)


def _swinv2(c: int, depths: tuple[int, ...], window: int) -> SwinV2Spec:
    return SwinV2Spec(embed_dim=c, depths=depths, heads=tuple(c // 32 * 2**i for i in range(4)), window=window)


_DEEP = (2, 2, 18, 2)
_MVIT_DIMS = (96, 192, 384, 768)
_MVIT_HEADS = (1, 2, 4, 8)
_MVIT1_DEPTHS = (1, 2, 11, 2)  # MViT-B: DIM_MUL at blocks 1, 3 and 14 of 16


def _nat(c: int, depths: tuple[int, ...], mlp_ratio: float, layer_scale: float = 0.0,
         dilations: tuple[int, ...] = ()) -> NATSpec:
    """NAT as in SHI-Labs' classification/nat.py: kernel 7, heads C/32 per stage doubling."""
    return NATSpec(embed_dim=c, depths=depths, heads=tuple(c // 32 * 2**i for i in range(len(depths))),
                   kernel=7, mlp_ratio=mlp_ratio, layer_scale=layer_scale, dilations=dilations)


def _alternating(depths: tuple[int, ...], dilations: tuple[int, ...]) -> tuple[int, ...]:
    """DiNAT's per-block dilations: blocks alternate NA (1) and DiNA (the stage's dilation)."""
    return tuple(d if i % 2 else 1 for depth, d in zip(depths, dilations) for i in range(depth))


_NAT_DEPTHS = (3, 4, 18, 5)


def _eva02(dim: int, depth: int, heads: int, mlp_norm: bool = True) -> ViTSpec:
    """EVA02 as timm's eva.py builds eva02_*_patch14_224 (num_classes 0, global_pool avg)."""
    return ViTSpec(dim=dim, depth=depth, heads=heads, patch=14, mlp_ratio=4 * 2 / 3, mlp="swiglu", mlp_norm=mlp_norm,
                   k_bias=False, rope=True, global_pool="avg", fc_norm=True, num_classes=0)

_CONVNEXT_DIMS = (96, 192, 384, 768)
_CONVNEXT_DEEP = (3, 3, 27, 3)

PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in [  # read-only
    # Image GPT, Chen et al. 2020: paper gives 76M / 455M / 1.4B params at 32x32 with a palette head.
    Preset("igpt_s", PixelSpec(dim=512, depth=24, heads=8), 32, "Image GPT (Chen et al. 2020)", 76.0),
    Preset("igpt_m", PixelSpec(dim=1024, depth=36, heads=8), 32, "Image GPT (Chen et al. 2020)", 455.0),
    Preset("igpt_l", PixelSpec(dim=1536, depth=48, heads=16), 32, "Image GPT (Chen et al. 2020)", 1400.0),
    # ViT paper Table 1 / DeiT Table 1; figures from timm's results CSV.
    Preset("vit_ti16", ViTSpec(dim=192, depth=12, heads=3), 224, "DeiT Table 1; timm", 5.72, 1.26,
           ("deit_ti16", "deit_tiny_patch16_224", "vit_tiny_patch16_224")),
    Preset("vit_s16", ViTSpec(dim=384, depth=12, heads=6), 224, "DeiT Table 1; timm", 22.05, 4.61,
           ("deit_s16", "deit_small_patch16_224", "vit_small_patch16_224")),
    Preset("vit_b16", ViTSpec(dim=768, depth=12, heads=12), 224, "ViT Table 1; timm", 86.57, 17.58,
           ("deit_b16", "deit_base_patch16_224", "vit_base_patch16_224")),
    Preset("vit_b16_384", ViTSpec(dim=768, depth=12, heads=12), 384, "ViT Table 1; timm", 86.86, 55.54,
           ("vit_base_patch16_384",)),
    Preset("vit_b32", ViTSpec(dim=768, depth=12, heads=12, patch=32), 224, "ViT Table 1", None, None,
           ("vit_base_patch32_224",)),
    Preset("vit_l16", ViTSpec(dim=1024, depth=24, heads=16), 224, "ViT Table 1; timm", 304.33, 61.60,
           ("vit_large_patch16_224",)),
    Preset("vit_h14", ViTSpec(dim=1280, depth=32, heads=16, patch=14), 224, "ViT Table 1; timm", 630.76, 167.40,
           ("vit_huge_patch14_224",)),
    # Swin paper section 3.3 and Table 1; figures from timm's results CSV.
    Preset("swin_t", _swin(96, (2, 2, 6, 2)), 224, "Swin Table 1; timm", 28.29, 4.51,
           ("swin_tiny_patch4_window7_224",)),
    Preset("swin_s", _swin(96, _DEEP), 224, "Swin Table 1; timm", 49.61, 8.77,
           ("swin_small_patch4_window7_224",)),
    Preset("swin_b", _swin(128, _DEEP), 224, "Swin Table 1; timm", 87.77, 15.47,
           ("swin_base_patch4_window7_224",)),
    Preset("swin_b_384", _swin(128, _DEEP, window=12), 384, "Swin Table 1; timm", 87.90, 47.19,
           ("swin_base_patch4_window12_384",)),
    Preset("swin_l", _swin(192, _DEEP), 224, "Swin Table 1; timm", 196.53, 34.53,
           ("swin_large_patch4_window7_224",)),
    # MViTv2 paper Table 1 and configs; figures from timm's results CSV.
    Preset("mvitv2_t", MViTSpec(dims=_MVIT_DIMS, depths=(1, 2, 5, 2), heads=_MVIT_HEADS), 224,
           "MViTv2 Table 1; timm", 24.17, 4.70, ("mvitv2_tiny",)),
    Preset("mvitv2_s", MViTSpec(dims=_MVIT_DIMS, depths=(1, 2, 11, 2), heads=_MVIT_HEADS), 224,
           "MViTv2 Table 1; timm", 34.87, 7.00, ("mvitv2_small",)),
    Preset("mvitv2_b", MViTSpec(dims=_MVIT_DIMS, depths=(2, 3, 16, 3), heads=_MVIT_HEADS), 224,
           "MViTv2 Table 1; timm", 51.47, 10.16, ("mvitv2_base",)),
    # MViTv2-L as timm 1.0.31 builds mvitv2_large: channels 144 doubling, heads 2 doubling, widening in the MLP
    # of each stage's last block (expand_attn off); params and fvcore GMACs measured from timm's module by
    # benchmarks/measure_timm_designs.py (MViTv2 Table 1 gives 218M / 42.1G).
    Preset("mvitv2_l", MViTSpec(dims=(144, 288, 576, 1152), depths=(2, 6, 36, 4), heads=(2, 4, 8, 16),
                                expand_attn=False), 224, "MViTv2 Table 1; timm mvitv2_large", 217.99, 43.87,
           ("mvitv2_large",)),
    # MViTv2-S on video as SlowFast builds it (configs/Kinetics/MVITv2_S_16x4.yaml): the image model's stages,
    # a 3x7x7 cube embedding of stride 2x4x4, 3x3x3 pooling, K/V stride 1x8x8, spatial and temporal relative
    # positions, a class token; Kinetics-400, 16x224x224: 34.5M and 64 GFLOPs (MACs) x 1x5 views (MViTv2 paper's
    # Kinetics-400 table; SlowFast projects/mvitv2/README.md).
    # The time-axis fields' defaults are that config's, so the preset is mvitv2_s with its K/V stride and classes.
    Preset("mvitv2_s_16x4", MViTSpec(dims=_MVIT_DIMS, depths=(1, 2, 11, 2), heads=_MVIT_HEADS, kv_stride=8,
                                     num_classes=400), 224,
           "MViTv2 paper (Kinetics-400); SlowFast MVITv2_S_16x4", 34.5, 64.0, frames=16),
    # MViT v1 (Fan et al. 2021) as SlowFast builds MViT-B with conv pooling: 16 blocks in stages of 1-2-11-2,
    # channels 96 doubling, heads 1 doubling. Kinetics-400 (configs/Kinetics/MVIT_B_16x4_CONV.yaml): 3x7x7 cube
    # embedding of stride 2x4x4, separable position embedding, 3x3x3 pooling, K/V stride 1x8x8; the paper's
    # Kinetics-400 table gives 36.6M and 70.5 GFLOPs (MACs) per view at 16x224x224. ImageNet (the 2-D conv
    # config, MVIT_B_16_CONV): 7x7 stride-4 stem, one position table, 1x3x3 pooling, K/V stride 1x4x4; the
    # paper's ImageNet table gives 37.0M and 7.8G.
    Preset("mvit_b_16x4", MViTv1Spec(dims=_MVIT_DIMS, depths=_MVIT1_DEPTHS, heads=_MVIT_HEADS), 224,
           "MViT paper (Kinetics-400); SlowFast MVIT_B_16x4_CONV", 36.6, 70.5, frames=16),
    Preset("mvit_b16", MViTv1Spec(dims=_MVIT_DIMS, depths=_MVIT1_DEPTHS, heads=_MVIT_HEADS, patch_kernel=(1, 7, 7),
                                  patch_stride=(1, 4, 4), patch_padding=(0, 3, 3), pool_kernel=(1, 3, 3),
                                  kv_stride=(1, 4, 4), sep_pos_embed=False, num_classes=1000), 224,
           "MViT paper (ImageNet); SlowFast MVIT_B_16_CONV", 37.0, 7.8),
    # MLP-Mixer paper Table 1; figures from timm's results CSV.
    Preset("mixer_s16", MixerSpec(dim=512, depth=8, tokens_hidden=256, channels_hidden=2048), 224,
           "Mixer Table 1", None, None, ("mixer_s16_224",)),
    Preset("mixer_b16", MixerSpec(dim=768, depth=12, tokens_hidden=384, channels_hidden=3072), 224,
           "Mixer Table 1; timm", 59.88, 12.62, ("mixer_b16_224",)),
    Preset("mixer_l16", MixerSpec(dim=1024, depth=24, tokens_hidden=512, channels_hidden=4096), 224,
           "Mixer Table 1; timm", 208.20, 44.60, ("mixer_l16_224",)),
    # NAT (Hassani et al. 2023): dims, depths, heads, MLP ratios and layer scale from SHI-Labs'
    # classification/nat.py; params and GMACs from its README (NAT paper Table 2). No timm models:
    # aliases are the Hugging Face ids (shi-labs/nat-*-in1k-224).
    Preset("nat_mini", _nat(64, (3, 4, 6, 5), 3.0), 224, "NAT paper; SHI-Labs nat.py", 20.0, 2.7,
           ("nat_mini_in1k_224",)),
    Preset("nat_tiny", _nat(64, _NAT_DEPTHS, 3.0), 224, "NAT paper; SHI-Labs nat.py", 28.0, 4.3,
           ("nat_tiny_in1k_224",)),
    Preset("nat_small", _nat(96, _NAT_DEPTHS, 2.0, 1e-5), 224, "NAT paper; SHI-Labs nat.py", 51.0, 7.8,
           ("nat_small_in1k_224",)),
    Preset("nat_base", _nat(128, _NAT_DEPTHS, 2.0, 1e-5), 224, "NAT paper; SHI-Labs nat.py", 90.0, 13.7,
           ("nat_base_in1k_224",)),
    # DiNAT (Hassani & Shi 2022): NAT-Tiny with dilations 8, 4, 2, 1 on every other block of each stage,
    # from SHI-Labs' classification/dinat.py; 28M / 4.3G in its README (as NAT-Tiny).
    Preset("dinat_tiny", _nat(64, _NAT_DEPTHS, 3.0, dilations=_alternating(_NAT_DEPTHS, (8, 4, 2, 1))), 224,
           "DiNAT paper; SHI-Labs dinat.py", 28.0, 4.3, ("dinat_tiny_in1k_224",)),
    # SAM image encoders (Kirillov et al. 2023; segment-anything build_sam.py, timm samvit_*): window 14,
    # global blocks, decomposed rel-pos, neck to 256 channels, no head, at 1024 px. Params and GMACs from
    # timm's benchmark CSV (benchmark-infer-amp-nchw-pt240-cu124-rtx3090.csv), fvcore convention.
    Preset("sam_vit_b", ViTSpec(dim=768, depth=12, heads=12, class_tokens=0, window=14, global_blocks=(2, 5, 8, 11),
                                rel_pos=True, neck=256, num_classes=0), 1024, "SAM build_sam.py; timm", 89.67, 486.43,
           ("samvit_base_patch16",)),
    Preset("sam_vit_l", ViTSpec(dim=1024, depth=24, heads=16, class_tokens=0, window=14,
                                global_blocks=(5, 11, 17, 23), rel_pos=True, neck=256, num_classes=0), 1024,
           "SAM build_sam.py; timm", 308.28, 1493.86, ("samvit_large_patch16",)),
    Preset("sam_vit_h", ViTSpec(dim=1280, depth=32, heads=16, class_tokens=0, window=14,
                                global_blocks=(7, 15, 23, 31), rel_pos=True, neck=256, num_classes=0), 1024,
           "SAM build_sam.py; timm", 637.03, 2982.23, ("samvit_huge_patch16",)),
    # DeiT with distillation (Touvron et al. 2021, Table 1 and the distillation section): DeiT-S/B plus a
    # distillation token and head_dist. The paper's figures, rounded (see ViTSpec for the exact counts).
    Preset("deit_s16_distilled", ViTSpec(dim=384, depth=12, heads=6, class_tokens=2, distilled=True), 224,
           "DeiT paper", 22.0, 4.6, ("deit_small_distilled_patch16_224",)),
    Preset("deit_b16_distilled", ViTSpec(dim=768, depth=12, heads=12, class_tokens=2, distilled=True), 224,
           "DeiT paper", 87.0, 17.6, ("deit_base_distilled_patch16_224",)),
    # The modern variants as timm 1.0.31 builds them by default (vision_transformer.py, vision_transformer_sam.py,
    # eva.py); params and fvcore GMACs measured from timm's own modules by benchmarks/measure_timm_designs.py
    # (tests/data/timm_designs.json). samvit_base_patch16_224: SAM-B's blocks at 224 without the absolute
    # position embedding or the neck, a LayerNorm2d, average pool and head (fvcore counts timm's pool and
    # rounds its rel-pos einsums: 17.54 there, 17.54 here to two decimals).
    Preset("samvit_b16_224", ViTSpec(dim=768, depth=12, heads=12, class_tokens=0, window=14,
                                     global_blocks=(2, 5, 8, 11), rel_pos=True, pos_embed=False), 224,
           "timm samvit_base_patch16_224", 86.46, 17.54, ("samvit_base_patch16_224",)),
    Preset("vit_b16_gap", ViTSpec(dim=768, depth=12, heads=16, class_tokens=0), 224,
           "timm vit_base_patch16_gap_224", 86.57, 17.49, ("vit_base_patch16_gap_224",)),
    # Registers (Darcet et al. 2024): 4 register tokens, no class token, average pool, fc_norm.
    Preset("vit_b16_reg4_gap", ViTSpec(dim=768, depth=12, heads=12, class_tokens=0, reg_tokens=4, fc_norm=True), 256,
           "timm vit_base_patch16_reg4_gap_256", 86.62, 23.50, ("vit_base_patch16_reg4_gap_256",)),
    Preset("vit_m16_reg4_gap", ViTSpec(dim=512, depth=12, heads=8, class_tokens=0, reg_tokens=4, fc_norm=True,
                                       layer_scale=True), 256,
           "timm vit_medium_patch16_reg4_gap_256", 38.88, 10.76, ("vit_medium_patch16_reg4_gap_256",)),
    # EVA02 (Fang et al. 2024), timm's default build (no head): patch 14, SwiGLU MLP of ratio 8/3 (with a
    # LayerNorm inside for B and L), RoPE on q and k, no key bias, mean of the patch tokens and fc_norm.
    Preset("eva02_s14", _eva02(384, 12, 6, mlp_norm=False), 224, "timm eva02_small_patch14_224", 21.62, 6.14,
           ("eva02_small_patch14_224",)),
    Preset("eva02_b14", _eva02(768, 12, 12), 224, "timm eva02_base_patch14_224", 85.76, 23.22,
           ("eva02_base_patch14_224",)),
    Preset("eva02_l14", _eva02(1024, 24, 16), 224, "timm eva02_large_patch14_224", 303.27, 81.15,
           ("eva02_large_patch14_224",)),
    # EViT (Liang et al. 2022, "Not All Patches are What You Need", Table 1): DeiT-S keeping 70% of the patch
    # tokens at the 4th, 7th and 10th block, the inattentive ones fused into one; the paper gives 22.1M / 3.0G
    # (DeiT-S 4.6G).
    Preset("deit_s16_evit", ViTSpec(dim=384, depth=12, heads=6, prune_blocks=(4, 7, 10), keep_rate=0.7), 224,
           "EViT Table 1", 22.1, 3.0, ("evit_deit_small_0.7",)),
    Preset("vit_b16_evit", ViTSpec(dim=768, depth=12, heads=12, prune_blocks=(4, 7, 10), keep_rate=0.7), 224,
           "ViT-B/16 with EViT's DeiT-S setting"),
    # ViT-B/16 with top-k sparse attention: each query keeps its 49 best keys of the 197 at 224 (a quarter),
    # instance-dependent as in Sparsifiner (Wei et al. 2023) and KVT (Wang et al. 2022); no published figure.
    Preset("vit_b16_topk", ViTSpec(dim=768, depth=12, heads=12, topk=49), 224, "ViT-B/16; top-k keys per query"),
    # ConvNeXt (Liu et al. 2022) Table 1 / timm convnext.py; params and GMACs from timm's results CSV
    # (the paper rounds them: 28M / 4.5G, 50M / 8.7G, 89M / 15.4G).
    Preset("convnext_tiny", ConvNeXtSpec(dims=_CONVNEXT_DIMS, depths=(3, 3, 9, 3)), 224, "ConvNeXt Table 1; timm",
           28.59, 4.47, ("convnext_t",)),
    Preset("convnext_small", ConvNeXtSpec(dims=_CONVNEXT_DIMS, depths=_CONVNEXT_DEEP), 224,
           "ConvNeXt Table 1; timm", 50.22, 8.71, ("convnext_s",)),
    Preset("convnext_base", ConvNeXtSpec(dims=(128, 256, 512, 1024), depths=_CONVNEXT_DEEP), 224,
           "ConvNeXt Table 1; timm", 88.59, 15.38, ("convnext_b",)),
    # ResNet-50 (He et al. 2016, Table 1; v1.5 strides as timm/torchvision); figures from timm's results CSV.
    Preset("resnet50", ResNetSpec(depths=(3, 4, 6, 3)), 224, "ResNet Table 1; timm", 25.56, 4.11),
    # ResNet-50 with non-local blocks placed as Wang et al. 2018 (Sec. 4, Table 2) place them: "1 block" right
    # before res4's last residual block, "5 blocks" after every other residual block of res3 (2) and res4 (3),
    # "10 blocks" after every one of them; subsampled phi and g as mmaction2's non-local I3D configs
    # (sub_sample=True). No published params/FLOPs for these image models (ResNetSpec): derived by hand in
    # tests/test_nonlocal.py.
    Preset("resnet50_nl1", ResNetSpec(depths=(3, 4, 6, 3), nl_every=(0, 0, 5, 0)), 224,
           "Non-local NN (Wang et al. 2018) 1 block in res4"),
    Preset("resnet50_nl5", ResNetSpec(depths=(3, 4, 6, 3), nl_every=(0, 2, 2, 0), nl_subsample=True), 224,
           "Non-local NN (Wang et al. 2018) 5 blocks in res3-4"),
    Preset("resnet50_nl10", ResNetSpec(depths=(3, 4, 6, 3), nl_every=(0, 1, 1, 0), nl_subsample=True), 224,
           "Non-local NN (Wang et al. 2018) 10 blocks in res3-4"),
    # Swin V2 (Liu et al. 2022) as timm's swin_transformer_v2.py builds it; params and GMACs from timm's results
    # CSV (fvcore). The Swin repo's model hub gives 28M / 5.9G, 6.6G (T), 50M / 11.5G, 12.6G (S), 88M / 20.3G,
    # 21.8G (B) at window 8 / 16 and 54.7G (B 384): no CPB MLP in its count (see SwinV2Spec).
    Preset("swinv2_t", _swinv2(96, (2, 2, 6, 2), 8), 256, "SwinV2; Swin repo hub; timm", 28.35, 5.96,
           ("swinv2_tiny_window8_256",)),
    Preset("swinv2_s", _swinv2(96, _DEEP, 8), 256, "SwinV2; Swin repo hub; timm", 49.73, 11.58,
           ("swinv2_small_window8_256",)),
    Preset("swinv2_b", _swinv2(128, _DEEP, 8), 256, "SwinV2; Swin repo hub; timm", 87.92, 20.37,
           ("swinv2_base_window8_256",)),
    Preset("swinv2_t_w16", _swinv2(96, (2, 2, 6, 2), 16), 256, "SwinV2; Swin repo hub; timm", 28.35, 6.68,
           ("swinv2_tiny_window16_256",)),
    Preset("swinv2_s_w16", _swinv2(96, _DEEP, 16), 256, "SwinV2; Swin repo hub; timm", 49.73, 12.82,
           ("swinv2_small_window16_256",)),
    Preset("swinv2_b_w16", _swinv2(128, _DEEP, 16), 256, "SwinV2; Swin repo hub; timm", 87.92, 22.02,
           ("swinv2_base_window16_256", "swinv2_base_window12to16_192to256")),
    Preset("swinv2_b_384", _swinv2(128, _DEEP, 24), 384, "SwinV2; Swin repo hub; timm", 87.92, 55.25,
           ("swinv2_base_window12to24_192to384",)),
    # BiFormer (Zhu et al. 2023) as rayleizhu/BiFormer's models/biformer.py builds biformer_tiny/small/base:
    # top-k 1, 4, 16 of 7x7 regions and global attention in the last stage, head_dim 32, MLP ratio 3; params
    # and GMACs from the paper's Table 1 and the repository's README (see BiFormerSpec).
    Preset("biformer_tiny", BiFormerSpec(dims=(64, 128, 256, 512), depths=(2, 2, 8, 2)), 224,
           "BiFormer Table 1; rayleizhu/BiFormer", 13.1, 2.2),
    Preset("biformer_small", BiFormerSpec(dims=(64, 128, 256, 512), depths=(4, 4, 18, 4)), 224,
           "BiFormer Table 1; rayleizhu/BiFormer", 25.5, 4.5),
    Preset("biformer_base", BiFormerSpec(dims=(96, 192, 384, 768), depths=(4, 4, 18, 4)), 224,
           "BiFormer Table 1; rayleizhu/BiFormer", 56.8, 9.8),
    # A tubelet ViT on clips (ViViT's tubelet embedding, Arnab et al. 2021), as VideoMAE (Tong et al. 2022)
    # fine-tunes ViT-B on Kinetics-400: 2 x 16 x 16 tubelets of 16 x 224 x 224 clips (1568 tokens), no class
    # token, mean pooling with fc_norm, q and v biases only, a fixed sine-cosine position table (a buffer: no
    # parameter; its N x D adds are left out, which moves none of the MAC, fvcore or torch counts). VideoMAE
    # Table (Kinetics-400): 87M params, 180 GFLOPs (MACs) per view.
    Preset("videomae_b16", ViTSpec(dim=768, depth=12, heads=12, tubelet=2, class_tokens=0, pos_embed=False,
                                   global_pool="avg", fc_norm=True, k_bias=False, num_classes=400), 224,
           "VideoMAE (Kinetics-400)", 87.0, 180.0, frames=16),
    # ViT-B/16 with linear attention (Katharopoulos et al. 2020: phi = elu + 1) in every block; no published
    # figure (no such trained model).
    Preset("vit_b16_linear", ViTSpec(dim=768, depth=12, heads=12, attention="linear"), 224,
           "ViT Table 1 + linear attention (Katharopoulos et al. 2020)"),
]})

FAMILY_NAMES: tuple[str, ...] = tuple(cls.family for cls in SPEC_TYPES)
ALIASES: dict[str, str] = {a: p.name for p in PRESETS.values() for a in p.aliases}

# The five attention archetypes (pixel, patch, window, pooling, token-mixing MLP): what `vitcost compare`
# shows by default; the other families are a `-m` away.
DEFAULT_MODELS: tuple[str, ...] = ("igpt_l", "vit_b16", "swin_t", "mvitv2_t", "mixer_b16")


def get_preset(name: str) -> Preset:
    """Look a preset up by name or alias; an unknown name raises with the closest names."""
    key = name.strip().lower().replace("-", "_")
    key = ALIASES.get(key, key)
    if key in PRESETS:
        return PRESETS[key]
    import difflib

    if key in FAMILY_NAMES:
        names = [p.name for p in PRESETS.values() if p.family == key]
        raise VitcostError(f"{name!r} is a family, not a preset; name one of its presets: {', '.join(names)}.")
    close = difflib.get_close_matches(key, [*PRESETS, *ALIASES, *FAMILY_NAMES], n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else " Run `vitcost models` to list them."
    raise VitcostError(f"unknown model {name!r}.{hint}")
