"""Counting formulas as tiny pure functions of shapes, and the op classes each convention counts.

These are the rules the counting engine adds to fvcore and torch's `FlopCounterMode`, and the rules
it needs to re-express one backend's counts in another backend's convention. No torch import here.

Conventions (see `vitcost.analytic.cost.CONVENTIONS`):
- fvcore counts 1 per multiply-accumulate (MAC) of linear/matmul/bmm/einsum/conv, plus a few
  non-matmul ops by element (LayerNorm: 5 per element when affine, 4 otherwise);
- torch's FlopCounterMode counts 2 per MAC of mm/bmm/conv/attention, nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

from vitcost.analytic.cost import FLOPS_PER_MAC, FVCORE_BN_FLOPS, FVCORE_NORM_FLOPS

# fvcore's default norm handle: 5 per element with an affine transform (mean, variance, normalise,
# scale, shift), 4 without. Batch norm in eval mode folds to an affine map: 2 per element (1 without).
FVCORE_NORM_NO_AFFINE_FLOPS = FVCORE_NORM_FLOPS - 1
FVCORE_BN_EVAL_FLOPS = FVCORE_BN_FLOPS  # the one rule, stated in analytic/cost.py
# fvcore counts adaptive average pooling as 1 per input element, nearest upsampling as 1 and
# bilinear upsampling / grid sampling as 4 per output element.
FVCORE_POOL_FLOPS = 1
FVCORE_NEAREST_FLOPS = 1
FVCORE_BILINEAR_FLOPS = 4

# Fused scaled-dot-product attention as it can appear in a jit trace or at the dispatcher. Stock
# fvcore has no handle for any of them (it reports them as unsupported and counts 0); torch 2.13's
# FlopCounterMode has formulas for the CUDA kernels but not for the CPU one.
SDPA_OPS: tuple[str, ...] = (
    "scaled_dot_product_attention",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention",
    "_scaled_dot_product_fused_attention_overrideable",
)

# Op names (namespace dropped) whose fvcore-convention count is MACs: fvcore's own keys, and the aten
# ops the dispatcher shows when fvcore's rules are applied there. Every other op fvcore counts (norms,
# pooling, upsampling) is counted by element and is not a MAC.
FVCORE_MAC_OPS: frozenset[str] = frozenset({"addmm", "baddbmm", "bmm", "conv", "convolution", "einsum", "linear",
                                            "matmul", "mm", *SDPA_OPS})


def attention_macs(q_shape: Sequence[int], k_shape: Sequence[int], v_shape: Sequence[int]) -> int:
    """MACs of softmax(q k^T / sqrt(d)) v, the two batched matmuls of attention.

    q: [*batch, Nq, d], k: [*batch_kv, Nk, d], v: [*batch_kv, Nk, d_v]. Grouped-query attention (fewer
    key/value heads) broadcasts k and v over q's heads, so q's leading dims give the batch:
        q [b, h, Nq, d] @ k^T [b, h, d, Nk] -> scores [b, h, Nq, Nk]:  b*h*Nq*Nk*d   MACs
        scores [b, h, Nq, Nk] @ v [b, h, Nk, d_v] -> [b, h, Nq, d_v]:    b*h*Nq*Nk*d_v MACs
    Softmax, scaling and masks are not MACs. A causal mask is not discounted: the fused kernels skip
    about half the pairs, but fvcore and FlopCounterMode both count the full product."""
    *batch, nq, d = q_shape
    nk, dv = k_shape[-2], v_shape[-1]
    bh = prod(batch)
    qk = bh * nq * nk * d  # q [bh, Nq, d] @ k^T [bh, d, Nk]
    av = bh * nq * nk * dv  # scores [bh, Nq, Nk] @ v [bh, Nk, d_v]
    return qk + av


def attention_flops(q_shape: Sequence[int], k_shape: Sequence[int], v_shape: Sequence[int]) -> int:
    """FlopCounterMode's convention for attention: 2 per MAC of `attention_macs`."""
    return FLOPS_PER_MAC * attention_macs(q_shape, k_shape, v_shape)


def norm_flops(elements: int, affine: bool) -> int:
    """fvcore's LayerNorm / GroupNorm rule: 5 per element when affine, 4 otherwise."""
    return elements * (FVCORE_NORM_FLOPS if affine else FVCORE_NORM_NO_AFFINE_FLOPS)


