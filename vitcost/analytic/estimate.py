"""`estimate`: walk a spec at one resolution and batch, and summarise its cost."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from vitcost.analytic.cost import Cost, Op, project
from vitcost.analytic.registry import family_of
from vitcost.design import Design
from vitcost.errors import SpecError
from vitcost.specs import Spec
from vitcost.vocab import Dtype, Kernel, Res, frames, res_label


def walk(spec: Spec, h: Any, w: Any, batch: Any = 1, t: Any = None) -> list[Op]:
    """All ops of one forward pass of `spec` on [batch, C, h, w], or on a clip [batch, C, t, h, w] of t
    frames (ints, or sympy symbols); t = None: an image, which a family with a time axis reads as t = 1."""
    if isinstance(h, int):
        patch = spec.patch if hasattr(spec, "patch") else 1
        if patch > h or patch > w:
            raise SpecError(f"patch {patch} does not fit in a {h}x{w} image.")
    fam = family_of(spec)
    if not fam.frames:
        if t is not None:
            raise SpecError(f"the {fam.name} family takes images (HxW), not clips: {t}x{h}x{w} has a time axis.")
        return fam.trace(spec, h, w, batch).ops
    return fam.trace(spec, h, w, batch, 1 if t is None else t).ops


@dataclass(frozen=True, repr=False)
class Estimate:
    """The analytic cost of one design at one resolution, batch, dtype and attention kernel."""

    design: Design
    res: Res  # (H, W), and the frames T of a clip (`Res.frames`)
    batch: int
    dtype: Dtype
    attn: Kernel
    ops: tuple[Op, ...]  # the ops with a cost, in forward order
    amp: bool = False  # autocast at `dtype` over fp32 weights (timm's --amp), not pure 16-bit
    trace: tuple[Op, ...] = ()  # `ops` and the copies between them (`Trace.copy`), which only memory reads

    def __repr__(self) -> str:
        return (f"Estimate({self.model!r}, res={res_label(self.res)!r}, batch={self.batch}, "
                f"dtype={self.dtype.value!r}, attn={self.attn.value!r}{', amp=True' if self.amp else ''}, "
                f"params={self.params:,}, macs={self.macs:,}"
                + ("" if self.amp else f", activation_peak_bytes={self.activation_peak_bytes:,}") + ")")

    @property
    def model(self) -> str:
        """The design's label: a preset name, a spec file's name, with its overrides."""
        return self.design.name

    @property
    def spec(self) -> Spec:
        return self.design.spec

    @property
    def family(self) -> str:
        return self.spec.family

    @cached_property
    def memo(self) -> dict[Any, Any]:
        """Figures derived from this estimate, kept for its lifetime (the memory model's steps per kernel and
        device: `memory.activation_steps`)."""
        return {}

    @cached_property
    def total(self) -> Cost:
        return Cost.sum([op.cost for op in self.ops])

    @property
    def tokens(self) -> int:
        """Spatial tokens of the first (finest) stage; class tokens not included."""
        fam = family_of(self.spec)
        gh, gw = fam.grid(self.spec, *self.res)
        return gh * gw * (fam.analytic.time_grid(self.spec, self.res.time) if fam.frames else 1)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """[B, C, H, W] of an image, [B, C, T, H, W] of a clip."""
        return (self.batch, self.spec.in_chans, *(() if self.res.frames is None else (self.res.frames,)), *self.res)

    @property
    def input_elems(self) -> int:
        """Elements of the input batch: B * C * T * H * W (T = 1 for an image)."""
        return self.batch * self.spec.in_chans * self.res.elements

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
        return self.dtype.bytes

    @property
    def weight_bytes_per_elem(self) -> int:
        """Bytes of one weight element: fp32 under autocast (`amp`), else the dtype's."""
        return 4 if self.amp else self.dtype.bytes

    def require_single_width(self) -> None:
        """Activation memory needs one byte width per tensor: under autocast (`amp`) tensors have several
        (16-bit matmul outputs, fp32 norms, softmax and residual stream), which the memory model does not
        carry; it gives no figure rather than a wrong one."""
        if self.amp:
            from vitcost.errors import VitcostError

            raise VitcostError("activation memory under autocast (--amp) is not modelled: tensors there have "
                               "several widths (16-bit matmul outputs, fp32 norms, softmax and residual stream).")

    @property
    def attn_matrix_elems(self) -> int:
        """Attention-score elements over all layers (every layer's B*heads*Nq*Nkv, summed)."""
        return self.total.attn

    @property
    def attn_matrix_bytes(self) -> int:
        """Bytes of the attention scores of all layers, as the math path materialises them."""
        self.require_single_width()
        return self.total.attn * self.bytes_per_elem

    @property
    def attn_matrix_peak_bytes(self) -> int:
        """The largest single layer's score matrices: what one materialised forward holds at once."""
        self.require_single_width()
        return max((op.cost.attn for op in self.ops), default=0) * self.bytes_per_elem

    @cached_property
    def memory(self) -> Any:
        """The memory prediction for this estimate's kernel (`vitcost.analytic.memory`)."""
        from vitcost.analytic.memory import predict_memory

        self.require_single_width()
        return predict_memory(self)

    @cached_property
    def activation_peak_bytes(self) -> int:
        """Peak activation bytes of the forward on top of weights and input (the one memory model,
        `memory.activation_peak`; `memory` gives the whole prediction)."""
        self.require_single_width()
        if "memory" in self.__dict__:
            return self.memory.activation_peak_bytes
        from vitcost.analytic.memory import activation_peak

        return activation_peak(self, self.attn)[0]

    @property
    def global_attn_share(self) -> float | None:
        """For a window + global hybrid (a spec's `window` with `global_blocks`, block indices over the
        whole network): the share of all attention-score elements held by the global blocks; None for any
        other design."""
        spec = self.spec
        if not (getattr(spec, "window", 0) and getattr(spec, "global_blocks", ())):
            return None
        total = self.total.attn
        order: dict[str, int] = {}  # each block's index over the network, in the order the walk ran them
        for op in self.ops:
            if op.block is not None:
                order.setdefault(op.block.prefix, len(order))
        glob = set(spec.global_blocks)
        held = sum(op.cost.attn for op in self.ops if op.block is not None and order[op.block.prefix] in glob)
        return held / total if total else None

    @property
    def complexity(self) -> str:
        """The complexity class; on a clip (`res.frames`) its form with the time axis T."""
        fam = family_of(self.spec)
        if fam.frames and self.res.frames is not None:
            return fam.analytic.clip_complexity(self.spec)
        return fam.complexity(self.spec)

    @property
    def exponent(self) -> int:
        """The power of the input side R in `complexity`."""
        return family_of(self.spec).exponent(self.spec)

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

    def train_cost(self, attn: Kernel | None = None) -> Any:
        """The cost of one training step, forward + backward per layer (`vitcost.analytic.training`), with
        attention kernel `attn` (default: the estimate's own)."""
        from vitcost.analytic.training import train_cost

        return train_cost(self, attn)


