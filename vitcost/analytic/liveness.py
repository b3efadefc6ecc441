"""The liveness engine: which tensors of a forward are alive together, op by op, read off the trace.

Eager PyTorch frees a tensor when its last reference goes. The engine follows the references of the
reference modules (`vitcost.nets`, which keep what timm's keep) with three rules and the facts the walker
states on each op (`cost.Mem`, `Trace.note`):

* **an output lives until its last reader has run**: the next op reads the previous op's output unless the
  walker names other producers (`Op.src`, `Mem.reads`); a residual add (an add at its block's own path)
  also reads the block's residual stream (the block input, then each residual sum);
* **an argument lives until the module it was passed to returns**: a tensor read inside a module that
  did not make it is referenced by the caller's frame until the call returns. The module of an op is its
  path and every prefix of it, except the containers that are never called (nn.ModuleList, the registry's
  `Family.lists`): so an nn.Sequential of blocks holds the first block's input through all of them, a stage
  holds its input through its blocks, and `fc2(act(fc1(x)))` holds x through the MLP;
* **a local never rebound lives until its module returns** (`Mem.keep`: timm's qkv; `Mem.rebinds`: a
  name that is rebound later), and an op that runs in place (`Mem.inplace`) writes into its input's
  storage. A plain function whose locals live until it returns is a scope (`Trace.scope`) and counts as a
  module.

A tensor made by moving data only (a pad, a roll, a window partition, a crop) is a copy in the trace
(`Trace.copy`), invisible to everything but this engine. A block starts from its walker's declared input
(`BlockMark.inp`): when the data path's tensor has another size, the caller made a new one (a concat of
prefix tokens). Inside an op the engine adds what the op allocates and frees before it returns: a
contiguous copy of a strided input (`Mem.temp`), a max pool's int64 indices (`Mem.temp_index`),
LayerNorm's float32 mean and rstd. An attention call expands into the steps of its module (`ATTENTION`,
or a family's own, chosen by `Mem.attend`), with the tensors that module keeps until it returns; ops the
call's program accounts for are its parts (`Mem.part`).

Two levels: the live tensors (what a tensor tracker sees) and the allocator, which adds the scratch
buffers a kernel allocates and frees inside itself (`Mem.scratch`; CPU oneDNN convolutions, the CPU flash
kernel's blocks, a kernel's contiguous copy of a strided input). No torch here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

from vitcost.analytic.cost import AttnCall, LinearAttnCall, Op
from vitcost.analytic.trace import op_key
from vitcost.vocab import F32, INT64

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


# ---------------------------------------------------------------------------------------------
# The scratch of single kernels and the bytes of a norm's statistics


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


# ---------------------------------------------------------------------------------------------
# Attention modules


class Step(NamedTuple):
    """One step inside an attention call: its name, the bytes its module holds then beyond what was
    alive before the call (its operands included), and the scratch only the allocator sees."""

    name: str
    nbytes: int
    scratch: int = 0


class Call(NamedTuple):
    """What an attention module's memory program (`ATTENTION`) is given: the trace, the index of the call's
    op in it, the bytes per element, whether the kernel is fused, the peak record (its device and threads
    decide the scratch), the images in the batch and the ops of the call's block."""

    ops: Sequence[Op]
    i: int
    e: int
    fused: bool
    peak: PeakSteps
    batch: int
    block: Sequence[Op] = ()  # the ops of the call's block

    @property
    def op(self) -> Op:
        return self.ops[self.i]


class Attend(NamedTuple):
    """An attention module's memory: the steps of its call, the bytes of the tensors it keeps referenced
    until it returns (besides its output), and its output's bytes."""

    steps: list[Step]
    kept: int
    out: int


