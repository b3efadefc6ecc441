"""The cost vector, kept by op kind, and its projections onto counting conventions.

Everything here is an exact integer (or a sympy expression when the walker is handed symbols);
unit conversion happens only in the reporting layer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from vitcost.vocab import Convention

# Per-element costs of the non-matmul ops in the `flops` convention. They are conventions, stated
# once here, not measurements: LayerNorm = mean, variance, normalise, scale, shift (fvcore's own
# figure for an affine norm); softmax = max, subtract, exp, sum, divide; GELU (tanh form) = cube,
# scale, add, scale, tanh, add, multiply, halve; an add/scale/mask/gather/pool step = 1; an
# inference-mode BatchNorm folds its statistics into one scale and one shift per channel = 2.
FLOPS_PER_MAC = 2
NORM_FLOPS = 5
SOFTMAX_FLOPS = 5
GELU_FLOPS = 8
ELTWISE_FLOPS = 1
BN_FLOPS = 2
# The backward of the same ops, per element of the forward op, in the `flops` convention (a training
# step; `vitcost.analytic.training` applies them). LayerNorm, and BatchNorm in train mode = recompute
# x^ = (x - mean) * rstd from the saved statistics (2), the shift and scale gradients sum(dy) and
# sum(dy * x^) (1 + 2), g = dy * gamma (1), the row sums sum(g) and sum(g * x^) (1 + 2), and
# dx = rstd * (g - sum(g)/n - x^ * sum(g * x^)/n) (4) = 13; softmax: dx = y * (dy - sum(dy * y)) =
# multiply, sum, subtract, multiply = 4; GELU (tanh form): recompute t = tanh(c (x + a x^3)) (6), then
# 0.5 (1 + t) (2), 1 - t^2 (2), 1 + 3a x^2 (2), 0.5 x (1 - t^2) c (1 + 3a x^2) (4), their sum (1) and
# the product with dy (1) = 18; an add/scale/mask/gather/pool step = 1 (the gradients meeting at a
# residual fork add up, a bias's or table's gradient is a sum over rows, a scale multiplies, a pooling
# tap receives its share). A train-mode BatchNorm's forward normalises with the batch's statistics:
# mean, variance, normalise, scale, shift = NORM_FLOPS, like a LayerNorm.
NORM_BACKWARD_FLOPS = 13
SOFTMAX_BACKWARD_FLOPS = 4
GELU_BACKWARD_FLOPS = 18
ELTWISE_BACKWARD_FLOPS = 1
# fvcore's layer_norm handle counts 5 per element when the norm is affine (all norms here are);
# its batch_norm handle counts an eval-mode affine BatchNorm as 2 per element (batchnorm_flop_jit).
FVCORE_NORM_FLOPS = 5
FVCORE_BN_FLOPS = 2


class Cost(NamedTuple):
    """Counts of one op (or a sum of ops), by kind. Immutable; `+` adds field-wise and `*` scales
    (a NamedTuple rather than a frozen dataclass: a compare builds thousands and this is 4x cheaper)."""

    macs: int = 0  # multiply-accumulates of linear, matmul, einsum and conv ops
    norm: int = 0  # elements through an (affine) LayerNorm
    softmax: int = 0  # elements through softmax
    act: int = 0  # elements through GELU
    eltwise: int = 0  # adds, scales, masks, bias adds, pooling taps: one op each
    params: int = 0  # trainable parameters owned by the op
    attn: int = 0  # attention-score elements materialised (batch * heads * Nq * Nkv)
    bn: int = 0  # elements through an eval-mode (affine) BatchNorm

    def __add__(self, o: Cost) -> Cost:  # type: ignore[override]
        return Cost(self.macs + o.macs, self.norm + o.norm, self.softmax + o.softmax, self.act + o.act,
                    self.eltwise + o.eltwise, self.params + o.params, self.attn + o.attn, self.bn + o.bn)

    def __mul__(self, k: int) -> Cost:  # type: ignore[override]
        return Cost(*(v * k for v in self))

    @staticmethod
    def sum(costs: Iterable[Cost]) -> Cost:
        """Field-wise sum of many costs (one pass; exact integers or sympy expressions)."""
        costs = list(costs)
        return Cost(*(sum(col) for col in zip(*costs))) if costs else Cost()

    __rmul__ = __mul__


CONVENTIONS: dict[str, str] = {  # what each `vocab.Convention` counts, in its order
    Convention.macs.value: "multiply-accumulates of linear/matmul/conv (what papers call FLOPs)",
    Convention.flops.value: f"{FLOPS_PER_MAC} per MAC + {NORM_FLOPS}/norm, {SOFTMAX_FLOPS}/softmax, "
             f"{GELU_FLOPS}/GELU, {ELTWISE_FLOPS}/elementwise, {BN_FLOPS}/BatchNorm element",
    Convention.fvcore.value: f"fvcore's default handles: 1 per MAC + {FVCORE_NORM_FLOPS} per LayerNorm element + "
              f"{FVCORE_BN_FLOPS} per eval-mode BatchNorm element, softmax/GELU/adds ignored, fused attention counted",
    Convention.torch.value: f"torch FlopCounterMode: {FLOPS_PER_MAC} per MAC of mm/bmm/conv/SDPA, nothing else",
}


def project(cost: Cost, convention: str) -> int:
    """Project a cost vector onto one counting convention (see CONVENTIONS)."""
    if convention == "macs":
        return cost.macs
    if convention == "flops":
        return (FLOPS_PER_MAC * cost.macs + NORM_FLOPS * cost.norm + SOFTMAX_FLOPS * cost.softmax
                + GELU_FLOPS * cost.act + ELTWISE_FLOPS * cost.eltwise + BN_FLOPS * cost.bn)
    if convention == "fvcore":
        return cost.macs + FVCORE_NORM_FLOPS * cost.norm + FVCORE_BN_FLOPS * cost.bn
    if convention == "torch":
        return FLOPS_PER_MAC * cost.macs
    from vitcost.errors import VitcostError

    raise VitcostError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}.")


# Breakdown buckets an op belongs to (for reports): attention scores, projections, MLP, ...
ROLES: dict[str, str] = {
    "scores": "attention scores (QK^T, AV, rel-pos)",
    "proj": "Q/K/V/output projections",
    "mlp": "MLP (channel and token mixing)",
    "pool": "pooling / merging",
    "embed": "patch embedding",
    "norm": "norms",
    "head": "head",
    "other": "other (adds, masks, position terms)",
}


class AttnCall(NamedTuple):
    """One scaled dot-product attention call, as a structured record: `batch` independent sequences
    (images x windows), `heads` heads, `nq` queries and `nkv` keys/values of width `head_dim`.

    `terms`: additive score-sized terms (relative position bias, shift mask); `rel`: the (qh, qw, kh, kw)
    grids of decomposed relative positions (MViTv2), empty without; `residual`: the queries are added
    back to the output (MViTv2's residual pooling). On a clip: `rel_t`, the (qt, kt) temporal grids of a
    third, temporal table (MViTv2 on video; only beside `rel`), and `cls`, the tokens in front of the grid
    (a class token) that the relative positions and the residual pooling leave out."""

    batch: Any
    heads: int
    nq: Any
    nkv: Any
    head_dim: int
    terms: int = 0
    rel: tuple = ()
    residual: bool = False
    rel_t: tuple = ()
    cls: int = 0

    @property
    def grid_rows(self) -> Any:
        """Query rows on the token grid B'*h*(Nq - cls): what relative positions and residual pooling touch."""
        return self.batch * self.heads * (self.nq - self.cls)

    @property
    def grid_scores(self) -> Any:
        """Score elements between grid tokens B'*h*(Nq - cls)*(Nkv - cls)."""
        return self.grid_rows * (self.nkv - self.cls)

    @property
    def q_grid(self) -> tuple[Any, Any, Any]:
        """The queries' (t, h, w) grid of decomposed relative positions (t = 1 on an image)."""
        qh, qw = self.rel[0], self.rel[1]
        return self.rel_t[0] if self.rel_t else (self.nq - self.cls) // (qh * qw), qh, qw

    def rel_operand_copied(self, axis: int) -> bool:
        """Whether a decomposed relative-position product along `axis` (0, 1, 2: t, h, w) copies the queries: q's
        grid tokens, a slice of a contiguous [B', h, c + N, d] viewed [B', h, t, h, w, d], laid out with that
        axis first and the others merged, which is a view only when each kept axis's stride is the next one's
        size times stride (axes of size 1 aside)."""
        t, h, w = self.q_grid
        d, n = self.head_dim, self.nq
        sizes_strides = zip((self.batch, self.heads, t, h, w), (self.heads * n * d, n * d, h * w * d, w * d, d))
        kept = [(z, s) for i, (z, s) in enumerate(sizes_strides) if i != 2 + axis and z != 1]
        return any(s1 != z2 * s2 for (_, s1), (z2, s2) in zip(kept, kept[1:]))

    @property
    def rel_keys(self) -> Any:
        """Keys along the decomposed axes, kh + kw (+ kt): each grid query's relative-position products."""
        return self.rel[2] + self.rel[3] + (self.rel_t[1] if self.rel_t else 0) if self.rel else 0

    @property
    def q(self) -> Any:
        """Query elements B'*h*Nq*d (the output has as many)."""
        return self.batch * self.heads * self.nq * self.head_dim

    @property
    def kv(self) -> Any:
        """Key (= value) elements B'*h*Nkv*d."""
        return self.batch * self.heads * self.nkv * self.head_dim

    @property
    def scores(self) -> Any:
        """Score elements B'*h*Nq*Nkv."""
        return self.batch * self.heads * self.nq * self.nkv

    @property
    def rows(self) -> Any:
        """Query rows B'*h*Nq (one log-sum-exp each in a fused kernel)."""
        return self.batch * self.heads * self.nq


class LinearAttnCall(NamedTuple):
    """One linear-attention call (Katharopoulos et al. 2020), as a structured record: `batch` independent
    sequences (images x windows), `heads` heads, `n` tokens of width `head_dim`. It forms no score matrix:
    keys and values are summarised in a [d, d] state and a [d] key sum per head (see
    `trace.linear_attention_steps`)."""

    batch: Any
    heads: int
    n: Any
    head_dim: int

    @property
    def q(self) -> Any:
        """Query (= key = value = output) elements B'*h*N*d."""
        return self.batch * self.heads * self.n * self.head_dim

    @property
    def state(self) -> Any:
        """phi(K)^T V: B'*h*d*d elements."""
        return self.batch * self.heads * self.head_dim * self.head_dim

    @property
    def k_sum(self) -> Any:
        """sum_n phi(K_n): B'*h*d elements."""
        return self.batch * self.heads * self.head_dim

    @property
    def rows(self) -> Any:
        """Query rows B'*h*N (one normaliser each)."""
        return self.batch * self.heads * self.n


class BlockMark(NamedTuple):
    """The block an op runs in, as the walker declares it: the block's module path (`layers.2.blocks.3`,
    `layer2.3`), the path of the stage that owns its block list ("" for a model's own `blocks`) and the
    elements of the block's input."""

    prefix: str
    stage: str
    inp: Any = 0


# Facts about an op that its walker knows and the memory model needs (`Op.tags`); the walker states
# them, so that no shared module has to recognise a family or a layer by its name.
TAGS: dict[str, str] = {
    "reads_constant": "a linear/conv whose input is a fixed buffer, not an activation: no input gradient",
    "detached": "an op whose output reaches the loss only through a detach (a routing decision): its backward "
                "never runs and it saves nothing",
    "max_pool": "a max pool: saves its input and int64 indices for the backward",
    "branch_copied": "a residual add whose branch reaches it through a copy (window reverse, crop, roll) or "
                     "that runs in place: the branch's gradient is not the stream's own",
    "f32_terms": "an attention whose additive terms include a float32 tensor (a bias table, a shift mask)",
    "gathered_kv": "an attention whose keys and values are gathered neighbourhoods (new tensors)",
    "folded_heads": "an attention whose q, k, v are views of qkv reshaped to [3, B'*h, N, d] (timm's SAM layout)",
    "cosine": "scaled cosine attention (Swin V2): normalised q and k times a learned logit scale",
    "split_heads": "a matmul of head-split views of qkv (B' > 1 and h > 1) that torch.matmul copies to fold the batch",
    "transposed_input": "a linear over a transposed view (Mixer's token MLP reads norm1(x)^T): torch.linear then "
                        "runs torch.matmul, which copies its input to a contiguous buffer, a GEMM without the bias, "
                        "and the bias added in place over the output",
}


class Mem(NamedTuple):
    """What the liveness engine (`analytic.liveness`) needs to know about an op beyond its data flow: facts
    of the reference module that its walker states with `Trace.note`. Element counts, not bytes."""

    keep: str = ""  # the module until whose return its output stays referenced (a local never rebound: qkv)
    inplace: bool = False  # it writes into its first operand's storage (ReLU(inplace=True), x += shortcut)
    reads: tuple[str, ...] = ()  # keys of operands it reads besides its producer, the first first (a shortcut)
    temp: Any = 0  # elements of a tensor made for it and freed when it returns (a contiguous copy of its input)
    fused_temp: Any = 0  # likewise, on a fused attention kernel's path only (a token-major copy for sdpa)
    index: Any = 0  # elements of int64 indices it returns with its output (top-k's), alive as long as it
    temp_index: Any = 0  # elements of int64 indices it makes and frees (a max pool's)
    # recorded after ops its module ran after it (EViT's ranking, recorded after the residual add): it does not
    # make its module return later
    late: bool = False
    stream: bool = False  # its output becomes its block's residual stream (EViT's pruned tokens)
    what: str = ""  # a copy's name in the memory steps ("window partition")
    # part of its module's attention call in memory: the call's program (`liveness.ATTENTION`) counts its
    # tensors, which the engine then leaves out (Swin V2's position-bias MLP, which the math path runs
    # between q k^T and the softmax)
    part: bool = False
    extra: tuple = ()  # sizes (elements) an attention call's program reads besides the call (Swin V2's bias MLP)
    rebinds: tuple[str, ...] = ()  # keys of ops whose outputs lose their name when it runs: referenced until then
    scope: str = ""  # the function call it runs in (`Trace.scope`), whose locals and arguments it holds
    # allocator-level scratch of its kernel: ("conv", kind, stride, images, channels_last) with kind stem |
    # pointwise | depthwise | conv (`liveness.conv_scratch`), or ("copy", elements): a contiguous copy of a
    # strided input that the kernel frees before it returns
    scratch: tuple = ()
    # an attention op's module, by what it keeps (`liveness.ATTENTION`): "" the bare core (nets.common.attend),
    # "timm" timm's Attention (the scaled q and the softmax output referenced until it returns)
    attend: str = ""


NO_MEM = Mem()


class Op(NamedTuple):
    """One op of a forward pass, named by the dotted path of the torch module that runs it."""

    path: str
    kind: str  # linear | conv | matmul | (linear_)attention | layer_norm | softmax | gelu | add | pool | param
    role: str  # a key of ROLES
    cost: Cost
    out: int = 0  # output elements
    inp: int = 0  # input elements the op reads (weights excluded)
    call: AttnCall | LinearAttnCall | None = None  # the structure of an `attention` / `linear_attention` op
    block: BlockMark | None = None  # the block it runs in (None outside blocks)
    src: tuple[str, ...] = ()  # where its input comes from, when not the previous op's output: "path#kind"
    # keys of the producing ops (an attention's q, k and v, or qkv for all three), or ("copy",) for a
    # tensor made on the way (a transpose to a contiguous layout)
    tags: frozenset[str] = frozenset()  # keys of TAGS
    mem: Mem = NO_MEM  # memory facts of the reference module (`Mem`)
