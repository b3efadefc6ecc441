"""What each training optimisation saves, computed for one design at one resolution and batch.

The course's optimisation table quotes guesses for some model at some size (mixed precision ~50% memory
and 1.5-2x speed; gradient checkpointing ~75% memory at 0.8x speed; linear attention ~60% memory).
`savings` computes the same rows for the user's design from the models everything else uses:

    memory  the training step's peak (`train_memory.train_memory`: weights, gradients, optimizer state,
            saved activations, the backward's peak), AdamW by default
    FLOPs   the step's forward + backward (`training.train_cost`, `flops` convention) plus the forward
            that checkpointing runs again (`TrainMemory.recompute`)
    time    the step's time on a device profile (`train_time.step_time`): the per-op model where the
            profile carries fitted efficiencies and the launches are as large as the measured rows', for
            every row (an fp32 row takes the fp32 peaks at the efficiencies fitted on 16-bit runs), else
            a roofline (`train_roofline`)

or, with mode "inference", the same for one forward: the memory `memory.predict_memory` gives (weights,
input, activation peak), the forward's FLOPs and its time (`roofline.forward_time`, as compare shows it).

Rows: the baseline as given; mixed precision (bf16 autocast, from fp32); activation checkpointing per
block and every 2 blocks; a fused attention kernel (flash) instead of the math path; linear attention
instead of softmax (for designs with an `attention` field); the course's attention-sparsity row ("10-30%,
1.2-1.5x") as token pruning (EViT) and top-k sparse attention for ViT designs (`sparsity_variants`). A
row that does not apply to the design is left out, with the reason in `skipped`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, NamedTuple

from vitcost.analytic.cost import FLOPS_PER_MAC, Cost, project
from vitcost.analytic.estimate import Estimate, evaluate
from vitcost.analytic.hardware import Hardware
from vitcost.analytic.training import project_backward, train_cost
from vitcost.design import Design
from vitcost.errors import VitcostError
from vitcost.vocab import Dtype, Kernel, Optimizer, RunMode

# The course's guesses, quoted beside the computed rows: technique -> (memory saved, speed-up).
COURSE: dict[str, tuple[str, str]] = {
    "mixed precision (bf16 autocast)": ("~50%", "1.5-2x"),
    "checkpointing, every block": ("~75%", "0.8x"),
    "checkpointing, every 2 blocks": ("~75%", "0.8x"),
    "flash attention (fused kernel)": ("", ""),
    "linear attention": ("~60%", "2-3x"),
    "token pruning (EViT)": ("10-30%", "1.2-1.5x"),  # the course's attention-sparsity row
    "top-k sparse attention": ("10-30%", "1.2-1.5x"),
}
BACKWARD_BYTES = 2  # the backward moves about twice the forward's bytes (see train_roofline)


class Saving(NamedTuple):
    """One row: a technique's step (or forward), and its change against the baseline."""

    technique: str
    memory_bytes: int  # the step's peak (inference: the forward's weights, input and activation peak)
    flops: int  # the step's FLOPs (forward + backward + recomputed forward; inference: the forward's)
    time_s: float  # the step's (or the forward's) time on the device
    memory_saved: float  # 1 - memory / baseline memory
    speedup: float  # baseline time / time
    flops_ratio: float  # flops / baseline flops
    course_memory: str
    course_speed: str
    estimate: Any  # the variant's Estimate
    checkpoint: int
    mode: str = "train"  # train: one training step; inference: one forward
    time_model: str = "roofline"  # which model gave time_s: per-op | roofline


def train_roofline(est: Estimate, hw: Hardware, recompute: Cost | None = None) -> float:
    """Roofline time of one training step, layer by layer: max(compute, memory) per dotted path.

    compute = 2 x (forward + backward MACs) / matmul peak + their other FLOPs / vector peak
    memory  = (1 + BACKWARD_BYTES) x the forward's bytes of that layer / bandwidth — the backward reads the
              output gradient and the saved input and writes the input gradient (and a weight's
              gradient, the weight's size): about twice what the forward moved. An approximation,
              stated as such; the forward's bytes come from `roofline.roofline`.
    The forward that checkpointing runs again is added as compute at the matmul peak (it is the
    recompute of compute-bound blocks in the cases where checkpointing matters)."""
    from vitcost.analytic.roofline import roofline

    peak = hw.peak(est.dtype)
    fwd_bytes: dict[str, int] = defaultdict(int)
    for op in roofline(est, hw).ops:
        fwd_bytes[op.path] += op.bytes
    recompute = recompute or Cost()
    total = 0.0
    for path, (f, b) in train_cost(est).layer_costs().items():
        mm = FLOPS_PER_MAC * (f.macs + b.macs)
        other = project(f, "flops") - FLOPS_PER_MAC * f.macs + project_backward(b, "flops") - FLOPS_PER_MAC * b.macs
        compute = mm / peak + other / hw.vector_flops
        memory = (1 + BACKWARD_BYTES) * fwd_bytes.get(path, 0) / hw.bandwidth
        total += max(compute, memory)
    return total + FLOPS_PER_MAC * recompute.macs / peak + (project(recompute, "flops") - FLOPS_PER_MAC
                                                            * recompute.macs) / hw.vector_flops


