"""Memory of one training step, part by part: weights, gradients, optimizer state, the activations
autograd saves for the backward, and the peaks of the forward, the backward and the optimizer step.

A step is what a training loop runs between two `zero_grad(set_to_none=True)`: forward in train mode,
a cross-entropy loss, backward, optimizer step. Weights and optimizer state are resident throughout
(the state exists from the first step on), gradients appear during the backward and live until the next
`zero_grad`. All figures come from the walker's op list (`Estimate.ops`), as the forward model does.

Parts
  weights          params * 4: the float32 weights, master weights under mixed precision too
  gradients        params * 4
  optimizer_state  float32 copies per weight: none 0, SGD with momentum 1 (the momentum buffer), AdamW 2
                   (exp_avg, exp_avg_sq), plus AdamW's float32 step counter per parameter tensor
  activations      what autograd saves, op by op, as torch's derivative formulas do (each checked against
                   `grad_fn._saved_*` through saved_tensors_hooks, `vitcost.measure.train_memory`):
                     linear, conv            the input (autocast: its 16-bit copy)
                     LayerNorm               the input, and float32 mean and rstd per row
                     BatchNorm (train mode)  the input, and float32 batch mean and invstd per channel
                     GELU                    the input;  ReLU: the output (in place: the same storage)
                     max pool                the input and int64 indices;  mean pool, adds: nothing
                     layer scale x*gamma     x
                     math attention          q*scale and k (copies when they are head-split views of qkv,
                                             B' > 1 and h > 1; else qkv's whole output through the views),
                                             the softmax output (which scores @ v saves again: one storage),
                                             v; decomposed relative positions their q copies and tables;
                                             MViTv2's pooled q/k/v are its pooling norms' outputs, NAT's
                                             gathered neighbourhoods new tensors; SwinV2's cosine attention
                                             adds F.normalize's inputs, norms and normalize(q)
                     fused attention         q, k, v (qkv's output through its views), the output (which
                                             the projection saves again) and a float32 log-sum-exp per row
                     linear attention        each step of `trace.linear_attention_steps`' operands
                     cross-entropy loss      its float32 log-probabilities
                   A storage saved by several ops counts once (a ReLU's output and the next conv's input,
                   a block input read by two convs, the softmax output). `dropout` adds what
                   `nn.Dropout` saves: after the softmax a 1-byte mask and its output (which scores @ v saves
                   instead of the softmax output), on each residual branch its mask (the add saves nothing):
                   Korthikanti et al. 2022's configuration; the reference nets have no dropout.
  weight_casts     under autocast, the 16-bit copies of the weights linear and conv layers read: autocast
                   caches them for the forward and the layers save them for their backward
  backward_peak    the saved activations are freed as the backward walks back (a storage when the last op
                   saving it has run its backward) while the weights' gradients appear; on top, the gradient
                   flowing through the residual stream, each op's output and input gradients and the score-
                   sized gradients inside attention
  step_peak        weights + optimizer state + the batch + the largest of the three phase peaks; every
                   candidate step is kept by name (`Walk.steps`), so that the memory wall of training
                   (`memory_wall.train_memory_wall`: largest square input or batch) is solved from them as `memory_wall`
                   solves the forward's

Options
  dtype (of the estimate)  fp32, or bf16/fp16 meaning mixed precision as `torch.autocast` runs it: matmuls,
                   linear, conv and attention in 16 bits; on the CPU every other op keeps its input's type
                   (LayerNorm, softmax, GELU of a 16-bit tensor stay 16-bit; an add of a float32 parameter,
                   ViT's position embedding or a layer scale, promotes the stream to float32); on CUDA
                   LayerNorm and softmax run in float32 (torch's autocast fp32 list). Loss in float32.
                   A float32 additive term (Swin's and NAT's bias tables, a shift mask) promotes the scores
                   to float32, and scores @ v then reads a 16-bit copy of the softmax output.
                   precision="half" instead puts the model itself in 16 bits (`model.to(dtype)`).
  dropout          see activations above
  attn             math; sdpa as torch's dispatcher runs it (CPU: the fused flash kernel for calls without
                   additive terms; a call with a learned term, a relative position bias or decomposed
                   rel-pos, runs the math composite, which scales k too and on the CPU upcasts 16-bit
                   inputs to float32); flash/efficient forced fused (CUDA: the memory-efficient kernel keeps
                   an additive mask)
  checkpoint       None, "block" or k: `torch.utils.checkpoint(use_reentrant=False)` around runs of k
                   consecutive blocks of a stage ("block" = 1). The forward keeps each run's input only; the
                   backward recomputes a run's forward when it reaches it, up to the last op that saves a
                   tensor (torch's early stop: a block's final residual add is not recomputed), so the
                   run's saved activations exist again, one run at a time; `recompute_macs` counts that
                   forward again.
  optimizer        none | sgd | adamw; the update's own temporaries: torch's single-tensor AdamW (the CPU
                   default) makes two copies of one parameter tensor (sqrt(v) and its quotient), the
                   multi-tensor one (CUDA's default) one copy of all weights; SGD with momentum none.

Measured against real training steps of the reference nets on the CPU (`vitcost.measure.train_memory`,
live tensors; tests/test_train_memory.py). Not modelled: scratch buffers inside single kernels (oneDNN's
reorders: the allocator level, not the tensors'), index tensors, a parameter's gradient that is a view
of a larger one (a class token's, at batch 1), and on CUDA the kernels' workspaces (the CUDA rules above
follow torch's autocast lists and optimizer defaults, unmeasured here).

No torch here: this module is part of the analytic layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from vitcost.analytic.cost import AttnCall, Cost, LinearAttnCall, Op
from vitcost.analytic.kernels import COMPOSITE, FUSED, MATH, attention_path
from vitcost.analytic.ops import OPS, autocast_width, kind_of, saves
from vitcost.analytic.trace import op_key
from vitcost.analytic.training import reads_constant
from vitcost.errors import VitcostError
from vitcost.vocab import BOOL, DEVICES, F32, INT64, PRECISIONS, Dtype, Kernel, Optimizer

if TYPE_CHECKING:
    from vitcost.analytic.estimate import Estimate

# float32 copies of the weights each optimizer keeps
STATE_COPIES: dict[str, int] = {Optimizer.none.value: 0, Optimizer.sgd.value: 1, Optimizer.adamw.value: 2}
COPY = -1  # a producer that is a copy made on the way (`_producer`)


# ---------------------------------------------------------------------------------------------
# Saved tensors, op by op


class Saved(NamedTuple):
    """One storage autograd keeps for the backward: `key` names it (two ops saving one storage give the
    same key), `nbytes` its size."""

    key: tuple
    nbytes: int


class StepOp(NamedTuple):
    """A forward op as the training step sees it."""

    index: int
    op: Op
    block: str  # the block prefix ("" outside blocks)
    saved: tuple[Saved, ...]
    out_bytes: int  # its output
    in_bytes: int  # its input
    grad_bytes: int  # the gradients of its parameters (float32)
    back_live: tuple[int, ...]  # activation gradients alive inside its backward, at each of its steps (the
    # first holds the gradient arriving at its output): by default that one and the one it gives its input;
    # attention's steps hold score-sized ones
    fwd_scratch: int  # transient bytes inside its forward on top of its output


class _Ctx:
    """What the saved-tensor rules share: the ops, element sizes and options."""

    def __init__(self, ops: Sequence[Op], amp: bool, lo: int, kernel: Kernel, device: str,
                 dropout: bool, half: bool = False) -> None:
        self.ops = ops
        self.amp = amp  # autocast: 16-bit matmuls on float32 weights, casts on the way
        self.half = half  # the model itself in 16 bits: every activation 16-bit, no casts
        self.lo = lo  # bytes of a 16-bit element (4 in float32 training)
        self.kernel = kernel
        self.device = device
        self.dropout = dropout
        self.dt: list[int] = [0] * len(ops)  # bytes per element of each op's output
        self.index = {op_key(op): i for i, op in enumerate(ops)}

    def source(self, i: int, name: str) -> int | None:
        """The op producing operand `name` (qkv | q | k | v) of attention op i, as its walker names it."""
        prefix = name + "="
        return next((self.index[s[len(prefix):]] for s in self.ops[i].src if s.startswith(prefix)), None)


def _producer(ctx: _Ctx, i: int) -> int | None:
    """The op whose output op i reads: the previous op in the data path (parameter tables are not in
    it; a head skips the heads before it, DeiT's two heads read one norm), or the one its walker names
    (`Op.src`: ResNet's projection shortcut reads the block input, MViTv2's qkv norm1's output), or a
    copy made on the way (`COPY`)."""
    ops = ctx.ops
    op = ops[i]
    if op.src and op.call is None:
        return COPY if op.src[0] == "copy" else ctx.index[op.src[0]]
    j = i - 1
    while j >= 0 and (ops[j].kind == "param" or (op.role == "head" and op.kind == "linear"
                                                   and ops[j].role == "head" and ops[j].kind == "linear")):
        j -= 1
    return j if j >= 0 else None


def _input(ctx: _Ctx, i: int, src: int | None) -> tuple[tuple, int, int]:
    """(key, elements, bytes per element) of the tensor op i reads: its producer's output when the sizes
    agree, or a slice of a norm's output (a class token: the view keeps the whole output), else a new
    tensor made on the way (a pad, a window partition, a transpose copy)."""
    op = ctx.ops[i]
    if reads_constant(op, src is None):
        return ("image",), op.inp, F32 if ctx.amp else ctx.lo
    if src == COPY:
        return ("in", i), op.inp, ctx.dt[i - 1]
    prod = ctx.ops[src]
    if prod.out == op.inp:
        return ("out", src), prod.out, ctx.dt[src]
    if prod.kind == "layer_norm" and op.kind == "linear" and prod.out > op.inp:
        return ("out", src), prod.out, ctx.dt[src]
    return ("in", i), op.inp, ctx.dt[src]


def _norm_rows(op: Op) -> int:
    """Rows of a norm op (its elements over its width; an affine norm has 2 * width parameters)."""
    width = op.cost.params // 2
    return op.inp // width if width else 0


def _matmul_input(ctx: _Ctx, i: int, key: tuple, elems: int, e: int) -> Saved:
    """What a linear/conv saves of its input: the input, or under autocast its 16-bit copy."""
    if ctx.amp and e != ctx.lo:
        return Saved(("cast", i), ctx.ops[i].inp * ctx.lo)
    if key == ("image",):
        return Saved(key, 0)  # the batch is resident
    return Saved(key, elems * e)


def _attention(ctx: _Ctx, i: int, blk: str) -> tuple[list[Saved], int, int]:
    """Saved tensors, backward scratch and forward scratch of a softmax attention op (see the module
    docstring). q, k and v are views of qkv's output, or the outputs of MViTv2's pooling norms, or NAT's
    gathered neighbourhoods (new tensors of `kv` elements)."""
    op = ctx.ops[i]
    a: AttnCall = op.call  # type: ignore[assignment]
    e = ctx.lo
    q, kv, s, rows = a.q * e, a.kv * e, a.scores * e, a.rows
    split = a.batch > 1 and a.heads > 1
    src = ctx.source(i, "qkv")
    qkv = Saved(("out", src), ctx.ops[src].out * ctx.dt[src]) if src is not None else None
    pooled = {w: ctx.source(i, w) for w in "qkv"}
    gathered = "gathered_kv" in op.tags
    if "folded_heads" in op.tags and qkv is not None:  # views of qkv as [3, B'*h, N, d]: a copy when B', h > 1
        qkv = Saved(("fold", i), q + 2 * kv) if split else qkv
        split = False
    saved: list[Saved] = []

    def operand(which: str, nbytes: int, copy: bool) -> Saved:
        j = pooled.get(which)
        if j is not None:
            return Saved(("out", j), ctx.ops[j].out * ctx.dt[j])
        if gathered and which != "q":
            return Saved((which, i), nbytes)
        if copy or qkv is None:
            return Saved((which, i), nbytes)
        return qkv

    # CUDA autocast runs softmax in float32; on the CPU an additive float32 table (Swin's bias, NAT's, a
    # shift mask) promotes the 16-bit scores to float32; either way scores @ v reads a 16-bit copy
    score_e = _score_elem_bytes(ctx, op)
    path = attention_path(a, ctx.kernel, training=True)
    if path == FUSED:
        saved += [operand("q", q, False), operand("k", kv, False), operand("v", kv, False),
                  Saved(("out", i), q), Saved(("lse", i), rows * F32)]
        if a.terms or a.rel:  # the memory-efficient kernel keeps its additive mask
            saved.append(Saved(("mask", i), s if (a.terms > 1 or a.rel) else s // a.batch))
        # dO; dq, dk, dv and the kernel's row sums; then the gradient of their source
        back = (q + q + 2 * kv + rows * F32 + _source_grad(a, e, pooled, gathered),)
        return saved, back, rows * F32
    if path == COMPOSITE:
        return _composite(ctx, i, a, e, split, operand, pooled, gathered, qkv)
    saved.append(Saved(("q", i), q))  # q * scale
    saved.append(operand("k", kv, split))
    saved.append(Saved(("scores", i), a.scores * score_e))
    if score_e != e:  # the float32 softmax output cast back to 16 bits for scores @ v
        saved.append(Saved(("probs", i), s))
    if ctx.dropout:
        saved += [Saved(("mask", i), a.scores * BOOL), Saved(("dropped", i), s)]
    saved.append(operand("v", kv, split))
    if a.rel:
        saved += _rel_pos(ctx, i, a, e, _q_storage(ctx, i, pooled, qkv))
    back = _math_backward(a, e, a.scores * score_e, pooled, gathered)
    # raw scores beside their softmax, the operand copies; MViTv2 adds its decomposed relative positions
    # to the scores through two score-sized temporaries
    fwd = a.scores * score_e * (3 if a.rel and "folded_heads" not in op.tags else 1) + (q + kv if split else 0)
    return saved, back, fwd


def _composite(ctx: _Ctx, i: int, a: AttnCall, e: int, split: bool, operand: Any, pooled: dict, gathered: bool,
               qkv: Saved | None) -> tuple[list[Saved], int, int]:
    """sdpa with a term that needs a gradient runs torch's math composite (`_scaled_dot_product_attention_
    math`): it scales q and k (both saved), saves the softmax output and v; on the CPU it upcasts 16-bit
    inputs to float32 first, so under autocast all four are float32 copies."""
    ce = F32 if ctx.amp and ctx.device == "cpu" else e
    q, kv, s = a.q * ce, a.kv * ce, a.scores * ce
    saved = [Saved(("q", i), q), Saved(("k", i), kv), Saved(("scores", i), s),
             Saved(("v", i), kv) if ce != e else operand("v", kv, split)]
    if a.rel:
        saved += _rel_pos(ctx, i, a, e, _q_storage(ctx, i, pooled, qkv))
    return saved, _math_backward(a, ce, s, pooled, gathered), s + (q + kv if split or ce != e else 0)


def _score_elem_bytes(ctx: _Ctx, op: Op) -> int:
    """Bytes per score element of a math attention: 16 bits under autocast, except that CUDA's autocast runs
    softmax in float32, and that on the CPU a float32 additive term (a bias gathered from a float32 table,
    a shift mask buffer: the walker tags such an attention "f32_terms") promotes the scores to float32;
    decomposed relative positions are matmul outputs, 16-bit."""
    if ctx.amp and (ctx.device == "cuda" or (attention_path(op.call, ctx.kernel, training=True) == MATH
                                             and "f32_terms" in op.tags)):
        return F32
    return ctx.lo


def _source_grad(a: AttnCall, e: int, pooled: dict, gathered: bool) -> int:
    """The gradient q, k and v hand back to their source: stacked into qkv's [.., 3, h, d] layout (NAT's
    gathered k and v scattered back to the grid), nothing to assemble when each comes from its own pooling."""
    if any(j is not None for j in pooled.values()):
        return 0
    return 2 * a.q * e if gathered else (a.q + 2 * a.kv) * e


def _math_backward(a: AttnCall, e: int, s: int, pooled: dict, gathered: bool) -> tuple[int, ...]:
    """The largest set of activation gradients alive inside a math attention's backward:
    scores @ v    dO, dP (score-sized), dV
    softmax       dV, dP, dS
    q k^T         dV, dS, dQ, dK
    assemble      dQ, dK, dV and their source's gradient (`_source_grad`)"""
    q, kv = a.q * e, a.kv * e
    if gathered:  # NAT: dV is scattered back to the grid at once (measured), before the softmax's backward
        return q + s + kv, 2 * s, kv + s + q, kv + q + _source_grad(a, e, pooled, gathered)
    return q + s + kv, kv + 2 * s, 2 * kv + s + q, q + 2 * kv + _source_grad(a, e, pooled, gathered)


def _q_storage(ctx: _Ctx, i: int, pooled: dict, qkv: Saved | None) -> Saved:
    """The storage the queries of a decomposed-rel-pos attention are a view of: MViTv2's pooling norm
    output, or the [3, B'*h, N, d] q/k/v of timm's SAM layout (or qkv's output); with neither named, a
    tensor made on the way (MViTv2's window partition of the pooled q)."""
    j = pooled.get("q")
    if j is not None:
        return Saved(("out", j), ctx.ops[j].out * ctx.dt[j])
    return qkv if qkv is not None else Saved(("q_in", i), ctx.ops[i].call.q * ctx.lo)


def _rel_pos(ctx: _Ctx, i: int, a: AttnCall, e: int, q_store: Saved) -> list[Saved]:
    """Decomposed relative positions (MViTv2, SAM), as `nets.mvit._einsum_axis` runs the two einsums: per
    axis q laid out [axis, rest, d] times the [q?, k?, d] table gathered by relative position, each product
    saving its operands: for w a view of q's storage, for h a copy unless B'*h or qh is 1, and the tables.
    On a clip, or with a class token in front of the grid (`rel_t`, `cls`: MViTv2 on video), each axis's
    operand is a copy of the grid's queries unless that layout is a view (`AttnCall.rel_operand_copied`), and
    the temporal product saves R_t too."""
    qh, qw, kh, kw = a.rel
    d = a.head_dim
    if not (a.cls or a.rel_t):
        rel_q_h = Saved(("rel_q_h", i), a.q * e) if a.batch * a.heads > 1 and qh > 1 else q_store
        return [rel_q_h, q_store, Saved(("rel_h", i), qh * kh * d * e), Saved(("rel_w", i), qw * kw * d * e)]
    axes = [("h", 1, qh, kh), ("w", 2, qw, kw)] + ([("t", 0, *a.rel_t)] if a.rel_t else [])
    return [s for name, axis, q, k in axes
            for s in (Saved((f"rel_q_{name}", i), a.grid_rows * d * e) if a.rel_operand_copied(axis) else q_store,
                      Saved((f"rel_{name}", i), q * k * d * e))]


def _linear_attention(ctx: _Ctx, i: int, blk: str) -> tuple[list[Saved], int, int]:
    """nets.vit.linear_attend: elu saves k and q (views of qkv), phi(k)^T v saves phi(k) and v (copies
    when head-split views), phi(q) @ state and phi(q) @ k_sum save phi(q) (a copy for each when split)
    and their right operands, the division its numerator and denominator."""
    op = ctx.ops[i]
    a: LinearAttnCall = op.call  # type: ignore[assignment]
    e = ctx.lo
    q, st, ks, rows = a.q * e, a.state * e, a.k_sum * e, a.rows * e
    split = a.batch > 1 and a.heads > 1
    src = ctx.source(i, "qkv")
    qkv = Saved(("out", src), ctx.ops[src].out * ctx.dt[src]) if src is not None else Saved(("qkv", i), 3 * q)
    saved = [qkv, Saved(("phi_k", i), q), Saved(("state", i), st), Saved(("k_sum", i), ks), Saved(("num", i), q),
             Saved(("den", i), rows), Saved(("phi_q", i), q)]
    if split:
        saved += [Saved(("v", i), q), Saved(("phi_q2", i), q)]
    return saved, (4 * q + st + 3 * q,), q + st  # dO, d phi(q), d phi(k), dv, d state; then d qkv


def _cosine_attention(ctx: _Ctx, i: int, blk: str) -> tuple[list[Saved], int, int]:
    """SwinV2's scaled cosine attention (nets.swinv2.WindowAttention): F.normalize saves q and k (views
    of qkv + bias) with their norms and clamped denominators (float32-sized rows each), the logit-scale
    product saves normalize(q); q k^T, the softmax and scores @ v as in dot-product attention (copies of
    the products' operands when head-split), the continuous position bias its ReLU output and sigmoid."""
    op = ctx.ops[i]
    a: AttnCall = op.call  # type: ignore[assignment]
    e = ctx.lo
    q, kv = a.q * e, a.kv * e
    split = a.batch > 1 and a.heads > 1
    src = ctx.source(i, "qkv")
    qkv = Saved(("out", src), ctx.ops[src].out * ctx.dt[src]) if src is not None else Saved(("qkv", i), 3 * q)
    rows = a.batch * a.heads * (a.nq + a.nkv) * e
    score_e = _score_elem_bytes(ctx, op)
    s = a.scores * score_e
    # normalize: q and k (qkv), their norms and clamped denominators; exp(logit scale); normalize(q);
    # the bias: 16 * sigmoid of the gathered [N, N, h] table keeps its sigmoid output
    common = [qkv, Saved(("norms", i), 2 * rows), Saved(("logit_scale", i), a.heads * F32),
              Saved(("q_normed", i), q), Saved(("sigmoid", i), a.nq * a.nkv * a.heads * e)]
    path = attention_path(a, ctx.kernel, training=True)
    if path == FUSED:
        return common + [Saved(("q", i), q), Saved(("k", i), kv), Saved(("out", i), q),
                         Saved(("lse", i), a.rows * F32)], (2 * q + 2 * kv + a.rows * F32 + 3 * q,), a.rows * F32
    if path == COMPOSITE and ctx.amp and ctx.device == "cpu":  # the math composite in float32 (`_composite`)
        s4 = a.scores * F32
        return common + [Saved(("q", i), a.q * F32), Saved(("k", i), a.kv * F32), Saved(("scores", i), s4),
                         Saved(("v", i), a.kv * F32)], _math_backward(a, F32, s4, {}, False), s4
    saved = common + [Saved(("q", i), q), Saved(("k", i), kv), Saved(("scores", i), s)]
    if score_e != e:  # the float32 softmax output cast back to 16 bits for scores @ v
        saved.append(Saved(("probs", i), a.scores * e))
    if split:
        saved.append(Saved(("v", i), kv))
    return saved, _math_backward(a, e, s, {}, False), s


def _dtype(ctx: _Ctx, i: int, src: int | None, stream: int) -> int:
    """Bytes per element of op i's output under the options: the op table's autocast rule
    (`ops.autocast_width`), or the one width of a run without autocast."""
    if not ctx.amp:
        return ctx.lo
    din = ctx.dt[src] if src is not None else F32
    after_param = bool(i) and ctx.ops[i - 1].kind == "param"
    return autocast_width(kind_of(ctx.ops[i]), din, stream, ctx.lo, ctx.device, after_param)


def _backward_live(ctx: _Ctx, i: int, grad: str, out_bytes: int, in_bytes: int, e: int) -> tuple[int, ...]:
    """The bytes op i's backward holds (`ops.OpKind.grad`): the gradient arriving at its output and the one
    it gives its input; an add hands its gradient on as it is, a parameter's arrives through the op that
    reads it; SwiGLU's holds dY, then d(SiLU out) and dx (the product's two), then SiLU's own backward and
    d(gate); top-k's gather of the value rows scatters into a zero-filled [B', h, N, N, d] gradient (the
    value rows broadcast over the queries) before summing it to v's."""
    ops = ctx.ops
    if grad == "through" or "detached" in ops[i].tags:
        return (0,)
    if grad == "glu":
        return (3 * out_bytes, 3 * out_bytes + in_bytes)
    if grad == "gather" and ops[i - 1].kind == "softmax":
        return (out_bytes + 2 * ops[i - 3].out * (ops[i].out // ops[i - 1].out) * e,)
    return (out_bytes + in_bytes,)


def _saved(ctx: _Ctx, i: int, key: tuple, elems: int, e: int) -> list[Saved]:
    """What op i saves for its backward, by its kind's tokens in the op table (`ops.saves`); the attention
    calls' are their own functions'."""
    op = ctx.ops[i]
    out: list[Saved] = []
    if "detached" in op.tags:  # its backward never runs
        return out
    stat = ctx.lo if ctx.half else F32
    for token in saves(op):
        if token == "matmul_input":
            out.append(_matmul_input(ctx, i, key, elems, e))
            if ctx.amp:  # autocast's 16-bit copy of the weight (the bias is not needed by the backward)
                out.append(Saved(("weight_cast", i), _weight_elems(op) * ctx.lo))
        elif token == "input":
            out.append(Saved(key, 0 if key == ("image",) else elems * e))  # the batch is resident
        elif token == "output":  # in place (ReLU): the storage the next op reads
            out.append(Saved(("out", i), op.out * ctx.dt[i]))
        elif token == "row_stats":
            out.append(Saved(("stats", i), 2 * _norm_rows(op) * stat))
        elif token == "channel_stats":
            out.append(Saved(("stats", i), op.cost.params * stat))
        elif token == "index":
            out.append(Saved(("index", i), op.out * INT64))
        elif token == "matmul_operands":
            out += _matmul_saves(ctx, i, e)
        elif token == "intermediate":  # SwiGLU's SiLU output (its input, the gate, is a view of fc1's output)
            out.append(Saved(("mid", i), op.out * ctx.dt[i]))
        elif token == "order":  # EViT's int64 order of the patch tokens, which the gathers save
            out.append(Saved(("order", i), op.out * INT64))
        elif token == "sources" and op.src:  # a gather from a producer's output (BiFormer's keys and values, a
            # view of qkv): torch.gather saves that storage and the int64 indices the top-k before it picked
            j = ctx.index[op.src[0]]
            out += [Saved(("out", j), ctx.ops[j].out * ctx.dt[j]), Saved(("order", i - 1), ctx.ops[i - 1].out * INT64)]
        elif token == "sources" and ctx.ops[i - 1].kind != "softmax":  # EViT's gather: its sources (the block's
            out.append(Saved((op.kind, i), op.inp * e))  # sum, the ranking); the fusion: its two operands
    return out


def _widths(ctx: _Ctx, blocks: list[str]) -> None:
    """Each op's output width (`ctx.dt`), in forward order: a block's residual stream starts at the width
    of the block's input and takes the width of each residual add at the block's path."""
    stream = F32
    current = ""
    for i, op in enumerate(ctx.ops):
        src = _producer(ctx, i)
        if blocks[i] != current:
            current, stream = blocks[i], _input(ctx, i, src)[2]
        ctx.dt[i] = _dtype(ctx, i, src, stream)
        if blocks[i] and op.kind == "add" and op.path == blocks[i]:
            stream = ctx.dt[i]


def step_ops(est: Estimate, kernel: Kernel = Kernel.math, device: str = "cpu", dropout: bool = False,
             half: bool = False) -> list[StepOp]:
    """Every op of the forward with what it saves for the backward, and the loss (see the module
    docstring); `half`: the model itself in the estimate's 16-bit type, not autocast."""
    ops = est.ops
    low = est.dtype is not Dtype.fp32
    ctx = _Ctx(ops, low and not half, est.dtype.bytes if low else F32, kernel, device, dropout,
               half and low)
    blocks = [op.block.prefix if op.block else "" for op in ops]
    _widths(ctx, blocks)
    out: list[StepOp] = []
    for i, op in enumerate(ops):
        blk = blocks[i]
        src = _producer(ctx, i)
        key, elems, e = _input(ctx, i, src)
        kind = op.kind
        entry = kind_of(op)
        saved = _saved(ctx, i, key, elems, e)
        back: tuple[int, ...] = ()
        fwd = 0
        if entry.time == "attention":
            attend = _linear_attention if kind == "linear_attention" else \
                _cosine_attention if "cosine" in op.tags else _attention
            saved_a, back, fwd = attend(ctx, i, blk)
            saved += saved_a
        if ctx.dropout and blk and kind == "add" and op.path == blk:  # dropout on the branch before the add
            saved.append(Saved(("drop_mask", i), (ops[i - 1].out if i else op.out) * BOOL))
        out_bytes = op.out * ctx.dt[i]
        in_bytes = elems * e if key != ("image",) else 0
        if entry.product:
            back = _product_backward(ctx, op, out_bytes, in_bytes, e, key)
        elif entry.time != "attention":
            back = _backward_live(ctx, i, entry.grad, out_bytes, in_bytes, e)
        if blk and kind == "add" and op.path == blk and out and ctx.dt[i - 1] == ctx.dt[i] \
                and _feeds_add(op, out[-1]):
            # the branch's gradient is the residual add's (one tensor handed to both operands)
            last = out[-1]
            out[-1] = last._replace(back_live=(last.back_live[0] - last.out_bytes, *last.back_live[1:]))
        out.append(StepOp(i, op, blk, tuple(s for s in saved if s.nbytes), out_bytes, in_bytes,
                          op.cost.params * (ctx.lo if ctx.half else F32), back, fwd))
    out.append(_loss_step(est, len(ops), ctx.dt[-1] if ops else F32, ctx.half))
    return out


def _matmul_saves(ctx: _Ctx, i: int, e: int) -> list[Saved]:
    """What a product of two activations saves. Top-k attention's scores (their walker names qkv in
    `Op.src`): the scaled q and K, a view of qkv (its storage), copied when tagged split_heads; its weighted
    sum of the gathered value rows: the softmax output and the rows; EViT's class-token product: both
    operands (matmul copies the strided K^T to fold the batch)."""
    ops = ctx.ops
    op = ops[i]
    if op.src:
        j = ctx.index[op.src[0]]
        q = ops[i - 1].out
        out = [Saved(("out", i - 1), q * e), Saved(("out", j), ops[j].out * ctx.dt[j])]
        return out + [Saved(("copy", i), q * e)] if "split_heads" in op.tags else out
    if i >= 2 and ops[i - 1].kind == "gather" and ops[i - 2].kind == "softmax":
        return [Saved(("out", i - 2), ops[i - 2].out * ctx.dt[i - 2]), Saved(("out", i - 1), ops[i - 1].out * e)]
    return [Saved(("matmul", i), op.inp * e)]


def _weight_elems(op: Op) -> int:
    """A linear/conv's weight elements: its parameters less its bias (as many as its output channels,
    present when the op adds one, `Cost.eltwise`)."""
    if not op.cost.eltwise or not op.out:
        return op.cost.params
    # the bias has one element per output channel; with r = out / inp = fout / fin (the rows cancel) the
    # parameters fin * fout + fout = fout^2 / r + fout give fout = r * (sqrt(1 + 4 * params / r) - 1) / 2

    if not op.inp:
        return op.cost.params
    r = op.out / op.inp
    return op.cost.params - round(r * (math.sqrt(1 + 4 * op.cost.params / r) - 1) / 2)


def _product_backward(ctx: _Ctx, op: Op, out_bytes: int, in_bytes: int, e: int, key: tuple) -> tuple[int, ...]:
    """A linear/conv's backward holds dY, dX and dW: dW is the parameter's float32 gradient, or under
    autocast a 16-bit one then cast to float32 (the cast counted with the gradients); dX of an input
    autocast had cast is cast back to the input's type (both alive at the cast). No dX for the image."""
    if key == ("image",):
        in_bytes = 0
    if not ctx.amp:
        return (out_bytes + in_bytes + op.cost.params * ctx.lo,)  # float32, or the 16-bit model's own type
    lo_in = op.inp * ctx.lo if in_bytes else 0
    back_cast = lo_in + in_bytes if e != ctx.lo else 0
    return out_bytes + lo_in + op.cost.params * ctx.lo, back_cast + op.cost.params * F32


def _feeds_add(add: Op, last: StepOp) -> bool:
    """Whether `last`, the op before the residual `add`, hands its output to the add as it is (or through a
    view), so that the gradient arriving at it is the residual stream's own: a linear, norm or scale, unless
    the walker says the branch reaches the add through a copy or the add runs in place ("branch_copied":
    a windowed attention's window reverse, crop and roll; ResNet's add on bn3's output)."""
    return "branch_copied" not in add.tags and last.op.kind in ("linear", "layer_norm", "scale")


def _loss_step(est: Estimate, index: int, e: int, half: bool = False) -> StepOp:
    """Cross-entropy of the logits (the last op's output), a step of its own: it saves its
    log-probabilities (float32: autocast runs the loss in float32; a 16-bit model's own type); its backward
    holds their gradient and the logits'; under autocast its forward casts the 16-bit logits to float32."""
    logits = est.ops[-1].out if est.ops else 0
    loss = Op("loss", "loss", "head", Cost(), 1, logits)
    le = e if half else F32
    back = (2 * logits * le,)  # autocast's cast back to the logits' type comes after the first is freed
    return StepOp(index, loss, "", (Saved(("log_probs", index), logits * le),), le, logits * e, 0, back,
                  logits * F32 if e != le else 0)


# ---------------------------------------------------------------------------------------------
# Checkpointed runs


def checkpoint_runs(steps: list[StepOp], every: int) -> list[tuple[int, int]]:
    """(first, last) op indices of each checkpointed run of `every` consecutive blocks of a stage."""
    if every < 1:
        return []
    runs: list[tuple[int, int]] = []
    order: list[str] = []
    span: dict[str, list[int]] = {}
    for s in steps:
        if s.block:
            if s.block not in span:
                order.append(s.block)
                span[s.block] = [s.index, s.index]
            span[s.block][1] = s.index
    stage_of = {s.block: s.op.block.stage for s in steps if s.block}
    count = 0
    for p in order:
        first, last = span[p]
        if runs and count < every and stage_of[p] == stage_of[order[order.index(p) - 1]]:
            runs[-1] = (runs[-1][0], last)
            count += 1
        else:
            runs.append((first, last))
            count = 1
    return runs


# ---------------------------------------------------------------------------------------------
# The step


@dataclass(frozen=True)
class TrainMemory:
    """Predicted memory of one training step, in bytes, part by part (see the module docstring)."""

    model: str
    res: tuple[int, int]
    batch: int
    dtype: str  # fp32, or the 16-bit type autocast runs in (fp32 master weights)
    attn: str
    optimizer: str
    checkpoint: int  # blocks per checkpointed run; 0 = none
    device: str
    weights: int
    gradients: int
    optimizer_state: int
    input: int  # the batch (and its labels)
    activations_saved: int  # what the forward leaves for the backward (checkpointing: the runs' inputs)
    weight_casts: int  # autocast's 16-bit copies of the weights held for the backward
    forward_peak: int  # on top of the resident bytes (weights, optimizer state, batch)
    backward_peak: int
    optimizer_peak: int
    step_peak: int  # resident + the largest phase peak
    peak_at: str  # phase and op where the step peak is reached
    recompute_macs: int  # forward MACs run again by checkpointing
    recompute: Cost = Cost()  # the cost vector of that forward (project it onto any convention)
    precision: str = "fp32"  # fp32 | autocast | half
    saved_by_layer: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def resident(self) -> int:
        return self.weights + self.optimizer_state + self.input

    def parts(self) -> dict[str, int]:
        """The parts as a flat dict (JSON rows)."""
        return {"weights": self.weights, "gradients": self.gradients, "optimizer_state": self.optimizer_state,
                "input": self.input, "activations_saved": self.activations_saved,
                "weight_casts": self.weight_casts, "forward_peak": self.forward_peak,
                "backward_peak": self.backward_peak, "optimizer_peak": self.optimizer_peak,
                "step_peak": self.step_peak}


class Walk(NamedTuple):
    """The forward and backward walked op by op (`_simulate`)."""

    after_forward: int  # saved bytes when the forward and the loss are done (weight casts included)
    storages: dict[tuple, int]  # the storages saved then
    steps: dict[str, int]  # every candidate for a phase peak: "forward <op>", "backward <op>[ #k]", ...
    recompute: Cost  # the forward ops run again by checkpointing

    def peak(self, phase: str) -> tuple[int, str]:
        """The largest candidate of `phase` (forward | backward, recomputation included) and its name."""
        best, where = 0, ""
        for name, nbytes in self.steps.items():
            if name.split(" ", 1)[0] in ((phase,) if phase == "forward" else ("backward", "recompute")) \
                    and nbytes > best:
                best, where = nbytes, name
        return best, where


class _Live:
    """The storages alive during a walk, and every candidate for a phase's peak recorded on the way."""

    def __init__(self) -> None:
        self.alive: dict[tuple, int] = {}
        self.total = 0
        self.record: dict[str, int] = {}
        self.owner: dict[str, int] = {}

    def keep(self, key: tuple, nbytes: int) -> None:
        if key not in self.alive:
            self.alive[key] = nbytes
            self.total += nbytes

    def free(self, key: tuple) -> None:
        if key in self.alive:
            self.total -= self.alive.pop(key)

    def at(self, name: str, nbytes: int, index: int = -1) -> None:
        """Record a candidate; a second op of the same path (a block's two residual adds) gets its own name."""
        first = self.owner.setdefault(name, index)
        if first != index:
            name = f"{name} ({sum(1 for j in self.owner.values() if j == index) and index})"
            self.owner.setdefault(name, index)
        if nbytes > self.record.get(name, -1):
            self.record[name] = nbytes


def _simulate(steps: list[StepOp], runs: list[tuple[int, int]], held: int, stream: dict[str, int],
              run_forward: dict[str, dict[str, int]] | None = None) -> Walk:
    """Walk the forward and then the backward, op by op, recording the live bytes at every step that can
    hold a phase's peak. `held`: bytes the loop keeps referenced from the forward's end through the
    backward (the logits); `run_forward`: per block, the live bytes at each step of its forward when
    nothing is saved (the inference model's, block input included)."""
    in_run = {j: r for r, (first, last) in enumerate(runs) for j in range(first, last + 1)}
    size: dict[tuple, int] = {}
    release: dict[tuple, int] = {}  # a storage is freed after the backward of the first op saving it
    for s in steps:
        for sv in s.saved:
            release[sv.key] = min(release.get(sv.key, s.index), s.index)
            size[sv.key] = max(size.get(sv.key, 0), sv.nbytes)
    run_input = {r: (("run_input", r), stream.get(steps[first].block, steps[first].in_bytes))
                 for r, (first, _) in enumerate(runs)}
    live = _Live()
    _forward(live, steps, in_run, run_input, size, run_forward or {}, held)
    after_forward, storages = live.total, dict(live.alive)
    recompute = _backward(live, steps, runs, in_run, run_input, size, release, held, stream)
    return Walk(after_forward, storages, live.record, Cost.sum(recompute))


def _forward(live: _Live, steps: list[StepOp], in_run: dict[int, int], run_input: dict[int, tuple[tuple, int]],
             size: dict[tuple, int], run_forward: dict[str, dict[str, int]], held: int) -> None:
    """The forward: every op keeps what it saves; a checkpointed run keeps its input only and runs as in
    inference; autocast caches every weight it casts until the forward ends (`cache`: the casts no op
    saves, those inside runs)."""
    cache = 0
    for s in steps:
        r = in_run.get(s.index)
        name = s.op.path or s.op.kind
        if r is not None:  # a run's forward saves nothing: the block runs as in inference
            cache += next((sv.nbytes for sv in s.saved if sv.key[0] == "weight_cast"), 0)
            key, nbytes = run_input[r]
            live.keep(key, nbytes)
            inside = run_forward.get(s.block) or {name: s.in_bytes + s.out_bytes + s.fwd_scratch}
            for step, nb in inside.items():
                live.at(f"forward {step}", live.total + cache - nbytes + nb)
            continue
        for sv in s.saved:
            live.keep(sv.key, size[sv.key])
        live.at(f"forward {name}", live.total + cache + s.out_bytes + s.fwd_scratch
                + (held if s is steps[-1] else 0), s.index)


def _backward(live: _Live, steps: list[StepOp], runs: list[tuple[int, int]], in_run: dict[int, int],
              run_input: dict[int, tuple[tuple, int]], size: dict[tuple, int], release: dict[tuple, int],
              held: int, stream: dict[str, int]) -> list[Cost]:
    """The backward, last op first: a run is recomputed when the backward reaches it, up to its last
    saving op; a storage is freed once the first op saving it has run its backward. Returns the costs
    of the recomputed ops."""
    grads = 0
    recompute: list[Cost] = []
    freed: dict[int, list[tuple]] = {}
    for key, j in release.items():
        freed.setdefault(j, []).append(key)
    done: set[int] = set()
    for s in reversed(steps):
        r = in_run.get(s.index)
        if r is not None and r not in done:
            done.add(r)
            first, last = runs[r]
            stop = max((j for j in range(first, last + 1) if steps[j].saved), default=first)
            for j in range(first, stop + 1):
                t = steps[j]
                recompute.append(t.op.cost)
                for sv in t.saved:
                    live.keep(sv.key, size[sv.key])
                live.at(f"recompute {t.op.path}", live.total + held + grads + stream.get(t.block, 0) + t.out_bytes
                        + t.fwd_scratch, t.index)
        residual_add = s.op.kind == "add" and s.op.path == s.block
        pending = stream.get(s.block, 0) if s.block and not residual_add else 0
        product = s.op.kind in OPS and OPS[s.op.kind].product
        own = 0 if product else s.grad_bytes  # a product's dW is in its back_live
        name = s.op.path or s.op.kind
        for k, bytes_live in enumerate(s.back_live):
            live.at(f"backward {name}" + (f" #{k}" if k else ""),
                    live.total + held + grads + own + pending + bytes_live, s.index)
        grads += s.grad_bytes
        for key in freed.get(s.index, ()):
            live.free(key)
        if r is not None and s.index == runs[r][0]:
            live.free(run_input[r][0])
    return recompute


def _run_forward(est: Estimate, kernel: Kernel) -> dict[str, dict[str, int]]:
    """Per block, the live bytes at each step of its forward when autograd saves nothing (inside a
    checkpointed run): the inference model's steps (`memory.activation_steps`), which include the block
    input and what the containers hold. A call whose learned term makes sdpa run the math composite in
    training materialises its scores: those blocks are read off the math model."""
    from vitcost.analytic.memory import activation_steps

    composite = any(op.call is not None and attention_path(op.call, kernel, training=True) == COMPOSITE
                    for op in est.ops)
    steps = activation_steps(est, Kernel.math if composite else kernel).steps
    prefixes = sorted({op.block.prefix for op in est.ops if op.block}, key=len, reverse=True)
    out: dict[str, dict[str, int]] = {}
    for name, nbytes in steps.items():
        head = name.split(" ", 1)[0]
        for p in prefixes:
            if head == p or head.startswith(p + "."):
                out.setdefault(p, {})[name] = nbytes
                break
    return out


def _stream_sizes(steps: list[StepOp]) -> dict[str, int]:
    """Bytes of each block's input, its residual stream: what a checkpointed run keeps, and the gradient
    held while the block's branches run back. The input of the block's first op, unless that op reads a
    copy (SwinV2's attention reads the rolled, padded windows): then the residual add's output."""
    out: dict[str, int] = {}
    first: dict[str, StepOp] = {}
    for s in steps:
        if not s.block or s.op.kind == "param":
            continue
        if s.block not in first:
            first[s.block] = s
            if s.saved and s.saved[0].key[0] == "in" or not s.in_bytes:
                continue
            out[s.block] = s.in_bytes
        elif s.block not in out and s.op.kind == "add" and s.op.path == s.block:
            out[s.block] = s.out_bytes
    return out


def _check_choices(device: str, precision: str) -> None:
    """The two plain-string options, checked (not parsed: the edge has parsed them)."""
    if device not in DEVICES:
        raise VitcostError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}.")
    if precision not in PRECISIONS:
        raise VitcostError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}.")


def train_memory(est: Estimate, optimizer: Optimizer = Optimizer.adamw, checkpoint: int = 0,
                 attn: Kernel | None = None, device: str = "cpu", dropout: bool = False,
                 precision: str = "autocast") -> TrainMemory:
    """Predicted memory of one training step of `est` (its design, resolution and batch) with `optimizer`
    (`vocab.Optimizer`), activation `checkpoint` (0: none; k: k blocks per checkpointed run, 1 = "block",
    `parse_checkpoint`) and attention kernel
    `attn` (default: the estimate's), for `device`'s autocast lists and optimizer implementation (cpu |
    cuda). The estimate's dtype: fp32, or bf16/fp16 meaning, with `precision` "autocast" (the default),
    mixed precision under torch.autocast with float32 weights, gradients and optimizer state; with
    "half", the model itself in 16 bits (`model.to(dtype)`: weights, gradients, activations and torch's
    optimizer state in 16 bits). `dropout`: dropout layers after the attention probabilities and on both
    residual branches, saving their masks (Korthikanti et al. 2022's configuration).

    >>> m = train_memory(vitcost.estimate("vit_b16", 224, batch=32, dtype="bf16"), Optimizer.adamw, checkpoint=1)
    >>> m.step_peak, m.activations_saved, m.parts()
    """
    _check_choices(device, precision)
    opt, every = Optimizer(optimizer).value, checkpoint
    kernel = est.attn if attn is None else attn
    half = precision == "half" and est.dtype is not Dtype.fp32
    steps = step_ops(est, kernel, device, dropout, half)
    runs = checkpoint_runs(steps, every)
    if every and not runs:
        raise VitcostError(f"{est.model} has no blocks to checkpoint.")
    blocks = len({s.block for s in steps if s.block})
    if every > blocks:
        raise VitcostError(f"checkpoint {every}: {est.model} has {blocks} blocks, so a run of {every} blocks "
                           f"cannot be formed; use at most {blocks} (or block).")
    stream = _stream_sizes(steps)
    held = steps[-2].out_bytes if len(steps) > 1 else 0  # the logits, referenced by the loop
    run_fwd = _run_forward(est, kernel) if runs else None
    walk = _simulate(steps, runs, held, stream, run_fwd)
    fwd_peak, _ = walk.peak("forward")
    bwd_peak, where = walk.peak("backward")
    storages, after = walk.storages, walk.after_forward
    wbytes = est.dtype.bytes if half else F32
    weights = est.params * wbytes
    state = STATE_COPIES[opt] * weights + (param_tensors(est.ops) * F32 if opt == "adamw" else 0)
    casts = sum(nb for key, nb in storages.items() if key[0] == "weight_cast")
    grads = weights
    # the update's temporaries: single-tensor AdamW (CPU) two copies of one tensor, multi-tensor (CUDA)
    # one copy of all weights
    largest = max((op.cost.params for op in est.ops), default=0) * wbytes
    update = {"none": 0, "sgd": 0, "adamw": 2 * largest if device == "cpu" else weights}[opt]
    opt_peak = grads + update
    inp = est.input_elems * (wbytes if half else F32) + _labels(est)
    phases = {"forward": fwd_peak, "backward": bwd_peak, "optimizer": opt_peak}
    phase = max(phases, key=phases.__getitem__)
    return TrainMemory(
        model=est.model, res=est.res, batch=est.batch, dtype=est.dtype.value, attn=kernel.value, optimizer=opt,
        checkpoint=every, device=device, weights=weights, gradients=grads, optimizer_state=state, input=inp,
        activations_saved=after - casts, weight_casts=casts, forward_peak=fwd_peak, backward_peak=bwd_peak,
        optimizer_peak=opt_peak, step_peak=weights + state + inp + phases[phase],
        peak_at=where if phase == "backward" else phase, recompute_macs=walk.recompute.macs, recompute=walk.recompute,
        precision="half" if half else ("autocast" if est.dtype is not Dtype.fp32 else "fp32"),
        saved_by_layer=_saved_by_layer(steps, storages))


def _saved_by_layer(steps: list[StepOp], storages: dict[tuple, int]) -> dict[str, int]:
    """The saved activations per layer path, each storage at the first op that saves it (weight casts apart)."""
    by_layer: dict[str, int] = {}
    seen: set[tuple] = set()
    for s in steps:
        for sv in s.saved:
            if sv.key in storages and sv.key not in seen and sv.key[0] != "weight_cast":
                seen.add(sv.key)
                by_layer[s.op.path] = by_layer.get(s.op.path, 0) + sv.nbytes
    return by_layer


def _labels(est: Estimate) -> int:
    """The int64 labels: one per image, or one per logit row (the pixel model predicts every pixel)."""
    last = est.ops[-1] if est.ops else None
    vocab = getattr(est.spec, "vocab", 0)
    if last is not None and vocab:
        return last.out // vocab * INT64
    return est.batch * INT64


def param_tensors(ops: Sequence[Op]) -> int:
    """Parameter tensors (AdamW keeps a step counter for each): weight and bias of linear/conv layers with
    a bias, the weight of those without, a norm's scale and shift, one per table or token."""
    n = 0
    for op in ops:
        if not op.cost.params:
            continue
        if op.kind in ("linear", "conv"):
            n += 2 if op.cost.eltwise else 1
        elif op.kind in ("layer_norm", "batch_norm"):
            n += 2
        else:
            n += 1
    return n




def step_candidates(est: Estimate, opts: dict[str, Any]) -> dict[str, int]:
    """Every candidate for the step peak (resident bytes + a phase candidate), by name: what the memory
    wall of training (`memory_wall.train_memory_wall`) solves from; `opts` are `train_memory`'s."""
    m = train_memory(est, **opts)
    resident = m.weights + m.optimizer_state + m.input
    steps = _walk(est, opts).steps
    out = {name: resident + nbytes for name, nbytes in steps.items()}
    if m.optimizer == "adamw" and m.device == "cpu":  # the update's two copies of one tensor: each tensor's
        wbytes = m.weights // est.params if est.params else F32  # own candidate (the largest one may change)
        for op in est.ops:
            if op.cost.params:
                out[f"optimizer {op.path}"] = resident + m.gradients + 2 * op.cost.params * wbytes
    else:
        out["optimizer"] = resident + m.optimizer_peak
    return out


def _walk(est: Estimate, opts: dict[str, Any]) -> Walk:
    kernel = est.attn if opts.get("attn") is None else opts["attn"]
    half = opts.get("precision", "autocast") == "half" and est.dtype is not Dtype.fp32
    steps = step_ops(est, kernel, opts.get("device", "cpu"), opts.get("dropout", False), half)
    runs = checkpoint_runs(steps, opts.get("checkpoint", 0))
    held = steps[-2].out_bytes if len(steps) > 1 else 0
    return _simulate(steps, runs, held, _stream_sizes(steps), _run_forward(est, kernel) if runs else None)


__all__ = ["TrainMemory", "train_memory", "step_candidates", "step_ops", "checkpoint_runs",
           "STATE_COPIES", "StepOp", "Saved"]
