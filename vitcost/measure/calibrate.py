"""Micro-benchmarks for `vitcost calibrate`: a ladder of the calls a vision forward is made of, each
timed on this machine and described by the kernel the time model charges for it
(`time_model.Kernel`), so that `analytic.calibration` can fit the device's figures on them.

The ladder (per device: the CUDA one is the CPU one at larger sizes, in 16 bits where autocast runs):
* launch     a one-element add: the per-call floor (eager dispatch, or a CUDA launch);
* gemm       square and transformer-shaped linears (fp32; bf16 and fp16 where the device runs them),
             and batched products of math-path attention's shapes;
* conv       dense convolutions: a 3x3 ResNet conv, pointwise 1x1 convs, a 7x7 stride-2 stem, a
             16x16 patch embedding;
* depthwise  a 7x7 depthwise conv (ConvNeXt), a 3x3 depthwise pooling conv (MViTv2), a 4x4 stride-4
             3-channel stem (Swin, ConvNeXt);
* flash      scaled_dot_product_attention without a mask, at ViT's and Swin's window shapes;
* efficient  the same with a materialised float mask (the memory-efficient path, a relative-position
             bias passed as `attn_mask`);
* gather     relative-position tables and neighbourhoods' key rows gathered by an int64 index (the
             `gather` class: indexed reads);
* memory     adds, LayerNorm, softmax, GELU, transposing copies, cyclic rolls and pads, from in-cache
             sizes (16 KiB) to 10 MB an operand, the sizes a forward's activations have at small
             batches (past 32 MiB glibc maps each allocation afresh and the page faults of its first
             touch, not the op, set the time).

The weights a forward reads are cold: each layer's weights were last touched a whole forward ago, and
a model's weights outrun the last-level cache, while its activations were just written by the op before.
So each GEMM and convolution rung cycles through copies of its weights (COLD_BYTES of them, at least two)
and keeps one input: in a loop over one weight the weight would sit in cache and a GEMM whose time is
its weight's traffic would look several times faster than it runs in a net.

Each call is timed `repeats` times, each repeat running it back to back often enough to last about
`target_s` (one call when a single call is longer), after one untimed call; the figure is the median
per call and the spread (max - min) / median of the repeats. On CUDA the repeats are bracketed by
CUDA events and synchronised; on the CPU, with torch's thread count fixed, by `timing.cpu_clock` (with
one thread the calling thread's CPU time, which a busy machine does not inflate; else the wall clock).
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from vitcost.analytic.calibration import Sample
from vitcost.analytic.cost import ELTWISE_FLOPS, FLOPS_PER_MAC, GELU_FLOPS, NORM_FLOPS, SOFTMAX_FLOPS
from vitcost.analytic.time_model import DEPTHWISE_MAX_DEPTH, Kernel
from vitcost.errors import VitcostError
from vitcost.measure.timing import cpu_clock
from vitcost.nets.build import torch_dtype
from vitcost.vocab import BYTES, INT64

COLD_BYTES = 64 * 2**20  # weights cycled through per GEMM / conv rung: twice a 32 MiB last-level cache


def _cycled(tensors: list[torch.Tensor]) -> Callable[[], torch.Tensor]:
    """A function returning the next of `tensors` at each call, round and round."""
    state = {"i": 0}

    def nxt() -> torch.Tensor:
        state["i"] = (state["i"] + 1) % len(tensors)
        return tensors[state["i"]]
    return nxt


def _weights(dev: torch.device, dtype: str, *shape: int) -> Callable[[], torch.Tensor]:
    """Copies of a [shape] weight that together outrun the cache (see the module docstring), cycled."""
    per = math.prod(shape) * BYTES[dtype]
    copies = max(2, min(512, COLD_BYTES // max(per, 1)))
    return _cycled([_rand(dev, dtype, *shape) for _ in range(copies)])


@dataclass(frozen=True)
class Bench:
    """One rung of the ladder: a label, the kernel the time model charges for it, and a builder that
    allocates its tensors on a device and returns the call to time."""

    name: str
    kernel: Kernel
    make: Callable[[torch.device], Callable[[], Any]]
    launch: bool = False


def _k(name: str, cls: str, dtype: str, nbytes: float, flops: float = 0, other: float = 0, kind: str = "") -> Kernel:
    return Kernel(name, cls, float(flops), float(other), float(nbytes), dtype, kind or name.split()[0])


def _rand(device: torch.device, dtype: str, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, device=device, dtype=torch_dtype(dtype))


def linear(m: int, k: int, n: int, dtype: str, batch: int = 1) -> Bench:
    """x[batch * m, k] @ W[n, k]^T + b, or with batch > 1 a batched product [batch, m, k] @ [batch, k, n]
    (math-path attention: both operands are activations)."""
    e = BYTES[dtype]
    flops = FLOPS_PER_MAC * batch * m * k * n
    if batch == 1:
        def make(dev: torch.device) -> Callable[[], Any]:
            x, w, b = _rand(dev, dtype, m, k), _weights(dev, dtype, n, k), _rand(dev, dtype, n)
            return lambda: F.linear(x, w(), b)
        return Bench(f"gemm {m}x{k}x{n} {dtype}", _k("gemm", "gemm", dtype, (m * k + k * n + m * n) * e, flops,
                                                     kind="linear"), make)

    def make_bmm(dev: torch.device) -> Callable[[], Any]:
        a, b = _rand(dev, dtype, batch, m, k), _rand(dev, dtype, batch, k, n)
        return lambda: torch.matmul(a, b)
    return Bench(f"bmm {batch}x{m}x{k}x{n} {dtype}",
                 _k("bmm", "gemm", dtype, batch * (m * k + k * n + m * n) * e, flops, kind="qk"), make_bmm)


def conv(batch: int, cin: int, cout: int, hw: int, k: int, stride: int = 1, groups: int = 1,
         dtype: str = "fp32") -> Bench:
    """A conv2d of a [batch, cin, hw, hw] input (padding k // 2 at stride 1, none at a stride equal to
    k); its class by its reduction depth, as the time model classes a conv record."""
    pad = 0 if stride == k else k // 2
    out_hw = (hw + 2 * pad - k) // stride + 1
    depth = cin // groups * k * k
    out = batch * cout * out_hw * out_hw
    nbytes = (batch * cin * hw * hw + out + cout * depth + cout) * BYTES[dtype]
    cls = "conv" if depth >= DEPTHWISE_MAX_DEPTH else "depthwise"

    def make(dev: torch.device) -> Callable[[], Any]:
        x, w, b = _rand(dev, dtype, batch, cin, hw, hw), _weights(dev, dtype, cout, cin // groups, k, k), \
            _rand(dev, dtype, cout)
        return lambda: F.conv2d(x, w(), b, stride=stride, padding=pad, groups=groups)
    label = f"{'dw' if groups > 1 else 'conv'} {k}x{k}/{stride} {cin}->{cout} @{hw} b{batch} {dtype}"
    return Bench(label, _k(label, cls, dtype, nbytes, FLOPS_PER_MAC * out * depth, kind="conv"), make)


def sdpa(batch: int, heads: int, tokens: int, head_dim: int, dtype: str, masked: bool = False) -> Bench:
    """scaled_dot_product_attention of [batch, heads, tokens, head_dim] q, k, v; `masked`: with a float
    [batch, heads, tokens, tokens] additive mask (the memory-efficient path; flash without)."""
    e = BYTES[dtype]
    qkv = batch * heads * tokens * head_dim
    scores = batch * heads * tokens * tokens
    nbytes = 4 * qkv * e + (scores * e if masked else 0)

    def make(dev: torch.device) -> Callable[[], Any]:
        q, k, v = (_rand(dev, dtype, batch, heads, tokens, head_dim) for _ in range(3))
        mask = _rand(dev, dtype, batch, heads, tokens, tokens) if masked else None
        return lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    cls = "efficient" if masked else "flash"
    label = f"sdpa{'+mask' if masked else ''} {batch}x{heads}x{tokens}x{head_dim} {dtype}"
    return Bench(label, _k(label, cls, dtype, nbytes, 2 * FLOPS_PER_MAC * scores * head_dim,
                           SOFTMAX_FLOPS * scores, kind="fused"), make)


def eltwise(op: str, rows: int, cols: int, dtype: str) -> Bench:
    """A memory-bound pass over a [rows, cols] tensor: add (of a second tensor), layer_norm (over cols),
    softmax (over cols), gelu, copy (of the transpose, made contiguous), roll (cyclic, both dims by a
    quarter), pad (a quarter more columns of zeros)."""
    e = BYTES[dtype]
    n = rows * cols
    moved = {"add": 3 * n, "layer_norm": 2 * n + 2 * cols, "softmax": 2 * n, "gelu": 2 * n, "copy": 2 * n,
             "roll": 2 * n, "pad": n + rows * (cols + cols // 4)}[op]
    other = {"add": ELTWISE_FLOPS * n, "layer_norm": NORM_FLOPS * n, "softmax": SOFTMAX_FLOPS * n,
             "gelu": GELU_FLOPS * n}.get(op, 0)

    def make(dev: torch.device) -> Callable[[], Any]:
        x = _rand(dev, dtype, rows, cols)
        y, g, b = _rand(dev, dtype, rows, cols), _rand(dev, dtype, cols), _rand(dev, dtype, cols)
        calls = {"add": lambda: x + y, "layer_norm": lambda: F.layer_norm(x, (cols,), g, b),
                 "softmax": lambda: x.softmax(-1), "gelu": lambda: F.gelu(x),
                 "copy": lambda: x.t().contiguous(), "roll": lambda: torch.roll(x, (rows // 4, cols // 4), (0, 1)),
                 "pad": lambda: F.pad(x, (0, cols // 4))}
        return calls[op]
    label = f"{op} {rows}x{cols} {dtype}"
    return Bench(label, _k(label, "memory", dtype, moved * e, other=other, kind=op), make)


def _indexed(label: str, src_rows: int, width: int, n: int, dtype: str) -> Bench:
    """`n` rows of a [src_rows, width] tensor read through an int64 index: the output, the index and the
    source are the bytes it moves."""
    nbytes = (n + src_rows) * width * BYTES[dtype] + n * INT64

    def make(dev: torch.device) -> Callable[[], Any]:
        x = _rand(dev, dtype, src_rows, width)
        index = torch.randint(0, src_rows, (n,), device=dev)
        return lambda: x[index]
    return Bench(label, _k(label, "gather", dtype, nbytes, kind="gather"), make)


def gather(tokens: int, heads: int, dtype: str) -> Bench:
    """A relative-position bias gathered from its table: table[index] with a [tokens^2] int64 index into a
    [(2 sqrt(tokens) - 1)^2, heads] table, as Swin builds its bias."""
    side = max(int(math.isqrt(tokens)), 1)
    return _indexed(f"gather {tokens}^2x{heads} {dtype}", (2 * side - 1) ** 2, heads, tokens * tokens, dtype)


def gather_rows(tokens: int, keys: int, width: int, dtype: str) -> Bench:
    """Rows of a [tokens, width] tensor gathered by a [tokens * keys] int64 index: each token's `keys`
    neighbours, as a neighbourhood attention gathers its keys and values."""
    return _indexed(f"gather rows {tokens}x{keys}x{width} {dtype}", tokens, width, tokens * keys, dtype)


def launch_probe(dtype: str = "fp32") -> Bench:
    def make(dev: torch.device) -> Callable[[], Any]:
        x = _rand(dev, dtype, 1)
        return lambda: x + x
    return Bench("launch (1-element add)", _k("launch", "memory", dtype, 3 * BYTES[dtype], kind="add"), make,
                 launch=True)


def runs_dtype(device: torch.device, dtype: str) -> bool:
    """Whether `device` runs a small matmul in `dtype` (CPU builds without 16-bit kernels refuse it)."""
    try:
        a = _rand(device, dtype, 8, 8)
        (a @ a).sum().item()
        return True
    except (RuntimeError, TypeError):
        return False


def ladder(device: torch.device, quick: bool = False) -> list[Bench]:
    """Every rung for `device` (see the module docstring); `quick`: a few rungs per class."""
    cuda = device.type == "cuda"
    s = 4 if cuda else 1  # the CUDA ladder's batch and size factor
    mixed = [d for d in ("bf16", "fp16") if runs_dtype(device, d)]
    main = "fp16" if cuda and "fp16" in mixed else "fp32"
    out = [launch_probe(main)]
    out += _gemms(s, cuda, mixed, quick)
    out += _convs(s, main, quick)
    out += _attention(s, main, quick)
    out += _memory(s, main, quick) + (_memory(s, "fp32", True) if main != "fp32" else [])
    return out


def _gemms(s: int, cuda: bool, mixed: list[str], quick: bool) -> list[Bench]:
    squares = (64, 256, 1024) if quick else (64, 128, 256, 512, 1024, 1536)
    shapes = [(n * s, n * s, n * s) for n in squares]
    if not quick:  # a ViT-Ti/S/B block's linears at 224 px, batch 1, and a Swin-T stage-1 MLP
        shapes += [(197 * s, 192, 576), (197 * s, 384, 1536), (197 * s, 768, 768), (197 * s, 3072, 768),
                   (3136 * s, 96, 384), (3136 * s, 384, 96)]
    out = [linear(m, k, n, "fp32") for m, k, n in shapes]
    heads = [(3 * s, 197, 64, 197), (64 * s, 49, 32, 49)] if quick else \
        [(3 * s, 197, 64, 197), (12 * s, 197, 64, 197), (12 * s, 197, 197, 64), (64 * s, 49, 32, 49),
         (6 * s, 785, 64, 785)]
    out += [linear(m, k, n, "fp32", batch=b) for b, m, k, n in heads]
    small = (32, 64) if quick else (32, 64, 128, 192)  # 16-bit matmuls without native CPU support are slow
    for dt in mixed:
        sizes = [n * s * 8 for n in small] if cuda else list(small)
        out += [linear(n, n, n, dt) for n in sizes]
    return out


def _convs(s: int, dt: str, quick: bool) -> list[Bench]:
    dense = [(s, 64, 64, 56, 3, 1), (s, 256, 64, 56, 1, 1), (s, 3, 64, 224, 7, 2), (s, 3, 192, 224, 16, 16)]
    if not quick:
        dense += [(s, 64, 256, 56, 1, 1), (s, 128, 128, 28, 3, 1), (s, 512, 512, 7, 3, 1), (s, 1024, 256, 14, 1, 1),
                  (s, 3, 768, 224, 16, 16)]
    shallow = [(s, 96, 96, 56, 7, 1, 96), (s, 3, 96, 224, 4, 4, 1)]
    if not quick:
        shallow += [(s, 384, 384, 14, 7, 1, 384), (s, 96, 96, 56, 3, 1, 96), (s, 192, 192, 28, 7, 1, 192)]
    return ([conv(b, ci, co, hw, k, st, dtype=dt) for b, ci, co, hw, k, st in dense]
            + [conv(b, ci, co, hw, k, st, g, dtype=dt) for b, ci, co, hw, k, st, g in shallow])


def _attention(s: int, dt: str, quick: bool) -> list[Bench]:
    shapes = [(s, 3, 197, 64), (64 * s, 3, 49, 32)] if quick else \
        [(s, 3, 197, 64), (s, 12, 197, 64), (4 * s, 6, 197, 64), (64 * s, 3, 49, 32), (16 * s, 12, 49, 32),
         (s, 6, 785, 64)]
    return [sdpa(b, h, n, d, dt, masked) for masked in (False, True) for b, h, n, d in shapes]


def _memory(s: int, dt: str, quick: bool) -> list[Bench]:
    sizes = [(197 * s, 192), (3136 * s, 384)] if quick else \
        [(64, 64), (197 * s, 192), (197 * s, 768), (3136 * s, 96), (3136 * s, 384), (2 * 3136 * s, 384)]
    ops = ("add", "layer_norm", "softmax", "gelu", "copy", "roll", "pad")
    out = [eltwise(op, r, c, dt) for op in ops for r, c in sizes]
    out += [gather(n, h, dt) for n, h in ([(49, 3)] if quick else [(49, 3), (144, 4), (196 * s, 12)])]
    out += [gather_rows(n, k, d, dt) for n, k, d in ([(784 * s, 49, 32)] if quick else
                                                     [(196 * s, 49, 32), (784 * s, 49, 32), (3136 * s, 49, 32)])]
    return out


# ---------------------------------------------------------------------------------------------
# Timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _elapsed(call: Callable[[], Any], device: torch.device, times: int) -> float:
    """Seconds per call of `times` calls run back to back."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(times):
            call()
        end.record()
        torch.cuda.synchronize(device)
        return start.elapsed_time(end) / 1e3 / times
    clock = cpu_clock(device)
    t0 = clock()
    for _ in range(times):
        call()
    return (clock() - t0) / times


