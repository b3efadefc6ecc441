"""Building blocks of the activation-memory model (see `vitcost.analytic.memory` for its rules): the
record of peak candidates at both levels (live tensors, allocator), a view of one block's ops, and the
steps shared by several token mixers (the attention cores, the two-layer MLP, the scratch buffers of
single kernels). Each family's block model lives in its analytic module and is named in the registry."""

from __future__ import annotations

from collections.abc import Sequence

from vitcost.analytic.cost import AttnCall, Op
from vitcost.vocab import F32

LSE_BYTES = F32  # fused attention keeps a float32 log-sum-exp per query row
STAT_BYTES = F32  # LayerNorm returns a float32 mean and rstd per row besides its output
SMALL_CONV_OUT = 10_000  # output elements under which oneDNN runs a one-image channels-last conv as a GEMM


class PeakSteps:
    """The live bytes of every step that can hold the peak (the largest per step name), and the peak, at
    two levels: the live tensors (`bytes`, `where`) and the allocator (`alloc_bytes`, `alloc_where`),
    which adds to a step the scratch buffers its op allocates and frees inside itself. The scratch
    depends on the kernels, so on the device (`device`: cpu | cuda) and the CPU thread count (`threads`)."""

    def __init__(self, device: str = "cpu", threads: int = 1) -> None:
        self.bytes = 0
        self.where = ""
        self.steps: dict[str, int] = {}
        self.alloc_bytes = 0
        self.alloc_where = ""
        self.device = device
        self.threads = threads

    def at(self, nbytes: int, where: str, scratch: int = 0) -> None:
        """`nbytes` live tensor bytes at step `where`, plus `scratch` bytes only the allocator sees."""
        if nbytes > self.steps.get(where, -1):
            self.steps[where] = nbytes
        if nbytes > self.bytes:
            self.bytes, self.where = nbytes, where
        if nbytes + scratch > self.alloc_bytes:
            self.alloc_bytes, self.alloc_where = nbytes + scratch, where

    @property
    def cpu(self) -> bool:
        return self.device == "cpu"


class Block:
    """The ops of one block (path prefix `p`, e.g. `layers.2.blocks.3`), looked up by path suffix."""

    def __init__(self, prefix: str, ops: list[Op], before: list[Op] | None = None, stage: str = "") -> None:
        self.p = prefix
        self.ops = ops
        self.before = before or []  # ops run between the previous block and this one (a stage's downsampling)
        self.stage = stage  # the path of the module that owns the block list ("" for a model's own `blocks`)
        self._by_path: dict[str, list[Op]] | None = None  # built at the first lookup (repeated blocks are skipped)

    @property
    def inp(self) -> int:
        """Elements of the block's input, as its walker declared them (`Trace.block`)."""
        return self.ops[0].block.inp

    @property
    def index(self) -> int:
        """The block's index in its stage (or model)."""
        return int(self.p.rsplit(".", 1)[1])

    def find(self, suffix: str, kind: str | None = None) -> Op | None:
        if self._by_path is None:
            self._by_path = {}
            for op in self.ops:
                self._by_path.setdefault(op.path, []).append(op)
        path = f"{self.p}.{suffix}" if suffix else self.p
        for op in self._by_path.get(path, ()):
            if kind is None or op.kind == kind:
                return op
        return None

    def out(self, suffix: str, kind: str | None = None, default: int = 0) -> int:
        op = self.find(suffix, kind)
        return default if op is None else op.out

    def attention(self) -> AttnCall | None:
        """The block's attention call, or None for a block without attention."""
        return next((op.call for op in self.ops if op.call is not None), None)