def timm_attention(c: Call) -> Attend:
    """timm's Attention (ViT's, Swin's WindowAttention): q = q * scale; attn = q @ k^T; (terms);
    attn = attn.softmax(-1); x = attn @ v; x = x.transpose(1, 2).reshape(B', N, D).
    Each step rebinds its name, so the raw scores die at the softmax, but the scaled q and the softmax
    output stay referenced until the module returns. The scaled q is laid out like q's strided view
    ([B', N, h, d] in memory), so the batched matmul copies it, k and v when B' > 1 and h > 1 (torch.matmul
    folds the batch dims with `reshape`, which cannot view such a layout); merging the heads copies when
    h > 1. Fused: F.scaled_dot_product_attention returns its output laid out [B', N, h, d] (merging the
    heads is a view) and a float32 log-sum-exp per query row that dies at once; on the CPU the flash
    kernel's per-thread buffers are scratch (`flash_scratch`). Linear attention: `linear_attention`,
    then the head merge."""
    a, e = c.op.call, c.e
    if isinstance(a, LinearAttnCall):
        steps = linear_attention(a, e, split=a.batch > 1 and a.heads > 1)
        return Attend([*steps, Step("merge heads", a.q * e * (2 if a.heads > 1 else 1))], 0, a.q * e)
    q, s = a.q * e, a.scores * e
    if c.fused:
        return Attend([Step("fused attention", q + a.rows * LSE_BYTES, flash_scratch(c.peak, a, e))], 0, q)
    cq, ckv = (q, a.kv * e) if a.batch > 1 and a.heads > 1 else (0, 0)
    merge = q if a.heads > 1 else 0
    return Attend([Step("q @ k^T", q + cq + ckv + s), Step("softmax", q + 2 * s), Step("scores @ v", q + s + ckv + q),
                   Step("merge heads", q + s + q + merge)], q + s, q)


def linear_attention(a: LinearAttnCall, e: int, *, split: bool) -> list[Step]:
    """nets.vit.linear_attend: phi(k) (elu's output, +1 in place) lives while the state phi(k)^T v and the key
    sum are formed, v copied for the product when it is a head-split view (`split`); then phi(q), its two
    products and the division: at the division phi(q), the numerator, the normaliser + eps and the output
    are alive with the state and the key sum. The last step holds the output."""
    q, s, ks, r = a.q * e, a.state * e, a.k_sum * e, a.rows * e
    return [Step("phi(k)^T v", q + (q if split else 0) + s), Step("sum phi(k)", q + s + ks),
            Step("phi(q) . sum phi(k) + eps", s + ks + 2 * q + 2 * r), Step("normalise", s + ks + 3 * q + r)]


def core_attention(c: Call) -> Attend:
    """The bare attention core (nets.common.attend) on q, k, v it is handed as contiguous tensors: math
    holds the scaled q and the raw scores, then the raw scores and their softmax together, then both and
    the output; it keeps nothing once it returns. Fused: the output and a float32 log-sum-exp per query
    row, and on the CPU the flash kernel's per-thread buffers (`flash_scratch`)."""
    a, e = c.op.call, c.e
    q, s = a.q * e, a.scores * e
    if c.fused:
        return Attend([Step("fused attention", q + a.rows * LSE_BYTES, flash_scratch(c.peak, a, e))], 0, q)
    return Attend([Step("q @ k^T", q + s), Step("softmax", 2 * s), Step("scores @ v", 2 * s + q)], 0, q)


Program = Callable[[Call], Attend]
ATTENTION: dict[str, Program] = {"": core_attention, "timm": timm_attention}


def _called(path: str, lists: Sequence[list[str]]) -> bool:
    """Whether the module at `path` is called (not an nn.ModuleList the model iterates over: `lists`, each
    split into its path components, "*" for any one)."""
    parts = path.split(".")
    return not any(len(parts) == len(pat) and all(p in ("*", q) for p, q in zip(pat, parts)) for pat in lists)


class _Modules:
    """The called modules of a trace: where each returns (the index of its last op; an op is inside its own
    path and every prefix), and for each op path the called modules around it, outermost first."""

    def __init__(self, ops: Sequence[Op], lists: Sequence[str]) -> None:
        ends: dict[str, int] = {}
        around: dict[str, list[str]] = {}
        for i, op in enumerate(ops):
            if op.mem.scope:
                ends[op.mem.scope] = i
            if op.path not in around:
                parts = op.path.split(".") if op.path else []
                around[op.path] = [".".join(parts[:k]) for k in range(1, len(parts) + 1)]
            if not op.mem.late:
                for module in around[op.path]:
                    ends[module] = i
        patterns = [p.split(".") for p in lists]
        self.ends = {p: i for p, i in ends.items() if not patterns or _called(p, patterns)}
        self.around = {path: [m for m in chain if m in self.ends] for path, chain in around.items()}

    def held_until(self, reader: Op, j: int, maker: tuple[str, str]) -> int:
        """How long a tensor made at `maker` (module path, function scope) stays referenced once op j
        (`reader`) reads it: until the outermost called module (or function) around the reader that the maker
        is not inside returns, or j itself."""
        path = maker[0]
        for module in self.around[reader.path]:
            if not path.startswith(module) or len(path) > len(module) and path[len(module)] != ".":
                return self.ends[module]
        scope = reader.mem.scope
        return self.ends[scope] if scope and maker[1] != scope else j


