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

from vitcost.analytic.cost import FLOPS_PER_MAC, Op, project
from vitcost.analytic.estimate import Estimate
from vitcost.analytic.memory import normalise_attn, op_inputs, score_roles
from vitcost.measure.hardware import TB, Hardware


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


def roofline(est: Estimate, hw: Hardware, attn: str = "math") -> Roofline:
    """The roofline of the forward `est` on `hw` with attention kernel `attn` (math | sdpa | flash |
    efficient; the last three fuse each layer's attention)."""
    fused = normalise_attn(attn) == "fused"
    e = est.bytes_per_elem
    peak = hw.peak(est.dtype)
    ops: list[OpTime] = []
    group: dict[str, list[int]] = {}  # path of a fused attention -> [matmul flops, other flops, bytes]
    rel_paths = {op.path for op, role in zip(est.ops, score_roles(est.ops)) if role == "rel"}
    q_of: dict[str, int] = {}
    kv_of: dict[str, int] = {}
    for op, inp, role in zip(est.ops, op_inputs(est.ops), score_roles(est.ops)):
        mm = FLOPS_PER_MAC * op.cost.macs
        other = project(op.cost, "flops") - mm
        nbytes = (inp + op.out + op.cost.params) * e
        if not fused or not _in_attention(op, role, q_of, rel_paths):
            if op.kind == "scale":
                q_of[op.path] = op.out
            if op.kind != "param":
                ops.append(_op_time(op.path, op.kind, mm, other, nbytes, hw, peak))
            continue
        acc = group.setdefault(op.path, [0, 0, 0])
        acc[0] += mm
        acc[1] += other
        if role == "qk":
            kv_of[op.path] = inp - q_of[op.path]
        if role == "av":  # the layer's attention is complete: q, k, v in, the output out
            mask = _score_elems(est.ops, op.path) if op.path in rel_paths else 0
            acc[2] = (q_of[op.path] + 2 * kv_of[op.path] + op.out + mask) * e
            ops.append(_op_time(op.path, "attention (fused)", acc[0], acc[1], acc[2], hw, peak))
            del group[op.path]
            q_of.pop(op.path)
    return Roofline(hw.name, est.dtype, "fused" if fused else "math", tuple(ops), peak, hw.bandwidth, hw.indicative)


def _in_attention(op: Op, role: str, q_of: dict[str, int], rel_paths: set[str]) -> bool:
    """Whether `op` belongs to a fused attention core: from the q scale to scores @ v, with the
    additive terms applied inside the kernel; decomposed relative positions are built outside it
    (their products and the add that expands them to a score-sized term)."""
    if op.kind == "scale":
        q_of[op.path] = op.out
        return True
    if op.path not in q_of:
        return False
    return role in ("qk", "softmax", "av") or (op.kind == "add" and role == "" and op.path not in rel_paths)


def _score_elems(ops: tuple[Op, ...], path: str) -> int:
    return max((op.cost.attn for op in ops if op.path == path), default=0)


__all__ = ["OpTime", "Roofline", "roofline"]
