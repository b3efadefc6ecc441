"""Time of a forward, per op and per device: each op of the analytic trace becomes the kernels the
reference runtime launches for it (eager torch), and each kernel's time comes from its class, its work
and the bytes it moves, on a device described by a few per-class parameters.

Kernels (device-independent; `kernels(est, amp)`), with the dtypes that flow under autocast:
* gemm       a linear, or a product of math-path attention (q k^T, scores @ v, MViTv2's q R^T):
             FLOPs = 2 MACs, bytes = input + weight + output.
* conv       a dense convolution (reduction depth (Cin/groups) k^2 >= DEPTHWISE_MAX_DEPTH).
* depthwise  a convolution with a shallower reduction (ConvNeXt's 7x7 depthwise, MViTv2's pooling, a
             3-channel 4x4 patch stem): memory-bound.
* flash      a fused attention call without an additive term: q, k, v in, the output out.
* efficient  a fused attention call with an additive term (relative-position bias or mask passed to
             SDPA as `attn_mask`): the memory-efficient kernel, which also reads the materialised bias.
* gather     the copy of a call whose keys and values were gathered per query (one query per sequence,
             over more sequences than images: a neighbourhood's keys indexed out of K and V). An indexed
             read is not a contiguous pass: on a CPU calibrate measures it at 0.16-0.19 of the memory
             class's rate. A profile without [efficiency.gather] (the GPU profiles) times it as memory.
* memory     everything else: norms, softmax, GELU/ReLU, adds, scales, pools, BatchNorm, and the
             copies eager torch makes (autocast's casts, window partition/reverse, cyclic rolls, the
             head-merge and operand copies of the math path, and a linear's copy of a transposed input with
             the in-place bias add torch's linear then runs over the output: Mixer's token MLP).

Autocast (`amp=True`: 16-bit autocast over fp32 weights, as timm's `--amp`): matmuls and convs write
16 bits and read a 32-bit input only after a cast kernel (read 4, write 2 bytes per element); each
weight is cast once per forward (read 4, write 2 bytes per parameter); LayerNorm, softmax and
F.normalize write fp32 (a 16-bit input is cast up first); GELU, ReLU, BatchNorm, pools and copies keep
their input's width; an add or scale writes the wider of its operands, and a parameter operand (a
position embedding, a layer-scale gamma, a bias) is fp32. A residual add at module path P adds the
branch's output onto the tensor that entered P (or onto the output of the previous add at P). An
additive score term (relative-position bias, shift mask) is fp32, so a math-path score plus a term
is fp32, and scores @ v casts the fp32 probabilities back to 16 bits. Without autocast every tensor
has the estimate's dtype and there are no casts.

Math-path attention (`attention_steps`) runs each step as its own kernel; the two products need their
k and v operands laid out contiguously (a copy each: q, k, v come from one permuted qkv tensor) and the
output is merged back to [tokens, heads * d] (a copy). A fused call reads the strided q, k, v directly
and writes the merged layout. Window attention (a call whose batch is a multiple of the image batch)
partitions its input into windows and reverses its output (a copy each, of the call's q elements);
a window call with more than one additive term carries a shift mask, which exists only for a cyclic
shift: the map is rolled before and after (a copy each).

Time of one kernel on a device (`TimeDevice`):
    matmul classes   max((FLOPs + half_work) / (peak(dtype) * fraction), bytes / (bandwidth * memory.fraction))
    memory classes   max((bytes + half_work) / (bandwidth * fraction), other FLOPs / vector peak)
and never less than `launch_s`, the device's per-kernel floor (eager torch enqueues one kernel at a
time: a kernel shorter than the host's dispatch time costs the dispatch time). `fraction` is the share
of the class's roof that a large launch reaches and `half_work` the work (FLOPs or bytes) per launch
at which it reaches half of that: the rate `fraction * w / (w + half_work)` saturates in the work per
launch. These are the parameters a device profile carries, one `[efficiency.<class>]` table each
(`efficiency_from_table`, `efficiency_table`). The forward's time is the sum of its kernels' times.

This module does not import torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from vitcost.analytic.cost import FLOPS_PER_MAC, AttnCall, Op, project
from vitcost.analytic.efficiency import (
    CLASSES,
    FALLBACK,
    MATMUL_CLASSES,
    MAX_FRACTION,
    MEMORY_CLASSES,
    Efficiency,
    efficiency_from_table,
)
from vitcost.analytic.ops import kind_of
from vitcost.analytic.trace import call_steps
from vitcost.errors import VitcostError
from vitcost.vocab import BYTES, F32

# A convolution whose reduction per output element, (Cin/groups) * k^2, is below this is a depthwise-like
# pass bound by memory traffic (a 7x7 depthwise conv has 49; the shallowest dense conv here, a 1x1 over
# 64 channels, has 64; a 3-channel 7x7 stem has 147).
DEPTHWISE_MAX_DEPTH = 64

MATH_SCORES = ("autocast", "fp16", "fp32")

_HALF, _FULL = BYTES["fp16"], F32  # bytes of a 16-bit and a 32-bit element


class Kernel(NamedTuple):
    """One kernel launch: the op it belongs to, its class (see CLASSES), its matmul FLOPs, its other
    (vector) FLOPs and the bytes it reads and writes."""

    path: str
    cls: str
    flops: float
    other_flops: float
    bytes: float
    dtype: str  # the dtype of its matmul work ("fp16", "bf16", "fp32")
    kind: str = ""  # what it runs: an op kind, an attention step's name, or cast | weight_cast | layout | fused


class ClassNotFitted(VitcostError):
    """A device has no efficiency figures for a kernel class the forward needs."""


@dataclass(frozen=True)
class TimeDevice:
    """What the time model needs of a device: dense matmul peaks per dtype (FLOP/s), the vector peak
    (FLOP/s), memory bandwidth (bytes/s), the per-kernel floor (s) and one Efficiency per kernel class;
    `source` says where the efficiencies came from (fitted on what, measured, or assumed from a card)."""

    name: str
    matmul_flops: Mapping[str, float]
    vector_flops: float
    bandwidth: float
    launch_s: float
    efficiency: Mapping[str, Efficiency] = field(default_factory=dict)
    source: str = ""

    def peak(self, dtype: str) -> float:
        try:
            return self.matmul_flops[dtype]
        except KeyError:
            raise VitcostError(f"no matmul peak for dtype {dtype!r} on {self.name}.") from None

    def eff(self, cls: str) -> Efficiency:
        try:
            return self.efficiency[cls if cls in self.efficiency or cls not in FALLBACK else FALLBACK[cls]]
        except KeyError:
            raise ClassNotFitted(f"{self.name} has no [efficiency.{cls}] figures.") from None


def time_device(hw: Any) -> TimeDevice:
    """The time model's view of a device profile (`hardware.Hardware`): its peaks, bandwidth, launch
    overhead and `[efficiency]` tables; a profile without them is an error naming how to get them."""
    if not hw.efficiency:
        raise VitcostError(f"{hw.name} has no [efficiency] figures for the per-op time model (fitted on measured "
                           "runs: see benchmarks/bench_time_vs_timm_gpu.py).")
    return TimeDevice(hw.name, hw.matmul_flops, hw.vector_flops, hw.bandwidth, hw.launch_overhead or 0.0,
                      dict(hw.efficiency), hw.sources.get("efficiency", ""))


def efficiency_table(device: TimeDevice) -> dict[str, dict[str, float]]:
    """The inverse of `efficiency_from_table`: {class: {"fraction": f, "half_work": w}}."""
    return {cls: {"fraction": e.fraction, "half_work": e.half_work} for cls, e in device.efficiency.items()}


# ---------------------------------------------------------------------------------------------
# Kernels of a forward


class _Widths:
    """Element widths under the run's precision: `amp` = 16-bit autocast over fp32 weights."""

    def __init__(self, amp: bool, dtype: Any) -> None:
        self.amp = amp
        self.elem = _HALF if amp else dtype.bytes
        self.param = _FULL if amp else dtype.bytes
        self.fp32 = _FULL if amp else dtype.bytes
        self.matmul_dtype = ("bf16" if dtype.value == "bf16" else "fp16") if amp else dtype.value


