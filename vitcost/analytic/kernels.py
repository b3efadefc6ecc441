"""How an attention call runs for the kernel asked for: decided here, once, for every reader (training
FLOPs, training memory, the roofline, the counting check).

A kernel (`vocab.Kernel`) is what the user asks for: math materialises the scores step by step; sdpa
lets torch's `F.scaled_dot_product_attention` dispatch; flash and efficient force a fused backend. How a
given call then runs:

  math       the steps of `trace.attention_steps`, each its own op with its tensors in memory
  fused      one kernel: the scale, q k^T, the additive terms, softmax and scores @ v stay on chip
             (the steps in `OUTSIDE_FUSED` run apart: decomposed relative positions are built before the
             call, residual pooling is added after it); linear attention has no fused kernel
  composite  torch's math composite of sdpa (`_scaled_dot_product_attention_math`): in a training step
             on the CPU, sdpa runs it for a call with a learned additive term (a relative position bias,
             decomposed relative positions), whose gradient the fused CPU kernel does not give; it
             scales q and k and materialises the scores like the math path

On the meta device torch has no fused kernel at all: a count there runs the composite (`counted_kernel`).
"""

from __future__ import annotations

from vitcost.analytic.cost import AttnCall, LinearAttnCall
from vitcost.vocab import Kernel

MATH, FUSED, COMPOSITE = "math", "fused", "composite"

# `trace.attention_steps` that a fused kernel does not absorb
OUTSIDE_FUSED = frozenset({"rel_h", "rel_w", "rel_t", "rel_sum", "rel_add", "residual"})


def attention_path(call: AttnCall | LinearAttnCall, kernel: Kernel, *, training: bool = False) -> str:
    """math | fused | composite: how `call` runs with `kernel`, in a forward (inference) or in a training
    step (see the module docstring)."""
    if not kernel.fused or isinstance(call, LinearAttnCall):
        return MATH
    if training and kernel is Kernel.sdpa and (call.terms or call.rel):
        return COMPOSITE
    return FUSED


def counted_kernel(kernel: str, method: str) -> Kernel:
    """The kernel a counted forward or training step ran, as the analytic model names it: "math" on the
    math path; on the sdpa path "sdpa" (torch's dispatcher), except on the meta device ("meta" counting),
    where F.scaled_dot_product_attention runs its math composite."""
    return Kernel.sdpa if kernel == "sdpa" and method == "real" else Kernel.math


__all__ = ["MATH", "FUSED", "COMPOSITE", "OUTSIDE_FUSED", "attention_path", "counted_kernel"]
