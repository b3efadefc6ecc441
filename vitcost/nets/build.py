"""`build`: the torch reference model of a spec or preset, for one input resolution."""

from __future__ import annotations

import contextlib
import importlib
from typing import Any

import torch
from torch import nn

from vitcost.analytic.estimate import walk
from vitcost.analytic.registry import family_of
from vitcost.design import parse_design
from vitcost.errors import VitcostError
from vitcost.nets.common import check_attn_mode
from vitcost.vocab import Dtype, parse_dtype, parse_res

TORCH_DTYPES: dict[Dtype, torch.dtype] = {Dtype.fp32: torch.float32, Dtype.fp16: torch.float16,
                                          Dtype.bf16: torch.bfloat16}


def torch_dtype(dtype: Any) -> torch.dtype:
    """The torch dtype of a vitcost dtype (fp32 | fp16 | bf16), or a torch dtype as is."""
    return dtype if isinstance(dtype, torch.dtype) else TORCH_DTYPES[parse_dtype(dtype)]


def build(model: Any, res: Any = None, *, attn: str = "math", device: str | torch.device | None = None,
          dtype: Any = None) -> nn.Module:
    """The reference `nn.Module` of `model` (a preset name, spec file, spec or Design; see
    `vitcost.design`) for [B, C, H, W] inputs at `res` (int, (H, W) or "HxW"; default: the design's), or
    for clips [B, C, T, H, W] at "TxHxW" (families with a time axis; the net reads `size.frames`).

    Position embeddings, Mixer's token MLP, Swin's masks and MViTv2's relative-position tables are sized
    for that resolution exactly as the analytic walker sizes them, and every submodule is named by the
    walker's op paths. `device="meta"` builds without allocating, for counting (its index buffers and
    masks have no values, so build on the target device to run the model); `attn` picks the attention
    kernel ("math" materialises the scores, "sdpa" uses F.scaled_dot_product_attention; see set_attn_mode).
    """
    check_attn_mode(attn)
    design = parse_design(model)
    size = parse_res(design.size if res is None else res)
    h, w = size
    # the walker rejects sizes the architecture cannot take, with the same messages
    walk(design.spec, h, w, 1, size.frames)
    module, _, cls = family_of(design.spec).net.partition(":")
    net_class = getattr(importlib.import_module(module), cls)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        try:
            net = net_class(design.spec, size, attn)
        except (TypeError, OverflowError, RuntimeError) as e:  # a tensor dimension beyond torch's 64-bit sizes
            if "overflow" not in str(e).lower():
                raise
            raise VitcostError(f"{h}x{w} is too large to build: a tensor of the net would have more elements than "
                               "torch can index.") from None
    return net if dtype is None else net.to(dtype=torch_dtype(dtype))