def attend(peak: PeakSteps, where: str, base: int, a: AttnCall, e: int, *, fused: bool, split: bool,
           terms: int) -> int:
    """Steps inside the attention core (nets.common.attend), `base` bytes already alive, `terms` bytes of
    additive terms alive during it. `split`: q/k/v are head-split views that torch.matmul copies.
    Materialised (math) attention holds the raw scores and their softmax together; a fused kernel holds
    only its output and a float32 log-sum-exp per query row. Returns the output bytes."""
    if fused:
        peak.at(base + terms + a.q * e + a.rows * LSE_BYTES, f"{where} fused attention")
        return a.q * e
    cq, ckv = (a.q * e, a.kv * e) if split else (0, 0)
    peak.at(base + terms + a.q * e + cq + ckv + a.scores * e, f"{where} q @ k^T")
    peak.at(base + terms + 2 * a.scores * e, f"{where} softmax")  # raw scores and their softmax
    peak.at(base + terms + 2 * a.scores * e + ckv + a.q * e, f"{where} scores @ v")
    return a.q * e


def kept_scores_attention(peak: PeakSteps, where: str, base: int, a: AttnCall, e: int, *, fused: bool,
                          proj: int) -> int:
    """The attention core and projection as timm's attention modules run them (ViT's Attention, Swin's
    WindowAttention, SAM's), `base` bytes alive (qkv and any additive term the module holds included);
    `proj` is the projection's output elements, which the function returns.

    math:  q = q * scale; attn = q @ k^T; (terms); attn = attn.softmax(-1); x = attn @ v;
           x = x.transpose(1, 2).reshape(B', N, D); x = proj(x)
    Each step rebinds its name, so the raw scores die at the softmax, but the scaled q and the softmax
    output stay referenced until the module returns, through the head merge and the projection. The
    scaled q is laid out like q's strided view ([B', N, h, d] in memory), so the batched matmul copies it,
    k and v when B' > 1 and h > 1 (see the module docstring of `vitcost.analytic.memory`); merging the
    heads copies when h > 1.
    fused: F.scaled_dot_product_attention(q, k, v, attn_mask) returns its output laid out [B', N, h, d]
           (merging the heads is a view) and a float32 log-sum-exp per query row that dies at once; on
           the CPU the flash kernel's per-thread buffers are scratch (`flash_scratch`)."""
    q, s, p = a.q * e, a.scores * e, proj * e
    if fused:
        peak.at(base + q + a.rows * LSE_BYTES, f"{where} fused attention", flash_scratch(peak, a, e))
        peak.at(base + q + p, f"{where}.proj")
        return proj
    split = a.batch > 1 and a.heads > 1
    cq, ckv = (q, a.kv * e) if split else (0, 0)
    peak.at(base + q + cq + ckv + s, f"{where} q @ k^T")
    peak.at(base + q + 2 * s, f"{where} softmax")
    peak.at(base + q + s + ckv + q, f"{where} scores @ v")
    merge = q if a.heads > 1 else 0
    peak.at(base + q + s + q + merge, f"{where} merge heads")
    peak.at(base + q + s + (merge or q) + p, f"{where}.proj")
    return proj


def flash_scratch(peak: PeakSteps, a: AttnCall, e: int) -> int:
    """Scratch of the CPU flash-attention kernel (`_scaled_dot_product_flash_attention_for_cpu`): per
    thread, in float32, a block of scores [qs, ks], its row max and sum [qs] each and an output block
    [qs, d], with query blocks of qs = 256 rows (64 under 768 queries, 32 under 192) and key blocks of
    ks = 512 columns, both cut to the call's size; a half-precision input adds a [qs, ks] block in its
    own type. No scratch on other devices (CUDA's kernels keep theirs in on-chip memory)."""
    if not peak.cpu:
        return 0
    nq, nk = a.nq, a.nkv
    qs = min(256 if nq >= 768 else 64 if nq >= 192 else 32, nq)
    ks = min(512, nk)
    per_thread = (qs * ks + 2 * qs + qs * a.head_dim) * 4 + (qs * ks * e if e < 4 else 0)
    return peak.threads * per_thread