def _conv_dims(op: Op) -> tuple[Any, Any]:
    """(reduction depth K = (Cin/groups) k^2, output channels) of a conv record: MACs = out * K and
    params = cout * K (+ cout with a bias)."""
    depth = op.cost.macs // op.out
    cout = op.cost.params // depth
    return depth, cout


def _product_class(op: Op) -> str:
    """A linear's or conv's kernel class (`ops.OpKind.time`): gemm or conv, and a conv too shallow to be
    compute-bound is a depthwise (memory-bound) pass."""
    cls = kind_of(op).time
    return "depthwise" if cls == "conv" and _conv_dims(op)[0] < DEPTHWISE_MAX_DEPTH else cls


def kernels(est: Any, amp: bool = True, *, math_scores: str = "autocast") -> list[Kernel]:
    """The kernels eager torch launches for the forward `est` (see the module docstring), in order.
    `math_scores`: how a math-path attention call runs (see `_math`): "autocast" (explicit ops, the
    reference nets and timm's Swin/MViTv2), "fp16" or "fp32" (SDPA's math composite)."""
    if math_scores not in MATH_SCORES:
        raise VitcostError(f"math_scores must be one of {', '.join(MATH_SCORES)}, got {math_scores!r}.")
    wd = _Widths(amp, est.dtype)
    fused = est.attn.fused
    out: list[Kernel] = []
    cur = _FULL if amp else wd.elem  # the width of the tensor the next op reads: the fp32 image first
    entered: dict[str, int] = {}  # module path -> width of the tensor that entered it
    last_add: dict[str, int] = {}  # module path -> width of its previous residual add's output
    param_pending = False

    def emit(path: str, cls: str, nbytes: Any, flops: Any = 0, other: Any = 0, dtype: str = wd.matmul_dtype,
             kind: str = "layout") -> None:
        out.append(Kernel(path, cls, float(flops), float(other), float(nbytes), dtype, kind))

    def cast_in(path: str, elems: Any) -> None:
        """Autocast's cast of a 32-bit input to 16 bits before a matmul (read 4, write 2 per element)."""
        if amp and cur == _FULL:
            emit(path, "memory", elems * (_FULL + _HALF), kind="cast")

    for op in est.ops:
        parts = op.path.split(".") if op.path else []
        for i in range(1, len(parts) + 1):
            entered.setdefault(".".join(parts[:i]), cur)
        entry = kind_of(op)
        if entry.time == "none":  # a parameter: read by the op after it
            param_pending = True
            continue
        with_param, param_pending = param_pending and entry.param_operand, False
        other = project(op.cost, "flops") - FLOPS_PER_MAC * op.cost.macs
        if entry.time in ("gemm", "conv"):  # a linear, a conv, or a product of two activations (no weights)
            _product_kernels(op, entry.product, other, wd, emit, cast_in)
            cur = wd.elem
        elif entry.time == "attention":
            cast_in(op.path, op.inp)
            _attention_kernels(op, est.batch, fused, wd, emit, math_scores)
            cur = wd.elem
        elif entry.width == "stream" and not with_param:
            residual = last_add.get(op.path, entered.get(op.path, cur)) if op.path else cur
            width = max(cur, residual)
            emit(op.path, "memory", op.out * (cur + residual + width), other=other, kind=op.kind)
            cur = last_add[op.path] = width
        elif with_param:
            width = max(cur, wd.param)
            emit(op.path, "memory", op.out * (cur + width), other=other, kind=f"{op.kind}+param")
            cur = width
        else:  # a norm writes fp32 on CUDA (a 16-bit input cast up first); other ops keep their input's width
            width = wd.fp32 if entry.width == "norm" else cur
            if width > cur:
                emit(op.path, "memory", op.inp * (cur + width), kind="cast")
            emit(op.path, "memory", (op.inp + op.out) * width + op.cost.params * wd.param, other=other, kind=op.kind)
            cur = width
    return out


