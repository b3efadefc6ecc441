"""The family registry: every architecture family is declared once, here, as one record.

A record names the family, its analytic module (which holds the walker, the memory programs of its own
attention modules, the complexity class, the resolution lattice and the first token grid, by convention)
and its torch
reference net (a "module:Class" path, imported only when a net is built, so this module stays
torch-free); the spec class is the one that registered itself under the family's name. Everything
that dispatches on the family (estimate, memory, memory wall, scaling fits,
tables, nets.build) reads this registry and nothing else.

Adding a token mixer or family: write `trace`, `grid`, `lattice` and `complexity` (and `ATTENTION`) in
`analytic/<family>.py`, its net in `nets/<family>.py`, its spec in `specs.py`, preset lines in `zoo.py`,
and one `Family(...)` line below (CONTRIBUTING.md walks through it).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

from vitcost.errors import VitcostError
from vitcost.specs import SPEC_CLASSES, Spec


class Family(NamedTuple):
    """One family. Its analytic module (`vitcost.analytic.<module>`) defines, by convention:
    `trace(spec, h, w, batch) -> Trace`, `complexity(spec) -> "O(...)"` (in R, H, W, N and constants; the
    exponent is derived from it), `lattice(spec) -> (L, step)` (on multiples of L no size rounds) and
    `grid(spec, h, w)` (the first stage's token grid); a family with a time axis (`frames`) takes
    `trace(spec, h, w, batch, t)` and defines `time_grid(spec, t)` and `clip_complexity(spec)`; and
    optionally `ATTENTION`, the memory programs of attention modules of its own (`liveness`).
    Facts about single ops (which block an op runs in, where its input comes from, "a max pool", "a
    float32 bias", what the reference module keeps until it returns) the walker states on the ops
    themselves (`Trace.block`, `Trace.note`, `cost.TAGS`, `cost.Mem`); which of the net's containers are
    never called is the record's `lists`. The module is imported when
    the family is first used, so `vitcost compare` loads only the families it shows. (A NamedTuple:
    cheap to create at import.)"""

    name: str  # the `family` of its spec class and of every output row
    title: str  # one line for help texts and reports
    module: str  # the analytic module under vitcost.analytic
    net: str  # "module:Class" of the torch reference net, built as Class(spec, (h, w), attn_mode)
    params_follow_res: str = ""  # why the parameter count changes with the resolution ("" if it does not)
    # the reference net's containers that are never called, only iterated over (nn.ModuleList): their paths,
    # "*" for any index. Every other module on an op's path is called and holds its argument until it returns
    # (`liveness`: an nn.Sequential of blocks holds the first block's input through all of them).
    lists: tuple[str, ...] = ()
    # whether the family takes a time axis (clips, TxHxW): its module's `trace(spec, h, w, batch, t)` reads the
    # frames t (1 for an image), `time_grid(spec, t)` gives the first stage's temporal token count and
    # `clip_complexity(spec)` the class with the time axis
    frames: bool = False

    @property
    def spec(self) -> type:
        return SPEC_CLASSES[self.name]

    @property
    def analytic(self) -> Any:
        return importlib.import_module(f"vitcost.analytic.{self.module}")

    @property
    def trace(self) -> Callable[..., Any]:
        return self.analytic.trace

    @property
    def attention(self) -> dict[str, Callable[..., Any]]:
        """The memory programs of the family's own attention modules (`liveness.Attend`), when its analytic
        module defines them (`ATTENTION`, by the name its walker notes on the call: `cost.Mem.attend`)."""
        return getattr(self.analytic, "ATTENTION", {})

    def rounded(self, spec: Any) -> bool:
        """Whether the walker rounds even on its lattice (the memory walls then search the exact model
        instead of fitting polynomials): the family's module says so with `rounded(spec)` (EViT's kept
        tokens, ceil(keep_rate * N)); False when it defines none."""
        fn = getattr(self.analytic, "rounded", None)
        return bool(fn(spec)) if fn is not None else False

    @property
    def complexity(self) -> Callable[[Any], str]:
        return self.analytic.complexity

    @property
    def lattice(self) -> Callable[[Any], tuple[int, int]]:
        return self.analytic.lattice

    @property
    def grid(self) -> Callable[..., tuple[Any, Any]]:
        return self.analytic.grid

    def exponent(self, spec: Any) -> int:
        """The power of the input side R in the complexity class (R -> infinity, fixed architecture)."""
        return resolution_exponent(self.complexity(spec))


FAMILIES: dict[str, Family] = {f.name: f for f in [
    Family("pixel", "pixel-level attention", "transformer", "vitcost.nets.vit:VisionTransformer",
           "position embedding (one row per pixel)"),
    Family("vit", "ViT patch attention (global, or window + global blocks)", "transformer",
           "vitcost.nets.vit:VisionTransformer",
           "position embedding (one row per token; global blocks' rel-pos tables)", frames=True),
    Family("swin", "Swin window attention", "swin", "vitcost.nets.swin:SwinTransformer",
           "relative-position tables (when a stage's grid is smaller than the window)"),
    Family("mvit", "MViTv2 pooling attention", "mvit", "vitcost.nets.mvit:MViTv2", "relative-position tables",
           ("stages", "stages.*.blocks"), frames=True),
    Family("mixer", "MLP-Mixer (token-mixing MLP)", "mixer", "vitcost.nets.mixer:MlpMixer",
           "token-mixing MLP (N x D_S weights)"),
    Family("nat", "NAT / DiNAT neighbourhood attention", "nat", "vitcost.nets.nat:NAT",
           lists=("levels", "levels.*.blocks")),
    Family("convnext", "ConvNeXt (depthwise-conv CNN)", "convnext", "vitcost.nets.convnext:ConvNeXt"),
    Family("resnet", "ResNet (bottleneck CNN)", "resnet", "vitcost.nets.resnet:ResNet"),
    Family("swinv2", "Swin V2 scaled cosine window attention", "swinv2", "vitcost.nets.swinv2:SwinTransformerV2"),
    Family("biformer", "BiFormer bi-level routing attention", "biformer", "vitcost.nets.biformer:BiFormer",
           lists=("stages", "downsample_layers")),
    Family("mvit1", "MViT v1 pooling attention (video)", "mvit1", "vitcost.nets.mvit1:MViTv1",
           "position embedding (one row per token, or separable space and time rows)", ("blocks",), frames=True),
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