def _previous(ops: Sequence[Op], i: int, last: int) -> int:
    """The op a head reads: the heads before it skipped (DeiT's two heads read one norm)."""
    j = last
    while ops[j].role == "head" and ops[j].kind == "linear" or ops[j].kind == "param":
        j -= 1
    return j


def _name(op: Op, seen: set[str]) -> str:
    """A candidate's name: the op's path (a residual add's "<block> residual"), numbered when repeated."""
    if op.mem.what:
        base = f"{op.path} {op.mem.what}"
    elif op.kind == "add" and op.block and op.path == op.block.prefix:
        base = f"{op.path} residual"
    else:
        base = op.path or op.kind
    name, k = base, 1
    while name in seen:
        k += 1
        name = f"{base} {k}"
    seen.add(name)
    return name


class _Tensors:
    """The tensors of a forward: when each is made (an op index), its bytes, the last op it is alive at,
    and the path of the module that made it."""

    def __init__(self) -> None:
        self.start: list[int] = []
        self.size: list[int] = []
        self.end: list[int] = []
        self.maker: list[tuple[str, str]] = []

    def new(self, start: int, nbytes: int, maker: tuple[str, str]) -> int:
        self.start.append(start)
        self.size.append(nbytes)
        self.end.append(start)
        self.maker.append(maker)
        return len(self.size) - 1

    def read(self, t: int, i: int, reader: Op, modules: _Modules) -> None:
        """Op i (`reader`) reads tensor t: it lives until the module that holds it for the reader returns."""
        self.end[t] = max(self.end[t], modules.held_until(reader, i, self.maker[t]))

    def keep(self, t: int, until: int) -> None:
        self.end[t] = max(self.end[t], until)

    def live(self, n: int) -> list[int]:
        """The bytes alive at each op index."""
        delta = [0] * (n + 1)
        for start, nbytes, end in zip(self.start, self.size, self.end):
            delta[start] += nbytes
            delta[end + 1] -= nbytes
        out, total = [], 0
        for d in delta[:n]:
            total += d
            out.append(total)
        return out


def _tensors(ops: Sequence[Op], e: int, fused: bool, peak: PeakSteps, modules: _Modules, batch: int,
             programs: dict[str, Program]) -> tuple[_Tensors, dict[int, Attend]]:
    """Every tensor of the forward and its lifetime (the rules of the module docstring), and the memory of
    each attention call."""
    index: dict[str, int] = {}  # key -> the latest op of that key (a block's two residual adds share one)
    ts = _Tensors()
    out: dict[int, int] = {}  # op index -> its output tensor
    stream: dict[str, int] = {}  # block -> its residual stream tensor
    attends: dict[int, Attend] = {}
    by_block: dict[str, list[Op]] = {}
    for op in ops:
        if op.block is not None:
            by_block.setdefault(op.block.prefix, []).append(op)
    prev = -1  # the tensor the next op reads by default
    last = -1  # the last op that ran
    for i, op in enumerate(ops):
        index[op_key(op)] = i
        if op.kind == "param" or op.mem.part:
            continue
        block = op.block.prefix if op.block else ""
        if block and block not in stream:
            stream[block] = prev = _block_input(ts, i, op, prev, e, ts.maker[prev] if prev >= 0 else ("", ""))
        named = [index[k] for k in op.mem.reads]
        if op.src:  # its producers by key; "copy": a tensor made on the way from one named in `Mem.reads`
            named += [index[s.split("=", 1)[-1]] for s in op.src if s != "copy"]
        reads = [out[j] for j in named if j in out]  # a part of an attention call is the call's (`Mem.part`)
        if not op.src and "reads_constant" not in op.tags and prev >= 0:
            reads.append(out[_previous(ops, i, last)] if op.role == "head" and op.kind == "linear" else prev)
        if op.kind == "add" and block and op.path == block:
            reads.append(stream[block])
        for t in reads:
            ts.read(t, i, op, modules)
        for k in op.mem.rebinds:
            ts.keep(out[index[k]], i)
        if op.mem.inplace and reads:
            t = reads[0]
        else:
            maker = (op.path, op.mem.scope)
            if op.call is None:
                t = ts.new(i, op.out * e + op.mem.index * INT64, maker)
            else:
                at = attends[i] = programs[op.mem.attend](Call(ops, i, e, fused, peak, batch, by_block[block]))
                t = ts.new(i, at.out, maker)
                if at.kept:
                    ts.keep(ts.new(i, at.kept, maker), modules.ends.get(op.path, i))
        if op.mem.keep:
            ts.keep(t, modules.ends.get(op.mem.keep, i))
        if op.kind == "add" and block and op.path == block or op.mem.stream:
            stream[block] = t
        out[i] = prev = t
        last = i
    return ts, attends


