"""`estimate`: walk a spec at one resolution and batch, and summarise its cost."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from vitcost.analytic.cost import Cost, Op, project
from vitcost.analytic.ints import floor_div
from vitcost.analytic.mixer import mixer_trace
from vitcost.analytic.mvit import mvit_trace
from vitcost.analytic.swin import swin_trace
from vitcost.analytic.transformer import vit_trace
from vitcost.errors import SpecError, VitcostError
from vitcost.specs import MixerSpec, MViTSpec, PixelSpec, Spec, SwinSpec, ViTSpec

DTYPE_BYTES: dict[str, int] = {"fp32": 4, "fp16": 2, "bf16": 2}

# Asymptotic class of the attention (or token-mixing) cost in the resolution R, per family.
COMPLEXITY: dict[str, str] = {
    "pixel": "O(R^4)",  # R^2 tokens, all pairs
    "vit": "O(R^4/P^4)",  # (R/P)^2 tokens, all pairs
    "swin": "O(HWC)",  # fixed M x M windows: 2*M^2*HW*C
    "mvit": "O(R^4/s^2)",  # all pairs, keys pooled by stride s
    "mixer": "O(R^2/P^2)",  # token-mixing MLP: linear in tokens
}

_WALKERS = {ViTSpec: vit_trace, PixelSpec: vit_trace, SwinSpec: swin_trace, MViTSpec: mvit_trace,
            MixerSpec: mixer_trace}


def parse_res(res: Any) -> tuple[int, int]:
    """224, (224, 320), "224" or "224x320" -> (H, W); anything else raises SpecError."""
    if isinstance(res, str):
        parts = res.lower().split("x")
        try:
            vals = [int(p) for p in parts]
        except ValueError:
            raise SpecError(f"resolution {res!r} is not a whole number or HxW (e.g. 224 or 224x320).") from None
        if len(vals) not in (1, 2):
            raise SpecError(f"resolution {res!r} is not a whole number or HxW (e.g. 224 or 224x320).")
        res = vals
    if isinstance(res, int) and not isinstance(res, bool):
        res = (res, res)
    if isinstance(res, (tuple, list)) and len(res) == 1:
        res = (res[0], res[0])
    if not (isinstance(res, (tuple, list)) and len(res) == 2 and all(type(v) is int for v in res)):
        raise SpecError(f"resolution {res!r} is not a whole number or HxW (e.g. 224 or 224x320).")
    h, w = res
    if h <= 0 or w <= 0:
        raise SpecError(f"resolution must be positive, got {h}x{w}.")
    return h, w


def parse_resolutions(values: Any) -> list[tuple[int, int]]:
    """Several resolutions (see `parse_res`), each once, smallest area first."""
    return sorted({parse_res(v) for v in values}, key=lambda hw: (hw[0] * hw[1], hw))


def res_label(res: tuple[int, int]) -> int | str:
    """224 for a square input, '224x320' otherwise: the `res` field of every JSON/CSV row."""
    h, w = res
    return h if h == w else f"{h}x{w}"


def walk(spec: Spec, h: Any, w: Any, batch: Any = 1) -> list[Op]:
    """All ops of one forward pass of `spec` on [batch, C, h, w] (ints, or sympy symbols)."""
    if isinstance(h, int):
        patch = getattr(spec, "patch", 1)
        if patch > h or patch > w:
            raise SpecError(f"patch {patch} does not fit in a {h}x{w} image.")
    return _WALKERS[type(spec)](spec, h, w, batch).ops


def _first_grid(spec: Spec, h: int, w: int) -> tuple[int, int]:
    if isinstance(spec, MViTSpec):
        k, s = spec.stem_kernel, spec.stem_stride
        return floor_div(h + 2 * (k // 2) - k, s) + 1, floor_div(w + 2 * (k // 2) - k, s) + 1
    return h // spec.patch, w // spec.patch


@dataclass(frozen=True)
class Estimate:
    """The analytic cost of one model at one resolution, batch and dtype."""

    model: str
    spec: Spec
    res: tuple[int, int]
    batch: int
    dtype: str
    ops: tuple[Op, ...]

    @property
    def family(self) -> str:
        return self.spec.family

    @cached_property
    def total(self) -> Cost:
        return Cost.sum([op.cost for op in self.ops])

    @property
    def tokens(self) -> int:
        """Spatial tokens of the first (finest) stage; class tokens not included."""
        gh, gw = _first_grid(self.spec, *self.res)
        return gh * gw

    @property
    def params(self) -> int:
        return self.total.params

    def count(self, convention: str = "macs") -> int:
        return project(self.total, convention)

    @property
    def macs(self) -> int:
        return self.total.macs

    @property
    def flops(self) -> int:
        return project(self.total, "flops")

    @property
    def bytes_per_elem(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def attn_matrix_elems(self) -> int:
        """Attention-score elements over all layers (every layer's B*heads*Nq*Nkv, summed)."""
        return self.total.attn

    @property
    def attn_matrix_bytes(self) -> int:
        return self.total.attn * self.bytes_per_elem

    @property
    def attn_matrix_peak_bytes(self) -> int:
        """The largest single layer's score matrices: what one materialised forward holds at once."""
        return max((op.cost.attn for op in self.ops), default=0) * self.bytes_per_elem

    @property
    def activation_peak_bytes(self) -> int:
        """Estimated inference activation peak: the most elements alive during any one op."""
        return max(op.live for op in self.ops) * self.bytes_per_elem

    @property
    def complexity(self) -> str:
        return COMPLEXITY[self.family]

    def _group(self, key: str, convention: str) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for op in self.ops:
            out[getattr(op, key)] += project(op.cost, convention)
        return dict(out)

    def by_layer(self, convention: str = "macs") -> dict[str, int]:
        """Cost per dotted layer path (each op counted at the module that runs it), in forward order."""
        return self._group("path", convention)

    def breakdown(self, convention: str = "macs") -> dict[str, int]:
        """Cost per role (attention scores, projections, MLP, pooling/merging, embed, norms, head, other)."""
        return self._group("role", convention)

    def layer_costs(self) -> dict[str, Cost]:
        """The cost vector per dotted layer path."""
        out: dict[str, Cost] = {}
        for op in self.ops:
            out[op.path] = out.get(op.path, Cost()) + op.cost
        return out

    def row(self) -> dict[str, Any]:
        """The machine-readable summary (JSON/CSV row)."""
        h, w = self.res
        return {
            "model": self.model, "family": self.family, "res": res_label(self.res), "height": h, "width": w,
            "batch": self.batch, "dtype": self.dtype, "tokens": self.tokens, "params": self.params,
            "macs": self.macs, "flops": self.flops, "fvcore": self.count("fvcore"), "torch": self.count("torch"),
            "attn_matrix_elems": self.attn_matrix_elems, "attn_matrix_bytes": self.attn_matrix_bytes,
            "attn_matrix_peak_bytes": self.attn_matrix_peak_bytes,
            "activation_peak_bytes": self.activation_peak_bytes, "complexity": self.complexity,
        }


def resolve_spec(model: str | Spec, patch: int | None = None, window: int | None = None) -> tuple[str, Spec]:
    from vitcost.specs import with_overrides
    from vitcost.zoo import get_preset

    if isinstance(model, str):
        name, spec = (p := get_preset(model)).name, p.spec
    else:
        name, spec = type(model).__name__, model
    return name, with_overrides(spec, patch=patch, window=window)


def estimate(model: str | Spec, res: Any = 224, batch: int = 1, dtype: str = "fp32", *,
             patch: int | None = None, window: int | None = None) -> Estimate:
    """Analytic cost of `model` (a preset name or a spec) on a [batch, 3, H, W] input.

    >>> e = estimate("vit_b16", res=224)
    >>> e.count("fvcore"), e.params
    """
    if type(batch) is not int or batch < 1:
        raise SpecError(f"batch must be a whole number of at least 1, got {batch!r}.")
    if dtype not in DTYPE_BYTES:
        raise VitcostError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPE_BYTES)}.")
    name, spec = resolve_spec(model, patch, window)
    h, w = parse_res(res)
    return Estimate(name, spec, (h, w), batch, dtype, tuple(walk(spec, h, w, batch)))