def conv_scratch(peak: PeakSteps, kind: str, inp: int, out: int, weight: int, e: int, *, stride: int = 1,
                 images: int = 1, channels_last: bool = False) -> int:
    """Scratch bytes of one CPU convolution (oneDNN, as torch runs it; measured with the profiler in fp32,
    the same in torch 2.13 and 2.15). On a contiguous NCHW input: a reordered copy of the weights and one
    of the input, except for `stem` convolutions of a 3-channel image, which reorder the weights and write
    the output through a second buffer (the larger of the two), and 1x1 convolutions, which run without
    scratch at stride 1 on one thread (an output-sized buffer on more) and add a strided gather of one
    image's input per thread (1/stride^2 of it; `images` in the batch) at stride > 1. On a
    channels-last input (a permuted view, as ConvNeXt's LayerNorm2d leaves it) the input is read as it is:
    a depthwise conv reorders its weights, a dense one copies them to channels-last and reorders that
    copy (twice the weights), except for one image with a small output (under ~10^4 elements, where
    oneDNN picks a GEMM kernel: the channels-last weights and a copy of the input). Not followed: oneDNN's
    own scratchpad (about 8 kB a call), and narrow or tiny-grid convs (under 64 channels, or channel
    counts not a multiple of 16), which oneDNN may run as a GEMM over an im2col buffer of k^2 times the
    input. `kind`: stem | pointwise | depthwise | conv. Elements in, bytes out; none off the CPU."""
    if not peak.cpu:
        return 0
    if kind == "stem":
        return max(weight, out) * e
    if channels_last:
        if kind == "depthwise":
            return weight * e
        return (weight + inp if images == 1 and out < SMALL_CONV_OUT else 2 * weight) * e
    if kind == "pointwise":
        if stride == 1:
            return 0 if peak.threads == 1 else out * e  # several threads write through an output buffer
        return (inp + weight + peak.threads * (inp // (images * stride * stride))) * e
    return (inp + weight) * e


def conv_weight(op: Op) -> int:
    """Elements of a conv op's weight tensor (its parameters without the bias): with K = MACs per output
    element = (C_in / groups) k^2, the parameters are C_out K, or C_out (K + 1) with a bias."""
    k = op.cost.macs // op.out if op.out else 0
    if not k or op.cost.params % k == 0:
        return op.cost.params
    return op.cost.params - op.cost.params // (k + 1)


def norm_stats(op: Op) -> int:
    """Bytes of a LayerNorm op's mean and rstd (one float32 each per row of `dim` = params / 2 elements),
    alive together with its output at its end."""
    return 2 * (op.out // (op.cost.params // 2)) * STAT_BYTES


def mlp(peak: PeakSteps, where: str, base: int, n2: int, hidden: int, out: int, e: int) -> None:
    """fc2(GELU(fc1(norm2(x)))): fc1's output and GELU's are alive together at GELU."""
    peak.at(base + (n2 + 2 * hidden) * e, f"{where} mlp")
    peak.at(base + (n2 + hidden + out) * e, f"{where} mlp.fc2")


def split_blocks(ops: Sequence[Op]) -> tuple[list[Op], list[Block], list[Op]]:
    """Split the op list into the ops before the first block, the blocks (each with the ops that ran
    between it and the previous block, `Block.before`), and the ops after the last block, by the block
    marks the walker put on each op (`Trace.block`)."""
    pre: list[Op] = []
    between: list[Op] = []
    blocks: dict[str, list[Op]] = {}
    before: dict[str, list[Op]] = {}
    stage: dict[str, str] = {}
    for op in ops:
        mark = op.block
        if mark is not None:
            if mark.prefix not in blocks:
                before[mark.prefix], between = between, []
                stage[mark.prefix] = mark.stage
                blocks[mark.prefix] = []
            blocks[mark.prefix].append(op)
        elif blocks:
            between.append(op)
        else:
            pre.append(op)
    return pre, [Block(p, o, before[p], stage[p]) for p, o in blocks.items()], between


__all__ = ["PeakSteps", "Block", "attend", "kept_scores_attention", "flash_scratch", "conv_scratch", "conv_weight",
           "mlp", "norm_stats", "split_blocks", "LSE_BYTES", "STAT_BYTES"]