def _block_input(ts: _Tensors, i: int, op: Op, prev: int, e: int, maker: tuple[str, str]) -> int:
    """The tensor a block starts from: the data path's, or when its walker declares an input of another size
    (`BlockMark.inp`), a tensor its caller made from it (a concat of prefix tokens)."""
    declared = op.block.inp * e
    if prev < 0 or not declared or declared == ts.size[prev]:
        return prev
    ts.keep(prev, i)
    return ts.new(i, declared, maker)


def forward_steps(ops: Sequence[Op], e: int, fused: bool, peak: PeakSteps, batch: int,
                  lists: Sequence[str] = (), programs: dict[str, Program] | None = None) -> PeakSteps:
    """Record into `peak` the live bytes at every op of the forward `ops` of `batch` images, with `e` bytes
    per element and a fused (or math) attention kernel; `lists`: the paths ("*" for any index) of the
    containers that are never called (`Family.lists`); `programs`: a family's own attention modules (`Attend`), beside
    `ATTENTION`."""
    ts, attends = _tensors(ops, e, fused, peak, _Modules(ops, lists), batch, {**ATTENTION, **(programs or {})})
    live = ts.live(len(ops))
    stem = next((i for i, op in enumerate(ops) if op.kind != "param"), -1)
    seen: set[str] = set()
    for i, op in enumerate(ops):
        if op.kind == "param" or op.mem.part:
            continue
        at = attends.get(i)
        if at is not None:
            base = live[i] - at.kept - at.out
            for step in at.steps:
                peak.at(base + step.nbytes, f"{op.path} {step.name}", step.scratch)
            continue
        name = _name(op, seen)
        now = live[i] + (op.mem.temp + (op.mem.fused_temp if fused else 0)) * e + op.mem.temp_index * INT64
        if op.kind == "layer_norm" and op.cost.params:
            now += norm_stats(op)
        peak.at(now, name, _scratch(op, e, peak, i == stem))
    return peak


def _scratch(op: Op, e: int, peak: PeakSteps, first: bool) -> int:
    """Allocator-only bytes of op's kernel (`Mem.scratch`; a first op that is a conv reads the image: a stem)."""
    rule = op.mem.scratch
    if not rule:
        if first and op.kind == "conv":
            return conv_scratch(peak, "stem", op.inp, op.out, conv_weight(op), e)
        return 0
    if rule[0] == "copy":
        return rule[1] * e
    _, kind, stride, images, channels_last = rule
    return conv_scratch(peak, kind, op.inp, op.out, conv_weight(op), e, stride=stride, images=images,
                        channels_last=channels_last)


__all__ = ["forward_steps", "ATTENTION", "Attend", "Call", "Step", "PeakSteps", "timm_attention", "core_attention",
           "linear_attention", "flash_scratch", "conv_scratch", "conv_weight", "norm_stats", "LSE_BYTES", "STAT_BYTES"]
