"""Measured memory of one training step on the reference nets, part by part.

One step is what a training loop runs between two `zero_grad(set_to_none=True)` calls: forward, a
cross-entropy loss, backward, optimizer step. The step measured is the second one, so the optimizer
state already exists (it is resident, like the weights), and gradients are created by the backward
(`set_to_none` left none behind). Every part is measured on its own:

* **weights, gradients, optimizer state** -- the bytes of `parameters()`, of their `.grad` after the
  backward, and of the tensors in `optimizer.state` (exp_avg, exp_avg_sq and AdamW's step counters;
  SGD's momentum buffers);
* **activations saved** -- the live tensor bytes the forward and the loss leave alive for the backward:
  the tracker's live bytes after the loss, less the loss and logits the loop's own names keep, less the
  16-bit copies of the weights autocast makes (`weight_cast_bytes`, measured apart: every saved tensor
  whose autograd history is a dtype cast of a parameter). Without checkpointing this equals the sum of
  the distinct storages autograd saves (`torch.autograd.graph.saved_tensors_hooks` sees each one), which
  `saved_by_layer` breaks down by the module that saved it;
* **forward, backward and optimizer peaks** -- the peak live tensor bytes of each phase beyond what is
  resident at the start of the step (weights, buffers, optimizer state, the input batch and labels),
  measured by the live-tensor tracker `vitcost.measure.memory.LiveTensorTracker` (a TorchDispatchMode:
  it sees every aten op of the forward, of the autograd engine's backward on the calling thread and of
  the optimizer);
* **step peak** -- the largest of the three plus the resident bytes.

All at the live-tensor level: scratch buffers that a kernel allocates and frees inside one op (oneDNN's
reorders, a GEMM's packing) are not tensors and are not counted; `allocator=True` adds the CPU allocator's
peak over the whole step from torch.profiler's memory records, which does count them.

Activation checkpointing is applied as `torch.utils.checkpoint.checkpoint(..., use_reentrant=False)` around
segments of `k` consecutive blocks of a stage (the blocks the analytic walker names, `blocks.3`,
`layers.1.blocks.0`, `layer2.1`); mixed precision as `torch.autocast` over the forward and the loss.
"""

from __future__ import annotations

import contextlib
import gc
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vitcost.measure.memory import LiveTensorTracker

LOW_PRECISION = (torch.bfloat16, torch.float16)


@dataclass(frozen=True)
class TrainStepMemory:
    """One training step's measured memory, in bytes (see the module docstring for each part)."""

    weights_bytes: int
    gradients_bytes: int
    optimizer_state_bytes: int
    input_bytes: int  # the batch and its labels
    activations_saved_bytes: int
    weight_cast_bytes: int  # autocast's 16-bit copies of the weights held for the backward
    forward_peak_bytes: int  # peak of the forward + loss beyond the resident bytes
    backward_peak_bytes: int  # peak of the backward beyond the resident bytes
    optimizer_peak_bytes: int  # peak of the optimizer step beyond the resident bytes
    step_peak_bytes: int  # resident + the largest phase peak
    backward_peak_op: str  # the aten op during which the backward peak was reached
    saved_by_layer: dict[str, int] = field(default_factory=dict)  # distinct saved bytes per module path
    allocator_step_peak_bytes: int | None = None  # the CPU allocator's peak over the step, resident included
    method: str = "live tensors (TorchDispatchMode) per phase; saved tensors via saved_tensors_hooks"

    @property
    def resident_bytes(self) -> int:
        """What is allocated before the step starts: weights, optimizer state and the batch."""
        return self.weights_bytes + self.optimizer_state_bytes + self.input_bytes


def _nbytes(tensors: Any) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if isinstance(t, torch.Tensor):
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def optimizer_for(params: list[nn.Parameter], name: str) -> torch.optim.Optimizer | None:
    """The optimizer a training step uses: none, sgd (momentum 0.9) or adamw (torch's defaults)."""
    if name == "none":
        return None
    if name == "sgd":
        return torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=1e-4)
    raise ValueError(f"unknown optimizer {name!r}")