def savings(design: Design, res: tuple[int, int], batch: int, dtype: Dtype, attn: Kernel, optimizer: Optimizer,
            hw: Hardware, mode: RunMode = RunMode.train) -> tuple[list[Saving], list[str]]:
    """The optimisation table for `design` at `res` and `batch` (see the module docstring): the rows,
    baseline first, and the techniques left out with why; times on `hw`. `mode` inference: one forward
    instead of a training step (its memory `memory.predict_memory`'s weights + input + activation peak,
    its FLOPs the forward's, its time the forward's); checkpointing, which saves only a training step's
    memory, is left out."""
    from dataclasses import fields, replace

    inference = mode is RunMode.inference
    base = evaluate(design, res, batch, dtype, attn)
    variants: list[tuple[str, Estimate, int]] = [("baseline", base, 0)]
    skipped: list[str] = []
    if base.dtype.value == "fp32":
        variants.append(("mixed precision (bf16 autocast)", evaluate(design, res, batch, Dtype.bf16, attn), 0))
    else:
        skipped.append(f"mixed precision: the baseline already runs in {base.dtype.value}")
    if inference:
        skipped.append("checkpointing: it saves only a training step's memory")
    else:
        variants += [("checkpointing, every block", base, 1), ("checkpointing, every 2 blocks", base, 2)]
    if base.total.attn and not base.attn.fused:
        variants.append(("flash attention (fused kernel)", evaluate(design, res, batch, dtype, Kernel.flash), 0))
    elif not base.total.attn:
        skipped.append("flash attention: the design materialises no attention scores")
    has_attention = any(f.name == "attention" for f in fields(base.spec))  # not the pixel family's constant
    if has_attention and base.spec.attention == "softmax":
        linear = design._replace(name=f"{base.model} (linear attention)",
                                 spec=replace(base.spec, attention="linear", rel_pos=False, rope=False, topk=0,
                                              prune_blocks=()))
        variants.append(("linear attention", evaluate(linear, res, batch, dtype, attn), 0))
    elif not has_attention:
        skipped.append(f"linear attention: the {base.family} family has no attention option")
    for technique, change in sparsity_variants(base):
        if isinstance(change, str):
            skipped.append(f"{technique}: {change}")
        else:
            sparse = design._replace(name=f"{base.model} ({technique})", spec=change)
            variants.append((technique, evaluate(sparse, res, batch, dtype, attn), 0))
    rows: list[Saving] = []
    ref: tuple[int, int, float] | None = None
    for technique, est, checkpoint in variants:
        try:
            peak, flops, (time_s, how), checkpointed = (_forward(est, hw) if inference else
                                                        _step(est, hw, optimizer, checkpoint))
        except VitcostError as err:
            skipped.append(f"{technique}: {err}")
            continue
        if ref is None:
            ref = (peak, flops, time_s)
        memory0, flops0, time0 = ref
        course_memory, course_speed = COURSE.get(technique, ("", ""))
        rows.append(Saving(technique, peak, flops, time_s, 1 - peak / memory0, time0 / time_s,
                           flops / flops0, course_memory, course_speed, est, checkpointed,
                           "inference" if inference else "train", how))
    return rows, skipped


def _step(est: Estimate, hw: Hardware, optimizer: Optimizer, checkpoint: int
          ) -> tuple[int, int, tuple[float, str], int]:
    """A training step's peak, FLOPs (the recomputed forward included), (time, time model) and checkpointing."""
    from vitcost.analytic.train_memory import train_memory
    from vitcost.analytic.train_time import step_time

    m = train_memory(est, optimizer, checkpoint)
    return (m.step_peak, train_cost(est).count("flops") + project(m.recompute, "flops"),
            step_time(est, hw, m.recompute, optimizer), m.checkpoint)


def _forward(est: Estimate, hw: Hardware) -> tuple[int, int, tuple[float, str], int]:
    """One forward's memory (weights, input, activation peak), FLOPs and (time, time model), as compare
    shows them."""
    from vitcost.analytic.memory import predict_memory
    from vitcost.analytic.roofline import forward_time

    t = forward_time(est, hw)
    return predict_memory(est).total_bytes, est.count("flops"), (t["time_s"], t["time_model"]), 0


def sparsity_variants(base: Estimate) -> list[tuple[str, Any]]:
    """The course's attention-sparsity row as two designs derived from `base`'s spec by its family's module
    (`sparsity_variants(spec, tokens)`: EViT's token pruning and top-k sparse attention), each with the
    reason instead where it does not apply."""
    from vitcost.analytic.registry import family_of

    fn = getattr(family_of(base.spec).analytic, "sparsity_variants", None)
    if fn is None:
        reason = f"the {base.family} family has no token pruning or top-k option"
        return [("token pruning (EViT)", reason), ("top-k sparse attention", reason)]
    return fn(base.spec, base.tokens)


__all__ = ["COURSE", "Saving", "savings", "sparsity_variants", "train_roofline"]