def macs_from_torch(flops: int) -> int:
    """FlopCounterMode counts 2 per MAC of everything it counts, so MACs are half of it."""
    return flops // FLOPS_PER_MAC


# ---------------------------------------------------------------------------------------------
# The backward of a training step (FlopCounterMode only: fvcore counts no backward)

# Fused attention backward kernels torch 2.13's FlopCounterMode has no formula for (it has them for the
# CUDA kernels): the CPU flash kernel's backward, and the "overrideable" one.
SDPA_BACKWARD_OPS: tuple[str, ...] = (
    "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_scaled_dot_product_fused_attention_overrideable_backward",
)

# FlopCounterMode formulas found wrong against a hand derivation, by the aten op they are applied to.
# Each is named in the check where it changes a count; the correct figure is `conv_backward_flops`.
KNOWN_DEFECTS: dict[str, str] = {
    "convolution_backward": "FlopCounterMode's conv_backward_flop counts a grouped convolution's weight gradient "
                            "as if every input channel met every output channel: groups x its real MACs "
                            "(a depthwise conv: channels x)",
}


def attention_backward_macs(grad_out_shape: Sequence[int], q_shape: Sequence[int], k_shape: Sequence[int],
                            v_shape: Sequence[int]) -> int:
    """MACs of a fused attention kernel's backward (flash, memory-efficient), which keeps only the
    log-sum-exp of the forward and recomputes the scores: five score-sized products.

    q: [*batch, Nq, d], k: [*batch_kv, Nk, d], v: [*batch_kv, Nk, d_v], dO: [*batch, Nq, d_v]:
        S  = q k^T     [bh, Nq, d] @ [bh, d, Nk]      -> [bh, Nq, Nk]  bh*Nq*Nk*d    (recomputed)
        dP = dO v^T    [bh, Nq, d_v] @ [bh, d_v, Nk]  -> [bh, Nq, Nk]  bh*Nq*Nk*d_v
        dV = P^T dO    [bh, Nk, Nq] @ [bh, Nq, d_v]   -> [bh, Nk, d_v] bh*Nq*Nk*d_v
        dQ = dS k      [bh, Nq, Nk] @ [bh, Nk, d]     -> [bh, Nq, d]   bh*Nq*Nk*d
        dK = dS^T q    [bh, Nk, Nq] @ [bh, Nq, d]     -> [bh, Nk, d]   bh*Nq*Nk*d
    The rule torch's FlopCounterMode applies to the CUDA kernels (`sdpa_backward_flop_count`)."""
    *batch, nq, d = q_shape
    nk, dv = k_shape[-2], v_shape[-1]
    scores = prod(batch) * nq * nk
    return scores * (3 * d + 2 * dv)


def attention_backward_flops(grad_out_shape: Sequence[int], q_shape: Sequence[int], k_shape: Sequence[int],
                             v_shape: Sequence[int]) -> int:
    """FlopCounterMode's convention: 2 per MAC of `attention_backward_macs`."""
    return FLOPS_PER_MAC * attention_backward_macs(grad_out_shape, q_shape, k_shape, v_shape)


def conv_backward_flops(grad_out_shape: Sequence[int], x_shape: Sequence[int], w_shape: Sequence[int],
                        transposed: bool, output_mask: Sequence[bool]) -> int:
    """What a convolution's backward costs, 2 per MAC, derived by hand; any `groups`.

    A convolution [N, C_in, H, W] -> [N, C_out, Ho, Wo] with weight [C_out, C_in/g, kh, kw] meets every
    output element with the C_in/g * kh * kw taps of its filter: N*Ho*Wo * C_out*(C_in/g)*kh*kw =
    N*Ho*Wo * numel(weight) MACs. Its two gradients pair the same operands again:
        grad input  = transposed conv of dY with W: each dY element times its filter's taps, the same MACs;
        grad weight = dY against the input patches it saw, summed over N*Ho*Wo: the same MACs.
    (A transposed convolution has the input's spatial size in place of the output's.) The bias gradient
    is a sum over N*Ho*Wo, not a MAC. `output_mask` says which of grad input and grad weight are computed."""
    spatial = (x_shape if transposed else grad_out_shape)[2:]
    macs = grad_out_shape[0] * prod(spatial) * prod(w_shape)
    return FLOPS_PER_MAC * macs * (int(bool(output_mask[0])) + int(bool(output_mask[1])))