def checkpoint_blocks(net: nn.Module, blocks: list[tuple[str, str]], every: int) -> None:
    """Wrap segments of `every` consecutive blocks of a stage in non-reentrant activation checkpointing.
    `blocks`: (module path, stage) of each block in forward order. The first block of a segment runs the
    whole segment under `torch.utils.checkpoint.checkpoint`; the others become identities."""
    from torch.utils.checkpoint import checkpoint

    modules = dict(net.named_modules())
    segments: list[list[str]] = []
    last_stage = None
    for path, stage in blocks:
        if stage != last_stage or len(segments[-1]) == every:
            segments.append([])
        segments[-1].append(path)
        last_stage = stage
    for seg in segments:
        forwards = [modules[p].forward for p in seg]

        def run(x: torch.Tensor, forwards: list[Callable] = forwards) -> torch.Tensor:
            for f in forwards:
                x = f(x)
            return x

        modules[seg[0]].forward = (lambda x, run=run: checkpoint(run, x, use_reentrant=False))
        for p in seg[1:]:
            modules[p].forward = (lambda x: x)


def _is_weight_cast(t: torch.Tensor) -> bool:
    """Whether autograd's history of `t` is a dtype cast of a parameter (optionally viewed: weight.t())."""
    fn = t.grad_fn
    for _ in range(3):
        if fn is None:
            return False
        name = type(fn).__name__
        if name.startswith("ToCopyBackward"):
            nxt = fn.next_functions[0][0] if fn.next_functions else None
            return nxt is not None and type(nxt).__name__ == "AccumulateGrad"
        if not (name.startswith("TBackward") or name.startswith("PermuteBackward") or name.startswith("ViewBackward")
                or name.startswith("TransposeBackward")):
            return False
        fn = fn.next_functions[0][0] if fn.next_functions else None
    return False


class _SavedRecorder:
    """saved_tensors_hooks that records each distinct storage autograd saves, by the module running."""

    def __init__(self, net: nn.Module, resident: set[int]) -> None:
        self.resident = resident
        self.stack = [""]
        self.by_layer: dict[str, int] = defaultdict(int)
        self.seen: set[int] = set()
        self.casts: dict[int, int] = {}
        names = {m: n for n, m in net.named_modules()}
        self.handles = []
        for m in net.modules():
            self.handles.append(m.register_forward_pre_hook(self._enter(names[m])))
            self.handles.append(m.register_forward_hook(self._leave))

    def _enter(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any) -> None:
            self.stack.append(name)
        return hook

    def _leave(self, module: nn.Module, args: Any, out: Any) -> None:
        self.stack.pop()

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        key = st.data_ptr()
        if key in self.resident or key in self.seen:
            return t
        self.seen.add(key)
        if t.dtype in LOW_PRECISION and _is_weight_cast(t):
            self.casts[key] = st.nbytes()
        else:
            self.by_layer[self.stack[-1]] += st.nbytes()
        return t

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _allocator_peak(step: Callable[[], None]) -> int:
    """Peak of the running sum of the CPU allocator's allocation/free records during `step()`."""
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    records = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]" and e.device_type().name == "CPU")
    live = peak = 0
    for _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
    return peak