def _product_kernels(op: Op, weighted: bool, other: Any, wd: _Widths, emit: Any, cast_in: Any) -> None:
    """A linear's or conv's kernels: under autocast the weight's cast (once per forward) and the input's,
    a transposed input's contiguous copy, then the product; torch's linear adds the bias of a
    non-contiguous input's product in place afterwards (a pass over the output), not inside the GEMM."""
    if wd.amp and weighted:
        emit(op.path, "memory", op.cost.params * (_FULL + _HALF), kind="weight_cast")
    cast_in(op.path, op.inp)
    if "transposed_input" in op.tags:  # the (cast) transposed view copied to a contiguous buffer
        emit(op.path, "memory", op.inp * 2 * wd.elem)
    bias_apart = "transposed_input" in op.tags and op.cost.eltwise
    emit(op.path, _product_class(op), (op.inp + op.out + op.cost.params) * wd.elem,
         FLOPS_PER_MAC * op.cost.macs, 0 if bias_apart else other, kind=op.kind)
    if bias_apart:  # output.add_(bias): read and write the output
        emit(op.path, "memory", op.out * 2 * wd.elem, other=other, kind="bias_add")


def _attention_kernels(op: Op, image_batch: Any, fused: bool, wd: _Widths, emit: Any, math_scores: str) -> None:
    """The kernels of one attention record: layout copies, then the fused call or the math path's steps."""
    a = op.call
    e = wd.elem
    windows = isinstance(a, AttnCall) and a.batch != image_batch
    shifted = windows and a.terms > 1
    layout = ["partition"] + (["roll"] if shifted else []) if windows else []
    for _ in layout:  # the block's input (the norm's output) laid out into windows
        emit(op.path, "memory", a.q * 2 * wd.fp32)
    if isinstance(a, AttnCall) and fused:
        _fused(op, a, wd, emit)
    else:
        _math(op, a, wd, emit, math_scores, image_batch)
    for _ in layout:  # window reverse (and the roll back) of the block's output
        emit(op.path, "memory", a.q * 2 * e)


