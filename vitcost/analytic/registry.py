"""The family registry: every architecture family is declared once, here, as one record.

A record names the family's spec class, its analytic walker, its block memory model, its complexity
class (the resolution exponent is derived from it), its resolution lattice, its first token grid and
its torch reference net (a "module:Class" path, imported only when a net is built, so this module stays
torch-free). Everything that dispatches on the family (estimate, memory, memory wall, scaling fits,
tables, nets.build) reads this registry and nothing else.

Adding a token mixer or family: write its walker, memory model, grid, lattice and complexity in
`analytic/<family>.py`, its net in `nets/<family>.py`, its spec in `specs.py`, preset lines in `zoo.py`,
and one `Family(...)` line below (CONTRIBUTING.md walks through it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from vitcost.analytic import convnext, mixer, mvit, nat, resnet, swin, swinv2, transformer
from vitcost.errors import VitcostError
from vitcost.specs import ConvNeXtSpec, MixerSpec, MViTSpec, NATSpec, PixelSpec, ResNetSpec, Spec, SwinSpec, ViTSpec


class Family(NamedTuple):
    """One family (a NamedTuple: created at import on the `compare` path, where dataclasses cost ~1 ms each)."""

    name: str  # the `family` of its spec class and of every output row
    title: str  # one line for help texts and reports
    spec: type
    trace: Callable[..., Any]  # (spec, h, w, batch) -> Trace
    block_memory: Callable[..., None]  # (peak, block, spec, batch, bytes/elem, fused, outer bytes) -> None
    complexity: Callable[[Any], str]  # spec -> "O(...)" in R, H, W, N (tokens) and constants
    lattice: Callable[[Any], tuple[int, int]]  # spec -> (L, step): on multiples of L no size rounds
    grid: Callable[..., tuple[Any, Any]]  # (spec, h, w) -> the first stage's token grid
    net: str  # "module:Class" of the torch reference net, built as Class(spec, (h, w), attn_mode)
    params_follow_res: str = ""  # why the parameter count changes with the resolution ("" if it does not)

    def exponent(self, spec: Any) -> int:
        """The power of the input side R in the complexity class (R -> infinity, fixed architecture)."""
        return resolution_exponent(self.complexity(spec))


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("pixel", "pixel-level attention", PixelSpec, transformer.vit_trace, transformer.block_memory,
           transformer.complexity, transformer.lattice, transformer.grid, "vitcost.nets.vit:VisionTransformer",
           "position embedding (one row per pixel)"),
    Family("vit", "ViT patch attention (global, or window + global blocks)", ViTSpec, transformer.vit_trace,
           transformer.block_memory, transformer.complexity, transformer.lattice, transformer.grid,
           "vitcost.nets.vit:VisionTransformer",
           "position embedding (one row per token); global blocks' relative-position tables, when rel_pos"),
    Family("swin", "Swin window attention", SwinSpec, swin.swin_trace, swin.block_memory, swin.complexity,
           swin.lattice, swin.grid, "vitcost.nets.swin:SwinTransformer",
           "relative-position tables (when a stage's grid is smaller than the window)"),
    Family("mvit", "MViTv2 pooling attention", MViTSpec, mvit.mvit_trace, mvit.block_memory, mvit.complexity,
           mvit.lattice, mvit.grid, "vitcost.nets.mvit:MViTv2", "relative-position tables"),
    Family("mixer", "MLP-Mixer (token-mixing MLP)", MixerSpec, mixer.mixer_trace, mixer.block_memory,
           mixer.complexity, mixer.lattice, mixer.grid, "vitcost.nets.mixer:MlpMixer",
           "token-mixing MLP (N x D_S weights)"),
    Family("nat", "NAT / DiNAT neighbourhood attention", NATSpec, nat.nat_trace, nat.block_memory, nat.complexity,
           nat.lattice, nat.grid, "vitcost.nets.nat:NAT"),
    Family("convnext", "ConvNeXt (depthwise-conv CNN)", ConvNeXtSpec, convnext.convnext_trace, convnext.block_memory,
           convnext.complexity, convnext.lattice, convnext.grid, "vitcost.nets.convnext:ConvNeXt"),
    Family("resnet", "ResNet (bottleneck CNN)", ResNetSpec, resnet.resnet_trace, resnet.block_memory,
           resnet.complexity, resnet.lattice, resnet.grid, "vitcost.nets.resnet:ResNet"),
    Family("swinv2", "Swin V2 scaled cosine window attention", swinv2.SwinV2Spec, swinv2.swinv2_trace,
           swinv2.block_memory, swinv2.complexity, swinv2.lattice, swinv2.grid,
           "vitcost.nets.swinv2:SwinTransformerV2"),
]}
_BY_SPEC: dict[type, Family] = {f.spec: f for f in FAMILIES.values()}


def family_of(spec: Spec | type) -> Family:
    """The registry record of a spec (or spec class)."""
    cls = spec if isinstance(spec, type) else type(spec)
    try:
        return _BY_SPEC[cls]
    except KeyError:
        raise VitcostError(f"{cls.__name__} is not a registered architecture spec.") from None


def family_named(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise VitcostError(f"unknown family {name!r}; choose from {', '.join(FAMILIES)}.") from None


# Powers of the input side R carried by each symbol of a complexity class.
_RES_SYMBOLS = {"R": 1, "H": 1, "W": 1, "N": 2}
_SUPERSCRIPTS = {"²": 2, "³": 3, "⁴": 4}


def resolution_exponent(text: str) -> int:
    """The power of R in an "O(...)" class: R, H and W count 1, N (tokens) counts 2, a symbol or a
    parenthesised group takes its exponent (^k or a superscript), only the numerator counts, and a sum
    takes its largest term ("O(R^4/P^4)" -> 4, "O(HWC)" -> 2, "O((HW)^2 C)" -> 4, "O(N·d²)" -> 2,
    "O(HWC) + O((HW)^2 C)" -> 4)."""
    power, _ = _power(text.strip(), 0)
    return power


def _power(s: str, i: int) -> tuple[int, int]:
    """The largest power among the "+"-separated terms from s[i] to the closing parenthesis (the
    letter O of "O(...)" counts 0, its group the power of what is inside)."""
    best = total = 0
    numerator = True
    while i < len(s) and s[i] != ")":
        if s[i] in "+/":
            if s[i] == "+":
                best, total = max(best, total), 0
            numerator = s[i] == "+"
            i += 1
            continue
        if s[i] == "(":
            p, i = _power(s, i + 1)
            i += 1  # the closing parenthesis
        else:
            p, i = _RES_SYMBOLS.get(s[i], 0), i + 1
        k, i = _exponent(s, i)
        total += p * k if numerator else 0
    return max(best, total), i


def _exponent(s: str, i: int) -> tuple[int, int]:
    if i < len(s) and s[i] in _SUPERSCRIPTS:
        return _SUPERSCRIPTS[s[i]], i + 1
    if i < len(s) and s[i] == "^":
        j = i + 1
        while j < len(s) and s[j].isdigit():
            j += 1
        return int(s[i + 1:j]), j
    return 1, i


__all__ = ["Family", "FAMILIES", "family_of", "family_named", "resolution_exponent"]
