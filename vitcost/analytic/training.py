"""The cost of one training step: the forward and its backward, per layer, derived from the forward's
op records (`Estimate.ops`) by one small rule per op kind.

A training step here is the forward in train mode, a scalar loss of the output, and the backward that
gives every parameter its gradient (the optimizer's update is not included). Per op, with Y = f(X, W):

  linear, conv   dX = dY W^T (a transposed conv for a conv) and dW = X^T dY each pair the operands of the
                 forward once more: as many MACs as the forward, each; a grouped or depthwise conv
                 included (its weight gradient meets each output channel with its C_in/groups input
                 channels only). The bias gradient sums dY over the rows: one op per output element.
                 No dX where X needs no gradient: the image (the first op of every trace reads it), and
                 a layer whose input is a fixed buffer (the walker tags it "reads_constant": SwinV2's
                 continuous-position-bias MLP reads a table of log-spaced relative coordinates).
                 No backward at all for an op tagged "detached", whose output reaches the loss only
                 through a detach (BiFormer's routing: the affinity and top-k of detached region means).
  attention      math path (Vaswani et al. 2017), from `trace.attention_steps`, every product of two
                 activations giving both operands a gradient:
                   dV = P^T dO      [B'h, Nkv, Nq] @ [B'h, Nq, d]  -> [B'h, Nkv, d]   s*d MACs
                   dP = dO V^T      [B'h, Nq, d] @ [B'h, d, Nkv]   -> [B'h, Nq, Nkv]  s*d
                   dS = P * (dP - sum(dP * P))   softmax backward, s elements
                   dQ = dS K        [B'h, Nq, Nkv] @ [B'h, Nkv, d] -> [B'h, Nq, d]    s*d
                   dK = dS^T Q      [B'h, Nkv, Nq] @ [B'h, Nq, d]  -> [B'h, Nkv, d]   s*d
                 so 4*s*d MACs (s = B'*h*Nq*Nkv score elements); decomposed relative positions
                 (MViTv2, SAM) add dq += dRel_h R_h and dR_h = dRel_h^T q per axis (2x their forward
                 MACs); every elementwise step (scale, additive terms, rel-pos sums, residual pooling)
                 one op per element. A fused kernel (flash, memory-efficient) keeps only the log-sum-exp
                 and recomputes S = Q K^T (s*d MACs more: 5*s*d, torch's `sdpa_backward_flop_count`)
                 and P = exp(S - lse) (2 ops per score). Kernel "sdpa" is what torch's dispatcher runs on
                 the CPU: the fused kernel, except for a call with additive terms (relative position
                 bias, decomposed rel-pos; all learned here), whose mask needs a gradient the fused CPU
                 kernel does not give, so it runs the math composite, forward and backward. (On CUDA
                 torch can run such a call in the memory-efficient kernel, which returns the mask's
                 gradient: kernel "efficient" models that; no CUDA count checks it here.)
  linear attn    (Katharopoulos et al. 2020) from `trace.linear_attention_steps`: each of its three
                 products gives both operands a gradient (2x its forward MACs), each elementwise step
                 one op per element; there is no fused kernel.
  norms          LayerNorm and (train-mode) BatchNorm, softmax, GELU: elementwise, per element of the
                 forward op, at the backward constants of `cost.py` (NORM/SOFTMAX/GELU/ELTWISE_BACKWARD_FLOPS).
                 In train mode BatchNorm normalises with the batch's statistics: its forward costs what a
                 LayerNorm does (it is counted as a norm here, both ways).
  elementwise    residual adds, scales, masks, gathers, pooling taps, ReLU: one op per forward element.
  params         a table or token used without arithmetic: its gradient arrives through the op that
                 reads it (the add of a position embedding sums the batch's gradients).

Conventions: `macs` (the forward's and backward's multiply-accumulates), `torch` (2 per MAC, what
FlopCounterMode counts over `loss.backward()`), `flops` (2 per MAC plus the per-element costs of both
directions). fvcore has no backward: the `fvcore` convention does not apply to a training step.

FlopCounterMode agrees per layer (`vitcost check --mode train`), except where its formula is wrong:
its `conv_backward_flop` counts a grouped convolution's weight gradient as a full convolution, groups
times the real MACs (a depthwise conv: channels times; ConvNeXt's conv_dw, MViTv2's pool_q/k/v). The
count here is the hand-derived one; the check names the difference as a known FlopCounterMode defect.

>>> t = train_cost(estimate("vit_b16", 224, batch=2))
>>> t.count("macs"), t.count("macs", "backward"), t.by_layer("torch")["blocks.0.attn"]
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

from vitcost.analytic.cost import (
    ELTWISE_BACKWARD_FLOPS,
    FLOPS_PER_MAC,
    GELU_BACKWARD_FLOPS,
    NORM_BACKWARD_FLOPS,
    SOFTMAX_BACKWARD_FLOPS,
    Cost,
    Op,
    project,
)
from vitcost.analytic.ops import kind_of
from vitcost.errors import VitcostError
from vitcost.vocab import Kernel

TRAIN_CONVENTIONS: dict[str, str] = {
    "macs": "multiply-accumulates of the forward and of its gradient products",
    "flops": f"{FLOPS_PER_MAC} per MAC + the forward's per-element costs + backward {NORM_BACKWARD_FLOPS}/norm, "
             f"{SOFTMAX_BACKWARD_FLOPS}/softmax, {GELU_BACKWARD_FLOPS}/GELU, {ELTWISE_BACKWARD_FLOPS}/elementwise "
             "element",
    "torch": f"torch FlopCounterMode over loss.backward(): {FLOPS_PER_MAC} per MAC of mm/bmm/conv/SDPA and their "
             "gradients, nothing else",
}
PHASES: tuple[str, ...] = ("step", "forward", "backward")

class TrainOp(NamedTuple):
    """One forward op with its backward: both cost vectors by kind. `backward`'s element counts are
    projected with the backward constants (`project_backward`); `rule` says how it was derived."""

    path: str
    kind: str
    role: str
    forward: Cost
    backward: Cost
    rule: str


def project_backward(cost: Cost, convention: str) -> int:
    """Project a backward cost vector (MACs of the gradient products, elements through each kind's
    backward) onto `convention` (macs | flops | torch)."""
    if convention == "macs":
        return cost.macs
    if convention == "torch":
        return FLOPS_PER_MAC * cost.macs
    if convention == "flops":
        return (FLOPS_PER_MAC * cost.macs + NORM_BACKWARD_FLOPS * (cost.norm + cost.bn)
                + SOFTMAX_BACKWARD_FLOPS * cost.softmax + GELU_BACKWARD_FLOPS * cost.act
                + ELTWISE_BACKWARD_FLOPS * cost.eltwise)
    raise _no_convention(convention)


def _no_convention(convention: str) -> VitcostError:
    if convention == "fvcore":
        return VitcostError("fvcore counts no backward: a training step has no fvcore count; use macs, flops or torch.")
    return VitcostError(f"unknown convention {convention!r} for a training step; choose from "
                        f"{', '.join(TRAIN_CONVENTIONS)}.")


def op_backward(op: Op, kernel: Kernel, grad_input: bool = True) -> tuple[Cost, Cost, str]:
    """(forward in train mode, backward, rule) of one forward op: its kind's rule in the op table
    (`ops.OPS`)."""
    return kind_of(op).backward(op, kernel, grad_input)


def reads_constant(op: Op, first: bool) -> bool:
    """Whether a linear/conv op's input needs no gradient: the image (`first`: the trace's first
    linear/conv, the patch embedding or stem) or a buffer (tagged "reads_constant" by its walker)."""
    return first or "reads_constant" in op.tags


def train_ops(ops: tuple[Op, ...] | list[Op], kernel: Kernel = Kernel.math) -> tuple[TrainOp, ...]:
    """Every op of a forward with its backward, in forward order."""
    image = next((i for i, op in enumerate(ops) if op.kind in ("linear", "conv")), None)
    out = []
    for i, op in enumerate(ops):
        fwd, back, rule = op_backward(op, kernel, grad_input=not reads_constant(op, i == image))
        if "detached" in op.tags:  # no gradient reaches it (`cost.TAGS`)
            back, rule = Cost(), "detached: no backward"
        out.append(TrainOp(op.path, op.kind, op.role, fwd, back, rule))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# The estimate-level result


@dataclass(frozen=True, repr=False)
class TrainCost:
    """The training step of one `Estimate` (design, resolution, batch) with attention kernel `attn`."""

    estimate: Any  # vitcost.analytic.estimate.Estimate
    attn: Kernel
    ops: tuple[TrainOp, ...]

    def __repr__(self) -> str:
        return (f"TrainCost({self.estimate.model!r}, res={self.estimate.res}, batch={self.estimate.batch}, "
                f"attn={self.attn.value!r}, macs={self.count('macs'):,} "
                f"(forward {self.count('macs', 'forward'):,}, backward {self.count('macs', 'backward'):,}))")

    @cached_property
    def forward(self) -> Cost:
        """The forward's cost vector in train mode (BatchNorm with batch statistics)."""
        return Cost.sum(op.forward for op in self.ops)

    @cached_property
    def backward(self) -> Cost:
        """The backward's cost vector (MACs of the gradient products, elements through each backward)."""
        return Cost.sum(op.backward for op in self.ops)

    def count(self, convention: str = "macs", phase: str = "step") -> int:
        """The step's count in `convention` (macs | flops | torch); `phase`: step, forward or backward."""
        return _phase_count(self.forward, self.backward, convention, phase)

    def by_layer(self, convention: str = "macs", phase: str = "step") -> dict[str, int]:
        """Count per dotted layer path (each op at the module that runs its forward; its backward there
        too), in forward order."""
        return self._group("path", convention, phase)

    def breakdown(self, convention: str = "macs", phase: str = "step") -> dict[str, int]:
        """Count per role (attention scores, projections, MLP, ...; see `cost.ROLES`)."""
        return self._group("role", convention, phase)

    def layer_costs(self) -> dict[str, tuple[Cost, Cost]]:
        """(forward, backward) cost vectors per dotted layer path."""
        out: dict[str, tuple[Cost, Cost]] = {}
        for op in self.ops:
            f, b = out.get(op.path, (Cost(), Cost()))
            out[op.path] = (f + op.forward, b + op.backward)
        return out

    def _group(self, key: str, convention: str, phase: str) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for op in self.ops:
            out[getattr(op, key)] += _phase_count(op.forward, op.backward, convention, phase)
        return dict(out)


def _phase_count(forward: Cost, backward: Cost, convention: str, phase: str) -> int:
    if convention not in TRAIN_CONVENTIONS:
        raise _no_convention(convention)
    if phase not in PHASES:
        raise VitcostError(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}.")
    f = project(forward, convention) if phase != "backward" else 0
    b = project_backward(backward, convention) if phase != "forward" else 0
    return f + b


def train_cost(est: Any, attn: Kernel | None = None) -> TrainCost:
    """The training step of `est` (an `Estimate`) with attention kernel `attn` (math | sdpa | flash |
    efficient; default: the estimate's own)."""
    kernel = est.attn if attn is None else attn
    return TrainCost(est, kernel, train_ops(est.ops, kernel))


__all__ = ["TRAIN_CONVENTIONS", "TrainOp", "TrainCost", "train_cost", "train_ops",
           "op_backward", "project_backward"]
