"""Roofline time of a forward: every op is bound either by arithmetic or by memory traffic.

For each op of the analytic walk (Williams, Waterman & Patterson 2009):
    compute = 2 * MACs / matmul_peak(dtype) + other FLOPs / vector_peak
    memory  = (input + output + parameter elements) * bytes per element / bandwidth
    time    = max(compute, memory)
and the forward's time is the sum over ops. "Other FLOPs" are the non-matmul terms of the `flops`
convention (norms, softmax, GELU, adds: see `vitcost.analytic.cost`), which never run on tensor cores.

With a fused attention kernel (flash, memory-efficient) the scale, q k^T, additive terms, softmax and
scores @ v of a layer are one op: its FLOPs are the sum, its traffic is q, k, v and the output (plus
the additive term when it is a full score-sized tensor, as MViTv2's relative positions are), because
the scores never leave the chip. The math path moves every score tensor through memory several times,
which is what makes it memory-bound at long sequences.

Under autocast (`Estimate.amp`, timm's --amp: fp32 weights and input, `dtype` the 16-bit type) the
bytes follow `AutocastBytes`'s rule, the one place that says which width each op reads and writes.

The result is a lower bound on time at the declared peaks; the achieved throughput of a measured run
is 2 * MACs / time, and its fraction of the matmul peak says how far from the roof it ran.
This module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vitcost.analytic.cost import FLOPS_PER_MAC, Cost, Op, project
from vitcost.analytic.estimate import Estimate
from vitcost.analytic.hardware import TB, Hardware
from vitcost.analytic.kernels import FUSED, OUTSIDE_FUSED, attention_path
from vitcost.analytic.ops import kind_of
from vitcost.analytic.trace import Step, call_steps
from vitcost.vocab import BYTES, F32, Kernel


@dataclass(frozen=True)
class OpTime:
    """One op (or one fused attention) on the roofline."""

    path: str
    kind: str
    matmul_flops: int
    other_flops: int
    bytes: int
    compute_s: float
    memory_s: float

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s >= self.memory_s else "memory"


@dataclass(frozen=True)
class Roofline:
    """The roofline time of one forward on one device."""

    hardware: str
    dtype: str
    attn: str
    ops: tuple[OpTime, ...]
    peak_flops: float  # the matmul peak used, FLOP/s
    bandwidth: float  # bytes/s
    indicative: bool  # True when the device figures are guesses (the CPU preset)

    @property
    def time_s(self) -> float:
        return sum(op.time_s for op in self.ops)

    @property
    def matmul_flops(self) -> int:
        return sum(op.matmul_flops for op in self.ops)

    @property
    def bytes(self) -> int:
        return sum(op.bytes for op in self.ops)

    @property
    def compute_bound_fraction(self) -> float:
        """Share of the roofline time spent in compute-bound ops."""
        total = self.time_s
        return sum(op.time_s for op in self.ops if op.bound == "compute") / total if total else 0.0

    @property
    def bound(self) -> str:
        return "compute" if self.compute_bound_fraction >= 0.5 else "memory"

    def achieved(self, measured_s: float) -> tuple[float, float]:
        """(achieved TFLOP/s, fraction of the matmul peak) of a forward that took `measured_s`:
        2 * MACs / time, the figure peaks are quoted in."""
        flops = self.matmul_flops / measured_s
        return flops / TB, flops / self.peak_flops


def _op_time(path: str, kind: str, mm: int, other: int, nbytes: int, hw: Hardware, peak: float) -> OpTime:
    return OpTime(path, kind, mm, other, nbytes, mm / peak + other / hw.vector_flops, nbytes / hw.bandwidth)


def roofline(est: Estimate, hw: Hardware, attn: Kernel | None = None) -> Roofline:
    """The roofline of the forward `est` on `hw` with attention kernel `attn` (math | sdpa | flash |
    efficient, the last three fusing each layer's attention; default: the estimate's own kernel)."""
    kernel = est.attn if attn is None else attn
    amp = AutocastBytes(est, kernel, "cpu" if hw.indicative or hw.cpu else "cuda") if est.amp else None
    peak = hw.peak(est.dtype)
    ops = [t for i, op in enumerate(est.ops) for t in _op_times(i, op, kernel, est.bytes_per_elem, hw, peak, amp)]
    return Roofline(hw.name, est.dtype, "fused" if kernel.fused else "math", tuple(ops), peak, hw.bandwidth,
                    hw.indicative)


def roofline_time(est: Estimate, hw: Hardware) -> float:
    """`roofline(est, hw).time_s`, summed in the same order, without the per-op records: the ops of
    repeated blocks (equal kind, cost, sizes and call) are timed once. Under autocast an op's bytes
    depend on what came before it, so there every op is timed."""
    if est.amp:
        return roofline(est, hw).time_s
    peak, e = hw.peak(est.dtype), est.bytes_per_elem
    seen: dict[tuple, tuple[float, ...]] = {}
    total = 0.0
    for i, op in enumerate(est.ops):
        key = (op.kind, op.cost, op.inp, op.out, op.call)
        times = seen.get(key)
        if times is None:
            times = seen[key] = tuple(t.time_s for t in _op_times(i, op, est.attn, e, hw, peak, None))
        for t in times:
            total += t
    return total


def _op_times(i: int, op: Op, kernel: Kernel, e: int, hw: Hardware, peak: float,
              amp: AutocastBytes | None) -> list[OpTime]:
    """The roofline records of op i: one for a plain op (none for a parameter table), one per step of an
    attention call run apart and one for its fused kernel (q, k, v in, the output out, and a score-sized
    relative-position term when there is one)."""
    def timed(kind: str, cost: Cost, nbytes: int) -> OpTime:
        mm = FLOPS_PER_MAC * cost.macs
        return _op_time(op.path, kind, mm, project(cost, "flops") - mm, nbytes, hw, peak)

    if op.call is None:
        if op.kind == "param":
            return []
        return [timed(op.kind, op.cost, (op.inp + op.out + op.cost.params) * e if amp is None else amp.op(i, op))]
    a = op.call
    out, core = [], []
    fused = attention_path(a, kernel) == FUSED
    for st in call_steps(a):
        if fused and st.name not in OUTSIDE_FUSED:
            core.append(st)
        else:
            out.append(timed(st.name, st.cost, (st.inp + st.out) * e if amp is None else amp.step(st)))
    if core:
        mask = a.scores if a.rel else 0
        out.append(timed("attention (fused)", Cost.sum(st.cost for st in core),
                         (2 * a.q + 2 * a.kv + mask) * e if amp is None else amp.fused(2 * a.q + 2 * a.kv, mask)))
    if amp is not None:
        amp.call_done(i)
    return out


HALF, FULL = BYTES["bf16"], F32  # bytes of a 16-bit and an fp32 element


class AutocastBytes:
    """The bytes each op moves under autocast (torch.autocast at fp16/bf16 over fp32 weights and an fp32
    input: timm's `benchmark.py --amp`). Which width each op's output has is the training model's rule
    (`train_memory.step_ops`, stated in its module docstring: matmuls, convs and attention write 16 bits;
    on CUDA LayerNorm and softmax write fp32; an add of an fp32 parameter, the position embedding or a
    layer scale, promotes the residual stream to fp32; every other op keeps its input's width). On top:

    - an op reads its input at the width the op before it wrote (the image: fp32); a residual add reads
      both operands at the wider of that and its output's (the stream operand's);
    - a linear or conv reads its fp32 weights through autocast's cast: 4 bytes read, 2 written, 2 read
      again by the matmul; other parameters are read at fp32;
    - inside an attention call run apart, the products read and write 16 bits; an additive term (a bias
      table or a mask, fp32 buffers) writes fp32 scores; softmax writes fp32 on CUDA, and its input's
      width on the CPU; a fused kernel reads q, k, v and writes its output at 16 bits (a score-sized
      relative-position term at fp32)."""

    def __init__(self, est: Estimate, kernel: Any, device: str) -> None:
        from vitcost.analytic.train_memory import step_ops

        self.device = device
        steps = step_ops(est, kernel, device)[:len(est.ops)]
        self.out = [st.out_bytes // st.op.out if st.op.out else 0 for st in steps]
        self.prev = FULL  # the width of the last output: the fp32 input image first
        self.scores = HALF

    def op(self, i: int, op: Any) -> int:
        """Bytes of op i, a plain op (not an attention call)."""
        w_out = self.out[i] or self.prev
        w_in = max(self.prev, w_out) if kind_of(op).width == "stream" else self.prev
        params = op.cost.params * (FULL + 2 * HALF if kind_of(op).product else FULL)
        nbytes = op.inp * w_in + op.out * w_out + params
        self.prev = w_out
        return nbytes

    def step(self, st: Step) -> int:
        """Bytes of one step of an attention call run apart (the math path, or outside a fused kernel)."""
        if st.name == "qk":
            self.scores = HALF
        if st.name == "term":  # the scores + an fp32 table or mask, written in fp32
            w_in, self.scores = self.scores, FULL
            return st.out * w_in + (st.inp - st.out) * FULL + st.out * FULL
        if st.name == "rel_add":  # the scores + the 16-bit decomposed relative-position term
            return (st.inp - st.out) * HALF + 2 * st.out * self.scores
        if st.name == "softmax":
            w_in = self.scores
            if self.device == "cuda":
                self.scores = FULL
            return st.inp * w_in + st.out * self.scores
        return (st.inp + st.out) * HALF

    def fused(self, qkv_out: int, mask: int) -> int:
        """Bytes of a fused attention kernel."""
        return qkv_out * HALF + mask * FULL

    def call_done(self, i: int) -> None:
        self.prev = self.out[i] or HALF


TIME_MODELS = {"per-op": "the per-op time model fitted on measured runs (`time_model`)",
               "roofline": "the roofline (the lower bound at the profile's peaks and bandwidth)"}


def forward_time(est: Estimate, hw: Hardware) -> dict[str, Any]:
    """The time fields of a row, the one forward-time figure every command shows: `hardware` (the device's
    label), `time_s` (one forward of the batch), `images_per_s` (batch / time_s) and `time_model`, which
    model gave it: the per-op time model (`time_model.forward_time`) where the profile carries its fitted
    figures and the run is the regime they were fitted and tested in (autocast over fp32 weights, timm's
    --amp, for figures fitted on timm's runs; any precision for a profile `vitcost calibrate` measured on
    the device itself; matmul launches as large as the measured ones, `time_model.in_measured_regime`);
    else the roofline, a lower bound."""
    t, how = None, "roofline"
    if hw.efficiency and (est.amp or hw.calibration):  # the time model is imported only for the runs it can time
        from vitcost.analytic import time_model

        if time_model.in_measured_regime(est, est.amp, time_model.regime_floor(hw)):
            t, how = time_model.forward_time(est, time_model.time_device(hw), amp=est.amp), "per-op"
    if t is None:
        t = roofline_time(est, hw)
    return {"hardware": hw.label, "time_s": t, "images_per_s": est.batch / t if t else None, "time_model": how}


__all__ = ["AutocastBytes", "OpTime", "Roofline", "TIME_MODELS", "forward_time", "roofline", "roofline_time"]