def measure_train_step(net: nn.Module, x: torch.Tensor, *, optimizer: str = "adamw", amp: torch.dtype | None = None,
                       half: bool = False, checkpoint: list[tuple[str, str]] | None = None, every: int = 1,
                       num_classes: int | None = None, allocator: bool = False, seed: int = 0) -> TrainStepMemory:
    """Measure one steady-state training step of `net` on the batch `x` (see the module docstring):
    `optimizer` none | sgd | adamw; `amp` a 16-bit dtype to run the forward and loss under
    `torch.autocast(x.device.type, amp)`, the weights staying float32, or with `half` the model and the
    batch cast to it instead; `checkpoint` the (path, stage) of the blocks to checkpoint in segments of
    `every`. The loss is cross-entropy against random labels (per-pixel labels when the net returns
    [B, N, classes])."""
    torch.manual_seed(seed)
    net.train()
    if half and amp is not None:
        net, x, amp = net.to(amp), x.to(amp), None
    if checkpoint:
        checkpoint_blocks(net, checkpoint, every)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = optimizer_for(params, optimizer)
    autocast = (lambda: torch.autocast(x.device.type, dtype=amp)) if amp is not None else contextlib.nullcontext
    with torch.no_grad(), autocast():
        out_shape = net(x).shape
    classes = num_classes or out_shape[-1]
    y = torch.randint(0, classes, out_shape[:-1], device=x.device)

    def loss_of(out: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    def step() -> None:
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        with autocast():
            loss = loss_of(net(x))
        loss.backward()
        if opt is not None:
            opt.step()

    step()  # the optimizer state now exists
    for p in params:
        p.grad = None
    gc.collect()
    state = [t for s in (opt.state.values() if opt is not None else ()) for t in s.values()
             if isinstance(t, torch.Tensor)]
    resident_tensors = [*net.parameters(), *net.buffers(), x, y, *state]
    resident = {t.untyped_storage().data_ptr() for t in resident_tensors}
    recorder = _SavedRecorder(net, resident)
    tracker = LiveTensorTracker(resident_tensors)
    with tracker:
        with torch.autograd.graph.saved_tensors_hooks(recorder.pack, lambda t: t), autocast():
            out = net(x)
            loss = loss_of(out)
        forward_peak = tracker.peak
        after_forward = tracker.live
        held_by_loop = _nbytes([out, loss]) if not any(
            t.untyped_storage().data_ptr() in recorder.seen for t in (out, loss)) else _nbytes([loss])
        tracker.peak, tracker.peak_op = tracker.live, ""
        loss.backward()
        backward_peak, backward_op = tracker.peak, tracker.peak_op
        del out, loss
        gc.collect()
        grads = _nbytes(p.grad for p in params)
        tracker.peak = tracker.live
        if opt is not None:
            opt.step()
        optimizer_peak = tracker.peak
    recorder.remove()
    casts = sum(recorder.casts.values())
    weights = _nbytes(net.parameters())
    state_bytes = _nbytes(state)
    inp = _nbytes([x, y])
    resident_total = weights + state_bytes + inp
    alloc = None
    if allocator and x.device.type == "cpu":
        for p in params:
            p.grad = None
        gc.collect()
        alloc = _allocator_peak(step) + resident_total
    return TrainStepMemory(
        weights_bytes=weights, gradients_bytes=grads, optimizer_state_bytes=state_bytes, input_bytes=inp,
        activations_saved_bytes=after_forward - held_by_loop - casts, weight_cast_bytes=casts,
        forward_peak_bytes=forward_peak, backward_peak_bytes=backward_peak, optimizer_peak_bytes=optimizer_peak,
        step_peak_bytes=resident_total + max(forward_peak, backward_peak, optimizer_peak),
        backward_peak_op=backward_op, saved_by_layer=dict(recorder.by_layer), allocator_step_peak_bytes=alloc)


__all__ = ["TrainStepMemory", "measure_train_step", "checkpoint_blocks", "optimizer_for"]


def time_train_step(net: nn.Module, x: torch.Tensor, *, optimizer: str = "adamw", amp: torch.dtype | None = None,
                    warmup: int = 1, repeats: int = 3, seed: int = 0) -> tuple[Any, int | None]:
    """Time whole training steps of `net` (already prepared: checkpointing applied, on its device) on the
    batch `x`: `warmup` untimed steps (the first creates the optimizer state), then `repeats` timed ones,
    each from `zero_grad(set_to_none=True)` to the end of the optimizer step. On CUDA each step is
    bracketed by events, and the allocator's peak over the first timed step is returned beside the
    timing (`max_memory_allocated`, everything resident included); None on the CPU.
    Returns (`vitcost.measure.timing.Timing`, that peak)."""
    import statistics

    from vitcost.measure.timing import Timing, cpu_clock, spread

    if repeats < 1 or warmup < 0:
        raise ValueError(f"need at least one repeat and no negative warm-up, got {repeats}, {warmup}")
    torch.manual_seed(seed)
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = optimizer_for(params, optimizer)
    autocast = (lambda: torch.autocast(x.device.type, dtype=amp)) if amp is not None else contextlib.nullcontext
    with torch.no_grad(), autocast():
        out_shape = net(x).shape
    y = torch.randint(0, out_shape[-1], out_shape[:-1], device=x.device)
    cuda = x.device.type == "cuda"

    def step() -> None:
        if opt is not None:
            opt.zero_grad(set_to_none=True)
        else:
            for p in params:
                p.grad = None
        with autocast():
            out = net(x)
            loss = F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        del out
        loss.backward()
        if opt is not None:
            opt.step()

    for _ in range(warmup):
        step()
    clock = cpu_clock(x.device)
    times: list[float] = []
    peak = None
    for i in range(repeats):
        if cuda:
            torch.cuda.synchronize(x.device)
            if i == 0:
                torch.cuda.reset_peak_memory_stats(x.device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            torch.cuda.synchronize(x.device)
            times.append(start.elapsed_time(end) / 1e3)
            if i == 0:
                peak = torch.cuda.max_memory_allocated(x.device)
        else:  # the CPU's clock: the thread's CPU time with one intra-op thread (`timing.cpu_clock`)
            t0 = clock()
            step()
            times.append(clock() - t0)
    for p in params:
        p.grad = None
    timing = Timing(statistics.median(times), spread(times), min(times), max(times), tuple(times), warmup,
                    str(x.device), torch.get_num_threads())
    return timing, peak


__all__ += ["time_train_step"]
