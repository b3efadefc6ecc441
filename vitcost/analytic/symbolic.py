"""Symbolic costs from the same walkers that give the exact integers.

`formula("global_attention")` and `formula("window_attention")` reproduce the Swin paper's Eq. 1
and Eq. 2 (softmax omitted): the attention of one layer on an h x w grid of width C, window M;
`formula("conv")` the convolution's H*W*Cin*Cout*K^2, for comparison.
A preset name gives the model's total MACs in the symbols H, W (floors and ceilings where the
reference rounds, exact for every H, W), and in T, the frames, for a clip preset (`Design.frames`)."""

from __future__ import annotations

import sympy

from vitcost.analytic.trace import Trace
from vitcost.design import Design
from vitcost.errors import VitcostError
from vitcost.vocab import FORMULA_KINDS

KINDS = FORMULA_KINDS  # the named formulas and what each gives (`vocab.FORMULA_KINDS`)


def _attention_layer(h: sympy.Expr, w: sympy.Expr, c: sympy.Symbol, window: sympy.Expr | None) -> sympy.Expr:
    """qkv + scores + proj MACs of one attention layer (one head of width C: the count is the same
    for any head split), through the same primitives the walkers use."""
    t = Trace(1)
    t.linear("qkv", h * w, c, 3 * c, role="proj")
    if window is None:
        t.attention("attn", 1, 1, h * w, h * w, c)
    else:  # (h/M)(w/M) windows of M^2 tokens
        t.attention("attn", h * w / window**2, 1, window**2, window**2, c)
    t.linear("proj", h * w, c, c, role="proj")
    return sympy.expand(sum(op.cost.macs for op in t.ops))


def _local_attention_layer() -> sympy.Expr:
    """qkv + attention MACs of one neighbourhood-attention layer on an H x W grid of width D with K x K
    neighbours (H, W >= K: no padding), through the NAT walker's own primitive (one head of width D:
    the count is the same for any head split)."""
    from vitcost.analytic.nat import neighbourhood_attention

    h, w, d, k = sympy.symbols("H W D K", positive=True, integer=True)
    t = Trace(1)
    neighbourhood_attention(t, "attn", 1, h, w, d, 1, k)
    return sympy.expand(sum(op.cost.macs for op in t.ops))


def _conv_layer() -> sympy.Expr:
    """MACs of one K x K convolution of Cin -> Cout channels keeping an H x W grid (odd K, padding
    (K-1)/2), through the same primitive the CNN walkers use."""
    h, w, cin, cout, k = sympy.symbols("H W Cin Cout K", positive=True, integer=True)
    t = Trace(1)
    t.conv("conv", 1, cin, cout, h, w, kernel=k, stride=1, pad=(k - 1) / 2, role="mlp")
    return sympy.expand(sum(op.cost.macs for op in t.ops))


def formula(kind: str | Design) -> sympy.Expr:
    h, w, c, m = sympy.symbols("h w C M", positive=True, integer=True)
    if kind == "global_attention":
        return _attention_layer(h, w, c, None)
    if kind == "window_attention":
        return _attention_layer(h, w, c, m)
    if kind == "conv":
        return _conv_layer()
    if kind == "local_attention":
        return _local_attention_layer()
    from vitcost.analytic.estimate import walk

    if not isinstance(kind, Design):
        raise VitcostError(f"unknown formula {kind!r}: use one of {', '.join(KINDS)} or a design.")
    hh, ww = sympy.symbols("H W", positive=True, integer=True)
    tt = sympy.Symbol("T", positive=True, integer=True) if kind.frames is not None else None  # a clip design
    return sympy.expand(sum(op.cost.macs for op in walk(kind.spec, hh, ww, 1, tt)))



def leading(expr: sympy.Expr) -> sympy.Expr:
    """The expression with floors/ceilings dropped (H, W divisible by every stride), expanded."""
    return sympy.expand(expr.replace(sympy.floor, lambda a: a).replace(sympy.ceiling, lambda a: a))
