"""`build`: the torch reference model of a spec or preset, for one input resolution."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from vitcost.analytic.estimate import parse_res, resolve_spec, walk
from vitcost.errors import VitcostError
from vitcost.nets.common import check_attn_mode
from vitcost.nets.mixer import MlpMixer
from vitcost.nets.mvit import MViTv2
from vitcost.nets.swin import SwinTransformer
from vitcost.nets.vit import VisionTransformer
from vitcost.specs import MixerSpec, MViTSpec, PixelSpec, Spec, SwinSpec, ViTSpec

DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def _dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise VitcostError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}.")
    return DTYPES[dtype]


def build(model: str | Spec, res: Any = None, *, attn: str = "math", device: str | torch.device | None = None,
          dtype: str | torch.dtype | None = None) -> nn.Module:
    """The reference `nn.Module` of `model` (a preset name or a spec) for [B, C, H, W] inputs at `res`
    (int, (H, W) or "HxW"; default: the preset's resolution, 224 for a bare spec).

    Position embeddings, Mixer's token MLP, Swin's masks and MViTv2's relative-position tables are sized
    for that resolution exactly as the analytic walker sizes them, and every submodule is named by the
    walker's op paths. `device="meta"` builds without allocating, for counting (its index buffers and
    masks have no values, so build on the target device to run the model); `attn` picks the attention
    kernel ("math" materialises the scores, "sdpa" uses F.scaled_dot_product_attention; see set_attn_mode).
    """
    check_attn_mode(attn)
    name, spec = resolve_spec(model)
    if res is None:
        from vitcost.zoo import get_preset

        res = get_preset(name).res if isinstance(model, str) else 224
    h, w = parse_res(res)
    walk(spec, h, w)  # the walker rejects sizes the architecture cannot take, with the same messages
    torch_dtype = _dtype(dtype)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        net = _construct(spec, (h, w), attn)
    return net if torch_dtype is None else net.to(dtype=torch_dtype)


def _construct(spec: Spec, res: tuple[int, int], attn: str) -> nn.Module:
    if isinstance(spec, (ViTSpec, PixelSpec)):
        return VisionTransformer(spec, res, attn)
    if isinstance(spec, SwinSpec):
        return SwinTransformer(spec, res, attn)
    if isinstance(spec, MViTSpec):
        return MViTv2(spec, res, attn)
    if isinstance(spec, MixerSpec):
        return MlpMixer(spec, res)
    raise VitcostError(f"no reference model for {type(spec).__name__}.")
