"""Frozen architecture specs: one per family, validated on construction.

A spec describes an architecture independent of the input size; the resolution is an argument of
the analytic walker and of the torch builder. Both walk the same spec, so their layer paths match.

Every field carries a one-line `doc` (shown as a comment in spec files, `vitcost spec`), and its
annotated type is enforced: an `int` field takes a whole number (numpy integers too, never a float
or a bool), a `tuple[int, ...]` field a sequence of whole numbers, a `float` field any finite number, a
`str` field a word (its family's `validate` names the words it takes).
"""

from __future__ import annotations

import math
import operator
from dataclasses import MISSING, FrozenInstanceError, dataclass, field, fields, replace
from typing import Any, ClassVar

from vitcost.errors import SpecError

# A spec class: a dataclass whose __init__ is generated, and whose immutability, equality, hash and
# repr come from SpecBase (see there why).
spec_class = dataclass(eq=False, repr=False)


def doc(default: Any = MISSING, text: str = "") -> Any:
    """A spec field with a default (or none) and its one-line description."""
    return field(default=default, metadata={"doc": text})


def coerce(spec: object, name: str, kind: str, value: Any) -> Any:
    """`value` checked against the annotated type `kind`; numpy ints and lists are normalised."""
    where = f"{type(spec).__name__}.{name}"
    if kind == "bool":
        if not isinstance(value, bool):
            raise SpecError(f"{where} must be true or false, got {value!r}.")
        return value
    if kind == "int":
        if isinstance(value, bool):
            raise SpecError(f"{where} must be a whole number, got {value!r}.")
        try:
            return operator.index(value)
        except TypeError:
            raise SpecError(f"{where} must be a whole number, got {value!r}.") from None
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) and not hasattr(value, "__float__"):
            raise SpecError(f"{where} must be a number, got {value!r}.")
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise SpecError(f"{where} must be a number, got {value!r}.") from None
        if not math.isfinite(x):
            raise SpecError(f"{where} must be a finite number, got {value!r}.")
        return x
    if kind == "tuple[int, ...]":
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            raise SpecError(f"{where} must be a list of whole numbers, got {value!r}.")
        return tuple(coerce(spec, f"{name}[{i}]", "int", v) for i, v in enumerate(value))
    if kind == "str":
        if not isinstance(value, str):
            raise SpecError(f"{where} must be a word, got {value!r}.")
        return value
    raise TypeError(f"unsupported spec field type {kind}")  # a programming error, not user input


_PLAIN = {"int": int, "float": float, "bool": bool, "str": str}  # values of these exact types pass as they are
_KINDS: dict[type, tuple[tuple[str, str], ...]] = {}


def _kinds(cls: type) -> tuple[tuple[str, str], ...]:
    """(field name, annotated type) of a spec class, read once."""
    if cls not in _KINDS:
        _KINDS[cls] = tuple((f.name, str(f.type)) for f in fields(cls))
    return _KINDS[cls]


SPEC_CLASSES: dict[str, type] = {}  # family name -> spec class, filled as each class is defined


class SpecBase:
    """Type checks every field against its annotation, then runs the family's `validate`. Every
    subclass registers itself by its `family` name (see `SPEC_CLASSES`).

    Specs are immutable and compare and hash by their fields. Those methods are written once here
    rather than generated per class by `dataclass(frozen=True)`: code generation for each of a dozen
    spec classes would be most of what `vitcost compare` spends importing vitcost."""

    family: ClassVar[str]

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._values() == self._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        args = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{type(self).__name__}({args})"

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__:  # set once, by __init__; never changed after
            raise FrozenInstanceError(f"cannot assign to field {name!r}: specs are immutable (use a copy with "
                                      "dataclasses.replace or `--set`)")
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}: specs are immutable")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.family in SPEC_CLASSES:
            raise TypeError(f"two spec classes for the family {cls.family!r}")  # a programming error
        SPEC_CLASSES[cls.family] = cls

    def __post_init__(self) -> None:
        for name, kind in _kinds(type(self)):
            value = getattr(self, name)
            plain = type(value) is _PLAIN.get(kind)  # exactly the annotated type: nothing to convert
            if not plain or kind == "float" and not math.isfinite(value):  # a plain float may still be nan or inf
                object.__setattr__(self, name, coerce(self, name, kind, value))
        self.validate()

    def validate(self) -> None:  # pragma: no cover - every family overrides it
        pass


def _ceil(x: Any) -> Any:
    """math.ceil for numbers (EViT's own rounding: math.ceil of the float product), sympy's for symbols."""
    if isinstance(x, (int, float)):
        return math.ceil(x)
    import sympy

    return sympy.ceiling(x)


