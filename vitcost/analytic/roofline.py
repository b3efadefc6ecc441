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

The result is a lower bound on time at the declared peaks; the achieved throughput of a measured run
is 2 * MACs / time, and its fraction of the matmul peak says how far from the roof it ran.
This module does not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vitcost.analytic.cost import FLOPS_PER_MAC, Cost, project
from vitcost.analytic.estimate import Estimate
from vitcost.analytic.hardware import TB, Hardware
from vitcost.analytic.kernels import FUSED, OUTSIDE_FUSED, attention_path
from vitcost.analytic.trace import call_steps
from vitcost.vocab import parse_kernel


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


def roofline(est: Estimate, hw: Hardware, attn: Any = None) -> Roofline:
    """The roofline of the forward `est` on `hw` with attention kernel `attn` (math | sdpa | flash |
    efficient, the last three fusing each layer's attention; default: the estimate's own kernel)."""
    kernel = parse_kernel(est.attn if attn is None else attn)
    e = est.bytes_per_elem
    peak = hw.peak(est.dtype)
    ops: list[OpTime] = []

    def add(path: str, kind: str, cost: Cost, nbytes: int) -> None:
        mm = FLOPS_PER_MAC * cost.macs
        ops.append(_op_time(path, kind, mm, project(cost, "flops") - mm, nbytes, hw, peak))

    for op in est.ops:
        if op.call is None:
            if op.kind != "param":
                add(op.path, op.kind, op.cost, (op.inp + op.out + op.cost.params) * e)
            continue
        a = op.call
        core = []
        fused = attention_path(a, kernel) == FUSED
        for st in call_steps(a):
            if fused and st.name not in OUTSIDE_FUSED:
                core.append(st)
            else:
                add(op.path, st.name, st.cost, (st.inp + st.out) * e)
        if core:  # q, k, v in, the output out (and a score-sized relative-position term when there is one)
            mask = a.scores if a.rel else 0
            add(op.path, "attention (fused)", Cost.sum(st.cost for st in core), (2 * a.q + 2 * a.kv + mask) * e)
    return Roofline(hw.name, est.dtype, "fused" if kernel.fused else "math", tuple(ops), peak, hw.bandwidth,
                    hw.indicative)


__all__ = ["OpTime", "Roofline", "roofline"]