def evaluate(design: Design, res: Res | tuple[int, int], batch: int = 1, dtype: Dtype = Dtype.fp32,
             attn: Kernel = Kernel.math, amp: bool = False) -> Estimate:
    """The analytic cost of a parsed design on a [batch, C, H, W] input, `res` = (H, W), or on a clip
    [batch, C, T, H, W], `res` a `Res` with T frames (families with a time axis only). Everything here
    is typed: user input (preset names, spec files, "fp16", "512x384") is parsed once, by the CLI and the
    library facade (`vitcost.estimate`). `amp`: autocast at `dtype` (fp16 | bf16) over fp32 weights and
    an fp32 input, as timm's `benchmark.py --amp` runs it.

    >>> e = evaluate(parse_design("vit_b16"), (224, 224))
    >>> e.count("fvcore"), e.params, e.activation_peak_bytes
    """
    if amp and dtype is Dtype.fp32:
        raise SpecError("--amp is autocast to 16 bits: give --dtype fp16 or bf16 with it, not fp32.")
    h, w = res
    t = frames(res)
    trace = tuple(walk(design.spec, h, w, batch, t))
    ops = tuple(op for op in trace if op.kind != "copy")
    return Estimate(design, Res(h, w, t), batch, dtype, attn, ops, bool(amp), trace if len(ops) < len(trace) else ops)