def _positive(spec: object, **values: int | float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise SpecError(f"{type(spec).__name__}.{name} must be positive, got {value!r}.")


# The walkers visit every block: a design beyond this is a typo (the deepest published nets have a few
# hundred blocks), and walking it would take minutes and gigabytes (some 60 us and 6 KB a block).
MAX_BLOCKS = 10_000


def _walkable(spec: object, blocks: int) -> None:
    if blocks > MAX_BLOCKS:
        raise SpecError(f"{type(spec).__name__} has {blocks:,} blocks; vitcost walks at most {MAX_BLOCKS:,}.")


def _divides(spec: object, dim_name: str, dim: int, heads: int) -> None:
    if dim % heads:
        raise SpecError(f"{type(spec).__name__}: {dim_name}={dim} is not divisible by heads={heads}.")


def _doubling_stages(spec: Any) -> None:
    """Stages whose channels double from `embed_dim` (Swin, Swin V2, NAT): equal, non-empty depths and
    heads, each positive, each stage's heads dividing its channels."""
    if len(spec.depths) != len(spec.heads) or not spec.depths:
        raise SpecError(f"{type(spec).__name__}: depths and heads must be non-empty and of equal length.")
    for i, (d, h) in enumerate(zip(spec.depths, spec.heads)):
        _positive(spec, depth=d, heads=h)
        _divides(spec, f"stage {i} dim", spec.stage_dim(i), h)
    _walkable(spec, sum(spec.depths))


def _stages(spec: Any) -> None:
    """`dims`, `depths` and `heads` per stage: non-empty and equally long, positive, each stage's heads
    dividing its channels, walkable, and an MLP of at least one channel (the MViT specs)."""
    if not (len(spec.dims) == len(spec.depths) == len(spec.heads)) or not spec.dims:
        raise SpecError(f"{type(spec).__name__}: dims, depths and heads must be non-empty and of equal length.")
    for d, n, h in zip(spec.dims, spec.depths, spec.heads):
        _positive(spec, dim=d, depth=n, heads=h)
        _divides(spec, "dim", d, h)
    _walkable(spec, sum(spec.depths))
    _hidden(spec, min(spec.dims), spec.mlp_ratio)


def _hidden(spec: object, dim: int, ratio: float, name: str = "mlp_ratio") -> int:
    width = dim * ratio
    if not math.isfinite(width):  # a finite ratio may still overflow a float: 768 * 1e308
        raise SpecError(f"{type(spec).__name__}.{name}={ratio!r} gives an MLP wider than any number; "
                        "give a ratio that gives a whole number of channels.")
    hidden = int(width)
    if hidden < 1:
        raise SpecError(f"{type(spec).__name__}.{name}={ratio!r} gives an MLP of width {hidden}; "
                        "it must give at least 1.")
    return hidden


ATTENTIONS: tuple[str, ...] = ("softmax", "linear")  # ViTSpec.attention: the token mixers of a ViT block
POOLS: tuple[str, ...] = ("", "token", "avg")  # ViTSpec.global_pool
MLPS: tuple[str, ...] = ("gelu", "swiglu")  # ViTSpec.mlp


@spec_class
class ViTSpec(SpecBase):
    """ViT (Dosovitskiy et al. 2021): conv patch embedding of stride `patch`, class token(s), learned
    position embedding, `depth` pre-norm blocks of MSA + MLP, final norm, linear head on the class
    token (on the mean of the tokens without one). The position embedding has one row per token, so
    its size follows the resolution.

    With `window` > 0 the blocks attend inside non-overlapping window x window windows of the token
    grid, zero-padded to a multiple of the window (ViTDet, Li et al. 2022; the SAM image encoder),
    except the blocks listed in `global_blocks`, which keep global attention. Windows need a grid of
    tokens only, so they require `class_tokens = 0`.

    The SAM image encoder (Kirillov et al. 2023; timm's `samvit_*`) adds, with `rel_pos`, decomposed
    relative positions to the scores of every block (MViTv2, Li et al. 2022): q . R_h[i_h - j_h] +
    q . R_w[i_w - j_w], from two tables of 2*size-1 rows of head_dim, sized for the window in window
    blocks and for the token grid in global blocks (so a global block's tables follow the resolution);
    and, with `neck` > 0, replaces the final norm by a neck on the token grid: 1x1 conv D -> neck (no
    bias), LayerNorm2d, 3x3 conv neck -> neck (padding 1, no bias), LayerNorm2d. `num_classes = 0`
    leaves the head out (the encoder's output is the neck's feature map, or the normed tokens).

    DeiT with distillation (Touvron et al. 2021; timm's `deit_*_distilled_*`), `distilled`: a class token
    and a distillation token (`class_tokens = 2`: `cls_token`, `dist_token`), a head on token 0 and a
    second head `head_dist` on token 1, the two averaged at inference. The DeiT paper gives 22M / 4.6G
    (DeiT-S) and 87M / 17.6G (DeiT-B) for them, rounded; the exact counts are 22.44M / 4.63G and
    87.34M / 17.68G (fvcore convention, as timm's benchmark CSV lists them): DeiT-S/B's own 22.05M / 4.61G
    and 86.57M / 17.58G plus the distillation token, its position row and head_dist. The gaps to the
    paper (2.0% in params and 0.7% in GMACs for DeiT-S, under 0.5% for DeiT-B) are the paper's rounding.

    A clip [B, C, T, H, W] (a `TxHxW` size) is embedded by tubelets (ViViT's tubelet embedding, Arnab et
    al. 2021; VideoMAE): a Conv3d of kernel and stride `tubelet` x P x P, T/tubelet x H/P x W/P tokens of
    width D that attend to each other globally, one position row each; T must be a multiple of `tubelet`,
    and an image (HxW) is the clip of one frame. Windows, relative positions, the neck and RoPE work on one
    frame's token grid, so a clip of more than one tubelet takes none of them.

    `attention = "linear"` replaces softmax attention by linear attention (Katharopoulos et al. 2020) in
    every block, global or windowed: phi(q) (phi(K)^T V) / (phi(q) . sum_n phi(K_n)) with phi = elu + 1,
    N*d^2 multiply-accumulates per head for each of the two products and no N x N matrix.

    The variants timm ships (module names as timm's `vision_transformer.py` and `eva.py`): `pos_embed =
    False` drops the absolute position embedding (samvit_base_patch16_224); `reg_tokens` prepends register
    tokens (Darcet et al. 2024) after the class tokens, and then, as timm's `no_embed_class`, the position
    embedding covers the patch tokens only; `global_pool = avg` classifies the mean of the patch tokens
    (prefix tokens left out) even with a class token (EVA02); `fc_norm` moves the final norm onto the
    pooled token, which is then the output even without a head (timm's forward_head); `layer_scale`
    multiplies each branch by a learned per-channel vector (D parameters each, ls1 and ls2); `mlp =
    swiglu` runs fc2(SiLU(x W_g) * (x W_x)) with fc1 = [W_g | W_x] of 2 x hidden outputs (2*D*hidden +
    hidden*D MACs per token, EVA02 with mlp_ratio 8/3), `mlp_norm` a LayerNorm on its hidden units
    (EVA02-B/L); `k_bias = False` leaves the key projection without bias (EVA: q and v biases only);
    `rope` rotates q and k of the patch tokens by EVA02's 2-D rotary embedding, x * cos + rot(x) * sin
    with fixed tables of the token grid (elementwise only: no multiply-accumulate), which splits each
    head into halves for the two axes, each into sine and cosine halves: head width a multiple of 4.

    Token pruning (EViT, Liang et al. 2022, "Not All Patches are What You Need"): after the attention of
    each block numbered in `prune_blocks` (1-based, as the paper counts), the n tokens become the class
    token, the ceil(keep_rate * (n - 1)) patch tokens the class token attends to most (its scores averaged
    over the heads) and one token fusing the others weighted by those scores; the MLP and every later block
    run on what is left. The class token's scores are computed apart from the attention (q_cls @ K^T,
    h*n*d MACs per image, and their softmax), as a fused kernel never forms them; the ranking, the gathers,
    the fusion and the concat are elementwise. DeiT-S at keep rate 0.7 in blocks 4, 7, 10 (197 -> 140 ->
    100 -> 72 tokens): 3.04 G in the fvcore convention, the paper's 3.0 (DeiT-S: 4.6).

    Top-k attention (`topk` = k > 0; instance-dependent keys per query, as Sparsifiner, Wei et al. 2023,
    and KVT's k-NN attention): the full scores q K^T (N^2 d MACs per head), the top k of each query's
    row, a softmax over those k, the k value rows gathered for each query and summed with those weights
    (N k d MACs per head instead of N^2 d). No fused kernel runs it: both attention paths run the same
    code, which stores the N x N scores, the k selected and their indices, and the gathered values."""

    family: ClassVar[str] = "vit"
    dim: int = doc(text="token width D")
    depth: int = doc(text="number of transformer blocks")
    heads: int = doc(text="attention heads per block; must divide dim")
    patch: int = doc(16, "patch size P: a stride-P conv embeds P x P patches")
    mlp_ratio: float = doc(4.0, "MLP hidden width = int(dim * mlp_ratio)")
    class_tokens: int = doc(1, "class tokens prepended to the patch tokens (0: classify the mean token)")
    window: int = doc(0, "window attention side in tokens; 0 = global attention in every block")
    global_blocks: tuple[int, ...] = doc((), "with window > 0: indices of the blocks that keep global attention")
    rel_pos: bool = doc(False, "decomposed relative positions on the scores (SAM; needs class_tokens = 0)")
    neck: int = doc(0, "SAM neck channels in place of the final norm (1x1 conv, LN2d, 3x3 conv, LN2d); 0 = none")
    distilled: bool = doc(False, "DeiT distillation token and head_dist on token 1, averaged (needs class_tokens = 2)")
    attention: str = doc("softmax", "token mixer of every block: softmax | linear (phi = elu + 1, no N x N scores)")
    num_classes: int = doc(1000, "classes of the linear head; 0 = no head")
    in_chans: int = doc(3, "input image channels")
    pos_embed: bool = doc(True, "learned absolute position embedding (false: none, as samvit_base_patch16_224)")
    reg_tokens: int = doc(0, "register tokens after the class tokens; with them no prefix token gets a position row")
    global_pool: str = doc("", "token: class token 0 | avg: mean of the patch tokens | '' = token with class tokens")
    fc_norm: bool = doc(False, "final norm on the pooled token instead of on every token (also without a head)")
    layer_scale: bool = doc(False, "a learned per-channel scale on each residual branch (ls1, ls2)")
    mlp: str = doc("gelu", "channel MLP: gelu | swiglu (fc1 to 2 x hidden, SiLU(gate) * x, fc2)")
    mlp_norm: bool = doc(False, "LayerNorm on the MLP's hidden units before fc2 (EVA02's scale_mlp)")
    k_bias: bool = doc(True, "a bias on the key projection (false: q and v biases only, as EVA)")
    rope: bool = doc(False, "2-D rotary position embedding on q and k of the patch tokens (EVA02)")
    prune_blocks: tuple[int, ...] = doc((), "EViT: 1-based numbers of the blocks that keep their most attended "
                                            "patch tokens and fuse the rest into one")
    keep_rate: float = doc(1.0, "EViT: each pruning block keeps ceil(keep_rate * patch tokens), 0 < keep_rate <= 1")
    topk: int = doc(0, "keys each query attends to: its top-k scores (0 = all keys)")
    tubelet: int = doc(1, "frames per token of a clip (TxHxW input): a tubelet x P x P conv embeds it (ViViT)")

    def validate(self) -> None:
        _positive(self, dim=self.dim, depth=self.depth, heads=self.heads, patch=self.patch,
                  mlp_ratio=self.mlp_ratio, in_chans=self.in_chans, tubelet=self.tubelet)
        _walkable(self, self.depth)
        if self.class_tokens < 0 or self.window < 0 or self.neck < 0 or self.num_classes < 0 or self.reg_tokens < 0:
            raise SpecError("ViTSpec.class_tokens, reg_tokens, window, neck and num_classes must be 0 or more.")
        self._validate_modern()
        _divides(self, "dim", self.dim, self.heads)
        _hidden(self, self.dim, self.mlp_ratio)
        if self.global_blocks and not self.window:
            raise SpecError("ViTSpec.global_blocks needs window > 0 (without a window every block is global).")
        bad = [i for i in self.global_blocks if not 0 <= i < self.depth]
        if bad or len(set(self.global_blocks)) != len(self.global_blocks):
            raise SpecError(f"ViTSpec.global_blocks must be distinct block indices in 0..{self.depth - 1}, "
                            f"got {list(self.global_blocks)}.")
        if self.window and self.class_tokens:
            raise SpecError("ViTSpec.window > 0 partitions the token grid, which has no place for class tokens: "
                            "set class_tokens = 0.")
        if (self.rel_pos or self.neck) and self.class_tokens:
            raise SpecError("ViTSpec.rel_pos and ViTSpec.neck work on the token grid, which has no place for class "
                            "tokens: set class_tokens = 0.")
        if self.distilled and (self.class_tokens != 2 or not self.num_classes):
            raise SpecError("ViTSpec.distilled needs class_tokens = 2 (the class and distillation tokens) and "
                            "num_classes > 0 (a head on each).")
        if self.attention not in ATTENTIONS:
            raise SpecError(f"ViTSpec.attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}.")
        if self.rel_pos and self.attention != "softmax":
            raise SpecError("ViTSpec.rel_pos adds to the scores, which linear attention never forms: use "
                            "attention = softmax.")

    def _validate_modern(self) -> None:
        """The fields of the modern variants (register tokens, pooling, layer scale, SwiGLU, RoPE)."""
        if self.global_pool not in POOLS:
            raise SpecError(f"ViTSpec.global_pool must be one of token, avg or '', got {self.global_pool!r}.")
        if self.global_pool == "token" and not self.class_tokens:
            raise SpecError("ViTSpec.global_pool = token classifies class token 0: set class_tokens > 0.")
        if self.mlp not in MLPS:
            raise SpecError(f"ViTSpec.mlp must be one of {', '.join(MLPS)}, got {self.mlp!r}.")
        if self.reg_tokens and (self.window or self.rel_pos or self.neck or self.distilled):
            raise SpecError("ViTSpec.reg_tokens need a plain token sequence: no window, rel_pos, neck or distilled.")
        if (self.fc_norm or self.global_pool) and (self.neck or self.distilled):
            raise SpecError("ViTSpec.fc_norm and global_pool apply to a plain head: not with neck or distilled.")
        self._validate_pruning()
        if self.rope:
            d = self.dim // self.heads
            if d % 4:
                raise SpecError(f"ViTSpec.rope splits each head of width {d} into equal sine and cosine halves for "
                                "the two grid axes: the head width (dim / heads) must be a multiple of 4.")
            if self.window or self.rel_pos or self.attention != "softmax":
                raise SpecError("ViTSpec.rope rotates q and k of global softmax attention: not with window, "
                                "rel_pos or linear attention.")

    def _validate_pruning(self) -> None:
        """EViT's token pruning (Liang et al. 2022)."""
        if not 0 < self.keep_rate <= 1:
            raise SpecError(f"ViTSpec.keep_rate is the fraction of patch tokens a pruning block keeps: it must be "
                            f"in (0, 1], got {self.keep_rate!r}.")
        bad = [i for i in self.prune_blocks if not 1 <= i <= self.depth]
        if bad or len(set(self.prune_blocks)) != len(self.prune_blocks):
            raise SpecError(f"ViTSpec.prune_blocks are distinct 1-based block numbers in 1..{self.depth} (the depth), "
                            f"got {list(self.prune_blocks)}.")
        if self.topk < 0:
            raise SpecError(f"ViTSpec.topk must be 0 (all keys) or more, got {self.topk}.")
        if self.topk and (self.window or self.rel_pos or self.neck or self.attention != "softmax"):
            raise SpecError("ViTSpec.topk selects among the scores of global softmax attention: not with window, "
                            "rel_pos, neck or linear attention.")
        if not self.prune_blocks:
            return
        if self.class_tokens != 1 or self.reg_tokens or self.distilled:
            raise SpecError("ViTSpec.prune_blocks needs one class token: EViT ranks the patch tokens by the class "
                            f"token's attention (class_tokens = 1, no registers; got {self.class_tokens}).")
        if self.window or self.rel_pos or self.neck or self.rope or self.attention != "softmax":
            raise SpecError("ViTSpec.prune_blocks prunes a plain token sequence: not with window, rel_pos, neck, "
                            "rope or linear attention.")

    def tokens_after(self, block: int, n: Any) -> Any:
        """The tokens leaving block `block` (0-based) that n tokens enter: a pruning block keeps the class
        token, ceil(keep_rate * (n - 1)) patch tokens and, when it dropped any, their fusion."""
        if block + 1 not in self.prune_blocks:
            return n
        kept = _ceil(self.keep_rate * (n - 1))
        return n if kept == n - 1 else 1 + kept + 1

    @property
    def mlp_hidden(self) -> int:
        return int(self.dim * self.mlp_ratio)

    @property
    def prefix_tokens(self) -> int:
        """Class and register tokens before the patch tokens."""
        return self.class_tokens + self.reg_tokens

    @property
    def pool(self) -> str:
        """How the head reads the tokens: token (class token 0) or avg (mean of the patch tokens)."""
        return self.global_pool or ("token" if self.class_tokens else "avg")

    def block_window(self, i: int) -> int:
        """The window side of block i, 0 for global attention."""
        return 0 if i in self.global_blocks else self.window


@spec_class
class PixelSpec(SpecBase):
    """Pixel-level attention (Image GPT, Chen et al. 2020): every pixel is a token. Each pixel is
    embedded by a 1x1 convolution of its colour channels, a learned position embedding is added,
    then `depth` pre-norm blocks of global MSA + MLP, a final norm and a per-pixel head over a
    `vocab`-entry colour palette (iGPT predicts each pixel's palette entry).

    Difference from iGPT: iGPT looks pixels up in a 512-entry palette embedding (512*d params)
    where this embeds raw colours with a 1x1 conv (4*d params); iGPT also applies a causal mask,
    which changes no multiply-accumulate."""

    family: ClassVar[str] = "pixel"
    dim: int = doc(text="token width D")
    depth: int = doc(text="number of transformer blocks")
    heads: int = doc(text="attention heads per block; must divide dim")
    mlp_ratio: float = doc(4.0, "MLP hidden width = int(dim * mlp_ratio)")
    vocab: int = doc(512, "palette entries predicted per pixel")
    in_chans: int = doc(3, "input image channels")
    patch: ClassVar[int] = 1
    class_tokens: ClassVar[int] = 0
    window: ClassVar[int] = 0
    global_blocks: ClassVar[tuple[int, ...]] = ()
    rel_pos: ClassVar[bool] = False
    neck: ClassVar[int] = 0
    distilled: ClassVar[bool] = False
    attention: ClassVar[str] = "softmax"
    pos_embed: ClassVar[bool] = True
    reg_tokens: ClassVar[int] = 0
    prefix_tokens: ClassVar[int] = 0
    fc_norm: ClassVar[bool] = False
    layer_scale: ClassVar[bool] = False
    mlp: ClassVar[str] = "gelu"
    mlp_norm: ClassVar[bool] = False
    k_bias: ClassVar[bool] = True
    rope: ClassVar[bool] = False
    prune_blocks: ClassVar[tuple[int, ...]] = ()
    topk: ClassVar[int] = 0

    def validate(self) -> None:
        _positive(self, dim=self.dim, depth=self.depth, heads=self.heads, mlp_ratio=self.mlp_ratio,
                  vocab=self.vocab, in_chans=self.in_chans)
        _walkable(self, self.depth)
        _divides(self, "dim", self.dim, self.heads)
        _hidden(self, self.dim, self.mlp_ratio)

    @property
    def mlp_hidden(self) -> int:
        return int(self.dim * self.mlp_ratio)

    def block_window(self, i: int) -> int:
        return 0


@spec_class
class SwinSpec(SpecBase):
    """Swin Transformer (Liu et al. 2021): 4x4 conv patch embedding + norm, four stages of
    alternating W-MSA / SW-MSA blocks (cyclic shift by window//2 with an attention mask), relative
    position bias, patch merging (2x2 concat, norm, linear 4C -> 2C) between stages, final norm,
    global average pool and head. Channels double at every stage."""

    family: ClassVar[str] = "swin"
    embed_dim: int = doc(text="channels C of the first stage; stage s has C * 2^s")
    depths: tuple[int, ...] = doc(text="blocks per stage")
    heads: tuple[int, ...] = doc(text="attention heads per stage; each must divide its stage's channels")
    window: int = doc(7, "window side M in tokens (clamped to the grid in late stages)")
    patch: int = doc(4, "patch size of the stride-P conv embedding")
    mlp_ratio: float = doc(4.0, "MLP hidden width = int(channels * mlp_ratio)")
    num_classes: int = doc(1000, "classes of the linear head")
    in_chans: int = doc(3, "input image channels")

    def validate(self) -> None:
        _positive(self, embed_dim=self.embed_dim, window=self.window, patch=self.patch,
                  mlp_ratio=self.mlp_ratio, num_classes=self.num_classes, in_chans=self.in_chans)
        _doubling_stages(self)
        _hidden(self, self.embed_dim, self.mlp_ratio)

    def stage_dim(self, stage: int) -> int:
        return self.embed_dim * 2**stage


@spec_class
class MViTSpec(SpecBase):
    """MViTv2 (Li et al. 2022), image variant with conv pooling: a 7x7 stride-4 conv stem, then
    stages of multiscale blocks. Every block pools Q, K and V with a depthwise k x k conv (shared
    across heads) followed by LayerNorm; the first block of each later stage pools Q with stride 2,
    halving the grid; K/V are pooled with a stride that starts at `kv_stride` and is divided by the
    Q stride at each stage start (4, 2, 1, 1). Attention adds decomposed relative positions and the
    pooled Q back to its output (residual pooling). Channels change in the first block of a stage
    through the attention's projections ("expand_attn"), the residual is projected by a linear layer
    and max-pooled. A final norm, mean pool over tokens and a linear head close the model.

    `expand_attn = False` (timm's mvitv2_large) widens instead in the MLP of each stage's last block:
    its attention, norm2 and MLP hidden run at the stage's channels, fc2 writes the next stage's, and the
    residual takes a linear projection of norm2's output (`shortcut_proj_mlp`); every block of a stage
    then attends at that stage's channels, the first block of the next stage at the widened ones.

    On a clip (T x H x W, T > 1) the model is MViTv2 as SlowFast builds it for video (`MViT`,
    `configs/Kinetics/MVITv2_S_16x4.yaml`), and the time-axis fields default to that config's values, so an
    image preset given a clip is its video model: the stem is a Conv3d cube embedding (kernel, stride and
    padding in T from `stem_kernel_t`, `stem_stride_t`, `stem_padding_t`), the Q/K/V pooling convs and the
    max-pooled shortcut are 3-D (kernel `pool_kernel_t` in T, strides `stage_q_stride_t` and `kv_stride_t`,
    the latter divided by the Q stride at each stage start like `kv_stride`), and `rel_pos_t` adds a third,
    temporal table to the decomposed relative positions: scores[(t, h, w), (t', h', w')] +=
    q . (R_t[t, t'] + R_h[h, h'] + R_w[w, w']), each table sized 2 * max(q, k) - 1 along its axis (SlowFast
    allocates the temporal one as 2 * T_in - 1 and interpolates it to that size: the same wherever the
    temporal strides are 1, as in all its configs). `cls_token` puts a class token in front of the grid:
    it is set aside by every pooling and put back in front, the relative positions and the residual
    pooling skip its row and column, and the head reads it after the final norm instead of the mean.
    An image, or a clip of one frame, is the image model whatever these fields say (`at_frames`: temporal
    kernels and strides 1, no temporal padding, table or class token), so T = 1 is the image case and
    every image figure is as it was. MViTv2-S 16x4 (Kinetics-400, 16x224x224): 34.5M params and 64 GFLOPs (MACs) x 5
    views in the paper and SlowFast's projects/mvitv2; here 34.54M and 64.22G (MACs), 0.35% over
    the rounded 64.

    Hybrid window attention (MViTv2 Sec. 4, "Hwin"; detectron2's MViT backbone): with `window` > 0 every
    block except those in `global_blocks` pools q, k and v as above, then zero-pads the pooled q grid to a
    multiple of its window and the pooled k/v grid to a multiple of theirs and attends inside each window;
    the output is unpartitioned and cropped before the residual pooling adds the whole pooled q. `window`
    is the side on the first stage's grid; a stage's window is that over the Q strides before it (halved at
    each stage change), and the first block of a stage, which pools its queries, still partitions its input
    grid's window: its q windows are window_in / s_q and its k/v windows window_in / s_kv tokens a side.
    A window block's relative-position tables span one window (2 * max(q window, k/v window) - 1 rows:
    detectron2's tables, sized for its 224 pretraining grid, have that size when the window is that grid,
    as in its configs); a global block's span its grids. `double_kv_blocks` doubles the K/V stride of the
    listed blocks (detectron2's global last blocks of stages 1 and 2). The backbone's multi-scale outputs
    and FPN are not modelled: the model keeps the classification head. Windows partition images: a clip
    (T > 1) with a window is an error."""

    family: ClassVar[str] = "mvit"
    dims: tuple[int, ...] = doc(text="channels per stage")
    depths: tuple[int, ...] = doc(text="blocks per stage")
    heads: tuple[int, ...] = doc(text="attention heads per stage; each must divide its stage's channels")
    pool_kernel: int = doc(3, "kernel of the depthwise Q/K/V pooling convs (odd)")
    kv_stride: int = doc(4, "K/V pooling stride of the first stage, divided by the Q stride at each stage start")
    stage_q_stride: int = doc(2, "Q pooling stride of the first block of stages 1..: 1 or even")
    stem_kernel: int = doc(7, "kernel of the conv stem")
    stem_stride: int = doc(4, "stride of the conv stem")
    mlp_ratio: float = doc(4.0, "MLP hidden width = int(channels * mlp_ratio)")
    num_classes: int = doc(1000, "classes of the linear head")
    in_chans: int = doc(3, "input image channels")
    residual_pooling: bool = doc(True, "add the pooled queries back to the attention output")
    rel_pos: bool = doc(True, "decomposed relative positions on the scores")
    expand_attn: bool = doc(True, "widen in the first block's attention (false: in the MLP of the stage's last block)")
    stem_kernel_t: int = doc(3, "on a clip (T > 1): kernel in T of the cube embedding (1: each frame on its own)")
    stem_stride_t: int = doc(2, "on a clip: stride in T of the cube embedding; T must be a multiple of it")
    stem_padding_t: int = doc(1, "on a clip: padding in T of the cube embedding")
    pool_kernel_t: int = doc(3, "on a clip: kernel in T of the depthwise Q/K/V pooling convs (odd)")
    kv_stride_t: int = doc(1, "on a clip: K/V pooling stride in T of the first stage, divided by the Q stride in "
                              "T at each stage start")
    stage_q_stride_t: int = doc(1, "on a clip: Q pooling stride in T of the first block of stages 1..: 1 or even")
    rel_pos_t: bool = doc(True, "on a clip, with rel_pos: a third, temporal table of decomposed relative positions")
    cls_token: bool = doc(True, "on a clip: a class token in front of the tokens, read by the head (false: the "
                                "mean)")
    window: int = doc(0, "window attention side in tokens on the first stage's grid (a later stage's: over its "
                         "Q strides); 0 = global attention in every block")
    global_blocks: tuple[int, ...] = doc((), "with window > 0: indices of the blocks (over all stages) that keep "
                                             "global attention")
    double_kv_blocks: tuple[int, ...] = doc((), "indices of the blocks (over all stages) whose K/V stride is doubled")

    def validate(self) -> None:
        self._validate_time()
        _positive(self, pool_kernel=self.pool_kernel, kv_stride=self.kv_stride,
                  stage_q_stride=self.stage_q_stride, stem_kernel=self.stem_kernel,
                  stem_stride=self.stem_stride, mlp_ratio=self.mlp_ratio,
                  num_classes=self.num_classes, in_chans=self.in_chans)
        _stages(self)
        # The max-pooled shortcut (kernel s+1, stride s) and the conv-pooled queries (kernel k, stride s)
        # give the same grid only for an odd kernel and a stride of 1 or an even stride.
        if self.pool_kernel % 2 == 0:
            raise SpecError(f"MViTSpec.pool_kernel must be odd, got {self.pool_kernel}.")
        if self.stage_q_stride > 1 and self.stage_q_stride % 2:
            raise SpecError(f"MViTSpec.stage_q_stride must be 1 or even, got {self.stage_q_stride}.")
        self._validate_windows()

    def _validate_windows(self) -> None:
        """Block indices in range; windows that every windowed block's Q and K/V strides divide."""
        blocks = sum(self.depths)
        for name in ("global_blocks", "double_kv_blocks"):
            idx = getattr(self, name)
            if any(not 0 <= i < blocks for i in idx) or len(set(idx)) != len(idx):
                raise SpecError(f"MViTSpec.{name} must be distinct block indices in 0..{blocks - 1}, got {list(idx)}.")
        if self.window < 0:
            raise SpecError(f"MViTSpec.window must be 0 or more, got {self.window}.")
        if self.global_blocks and not self.window:
            raise SpecError("MViTSpec.global_blocks needs window > 0 (without a window every block is global).")
        if not self.window:
            return
        need = 1
        for s, depth in enumerate(self.depths):
            for i in range(depth):
                if self.block_index(s, i) not in self.global_blocks:
                    sq = self.q_stride(s) if i == 0 else 1
                    need = math.lcm(need, self.input_stride(s, i) * math.lcm(sq, self.block_kv_stride(s, i)))
        if self.window % need:
            raise SpecError(f"MViTSpec.window = {self.window} does not split into whole q and k/v windows on every "
                            f"windowed block's pooled grids: give a multiple of {need}.")

    def q_stride(self, stage: int) -> int:
        return 1 if stage == 0 else self.stage_q_stride

    def _validate_time(self) -> None:
        _positive(self, stem_kernel_t=self.stem_kernel_t, stem_stride_t=self.stem_stride_t,
                  pool_kernel_t=self.pool_kernel_t, kv_stride_t=self.kv_stride_t,
                  stage_q_stride_t=self.stage_q_stride_t)
        if self.stem_padding_t < 0:
            raise SpecError(f"MViTSpec.stem_padding_t must be at least 0, got {self.stem_padding_t}.")
        if self.pool_kernel_t % 2 == 0:
            raise SpecError(f"MViTSpec.pool_kernel_t must be odd, got {self.pool_kernel_t}.")
        if self.stage_q_stride_t > 1 and self.stage_q_stride_t % 2:
            raise SpecError(f"MViTSpec.stage_q_stride_t must be 1 or even, got {self.stage_q_stride_t}.")

    def at_frames(self, frames: Any) -> MViTSpec:
        """The spec a forward on `frames` frames runs: on a clip (T > 1, or a symbol) the fields as they are,
        the temporal table only beside the spatial ones; on an image (T = 1) no time axis: temporal kernels
        and strides 1, no temporal padding or table, and no class token (the image model)."""
        if isinstance(frames, int) and frames == 1:
            image = {"stem_kernel_t": 1, "stem_stride_t": 1, "stem_padding_t": 0, "pool_kernel_t": 1, "kv_stride_t": 1,
                     "stage_q_stride_t": 1, "rel_pos_t": False, "cls_token": False}
        else:
            image = {"rel_pos_t": self.rel_pos_t and self.rel_pos}
        if all(getattr(self, k) == v for k, v in image.items()):
            return self
        return replace(self, **image)

    def strides3(self, stage: int, i: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """(Q stride, K/V stride) as (T, H, W) of block i of `stage`; the K/V stride adapts in T as in space
        (SlowFast's POOL_KV_STRIDE_ADAPTIVE), and is doubled in space for `double_kv_blocks`."""
        first = i == 0
        st = self.kv_stride_t
        for _ in range(stage):
            st = max(st // self.stage_q_stride_t, 1)
        q = self.q_stride(stage) if first else 1
        qt = self.stage_q_stride_t if first and stage else 1
        kv = self.block_kv_stride(stage, i)
        return (qt, q, q), (st, kv, kv)

    def block_dims(self, stage: int, i: int, dim_in: int) -> tuple[int, int]:
        """(attention channels, output channels) of block i of `stage`, whose input has dim_in channels."""
        if self.expand_attn:
            return self.dims[stage], self.dims[stage]
        last = i == self.depths[stage] - 1 and stage + 1 < len(self.dims)
        return dim_in, self.dims[stage + 1] if last else dim_in

    def kv_stride_at(self, stage: int) -> int:
        """Adaptive K/V stride: divided by the Q stride at each stage start, never below 1."""
        s = self.kv_stride
        for i in range(1, stage + 1):
            s = max(s // self.q_stride(i), 1)
        return s

    def block_index(self, stage: int, i: int) -> int:
        """The index over all stages of block i of `stage`."""
        return sum(self.depths[:stage]) + i

    def block_kv_stride(self, stage: int, i: int) -> int:
        """The K/V stride of block i of `stage`: the stage's, doubled for `double_kv_blocks`."""
        return self.kv_stride_at(stage) * (2 if self.block_index(stage, i) in self.double_kv_blocks else 1)

    def input_stride(self, stage: int, i: int) -> int:
        """The Q strides before block i of `stage` (its input grid is the first stage's over this)."""
        stride = 1
        for s in range(1, stage + (1 if i else 0)):
            stride *= self.q_stride(s)
        return stride

    def block_window(self, stage: int, i: int) -> int:
        """The window side on the input grid of block i of `stage`, 0 for global attention."""
        if not self.window or self.block_index(stage, i) in self.global_blocks:
            return 0
        return self.window // self.input_stride(stage, i)


@spec_class
class MixerSpec(SpecBase):
    """MLP-Mixer (Tolstikhin et al. 2021): conv patch embedding, `depth` blocks of a token-mixing MLP
    (N -> tokens_hidden -> N, shared across channels) and a channel-mixing MLP (C -> channels_hidden
    -> C), each pre-norm with a residual, then final norm, mean pool and head. The token-mixing MLP
    has N*tokens_hidden weights, so parameters grow with the resolution."""

    family: ClassVar[str] = "mixer"
    dim: int = doc(text="channels C")
    depth: int = doc(text="number of Mixer blocks")
    tokens_hidden: int = doc(text="hidden width D_S of the token-mixing MLP")
    channels_hidden: int = doc(text="hidden width D_C of the channel-mixing MLP")
    patch: int = doc(16, "patch size of the stride-P conv embedding")
    num_classes: int = doc(1000, "classes of the linear head")
    in_chans: int = doc(3, "input image channels")

    def validate(self) -> None:
        _positive(self, dim=self.dim, depth=self.depth, tokens_hidden=self.tokens_hidden,
                  channels_hidden=self.channels_hidden, patch=self.patch,
                  num_classes=self.num_classes, in_chans=self.in_chans)
        _walkable(self, self.depth)


@spec_class
class NATSpec(SpecBase):
    """Neighborhood Attention Transformer (NAT, Hassani et al. 2023) and, with `dilations`, DiNAT
    (Hassani & Shi 2022), as in the SHI-Labs classification models: an overlapping tokenizer (two 3x3
    stride-2 convs, padding 1, then LayerNorm), stages of pre-norm blocks of neighbourhood attention
    (NA) + MLP with optional layer scale, a 3x3 stride-2 conv (no bias) + LayerNorm between stages that
    doubles the channels, a final norm, mean pool and head.

    NA: every token attends to the kernel x kernel tokens around it; near a border the neighbourhood is
    shifted inward so it stays kernel x kernel; a (2k-1)^2-entry relative position bias per head is
    added to the scores. A block with dilation d takes every d-th token: the neighbourhood and its
    border shift are taken within the token's dilation group (the tokens at the same position mod d).
    Like NATTEN, a grid smaller than kernel * dilation along an axis is zero-padded at the bottom/right
    to that size before qkv, and cropped again before the output projection.

    Published figures (NAT/DiNAT READMEs: fvcore with NATTEN's op handles). Parameters are given in whole
    millions: NAT-Small's 50.74M is 0.50% under its "51M", inside that rounding. NATTEN's handle for its
    QK+RPB kernel counts one more per score element for the bias add (B*heads*H*W*k^2 per layer, 0.05-0.08%
    of the total at 224); here that add is an elementwise op, which the fvcore convention leaves out, so
    the fvcore totals (2.71/4.32/7.81/13.72G for Mini/Tiny/Small/Base) sit that much below NATTEN's
    (2.71/4.32/7.81/13.73G, `analytic.nat.natten_rpb_macs`); both round to the published 2.7/4.3/7.8/13.7."""

    family: ClassVar[str] = "nat"
    embed_dim: int = doc(text="channels C of the first stage; stage s has C * 2^s")
    depths: tuple[int, ...] = doc(text="blocks per stage")
    heads: tuple[int, ...] = doc(text="attention heads per stage; each must divide its stage's channels")
    kernel: int = doc(7, "neighbourhood side k in tokens (odd, at least 3)")
    dilations: tuple[int, ...] = doc((), "DiNAT: one dilation per block, all stages in order (sum(depths) "
                                         "entries); empty = 1 everywhere (NAT)")
    mlp_ratio: float = doc(3.0, "MLP hidden width = int(channels * mlp_ratio)")
    layer_scale: float = doc(0.0, "initial value of the per-channel layer scales gamma1/gamma2; 0 = none")
    num_classes: int = doc(1000, "classes of the linear head")
    in_chans: int = doc(3, "input image channels")

    def validate(self) -> None:
        _positive(self, embed_dim=self.embed_dim, kernel=self.kernel, mlp_ratio=self.mlp_ratio,
                  num_classes=self.num_classes, in_chans=self.in_chans)
        _doubling_stages(self)
        if self.embed_dim % 2:
            raise SpecError(f"NATSpec.embed_dim must be even (the tokenizer's first conv has embed_dim/2 "
                            f"channels), got {self.embed_dim}.")
        if self.kernel < 3 or self.kernel % 2 == 0:
            raise SpecError(f"NATSpec.kernel must be odd and at least 3, got {self.kernel}.")
        if self.dilations and len(self.dilations) != sum(self.depths):
            raise SpecError(f"NATSpec.dilations needs one entry per block ({sum(self.depths)}), "
                            f"got {len(self.dilations)}.")
        if any(d < 1 for d in self.dilations):
            raise SpecError(f"NATSpec.dilations must all be at least 1, got {list(self.dilations)}.")
        if self.layer_scale < 0:
            raise SpecError(f"NATSpec.layer_scale must be 0 (none) or positive, got {self.layer_scale!r}.")
        _hidden(self, self.embed_dim, self.mlp_ratio)

    def stage_dim(self, stage: int) -> int:
        return self.embed_dim * 2**stage

    def dilation(self, stage: int, block: int) -> int:
        """The dilation of block `block` of stage `stage` (1 without `dilations`)."""
        if not self.dilations:
            return 1
        return self.dilations[sum(self.depths[:stage]) + block]


@spec_class
class ConvNeXtSpec(SpecBase):
    """ConvNeXt (Liu et al. 2022, "A ConvNet for the 2020s"): a patch x patch stride-patch conv stem +
    LayerNorm, stages of blocks, a LayerNorm + 2x2 stride-2 conv between stages (channels change there),
    global average pool, LayerNorm and a linear head. A block on [B, C, H, W] (ConvNeXt Fig. 4):
        x + gamma * fc2(GELU(fc1(LN(dwconv_k(x)))))
    with a k x k depthwise conv (padding k//2), LayerNorm over channels, an MLP C -> 4C -> C per pixel
    and a per-channel layer scale gamma. No attention: a block costs HW*C*(k^2 + 8C) MACs, linear in HW.

    Published figures: the paper's Table 1 rounds ConvNeXt-T to 4.5G FLOPs; timm's fvcore count of the
    same network is 4.47 GMACs (28.59M params), which this spec reproduces (the paper's 4.5 is 0.7%
    above it only by rounding)."""

    family: ClassVar[str] = "convnext"
    dims: tuple[int, ...] = doc(text="channels per stage")
    depths: tuple[int, ...] = doc(text="blocks per stage")
    kernel: int = doc(7, "side of the depthwise conv of every block (odd)")
    patch: int = doc(4, "stem: a patch x patch conv of stride patch")
    mlp_ratio: float = doc(4.0, "MLP hidden width = int(channels * mlp_ratio)")
    layer_scale: bool = doc(True, "scale each block's branch by a learned per-channel gamma")
    num_classes: int = doc(1000, "classes of the linear head")
    in_chans: int = doc(3, "input image channels")

    def validate(self) -> None:
        _positive(self, kernel=self.kernel, patch=self.patch, mlp_ratio=self.mlp_ratio,
                  num_classes=self.num_classes, in_chans=self.in_chans)
        if len(self.dims) != len(self.depths) or not self.dims:
            raise SpecError("ConvNeXtSpec: dims and depths must be non-empty and of equal length.")
        for d, n in zip(self.dims, self.depths):
            _positive(self, dim=d, depth=n)
        _walkable(self, sum(self.depths))
        if self.kernel % 2 == 0:
            raise SpecError(f"ConvNeXtSpec.kernel must be odd (the depthwise conv keeps the grid), got {self.kernel}.")
        _hidden(self, min(self.dims), self.mlp_ratio)


@spec_class
class ResNetSpec(SpecBase):
    """ResNet with bottleneck blocks (He et al. 2016), as "ResNet v1.5" in timm and torchvision (the
    stride sits on the 3x3 conv): a 7x7 stride-2 conv + BatchNorm + ReLU, a 3x3 stride-2 max pool, then
    stages of bottlenecks of width w_s = width * 2^s (He et al. Fig. 5, right):
        z = ReLU(BN(conv1x1(x)));  z = ReLU(BN(conv3x3_stride(z)));  y = ReLU(BN(conv1x1(z)) + shortcut(x))
    with expansion * w_s output channels; the first block of a stage strides by 2 (stage 0 by 1) and its
    shortcut is a conv1x1 + BN projection (the identity elsewhere); global average pool, linear head.
    Convs have no bias (each is followed by BatchNorm). Costs are for inference: BatchNorm in eval mode
    (fvcore counts it as 2 per element, FlopCounterMode not at all).

    Non-local blocks (Wang et al. 2018, "Non-local Neural Networks", the embedded-Gaussian form as
    mmcv's NonLocal2d builds it), after bottlenecks, on their C-channel output x with N = h*w positions:
    theta, phi and g are 1x1 convs (with bias) to C' = C / nl_reduction channels; with `nl_subsample` a
    2x2 stride-2 max pool follows phi and g (M = floor(h/2) * floor(w/2) keys, else M = N);
    y = softmax(theta^T phi / sqrt(C')) g, one head of width C' over all positions (the O((HW)^2) term:
    2 N M C' MACs); z = BN(W y) with W a bias-free 1x1 conv back to C (BatchNorm's gamma starts at
    zero); out = x + z. Placement as the paper's code (video-nonlocal-net's res_stage_nonlocal): with
    k = nl_every[s], a block follows bottleneck i of stage s when i % k == k - 1. ResNet-50's "5 blocks"
    (Wang et al. Sec. 4: every other residual block, 2 in res3 and 3 in res4) are (0, 2, 2, 0), after
    bottlenecks 1, 3 of res3 and 1, 3, 5 of res4 as mmaction2's non-local I3D configs place them; "10
    blocks" (every residual block of res3 and res4) are (0, 1, 1, 0); "1 block" (right before the last
    residual block of res4) is (0, 0, 5, 0). No paper or model zoo publishes params or FLOPs of an image
    classifier with these blocks (the NL paper's figures are for video, GCNet's for whole Mask R-CNN
    detectors); the presets' figures are checked by a hand derivation in tests/test_nonlocal.py."""

    family: ClassVar[str] = "resnet"
    depths: tuple[int, ...] = doc((3, 4, 6, 3), "bottleneck blocks per stage")
    width: int = doc(64, "stem channels and the bottleneck width of stage 0; stage s has width * 2^s")
    expansion: int = doc(4, "a bottleneck's output channels = expansion * its width")
    num_classes: int = doc(1000, "classes of the linear head")
    in_chans: int = doc(3, "input image channels")
    nl_every: tuple[int, ...] = doc((), "per stage: a non-local block (Wang et al. 2018) after every k-th "
                                        "bottleneck (after bottleneck i when i % k == k - 1); 0: none")
    nl_reduction: int = doc(2, "a non-local block embeds its C channels in C / nl_reduction (theta, phi, g)")
    nl_subsample: bool = doc(False, "a 2x2 max pool after a non-local block's phi and g (a quarter of the keys)")

    def validate(self) -> None:
        _positive(self, width=self.width, expansion=self.expansion, num_classes=self.num_classes,
                  in_chans=self.in_chans, nl_reduction=self.nl_reduction)
        if not self.depths:
            raise SpecError("ResNetSpec.depths must list at least one stage.")
        for n in self.depths:
            _positive(self, depth=n)
        _walkable(self, sum(self.depths))
        self._validate_non_local()

    def _validate_non_local(self) -> None:
        if len(self.nl_every) > len(self.depths):
            raise SpecError(f"ResNetSpec.nl_every lists {len(self.nl_every)} stages: stage {len(self.depths)} "
                            f"does not exist (depths={self.depths}).")
        for s, k in enumerate(self.nl_every):
            d, c = self.depths[s], self.expansion * self.width * 2**s
            if not 0 <= k <= d:
                raise SpecError(f"ResNetSpec.nl_every[{s}] = {k}: stage {s} has {d} bottlenecks; a non-local block "
                                f"follows every k-th, k from 1 to {d} (0: none).")
            if k and c % self.nl_reduction:
                raise SpecError(f"ResNetSpec.nl_reduction = {self.nl_reduction} does not divide stage {s}'s "
                                f"{c} channels.")

    def non_local_after(self, stage: int) -> frozenset[int]:
        """Indices of the bottlenecks of `stage` that a non-local block follows (see the class docstring)."""
        k = self.nl_every[stage] if stage < len(self.nl_every) else 0
        return frozenset(i for i in range(self.depths[stage]) if k and i % k == k - 1)


@spec_class
class SwinV2Spec(SpecBase):
    """Swin Transformer V2 (Liu et al. 2022), as timm's swin_transformer_v2.py builds it: Swin's 4x4
    conv embedding + norm and stages of alternating regular / shifted windows (shift = window // 2, the
    shift mask, zero padding of grids that do not divide the window), with res-post-norm blocks
    (x + norm1(attn(x)), x + norm2(mlp(x))), scaled cosine attention (normalize(q) normalize(k)^T times
    a learned per-head scale exp(min(s, log 100))), a continuous relative position bias from an MLP
    2 -> `cpb_hidden` -> heads over the (2M-1)^2 log-spaced relative coordinates (run on every forward,
    then 16 * sigmoid), q and v biases only (2C parameters, not 3C), and patch merging that normalises
    after the reduction (LayerNorm over 2C). Per stage the window is clamped to the grid, as in Swin.

    Published figures: timm's fvcore counts (its results CSV) agree to 0.01M params and 0.01 GMACs. The
    Swin repository's model hub gives lower GMACs (SwinV2-T 256 window 8: 5.9 vs 5.96, window 16: 6.6
    vs 6.68, SwinV2-S 11.5 / 12.6 vs 11.58 / 12.82, SwinV2-B 20.3 / 21.8 vs 20.37 / 22.02, SwinV2-B 384
    window 24: 54.7 vs 55.25; 0.3-1.7% below) because its `flops()` leaves out the CPB MLP (T * 512 *
    (2 + heads) MACs per block: 0.02G for T window 8, 0.06G window 16, 0.42G for B 384 window 24) and
    counts a LayerNorm as 1 per element where fvcore counts 5; the MACs without the CPB MLP plus one per
    norm element round to every hub figure. Its parameter counts (28M, 50M, 88M) are these, rounded."""

    family: ClassVar[str] = "swinv2"
    embed_dim: int = doc(text="channels C of the first stage; stage s has C * 2^s")
    depths: tuple[int, ...] = doc(text="blocks per stage")
    heads: tuple[int, ...] = doc(text="attention heads per stage; each must divide its stage's channels")
    window: int = doc(8, "window side M in tokens (clamped to the grid where a stage's grid is smaller)")
    patch: int = doc(4, "patch size of the stride-P conv embedding")
    mlp_ratio: float = doc(4.0, "MLP hidden width = int(channels * mlp_ratio)")
    cpb_hidden: int = doc(512, "hidden width of the continuous position bias MLP (2 -> hidden -> heads)")
    num_classes: int = doc(1000, "classes of the linear head")
    in_chans: int = doc(3, "input image channels")

    def validate(self) -> None:
        _positive(self, embed_dim=self.embed_dim, window=self.window, patch=self.patch,
                  mlp_ratio=self.mlp_ratio, cpb_hidden=self.cpb_hidden, num_classes=self.num_classes,
                  in_chans=self.in_chans)
        _doubling_stages(self)
        _hidden(self, self.embed_dim, self.mlp_ratio)

    def stage_dim(self, stage: int) -> int:
        return self.embed_dim * 2**stage


@spec_class
class BiFormerSpec(SpecBase):
    """BiFormer (Zhu et al., CVPR 2023, "BiFormer: Vision Transformer with Bi-Level Routing Attention"), as
    its ImageNet models are built in the official code (rayleizhu/BiFormer, models/biformer.py with
    ops/bra_legacy.py): an overlapping stem (3x3 stride-2 conv to C/2, BatchNorm, GELU, 3x3 stride-2 conv,
    BatchNorm), a 3x3 stride-2 conv + BatchNorm between stages, stages of blocks
        x = x + dwconv3x3(x);  x = x + attn(LN(x));  x = x + fc2(GELU(fc1(LN(x))))
    then BatchNorm, the mean over the grid and a linear head.

    Bi-level routing attention (BRA, the stages whose `topks` entry k is positive): the grid, zero-padded at
    the bottom/right to a multiple of S = `n_win` (the code's auto_pad), is cut into S x S regions of
    (H/S)(W/S) tokens; one linear gives q, k, v (qk_dim = C); the region-level query and key are the means
    of q and k over each region; the region affinity A = (Q_r * scale) K_r^T is S^2 x S^2 (S^4 C MACs per
    image); each region keeps the k regions of its highest affinities (top-k); their keys and values are
    gathered ([S^2, k, HW/S^2, 2C] per image); each region's queries attend to those k(HW/S^2) tokens with
    C / head_dim heads; the local context enhancement (LCE), a `side_dwconv` x `side_dwconv` depthwise conv
    on v over the padded grid, is added to the output; then the output projection `wo`; the padding is
    cropped. A stage whose entry is 0 runs plain global attention with LePE instead (the code's topk = -2,
    its AttentionLePE): qkv without bias, `global_heads` heads, the same depthwise conv on the attention's
    input added to its output, proj. The official presets use 1, 4, 16 regions in the first three stages
    (of 49) and global attention in the last, n_win 7, kv_downsample_mode "identity" (no key/value
    downsampling), qk_dims equal to the stage widths, head_dim 32, MLP ratio 3, no layer scale.

    The reference net follows the code's counts and tensors with two choices that change no count: both
    attentions scale q by head_dim^-0.5 (the code scales by qk_dim^-0.5, and the global stage scales the
    scores after q k^T), and the routing's softmax over the top-k affinities is not computed (with hard
    routing, the code's default, its weights are never used).

    Published figures (BiFormer Table 1 and the repository's README, "FLOPs" = MACs at 224): T 13.1M / 2.2G,
    S 25.5M / 4.5G, B 56.8M / 9.8G. Here: 13.14M / 25.54M / 56.80M parameters, and 2.22 / 4.46 / 9.76 GMACs
    (2.23 / 4.49 / 9.79 in the fvcore convention, with the eval-mode BatchNorms at 2 and the LayerNorms at 5
    per element); each rounds to the published figure. BiFormer-T's are 0.7% (MACs) and 1.3% (fvcore) above
    its printed 2.2 only because the paper prints one decimal."""

    family: ClassVar[str] = "biformer"
    dims: tuple[int, ...] = doc(text="channels per stage")
    depths: tuple[int, ...] = doc(text="blocks per stage")
    topks: tuple[int, ...] = doc((1, 4, 16, 0), "regions each region attends to, per stage (top-k of the region "
                                                "affinity); 0 = global attention with LePE")
    n_win: int = doc(7, "regions per side S: the grid, padded to a multiple of S, is cut into S x S regions")
    head_dim: int = doc(32, "channels per head of the routing stages (heads = channels / head_dim)")
    global_heads: int = doc(8, "heads of the global-attention stages (topks entry 0)")
    side_dwconv: int = doc(5, "kernel of the depthwise conv on v added to the attention output (LCE / LePE; odd)")
    mlp_ratio: float = doc(3.0, "MLP hidden width = int(channels * mlp_ratio)")
    num_classes: int = doc(1000, "classes of the linear head")
    in_chans: int = doc(3, "input image channels")

    def validate(self) -> None:
        _positive(self, n_win=self.n_win, head_dim=self.head_dim, global_heads=self.global_heads,
                  side_dwconv=self.side_dwconv, mlp_ratio=self.mlp_ratio, num_classes=self.num_classes,
                  in_chans=self.in_chans)
        if not (len(self.dims) == len(self.depths) == len(self.topks)) or not self.dims:
            raise SpecError("BiFormerSpec: dims, depths and topks must be non-empty and of equal length.")
        regions = self.n_win * self.n_win
        for s, (d, n, k) in enumerate(zip(self.dims, self.depths, self.topks)):
            _positive(self, dim=d, depth=n)
            if k < 0:
                raise SpecError(f"BiFormerSpec.topks[{s}] must be 0 (global attention) or a region count, got {k}.")
            if k > regions:
                raise SpecError(f"BiFormerSpec.topks[{s}] = {k} is more than the {regions} regions of an "
                                f"n_win = {self.n_win} grid.")
            unit, name = (self.head_dim, "head_dim") if k else (self.global_heads, "global_heads")
            if d % unit:
                raise SpecError(f"BiFormerSpec: stage {s} has {d} channels, not divisible by {name} = {unit}.")
        if self.dims[0] % 2:
            raise SpecError(f"BiFormerSpec.dims[0] must be even (the stem's first conv has dims[0]/2 channels), "
                            f"got {self.dims[0]}.")
        if self.side_dwconv % 2 == 0:
            raise SpecError(f"BiFormerSpec.side_dwconv must be odd (the conv keeps the grid), got {self.side_dwconv}.")
        _walkable(self, sum(self.depths))
        _hidden(self, min(self.dims), self.mlp_ratio)

    def heads(self, stage: int) -> int:
        """Attention heads of a stage: channels / head_dim with routing, global_heads without."""
        return self.dims[stage] // self.head_dim if self.topks[stage] else self.global_heads


@spec_class
class MViTv1Spec(SpecBase):
    """MViT (Fan et al. 2021, "Multiscale Vision Transformers"), as SlowFast's `MViT` builds it with conv
    pooling: a cube embedding (a Conv3d of `patch_kernel`, `patch_stride`, `patch_padding` over [T, H, W]; an
    image is a clip of one frame), a class token, a learned absolute position embedding (separable over
    space and time with `sep_pos_embed`: H'W' spatial rows repeated over T', T' temporal rows repeated over
    H'W', one class row; else one row per token), then stages of multiscale blocks, a final norm and a linear
    head on the class token.

    A block on a T x H x W grid (plus the class token): x = maxpool(x) + proj(MHPA(norm1(x))); then
    x = x + MLP(norm2(x)), where the MLP of a stage's last block writes the next stage's channels and the
    residual is then a linear projection of norm2's output (`proj`). Pooling attention: q, k, v = qkv(x) split
    into heads; each is pooled (the class token set aside and put back in front) by a depthwise Conv3d of
    `pool_kernel`, padding kernel // 2, shared across heads, then LayerNorm over the head width: Q in the
    first block of stages 1.. with stride `stage_q_stride`, K and V in every block with a stride that starts
    at `kv_stride` and is divided by the Q stride at each stage start (the paper's adaptive K/V stride,
    1x8x8 -> 1x4x4 -> 1x2x2 -> 1x1x1 for MViT-B). The residual is max-pooled with kernel s+1 (s for s = 1),
    stride s, padding kernel // 2, the class token set aside. No relative positions and no residual pooling
    (MViTv2's).

    The reference net scales q before q k^T (as timm's attention) where SlowFast scales the scores after: the
    same scores, Nq*d products instead of Nq*Nk, and no MAC; its head returns logits (SlowFast's applies a
    softmax over the classes at test time). MViT-B, 16x4 on Kinetics-400 (16x224x224): 36.6M params and
    70.5 GFLOPs (MACs) in the paper; MViT-B-16 on ImageNet (224, 2-D: kernel 1 in time): 37.0M, 7.8G."""

    family: ClassVar[str] = "mvit1"
    dims: tuple[int, ...] = doc(text="channels per stage")
    depths: tuple[int, ...] = doc(text="blocks per stage")
    heads: tuple[int, ...] = doc(text="attention heads per stage; each must divide its stage's channels")
    patch_kernel: tuple[int, ...] = doc((3, 7, 7), "cube embedding kernel (T, H, W)")
    patch_stride: tuple[int, ...] = doc((2, 4, 4), "cube embedding stride (T, H, W); T must be a multiple of its first")
    patch_padding: tuple[int, ...] = doc((1, 3, 3), "cube embedding padding (T, H, W)")
    pool_kernel: tuple[int, ...] = doc((3, 3, 3), "kernel (T, H, W) of the depthwise Q/K/V pooling convs (odd)")
    kv_stride: tuple[int, ...] = doc((1, 8, 8), "K/V pooling stride (T, H, W) of the first stage, divided by the "
                                                "Q stride at each stage start")
    stage_q_stride: tuple[int, ...] = doc((1, 2, 2), "Q pooling stride (T, H, W) of the first block of stages 1..")
    sep_pos_embed: bool = doc(True, "separable space-time position embedding (false: one row per token)")
    mlp_ratio: float = doc(4.0, "MLP hidden width = int(channels * mlp_ratio)")
    num_classes: int = doc(400, "classes of the linear head")
    in_chans: int = doc(3, "input channels")

    def validate(self) -> None:
        _positive(self, mlp_ratio=self.mlp_ratio, num_classes=self.num_classes, in_chans=self.in_chans)
        _stages(self)
        for name in ("patch_kernel", "patch_stride", "patch_padding", "pool_kernel", "kv_stride", "stage_q_stride"):
            value = getattr(self, name)
            if len(value) != 3 or min(value) < (0 if name == "patch_padding" else 1):
                raise SpecError(f"MViTv1Spec.{name} must be three whole numbers (T, H, W), "
                                f"{'at least 0' if name == 'patch_padding' else 'positive'}, got {list(value)}.")
        if any(k % 2 == 0 for k in self.pool_kernel):
            raise SpecError(f"MViTv1Spec.pool_kernel must be odd, got {list(self.pool_kernel)}.")
        # the max-pooled residual (kernel s+1, stride s) and the conv-pooled queries (kernel k, stride s)
        # reach the same grid only for a stride of 1 or an even one
        if any(s > 1 and s % 2 for s in self.stage_q_stride):
            raise SpecError("MViTv1Spec.stage_q_stride must be 1 or even on each axis, got "
                            f"{list(self.stage_q_stride)}.")

    def q_stride(self, stage: int) -> tuple[int, int, int]:
        return (1, 1, 1) if stage == 0 else tuple(self.stage_q_stride)  # type: ignore[return-value]

    def kv_stride_at(self, stage: int) -> tuple[int, int, int]:
        """Adaptive K/V stride: divided by the Q stride at each stage start, never below 1, axis by axis."""
        s = list(self.kv_stride)
        for i in range(1, stage + 1):
            s = [max(a // q, 1) for a, q in zip(s, self.q_stride(i))]
        return tuple(s)  # type: ignore[return-value]


# Keep this at the end of the module: every spec class above has registered itself by now.
Spec = SpecBase  # any architecture spec (for type hints)
SPEC_TYPES: tuple[type, ...] = tuple(SPEC_CLASSES.values())


def field_docs(spec_type: type) -> dict[str, str]:
    """Field name -> its one-line description, in declaration order."""
    return {f.name: f.metadata.get("doc", "") for f in fields(spec_type)}


__all__ = ["ViTSpec", "PixelSpec", "SwinSpec", "MViTSpec", "MixerSpec", "Spec", "SPEC_TYPES", "SPEC_CLASSES",
           "SpecBase",
           "field_docs"]