def time_call(call: Callable[[], Any], device: torch.device, repeats: int = 5,
              target_s: float = 0.02) -> tuple[float, float]:
    """(median seconds per call, spread (max - min) / median) over `repeats` repeats (see the module
    docstring)."""
    with torch.inference_mode():
        call()
        _sync(device)
        one = min(_elapsed(call, device, 1) for _ in range(3))  # one preempted call must not set the loop
        inner = max(1, min(10_000, int(target_s / max(one, 1e-7))))
        per = [_elapsed(call, device, inner) for _ in range(repeats)]
    med = statistics.median(per)
    return med, (max(per) - min(per)) / med if med > 0 else 0.0


def run_ladder(benches: list[Bench], device: torch.device, *, repeats: int = 5, target_s: float = 0.02,
               budget_s: float = 60.0, on_step: Callable[[Bench], None] | None = None) -> list[Sample]:
    """Time every rung; past `budget_s` the remaining ones run three single-call repeats each."""
    t0 = time.perf_counter()
    out = []
    for b in benches:
        if on_step is not None:
            on_step(b)
        late = time.perf_counter() - t0 > budget_s
        call = b.make(device)
        seconds, spread = time_call(call, device, 3 if late else repeats, 0.0 if late else target_s)
        del call
        out.append(Sample(b.name, b.kernel, seconds, spread, b.launch))
    return out


