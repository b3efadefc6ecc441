"""Predicted memory of one forward (inference), an estimate of training memory, and the memory wall.

All figures come from the analytic op list (`Estimate.ops`): each op gives the size of the tensor it
produces, so the sizes of the residual stream, the qkv projection, the queries, the score matrices
and the MLP hidden layer of every block are read off it. What the model adds is *which of those
tensors are alive at the same time*, and that is a property of how the forward is executed. The
model follows eager PyTorch running the reference modules of `vitcost.nets`:

* a tensor lives while a Python name, an argument or a view refers to it; a temporary dies when the
  call it was passed to returns (`fc2(act(fc1(x)))` holds fc1's and GELU's outputs together at GELU);
* the caller keeps the input of every block alive while the block runs (`x = block(x)` rebinds only
  after the call), and a stage's caller keeps the stage input alive while the stage's later blocks run;
* a batched matmul of head-split q/k/v views ([B', h, N, d] permuted out of [B', N, 3, h, d]) copies
  each operand to a contiguous buffer when both B' > 1 and h > 1 (torch.matmul folds the batch dims
  with `reshape`, which cannot view such a layout); merging the heads back (`transpose(1, 2).reshape`)
  copies when h > 1;
* materialised (math) attention holds the raw scores and the softmax output together
  (2 * B*h*Nq*Nkv elements) plus any additive terms (Swin's [h, N, N] bias, MViTv2's decomposed
  relative positions, which expand to a full [B, h, Nq, Nkv] term); fused attention (flash,
  memory-efficient) holds only its output and a float32 log-sum-exp of B*h*Nq, and the summed additive
  terms when it is given a mask.

Per block the model evaluates the live bytes at each step that can be the peak (the q k^T product,
the softmax, scores @ v, the projection, the MLP's GELU, pooling, patch merging, the head) and the
peak is the largest. Weights and the input are resident before the forward starts and are reported
apart: `activation_peak_bytes` is what the forward adds on top of them, the figure a CUDA allocator's
`max_memory_allocated` minus the memory allocated before the forward gives.

Small terms are left out: LayerNorm's float32 mean and rstd (2 * rows * 4 bytes, alive only inside
the norm), index tensors of relative-position gathers, and scratch buffers inside single kernels.

Training memory (`train_*`) is an estimate, labelled as such: weights, their gradients, and the
activations autograd saves for the backward (inputs of linear/conv/matmul, LayerNorm and GELU
inputs, softmax outputs; fused attention saves q, k, v, its output and the log-sum-exp instead of
the scores); optimizer state is not included (Adam adds 2x the weights in float32).

No torch here: this module is part of the analytic layer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vitcost.analytic.cost import Op
from vitcost.analytic.estimate import Estimate, estimate
from vitcost.errors import VitcostError
from vitcost.specs import MixerSpec, MViTSpec, PixelSpec, Spec, SwinSpec, ViTSpec

LSE_BYTES = 4  # fused attention keeps a float32 log-sum-exp per query row
INDEX_BYTES = 8  # max-pool indices are int64
ATTN_KINDS = ("math", "fused")
_BLOCK = re.compile(r"^(.*?blocks\.\d+)(?:\.|$)")


@dataclass(frozen=True)
class MemoryPrediction:
    """Predicted bytes of one forward at one resolution, batch and dtype."""

    attn: str  # math | fused
    weights_bytes: int
    input_bytes: int
    activation_peak_bytes: int  # peak bytes the forward allocates on top of weights and input
    peak_at: str  # the step where the peak is reached ("blocks.3 softmax")
    score_bytes: int  # attention-score bytes materialised by the forward, all layers summed
    score_peak_bytes: int  # the largest single layer's score tensor
    train_activation_bytes: int  # estimate: activations saved for the backward
    train_total_bytes: int  # estimate: weights + gradients + saved activations (no optimizer state)

    @property
    def total_bytes(self) -> int:
        """Everything resident at the inference peak: weights, input and activations."""
        return self.weights_bytes + self.input_bytes + self.activation_peak_bytes


def normalise_attn(attn: str) -> str:
    """math -> math; sdpa, flash, efficient, fused -> fused."""
    if attn == "math":
        return "math"
    if attn in ("sdpa", "flash", "efficient", "fused", "cudnn"):
        return "fused"
    raise VitcostError(f"unknown attention kernel {attn!r}; choose from math, sdpa, flash, efficient.")


# ---------------------------------------------------------------------------------------------
# Reading sizes off the op list


class _Block:
    """The ops of one block (path prefix `p`), looked up by path suffix and kind."""

    def __init__(self, prefix: str, ops: list[Op]) -> None:
        self.p = prefix
        self.ops = ops

    def find(self, suffix: str, kind: str | None = None) -> Op | None:
        path = f"{self.p}.{suffix}" if suffix else self.p
        for op in self.ops:
            if op.path == path and (kind is None or op.kind == kind):
                return op
        return None

    def out(self, suffix: str, kind: str | None = None, default: int = 0) -> int:
        op = self.find(suffix, kind)
        return default if op is None else op.out

    def attention(self) -> _Attn | None:
        """The score group of `{p}.attn`: scale, q k^T, [rel-pos, terms], softmax, @ v."""
        path = f"{self.p}.attn"
        group = [op for op in self.ops if op.path == path]
        kinds = [op.kind for op in group]
        if "softmax" not in kinds:
            return None
        i_sm = kinds.index("softmax")
        matmuls = [i for i, k in enumerate(kinds) if k == "matmul"]
        qk, av = group[matmuls[0]], group[next(i for i in matmuls if i > i_sm)]
        sm = group[i_sm]
        scale = next(op for op in group if op.kind == "scale")
        s, q = sm.out, scale.out
        kv = qk.inp - q  # q k^T reads q and k
        terms = sum(1 for op in group[matmuls[0] + 1:i_sm] if op.kind == "add")
        # relative-position products between q k^T and the softmax: (input, output) elements each
        rel = tuple((op.inp, op.out) for op in group[matmuls[0] + 1:i_sm] if op.kind == "matmul")
        return _Attn(q=q, kv=kv, s=s, o=av.out, head_dim=qk.cost.macs // s, terms=terms, rel=rel)


@dataclass(frozen=True)
class _Attn:
    q: int  # query elements B'*h*Nq*d
    kv: int  # key (= value) elements B'*h*Nk*d
    s: int  # score elements B'*h*Nq*Nk
    o: int  # output elements B'*h*Nq*d
    head_dim: int
    terms: int  # additive terms on the scores
    rel: tuple[tuple[int, int], ...] = ()  # relative-position products: (input, output) elements


def _blocks(ops: Sequence[Op]) -> tuple[list[Op], list[_Block], list[Op]]:
    """Split the op list into the ops before the first block, the blocks, and the ops after."""
    pre: list[Op] = []
    post: list[Op] = []
    blocks: dict[str, list[Op]] = {}
    for op in ops:
        m = _BLOCK.match(op.path)
        if m:
            blocks.setdefault(m.group(1), []).append(op)
        elif blocks:
            post.append(op)
        else:
            pre.append(op)
    return pre, [_Block(p, o) for p, o in blocks.items()], post


def _stage_of(prefix: str) -> int:
    m = re.search(r"(?:layers|stages)\.(\d+)\.blocks", prefix)
    return int(m.group(1)) if m else 0


def _index_in_stage(prefix: str) -> int:
    return int(prefix.rsplit(".", 1)[1])


# ---------------------------------------------------------------------------------------------
# The steps of a block that can hold the peak


class PeakSteps:
    """The live bytes of every step that can hold the peak (the largest per step name), and the peak."""

    def __init__(self) -> None:
        self.bytes = 0
        self.where = ""
        self.steps: dict[str, int] = {}

    def at(self, nbytes: int, where: str) -> None:
        if nbytes > self.steps.get(where, -1):
            self.steps[where] = nbytes
        if nbytes > self.bytes:
            self.bytes, self.where = nbytes, where


def _attend(peak: PeakSteps, where: str, base: int, a: _Attn, e: int, *, fused: bool, split: bool, terms: int,
            mask_sum: int, lse_rows: int) -> int:
    """Steps inside the attention core (nets.common.attend), `base` bytes already alive, `terms` bytes of
    additive terms alive during it. `split`: q/k/v are head-split views that torch.matmul copies.
    `mask_sum`: bytes of the mask the fused path builds by summing several terms. Returns the output bytes."""
    if fused:
        peak.at(base + terms + mask_sum + a.o * e + lse_rows * LSE_BYTES, f"{where} fused attention")
        return a.o * e
    cq, ckv = (a.q * e, a.kv * e) if split else (0, 0)
    peak.at(base + terms + a.q * e + cq + ckv + a.s * e, f"{where} q @ k^T")
    peak.at(base + terms + 2 * a.s * e, f"{where} softmax")  # raw scores and their softmax
    peak.at(base + terms + 2 * a.s * e + ckv + a.o * e, f"{where} scores @ v")
    return a.o * e


def _mlp(peak: PeakSteps, where: str, base: int, n2: int, hidden: int, out: int, e: int) -> None:
    """fc2(GELU(fc1(norm2(x)))): fc1's output and GELU's are alive together at GELU."""
    peak.at(base + (n2 + 2 * hidden) * e, f"{where} mlp")
    peak.at(base + (n2 + hidden + out) * e, f"{where} mlp.fc2")


def _transformer_block(peak: PeakSteps, blk: _Block, b: int, heads: int, e: int, fused: bool, outer: int) -> None:
    """nets.vit.Block: x = x + proj(attn(norm1(x))); x = x + mlp(norm2(x))."""
    x = blk.out("norm1")
    a = blk.attention()
    base = outer + (x + x + blk.out("attn.qkv")) * e  # block input, norm1 output, qkv
    o = _attend(peak, blk.p, base, a, e, fused=fused, split=b > 1 and heads > 1, terms=0, mask_sum=0,
                lse_rows=a.q // a.head_dim)
    merge = o if heads > 1 else 0
    peak.at(base + o + merge + blk.out("attn.proj") * e, f"{blk.p} attn.proj")
    _mlp(peak, blk.p, outer + 2 * x * e, x, blk.out("mlp.fc1"), blk.out("mlp.fc2"), e)  # input, x + attn


def _swin_block(peak: PeakSteps, blk: _Block, b: int, heads: int, e: int, fused: bool, outer: int) -> None:
    """nets.swin.SwinBlock: pad(norm1(x)) -> [roll] -> partition -> window attention -> reverse ->
    [roll] -> x + y; the padded/rolled y stays alive to the end of the block."""
    x = blk.out("norm1")
    a = blk.attention()
    qkv = blk.out("attn.qkv")
    xp = qkv // 3  # the padded grid: qkv runs on every padded token
    # tokens per window N = macs(q k^T) / q elements; windows B' = q / (heads * N * d)
    tokens = a.s // (a.q // a.head_dim)
    windows = a.q // (heads * tokens * a.head_dim)
    shifted = a.terms == 2
    per_image = windows // b
    partition_copy = 0 if per_image == 1 else xp  # window_partition is a view when a window spans the grid
    bias = heads * tokens * tokens * e  # the gathered relative-position bias [1, h, N, N]
    y = xp * e
    if shifted:
        peak.at(outer + (x + 2 * xp) * e, f"{blk.p} roll")
    base = outer + x * e + y + partition_copy * e + qkv * e
    split = windows > 1 and heads > 1
    if fused and shifted:
        # windows folded into the heads, [B, nW*h, N, d]: a copy of each of q, k, v when nW > 1 and h > 1
        # (qkv is freed once all three are copies); bias + mask summed to [nW, h, N, N] and, for h > 1,
        # copied again by the reshape to [1, nW*h, N, N]
        fold = per_image > 1 and heads > 1
        mask = per_image * heads * tokens * tokens * e
        if fold:
            peak.at(base + bias + 3 * a.q * e, f"{blk.p}.attn fold windows into heads")
            base += 3 * a.q * e - qkv * e
        peak.at(base + bias + (2 if heads > 1 else 1) * mask, f"{blk.p}.attn bias + mask")
        terms = bias + mask  # both stay referenced until the attention returns
    else:
        terms = bias
    o = _attend(peak, f"{blk.p}.attn", base, a, e, fused=fused, split=split and not (fused and shifted),
                terms=terms, mask_sum=0, lse_rows=a.q // a.head_dim)
    merge = o if heads > 1 else 0
    peak.at(base + terms + o + merge + blk.out("attn.proj") * e, f"{blk.p} attn.proj")
    _mlp(peak, blk.p, outer + (2 * x + xp) * e, x, blk.out("mlp.fc1"), blk.out("mlp.fc2"), e)


def _mvit_block(peak: PeakSteps, blk: _Block, b: int, heads: int, e: int, fused: bool, outer: int) -> None:
    """nets.mvit.MultiScaleBlock: y = norm1(x); shortcut = pool(proj(y) or x); q, k, v = pool(qkv(y));
    x = shortcut + proj(attention(q, k, v) + q); x = x + mlp(norm2(x)). y and the shortcut stay alive."""
    x = blk.out("norm1")
    a = blk.attention()
    qkv = blk.out("attn.qkv")
    sp = blk.out("shortcut_proj_attn", "linear")
    pool_op = blk.find("shortcut_pool_attn", "pool")
    short = 0
    if sp:
        peak.at(outer + (2 * x + sp) * e, f"{blk.p} shortcut_proj_attn")
        short = sp
    if pool_op is not None:
        pooled = pool_op.out  # [B, Nq, D]
        peak.at(outer + (2 * x + short) * e + pooled * (e + INDEX_BYTES), f"{blk.p} shortcut_pool_attn")
        short = pooled
    base0 = outer + (2 * x + short) * e  # block input, y = norm1(x), the shortcut when it is a new tensor
    # pooling of q, k, v: each head-split view is copied for the conv when B > 1 and h > 1
    split = b > 1 and heads > 1
    pooled_so_far = 0
    full = qkv // 3
    for which in ("q", "k", "v"):
        conv = blk.out(f"attn.pool_{which}", "conv")
        if not conv:
            continue
        cp = full if split else 0
        peak.at(base0 + (qkv + pooled_so_far + cp + conv) * e, f"{blk.p} attn.pool_{which}")
        peak.at(base0 + (qkv + pooled_so_far + 2 * conv) * e, f"{blk.p} attn.norm_{which}")
        pooled_so_far += conv
    pooled = blk.find("attn.norm_q") is not None
    # after pooling qkv is freed (q, k, v were its views); unpooled q/k/v stay views of qkv
    qkv_alive = a.q + 2 * a.kv if pooled else qkv
    base = base0 + qkv_alive * e
    if len(a.rel) == 2:
        _rel_pos(peak, f"{blk.p}.attn", base, a, b * heads, e)
    rel = a.s * e if a.terms else 0  # decomposed rel-pos expands to a full [B, h, Nq, Nk] term
    o = _attend(peak, f"{blk.p}.attn", base, a, e, fused=fused, split=split and not pooled, terms=rel,
                mask_sum=0, lse_rows=a.q // a.head_dim)
    residual = a.o * e if _residual_pooling(blk) else 0
    if residual:
        peak.at(base + o + residual, f"{blk.p} attn residual pooling")
    merge = a.o * e if heads > 1 else 0
    after = residual or o
    peak.at(base + after + merge + blk.out("attn.proj") * e, f"{blk.p} attn.proj")
    y_out = blk.out("mlp.fc2")
    _mlp(peak, blk.p, base0 + y_out * e, y_out, blk.out("mlp.fc1"), y_out, e)


def _rel_pos(peak: PeakSteps, where: str, base: int, a: _Attn, bh: int, e: int) -> None:
    """nets.mvit MultiScaleAttention._rel_pos: gather R_h [qh, kh, d] and R_w [qw, kw, d]; q @ R_h^T
    broadcasts R_h over the B*h batch (a copy of B*h*qh*d*kh, the product's input beyond q); the
    product along w reads a transposed q (a copy of q) and a broadcast R_w; then rel_h + rel_w expand
    to the full [B, h, Nq, Nk] term."""
    (in_h, rel_h), (in_w, rel_w) = a.rel
    copy_h, copy_w = in_h - a.q, in_w - a.q  # the broadcast tables
    tables = (copy_h + copy_w) // bh  # R_h and R_w themselves
    peak.at(base + (tables + copy_h + rel_h) * e, f"{where} rel_pos h")
    peak.at(base + (tables + rel_h + a.q + copy_w + rel_w) * e, f"{where} rel_pos w")
    peak.at(base + (tables + rel_h + rel_w + a.s) * e, f"{where} rel_pos term")


def _residual_pooling(blk: _Block) -> bool:
    """The residual-pooling add is the attention group's add after `scores @ v`."""
    group = [op for op in blk.ops if op.path == f"{blk.p}.attn"]
    kinds = [op.kind for op in group]
    i_sm = kinds.index("softmax")
    return any(k == "add" for k in kinds[i_sm + 2:])


def _mixer_block(peak: PeakSteps, blk: _Block, b: int, heads: int, e: int, fused: bool, outer: int) -> None:
    """nets.mixer.MixerBlock: x + mlp_tokens(norm1(x)^T)^T; the token MLP's fc1 reads the transposed
    norm output through a contiguous copy."""
    x = blk.out("norm1")
    th, ch = blk.out("mlp_tokens.fc1"), blk.out("mlp_channels.fc1")
    peak.at(outer + (3 * x + th) * e, f"{blk.p} mlp_tokens.fc1")
    _mlp(peak, f"{blk.p} tokens", outer + x * e, x, th, blk.out("mlp_tokens.fc2"), e)
    _mlp(peak, f"{blk.p} channels", outer + 2 * x * e, x, ch, blk.out("mlp_channels.fc2"), e)


_BLOCK_MODELS = {ViTSpec: _transformer_block, PixelSpec: _transformer_block, SwinSpec: _swin_block,
                 MViTSpec: _mvit_block, MixerSpec: _mixer_block}


def _heads(spec: Spec, prefix: str) -> int:
    if isinstance(spec, (SwinSpec, MViTSpec)):
        return spec.heads[_stage_of(prefix)]
    return getattr(spec, "heads", 1)


def _outer(spec: Spec, blk: _Block, prev_stage_input: int, e: int) -> int:
    """Bytes the callers hold besides the block's own input: a staged model's top level keeps the
    stage input while the stage runs, which is a different tensor from the block input except for
    the first block of a stage that has no downsampling."""
    if not isinstance(spec, (SwinSpec, MViTSpec)):
        return 0
    first = _index_in_stage(blk.p) == 0
    if first and (isinstance(spec, MViTSpec) or _stage_of(blk.p) == 0):
        return 0
    return prev_stage_input * e


def _edges(peak: PeakSteps, spec: Spec, pre: list[Op], post: list[Op], e: int) -> None:
    """Embedding before the first block and norm/head after the last: two consecutive tensors (the conv
    output and its token-major copy, the class-token concat and the position add, the final norm and
    the head's output)."""
    outs = [op.out for op in pre if op.out]
    for a, b in zip(outs, outs[1:]):
        peak.at((a + b) * e, f"{pre[0].path.split('.')[0]}")
    if outs:
        peak.at(2 * outs[0] * e, f"{pre[0].path.split('.')[0]}")  # conv output + its flattened copy
    tail = [op for op in post if op.kind in ("layer_norm", "linear")]
    if len(tail) >= 2:  # x = norm(x) frees the last block's output once the norm returns
        peak.at(tail[0].out * 2 * e, "norm")
        peak.at((tail[0].out + tail[-1].out) * e, "head")


def _stage_inputs(spec: Spec, ops: Sequence[Op], blocks: list[_Block]) -> dict[int, int]:
    """Elements of each stage's input tensor (the previous stage's output, or the embedding)."""
    out: dict[int, int] = {}
    for blk in blocks:
        s = _stage_of(blk.p)
        if s not in out:
            out[s] = blk.out("norm1") if s == 0 else out.get(s - 1, 0)
        out[s + 1] = blk.out("mlp.fc2")  # the last block's output is the next stage's input
    return out


def _downsample(peak: PeakSteps, ops: Sequence[Op], e: int) -> None:
    """Swin patch merging: caller's input + pad copy + 2x2 concat, then norm and reduction."""
    by = {op.path: op for op in ops}
    for path, op in by.items():
        if path.endswith("downsample.norm"):
            prefix = path[: -len(".norm")]
            red = by.get(f"{prefix}.reduction")
            cat = op.out
            peak.at((cat + cat + cat) * e, f"{prefix} pad + concat")
            if red is not None:
                peak.at((cat + cat + op.out + red.out) * e, f"{prefix}.reduction")


def activation_steps(est: Estimate, attn: str = "math") -> PeakSteps:
    """Live activation bytes at every step of the forward that can hold the peak."""
    fused = normalise_attn(attn) == "fused"
    e = est.bytes_per_elem
    spec = est.spec
    pre, blocks, post = _blocks(est.ops)
    peak = PeakSteps()
    _edges(peak, spec, pre, post, e)
    _downsample(peak, est.ops, e)
    stage_in = _stage_inputs(spec, est.ops, blocks)
    model = _BLOCK_MODELS[type(spec)]
    for blk in blocks:
        outer = _outer(spec, blk, stage_in.get(_stage_of(blk.p), 0), e)
        model(peak, blk, est.batch, _heads(spec, blk.p), e, fused, outer)
    return peak


def activation_peak(est: Estimate, attn: str = "math") -> tuple[int, str]:
    """Peak activation bytes of the forward and the step where it is reached (see the module docstring)."""
    peak = activation_steps(est, attn)
    return peak.bytes, peak.where


# ---------------------------------------------------------------------------------------------
# Inputs of each op (for bytes moved and for the training estimate)


def score_roles(ops: Sequence[Op]) -> list[str]:
    """Tag each op of an attention group: 'qk' (q k^T, the op that materialises the scores), 'softmax',
    'av' (scores @ v, the first matmul after the softmax), 'rel' (other matmuls on the path: relative
    positions), '' for everything else."""
    roles = [""] * len(ops)
    state: dict[str, str] = {}  # path -> last role seen
    for i, op in enumerate(ops):
        if op.kind == "matmul":
            if op.cost.attn:
                roles[i] = state[op.path] = "qk"
            elif state.get(op.path) == "softmax":
                roles[i] = state[op.path] = "av"
            else:
                roles[i] = "rel"
        elif op.kind == "softmax":
            roles[i] = state[op.path] = "softmax"
    return roles


def op_inputs(ops: Sequence[Op]) -> list[int]:
    """Input elements read by each op (weights excluded), as the walker records them: a linear reads
    rows*fin, q k^T reads q and k, scores @ v the scores and v, a pooling conv a third of the qkv."""
    return [op.inp for op in ops]


# ---------------------------------------------------------------------------------------------
# Training estimate


def train_saved_bytes(est: Estimate, attn: str = "math") -> int:
    """Estimate of the activations autograd saves for the backward: the inputs of linear, conv,
    LayerNorm and GELU; for math attention q and k (q k^T), the softmax output and v (scores @ v);
    for fused attention q, k, v, the output and a float32 log-sum-exp per query row. Tensors saved
    by two ops (a norm output read by two linears) are counted twice, so this leans high."""
    fused = normalise_attn(attn) == "fused"
    e = est.bytes_per_elem
    elems = lse = 0
    scores: dict[str, int] = {}  # path -> score elements
    head_dim: dict[str, int] = {}
    for op, inp, role in zip(est.ops, op_inputs(est.ops), score_roles(est.ops)):
        if role == "qk":
            scores[op.path], head_dim[op.path] = op.out, op.cost.macs // op.out
        if op.kind in ("linear", "conv", "layer_norm", "gelu") or role in ("qk", "rel"):
            elems += inp
        elif role == "softmax" and not fused:
            elems += op.out
        elif role == "av":
            elems += inp - scores[op.path]  # v
            if fused:
                elems += op.out
                lse += op.out // head_dim[op.path]  # one per query row: B'*h*Nq
    return elems * e + lse * LSE_BYTES


# ---------------------------------------------------------------------------------------------
# The prediction


def predict_memory(est: Estimate, attn: str = "math") -> MemoryPrediction:
    """Predicted memory of the forward described by `est` with attention kernel `attn`
    (math | sdpa | flash | efficient: the last three are fused kernels)."""
    kind = normalise_attn(attn)
    e = est.bytes_per_elem
    h, w = est.res
    weights = est.params * e
    inp = est.batch * getattr(est.spec, "in_chans", 3) * h * w * e
    peak, where = activation_peak(est, kind)
    mat = [op for op in est.ops if op.cost.attn] if kind == "math" else []
    score_bytes = sum(op.cost.attn for op in mat) * e
    score_peak = max((op.cost.attn for op in mat), default=0) * e
    saved = train_saved_bytes(est, kind)
    return MemoryPrediction(kind, weights, inp, peak, where, score_bytes, score_peak, saved, 2 * weights + saved)


def predict(model: str | Spec, res: Any = 224, batch: int = 1, dtype: str = "fp32",
            attn: str = "math") -> MemoryPrediction:
    """`predict_memory(estimate(model, res, batch, dtype), attn)`."""
    return predict_memory(estimate(model, res, batch, dtype), attn)


__all__ = ["MemoryPrediction", "PeakSteps", "predict_memory", "predict", "activation_peak",
           "activation_steps", "op_inputs", "score_roles", "train_saved_bytes", "normalise_attn",
           "ATTN_KINDS"]
