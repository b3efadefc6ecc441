"""Predicted memory of one forward (inference), an estimate of training memory, and the memory wall.

All figures come from the analytic op list (`Estimate.ops`): each op gives the size of the tensor it
produces, so the sizes of the residual stream, the qkv projection, the queries, the score matrices
and the MLP hidden layer of every block are read off it. What the model adds is *which of those
tensors are alive at the same time*, and that is a property of how the forward is executed. The
model follows eager PyTorch running the reference modules of `vitcost.nets`, whose forwards keep the
tensors alive that timm's implementations of the same families keep (each net's docstring says where
timm's forward and the paper's reference code differ, and which one it follows; NAT has no timm model):

* a tensor lives while a Python name, an argument or a view refers to it; a temporary dies when the
  call it was passed to returns (`fc2(act(fc1(x)))` holds fc1's and GELU's outputs together at GELU),
  and `x = f(x)` frees the old x only once f returns;
* containers hold their inputs (`_held`): an nn.Sequential keeps its argument referenced until its last
  module returns, so ViT's and Mixer's blocks hold the embedded tokens, and Swin's, Swin V2's and
  ConvNeXt's stages hold the embedding, the stage input and the downsampled grid; a loop
  `x = stage(x)` (MViTv2, ResNet) holds the stage input while the stage's later blocks run;
* attention modules keep what timm's keep until they return: qkv (the local the q/k/v views come
  from), the scaled q and the softmax output (`attn` stays referenced through the head merge and the
  projection); the raw scores die at the softmax;
* a batched matmul of head-split q/k/v views ([B', h, N, d] permuted out of [B', N, 3, h, d]) copies
  each operand to a contiguous buffer when both B' > 1 and h > 1 (torch.matmul folds the batch dims
  with `reshape`, which cannot view such a layout); merging the heads back (`transpose(1, 2).reshape`)
  copies when h > 1;
* fused attention (flash, memory-efficient) holds its output and a float32 log-sum-exp of B*h*Nq,
  and the additive terms it is given as a mask.

Two levels, each labelled:

* **live tensors** (`activation_peak_bytes`, `peak_at`): the bytes of the tensors the ops return, what
  a tensor tracker sees (`vitcost.measure.memory.LiveTensorTracker`), LayerNorm's float32 mean and rstd
  included where a norm step is counted;
* **allocator** (`allocator_peak_bytes`, `allocator_peak_at`): the live tensors plus the scratch buffers a
  kernel allocates and frees inside itself, what the allocator hands out (CUDA's max_memory_allocated;
  on the CPU torch.profiler's memory records). The scratch depends on the kernels, so on the device:
  on the CPU oneDNN's reordered convolution weights and inputs (`peaks.conv_scratch`, by layout, kind
  and thread count), the flash-attention kernel's per-thread buffers (`peaks.flash_scratch`) and
  LayerNorm's contiguous copy of a strided input; on CUDA only the latter (cuDNN's workspaces and the
  caching allocator's 512-byte rounding are not modelled, and no CUDA measurement checks this level).

Each family's block model lives in its analytic module and is named by the registry
(`vitcost.analytic.registry`); this module holds what every family shares.

Per block the model evaluates the bytes at each step that can be the peak (the q k^T product, the
softmax, scores @ v, the projection, the MLP's GELU, pooling, convolutions, patch merging, the head)
and the peak is the largest, at each level. Weights and the input are resident before the forward
starts and are reported apart: both peaks are what the forward adds on top of them.

Left out: index tensors of relative-position gathers and the few-byte tensors Python scalars become.

This is the one memory model: `Estimate.activation_peak_bytes` (compare, the library, reports),
`profile`'s `predicted_mem_bytes` and `predicted_alloc_bytes` and the memory wall all read it.

A training step's memory is `vitcost.analytic.train_memory`'s, not this module's.

No torch here: this module is part of the analytic layer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from vitcost.analytic.cost import Op
from vitcost.analytic.peaks import Block, PeakSteps, conv_scratch, conv_weight, norm_stats, split_blocks
from vitcost.analytic.registry import family_of
from vitcost.errors import VitcostError
from vitcost.vocab import DEVICES, Kernel

if TYPE_CHECKING:
    from vitcost.analytic.estimate import Estimate


class MemoryPrediction(NamedTuple):
    """Predicted bytes of one forward at one resolution, batch and dtype."""

    attn: str  # math | fused
    weights_bytes: int
    input_bytes: int
    activation_peak_bytes: int  # live tensors: peak bytes the forward's tensors hold on top of weights and input
    peak_at: str  # the step where the live-tensor peak is reached ("blocks.3 softmax")
    # attention-score bytes this forward stores with its kernel, all layers summed (0 for a fused kernel,
    # whose scores stay on chip); `Estimate.attn_matrix_bytes` is the scores as if materialised, any kernel
    stored_score_bytes: int
    stored_score_peak_bytes: int  # the largest single layer's stored score tensor
    allocator_peak_bytes: int = 0  # allocator level: the live tensors plus the kernels' scratch buffers
    allocator_peak_at: str = ""  # the step where the allocator-level peak is reached
    device: str = "cpu"  # the kernels whose scratch buffers the allocator level counts (cpu | cuda)

    @property
    def total_bytes(self) -> int:
        """Everything resident at the inference peak: weights, input and activations."""
        return self.weights_bytes + self.input_bytes + self.activation_peak_bytes


def _held(blk: Block, containers: str, sizes: dict[tuple, int], order: dict[str, int], downsampled: set[str],
          e: int) -> int:
    """Bytes the callers of a block hold besides its own input, distinct tensors counted once.

    An nn.Sequential keeps its input referenced (its caller's argument) until its last module returns,
    and its loop variable holds the input of the module that runs. So with `blocks` an nn.Sequential
    (`containers` "sequential_blocks": ViT, Mixer) the first block's input E stays alive through all
    blocks; with an nn.Sequential of stages ("sequential_stages": Swin, ConvNeXt) E lives through all
    stages, the stage input S_s through stage s, and the downsampling's output D_s (the blocks'
    nn.Sequential input) through all blocks of the stage. A loop `for stage in stages: x = stage(x)`
    ("loop": MViTv2, ResNet's layers) keeps only S_s, for the blocks after the first one, or for all of
    them when the stage downsamples before its first block. (`Family.containers` says which.)"""
    s = order[blk.stage]
    down = blk.stage in downsampled
    embed = ("S", 0)
    stage_in = ("S", s)
    first = ("D", s) if down else stage_in
    mine = first if blk.index == 0 else ("B",)
    if containers == "sequential_blocks" or (containers == "sequential_stages" and not blk.stage):
        held = {embed}
    elif containers == "sequential_stages":
        held = {embed, stage_in, first}
    else:
        held = {stage_in} if blk.stage else set()
    return sum(sizes[k] for k in held - {mine}) * e


def _edges(peak: PeakSteps, pre: list[Op], post: list[Op], e: int) -> None:
    """Embedding before the first block and norm/head after the last: two consecutive tensors (the conv
    output and the norm of its channels-last view, the class-token concat and the position add, the
    final norm and the head's output). At the allocator level the stem conv has its scratch
    (`peaks.conv_scratch`), and a LayerNorm of the stem's permuted output reads it through a contiguous
    copy."""
    outs = [op.out for op in pre if op.out]
    where = pre[0].path.split(".")[0] if pre else ""
    if pre and pre[0].kind == "conv":
        stem = pre[0]
        peak.at(stem.out * e, stem.path, conv_scratch(peak, "stem", stem.inp, stem.out, conv_weight(stem), e))
    for i, (a, b) in enumerate(zip(outs, outs[1:])):
        strided = i == 0 and pre[0].kind == "conv" and pre[1].kind == "layer_norm"
        peak.at((a + b) * e + (norm_stats(pre[1]) if strided else 0), where, a * e if strided else 0)
    tail = [op for op in post if op.kind in ("layer_norm", "linear")]
    if len(tail) >= 2:  # x = norm(x) frees the last block's output once the norm returns
        peak.at(tail[0].out * 2 * e, "norm")
        peak.at((tail[0].out + tail[-1].out) * e, "head")


def _stage_sizes(blocks: list[Block]) -> tuple[dict[tuple, int], dict[str, int]]:
    """Elements of each stage's input S_s (the previous stage's output, or the embedding) and of its first
    block's input D_s (S_s again unless the stage downsamples first), keyed ("S", s) and ("D", s); and
    the index s of each stage."""
    sizes: dict[tuple, int] = {}
    order: dict[str, int] = {}
    prev = 0
    for blk in blocks:
        if blk.stage not in order:
            s = order[blk.stage] = len(order)
            sizes[("S", s)] = prev or blk.inp
            sizes[("D", s)] = blk.inp
        prev = blk.ops[-1].out  # the last block's output feeds the next stage
    return sizes, order


def _downsampling_stages(blocks: list[Block]) -> set[str]:
    """Stages whose own layers (outside the blocks, under the stage's path) run before their first block:
    Swin's patch merging, ConvNeXt's LayerNorm + strided conv; a NAT level's downsampler follows its
    blocks (it belongs to the level before)."""
    return {blk.stage for blk in blocks if blk.index == 0 and blk.stage
            and any(op.path.startswith(blk.stage + ".") for op in blk.before)}


def activation_steps(est: Estimate, attn: Kernel = Kernel.math, device: str = "cpu", threads: int = 1,
                     repeats: bool = True) -> PeakSteps:
    """Live activation bytes at every step of the forward that can hold the peak, and the allocator level
    with the scratch buffers of `device`'s kernels (`threads`: the CPU kernels' thread count).

    `repeats=False` skips a block whose ops (kinds and sizes) and held bytes equal an earlier block's: its
    steps would repeat that block's bytes, so the peaks and where they are reached do not change, only
    the per-step record (which the memory wall needs in full) is shorter. ViT-L's 24 blocks are one."""
    fused = attn.fused
    e = est.bytes_per_elem
    family = family_of(est.spec)
    pre, blocks, post = split_blocks(est.ops)
    peak = PeakSteps(device, threads)
    _edges(peak, pre, post, e)
    sizes, order = _stage_sizes(blocks)
    embed = sizes.get(("S", 0), 0) * e if family.containers == "sequential_stages" else 0
    downsampled = _downsampling_stages(blocks)
    if family.downsample_memory is not None:
        family.downsample_memory(peak, blocks, e, embed)
    seen: set[tuple] = set()
    for blk in blocks:
        held = _held(blk, family.containers, sizes, order, downsampled, e)
        if not repeats:
            key = (held, *((op.kind, op.out, op.inp, op.call) for op in blk.ops))
            if key in seen:
                continue
            seen.add(key)
        family.block_memory(peak, blk, est.spec, est.batch, e, fused, held)
    return peak


def activation_peak(est: Estimate, attn: Kernel = Kernel.math) -> tuple[int, str]:
    """Peak activation bytes of the forward and the step where it is reached (see the module docstring)."""
    peak = activation_steps(est, attn, repeats=False)
    return peak.bytes, peak.where


# ---------------------------------------------------------------------------------------------
# The prediction


def predict_memory(est: Estimate, attn: Kernel | None = None, device: str = "cpu",
                   threads: int = 1) -> MemoryPrediction:
    """Predicted memory of the forward described by `est` with attention kernel `attn` (math | sdpa |
    flash | efficient: the last three are fused kernels; default: the estimate's own kernel), at both
    levels; the allocator level counts the scratch buffers of `device`'s kernels (cpu | cuda) run with
    `threads` CPU threads."""
    kernel = est.attn if attn is None else attn
    if device not in DEVICES:
        raise VitcostError(f"unknown device {device!r} for the memory prediction; choose from {', '.join(DEVICES)}.")
    est.require_single_width()
    e = est.bytes_per_elem
    weights = est.params * e
    inp = est.input_elems * e
    steps = activation_steps(est, kernel, device, max(1, threads))
    # a fused kernel keeps the attention calls' scores on chip; a softmax of its own stores them in any case
    mat = [op.cost.attn for op in est.ops if op.cost.attn and (not kernel.fused or op.kind == "softmax")]
    return MemoryPrediction("fused" if kernel.fused else "math", weights, inp, steps.bytes, steps.where, sum(mat) * e,
                            max(mat, default=0) * e, steps.alloc_bytes, steps.alloc_where, device)


__all__ = ["MemoryPrediction", "PeakSteps", "predict_memory", "activation_peak", "activation_steps"]