@dataclass(frozen=True)
class Machine:
    """What the figures were measured on."""

    device: str  # cpu | cuda
    name: str  # the CPU's model name or the CUDA device's
    host: str
    torch: str
    threads: int
    memory: int  # bytes: the machine's (CPU) or the device's (CUDA)


def machine(device: str, threads: int | None) -> Machine:
    """Fix the CPU thread count (when given) and describe the device; `cuda` without CUDA is an error."""
    if device == "cuda":
        if not torch.cuda.is_available():
            raise VitcostError("--device cuda was asked for but torch sees no CUDA device.")
        props = torch.cuda.get_device_properties(0)
        return Machine("cuda", props.name, platform.node(), torch.__version__, torch.get_num_threads(),
                       int(props.total_memory))
    if threads is not None:
        torch.set_num_threads(threads)
    from vitcost.measure.profile import _cpu_name, _cpu_total

    return Machine("cpu", _cpu_name(), platform.node(), torch.__version__, torch.get_num_threads(), _cpu_total() or 0)


SPREAD_WARN = 0.10  # a median spread of the repeats above this: a busy machine


def median_spread(samples: list[Sample]) -> float:
    return statistics.median(s.spread for s in samples) if samples else 0.0


def calibrated_profile(m: Machine, samples: list[Sample], name: str, seconds: float) -> Any:
    """The device profile (`hardware.Hardware`) fitted on `samples` measured on `m`: the measured peaks,
    bandwidth, launch floor and per-class efficiencies, each with its source, and the [calibration]
    record (every run's median, spread and predicted / measured after the fit)."""
    from datetime import datetime, timezone

    from vitcost.analytic.calibration import fit_device
    from vitcost.analytic.hardware import Hardware
    from vitcost.analytic.time_model import MATMUL_CLASSES, kernel_time

    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    threads = f", {m.threads} thread{'s' if m.threads != 1 else ''}" if m.device == "cpu" else ""
    src = f"measured by calibrate on {m.host} {date}, torch {m.torch}{threads}"
    dev = fit_device(name, samples)
    peaks = dict(dev.matmul_flops)
    sources = {d: src for d in peaks}
    for d in ("fp32", "bf16", "fp16"):  # a dtype the device could not run: the slowest measured one's peak
        if d not in peaks:
            peaks[d] = min(dev.matmul_flops.values())
            sources[d] = f"assumed: {m.name} does not run {d} matmuls; the slowest measured dtype's peak"
    sources.update(memory=f"{'/proc/meminfo' if m.device == 'cpu' else 'torch.cuda'}: {m.name}'s memory",
                   bandwidth=src, vector=src, launch_overhead=src, efficiency=src)
    runs = [{"name": s.name, "class": s.kernel.cls, "dtype": s.kernel.dtype, "flops": s.kernel.flops,
             "bytes": s.kernel.bytes, "median_s": float(f"{s.seconds:.4g}"), "spread": round(s.spread, 3),
             "ratio": round(kernel_time(s.kernel, dev) / s.seconds, 3)} for s in samples if not s.launch]
    matmul = [s.kernel.flops for s in samples if s.kernel.cls in MATMUL_CLASSES and not s.launch]
    calibration = {"device": m.device, "device_name": m.name, "host": m.host, "date": date, "torch": m.torch,
                   "threads": m.threads, "seconds": round(seconds, 1),
                   "median_spread": round(median_spread(samples), 3),
                   "min_matmul_flops": float(min(matmul)), "runs": runs}
    label = f"{m.name} ({m.threads} thread{'s' if m.threads != 1 else ''}, calibrated)" if m.device == "cpu" \
        else f"{m.name} (calibrated)"
    return Hardware(label, peaks, dev.vector_flops, dev.bandwidth, m.memory, False, name,
                    f"{m.name} on {m.host}, measured by vitcost calibrate", dev.launch_s, dict(dev.efficiency),
                    sources, threads=m.threads if m.device == "cpu" else None, calibration=calibration)


__all__ = ["Bench", "Machine", "SPREAD_WARN", "calibrated_profile", "conv", "eltwise", "gather", "ladder",
           "launch_probe", "linear", "machine", "median_spread", "run_ladder", "runs_dtype", "sdpa", "time_call"]