def _fused(op: Op, a: AttnCall, wd: _Widths, emit: Any) -> None:
    """A fused SDPA call: flash without an additive term; with one, the memory-efficient kernel reading
    a materialised score-sized bias. Decomposed relative positions build that bias outside the kernel
    (two small products, then the broadcast sum written once)."""
    e = wd.elem
    bias = 0
    if a.rel:
        for st in call_steps(a):
            if st.name in ("rel_h", "rel_w", "rel_t"):
                emit(op.path, "gemm", (st.inp + st.out) * e, FLOPS_PER_MAC * st.cost.macs, kind=st.name)
        emit(op.path, "memory", a.grid_rows * a.rel_keys * e + a.scores * e, kind="rel_sum")  # -> [.., Nq, Nkv]
        bias = a.scores * e
    elif a.terms:
        bias = a.scores * wd.fp32  # the fp32 bias (+ mask) tensor, read per batch
    core = [st for st in call_steps(a) if st.name not in ("rel_h", "rel_w", "rel_t", "residual")]
    macs = sum(st.cost.macs for st in core)
    vec = sum(project(st.cost, "flops") for st in core) - FLOPS_PER_MAC * macs
    nbytes = (a.q + 2 * a.kv + a.q) * e + bias
    emit(op.path, "efficient" if (a.terms or a.rel) else "flash", nbytes, FLOPS_PER_MAC * macs, vec, kind="fused")
    if a.residual:
        emit(op.path, "memory", 3 * a.q * e, kind="residual")


def _math(op: Op, a: Any, wd: _Widths, emit: Any, math_scores: str, image_batch: Any = None) -> None:
    """Each step of the math path as its own kernel. `math_scores` = "autocast": explicit ops under autocast
    (products in 16 bits, softmax out in fp32, an additive term fp32); "fp16" / "fp32": SDPA's math
    composite, whose steps all run at one width (autocast casts SDPA's inputs to 16 bits; torch >= 2.5
    upcasts them to fp32 there by default, running the products on the fp32 pipes). Decomposed relative
    positions are built outside SDPA (in 16 bits) and added inside it."""
    e, f = wd.elem, wd.fp32
    composite = math_scores != "autocast"
    w = _FULL if math_scores == "fp32" and wd.amp else e  # the width inside the composite
    mm_dtype = "fp32" if w != e else wd.matmul_dtype
    is_call = isinstance(a, AttnCall)
    if is_call:  # k and v laid out for the two products (gathered, for per-query key sets)
        emit(op.path, "gather" if a.nq == 1 and a.batch != image_batch else "memory", 2 * a.kv * 2 * e)
        if w != e:  # q, k, v upcast
            emit(op.path, "memory", (a.q + 2 * a.kv) * (e + w), kind="cast")
    score = e  # width of the current score tensor
    for st in call_steps(a):
        flops = FLOPS_PER_MAC * st.cost.macs
        other = project(st.cost, "flops") - flops
        if composite and is_call and st.name not in _BUILT_OUTSIDE:
            if st.cost.macs:
                emit(op.path, "gemm", (st.inp + st.out) * w, flops, other, mm_dtype, kind=st.name)
            elif st.name in ("term", "rel_add"):
                source = e if st.name == "rel_add" else f  # the 16-bit rel-pos bias, or an fp32 bias/mask
                if source != w:
                    emit(op.path, "memory", st.out * (source + w), kind="cast")
                emit(op.path, "memory", st.out * 3 * w, other=other, kind=st.name)
            else:
                emit(op.path, "memory", (st.inp + st.out) * w, other=other, kind=st.name)
        elif st.cost.macs:
            if st.name == "av" and score != e:  # fp32 probabilities cast back to 16 bits for the product
                emit(op.path, "memory", a.scores * (score + e), kind="cast")
            emit(op.path, "gemm", (st.inp + st.out) * e, flops, other, kind=st.name)
            score = e
        elif st.name == "softmax":
            if wd.amp and score == e:
                emit(op.path, "memory", st.inp * (e + f), kind="cast")
            emit(op.path, "memory", (st.inp + st.out) * f, other=other, kind=st.name)
            score = f
        elif st.name in ("term", "rel_add"):
            width = f if st.name == "term" else max(score, e)
            emit(op.path, "memory", st.out * (score + width + width), other=other, kind=st.name)
            score = width
        else:
            emit(op.path, "memory", (st.inp + st.out) * e, other=other, kind=st.name)
    if is_call:
        if w != e:  # the output cast back
            emit(op.path, "memory", a.q * (w + e), kind="cast")
        emit(op.path, "memory", a.q * 2 * e)  # heads merged back to [tokens, heads * d]


# Steps of decomposed relative positions computed before SDPA is called (the bias it is handed)
_BUILT_OUTSIDE = frozenset({"rel_h", "rel_w", "rel_t", "rel_sum"})


# ---------------------------------------------------------------------------------------------
# Time on a device


def kernel_time(k: Kernel, device: TimeDevice) -> float:
    """Seconds of one kernel on `device` (see the module docstring)."""
    eff = device.eff(k.cls)
    if k.cls in MATMUL_CLASSES:
        compute = (k.flops + eff.half_work) / (device.peak(k.dtype) * eff.fraction)
        memory = k.bytes / (device.bandwidth * device.eff("memory").fraction)
    else:
        memory = (k.bytes + eff.half_work) / (device.bandwidth * eff.fraction)
        compute = k.other_flops / device.vector_flops
    return max(compute, memory, device.launch_s)


def op_times(est: Any, device: TimeDevice, amp: bool = True, **runtime: Any) -> list[tuple[str, str, float]]:
    """(path, class, seconds) of every kernel of the forward `est` on `device` (`runtime`: the keywords of
    `kernels`)."""
    return [(k.path, k.cls, kernel_time(k, device)) for k in kernels(est, amp, **runtime)]


# The smallest median matmul launch (FLOPs) among the measured rows the model is fitted and tested on
# (timm's published benchmarks: Swin V2-B at 384 px, batch 64, 2.2e10; the fitting rows start at ViT-Ti/16,
# batch 1024, 4.5e10). A forward whose median matmul is smaller is outside what the fitted per-launch
# terms were checked on: on the RTX 3090 they charge each small GEMM a fixed 0.6 ms, and ViT-B/16 at
# batch 1 would come out at 32 ms. Commands show the roofline there, labelled so.
MEASURED_MIN_MATMUL_FLOPS = 2e10


def regime_floor(hw: Any) -> float:
    """The smallest median matmul launch (FLOPs) the profile `hw`'s figures hold for: a calibrated
    profile's smallest measured matmul (`[calibration] min_matmul_flops`), else MEASURED_MIN_MATMUL_FLOPS."""
    return float(getattr(hw, "calibration", {}).get("min_matmul_flops", MEASURED_MIN_MATMUL_FLOPS))


def in_measured_regime(est: Any, amp: bool = True, floor: float = MEASURED_MIN_MATMUL_FLOPS) -> bool:
    """Whether the forward's median matmul launch is as large as those the model was checked on (`floor`)."""
    flops = sorted(k.flops for k in kernels(est, amp) if k.cls in MATMUL_CLASSES)
    return bool(flops) and flops[len(flops) // 2] >= floor


def forward_time(est: Any, device: TimeDevice, amp: bool = True, **runtime: Any) -> float:
    """Seconds of the forward `est` on `device`: the sum of its kernels' times."""
    return sum(kernel_time(k, device) for k in kernels(est, amp, **runtime))


__all__ = ["CLASSES", "DEPTHWISE_MAX_DEPTH", "MATMUL_CLASSES", "MAX_FRACTION", "MEASURED_MIN_MATMUL_FLOPS",
           "MEMORY_CLASSES", "Efficiency", "Kernel", "TimeDevice", "efficiency_from_table", "efficiency_table",
           "forward_time", "in_measured_regime", "kernel_time", "kernels", "op_times", "regime_floor"]
