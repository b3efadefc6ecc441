"""Measured forward memory at two levels, the attention-score tensors actually materialised, and which
SDPA kernel ran.

Two levels of the same forward, each measured by its own tool:

* **live tensors** -- `LiveTensorTracker` (below), on any device: the bytes of the tensors the aten ops
  of the forward return, from their creation until the last reference dies. This is the level of
  `MemoryPrediction.activation_peak_bytes`.
* **allocator** -- what the memory allocator hands out, which adds the scratch buffers an op allocates
  and frees inside itself (a LayerNorm's contiguous copy of a strided input, the weight a oneDNN
  convolution reorders on every call, the CPU flash-attention kernel's per-thread buffers). On CUDA it is
  `torch.cuda.max_memory_allocated` (`cuda_forward_peak`); on the CPU the running sum of the allocation
  and free records of `torch.profiler` with `profile_memory=True` (`allocator_forward_peak`). This is the
  level of `MemoryPrediction.allocator_peak_bytes`. Buffers a library allocates with its own allocator
  (MKL's or oneDNN's internal GEMM packing) are not handed out by torch's and appear at neither level.

`LiveTensorTracker` is a TorchDispatchMode that sees every aten op of the forward. Each op's outputs
are looked up by their storage: a storage first seen as an op's output (not a view of something
older, not a weight or the input) is a new allocation, counted with its exact byte size until a
weak reference reports it freed. The running sum is the live activation memory; its maximum is the
peak forward activation memory. What it cannot see are scratch buffers that a kernel allocates and
frees inside one op (a GEMM's or a fused attention kernel's workspace); the allocator level includes them.

Score tensors are recognised by what produced them, not by a predicted shape: every output of a
softmax op (`aten._softmax`, `aten._safe_softmax`) is an attention probability matrix of
[..., Nq, Nkv] in these models, the tensor a materialised (math) attention holds. Fused SDPA kernels
(flash, memory-efficient, cuDNN, the CPU flash kernel) run no softmax op and materialise no scores.
The SDPA kernel in use is named by the aten op that ran: `_scaled_dot_product_flash_attention`,
`_scaled_dot_product_efficient_attention`, ...; a forward with softmax ops and no SDPA op ran math.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

SOFTMAX_OPS = ("_softmax", "_safe_softmax")

# aten op name (without overload) -> the SDPA backend it is.
SDPA_BACKENDS: dict[str, str] = {
    "_scaled_dot_product_flash_attention": "flash",
    "_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
    "_scaled_dot_product_efficient_attention": "efficient",
    "_scaled_dot_product_cudnn_attention": "cudnn",
    "_scaled_dot_product_fused_attention_overrideable": "fused",
    "_scaled_dot_product_attention_math": "math",
    "_scaled_dot_product_attention_math_for_mps": "math (mps)",
}


def _op_name(func: Any) -> str:
    """aten._softmax.default -> '_softmax'."""
    return func.overloadpacket.__name__ if hasattr(func, "overloadpacket") else str(func)


class LiveTensorTracker(TorchDispatchMode):
    """Track the bytes of tensors allocated while the mode is active (see the module docstring).

    `exclude`: tensors that exist before the forward (weights, buffers, the input); views of them and
    in-place updates to them are never counted. Any other storage an op reads that the tracker did
    not see being created is treated the same way (a cached mask, a tensor attribute)."""

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        super().__init__()
        self._tracked: dict[int, int] = {}  # id(storage) -> bytes, for storages created in the forward
        self._refs: dict[int, weakref.ref] = {}
        self._old: dict[int, Any] = {}  # id(storage) -> storage, for storages older than the forward
        for t in exclude:
            self._mark_old(t)
        self.live = 0
        self.peak = 0
        self.peak_op = ""
        self.score_bytes = 0  # every softmax output of the forward, summed
        self.score_peak = 0  # the largest single softmax output
        self.ops: Counter[str] = Counter()

    def _mark_old(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        if id(st) not in self._tracked:
            self._old[id(st)] = st

    def _freed(self, key: int) -> Callable[[Any], None]:
        def callback(_: Any) -> None:
            self.live -= self._tracked.pop(key, 0)
            self._refs.pop(key, None)
        return callback

    def _track(self, t: torch.Tensor, name: str) -> None:
        st = t.untyped_storage()
        key = id(st)
        if key in self._tracked or key in self._old:
            return
        nbytes = st.nbytes()
        self._tracked[key] = nbytes
        self._refs[key] = weakref.ref(st, self._freed(key))
        self.live += nbytes
        if self.live > self.peak:
            self.peak, self.peak_op = self.live, name

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        for a in tree_flatten((args, kwargs))[0]:
            if isinstance(a, torch.Tensor) and id(a.untyped_storage()) not in self._tracked:
                self._mark_old(a)
        name = _op_name(func)
        self.ops[name] += 1
        # Composite ops (linear, matmul, softmax, SDPA) run their decomposition here, so that the
        # tensors they allocate on the way (a contiguous copy of k for a batched matmul) and the SDPA
        # kernel they pick are seen as the aten ops that really run.
        with self:
            out = func.decompose(*args, **kwargs)
        if out is not NotImplemented:
            return out
        out = func(*args, **kwargs)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self._track(t, name)
                if name in SOFTMAX_OPS:
                    nbytes = t.numel() * t.element_size()
                    self.score_bytes += nbytes
                    self.score_peak = max(self.score_peak, nbytes)
        return out

    @property
    def sdpa_backend(self) -> str:
        """The attention kernel(s) the forward ran: an SDPA backend, 'math' (softmax ops, no SDPA op),
        or 'none' (no attention)."""
        found = sorted({SDPA_BACKENDS[n] for n in self.ops if n in SDPA_BACKENDS})
        if found:
            return "+".join(found)
        return "math" if any(n in SOFTMAX_OPS for n in self.ops) else "none"


@dataclass(frozen=True)
class ForwardMemory:
    """One forward's measured memory, in bytes."""

    peak_bytes: int  # peak activation bytes (CUDA: allocator peak minus what was resident before)
    tensor_peak_bytes: int  # peak live tensor bytes seen by the tracker (no kernel workspaces)
    score_bytes: int  # all softmax outputs of the forward
    score_peak_bytes: int  # the largest one
    backend: str  # SDPA backend that ran (see LiveTensorTracker.sdpa_backend)
    peak_op: str  # the aten op during which the tracked peak was reached
    method: str  # how peak_bytes was measured
    allocator_peak_bytes: int | None = None  # allocator level: peak bytes handed out beyond the resident ones
    allocator_method: str = ""  # how allocator_peak_bytes was measured


def resident_tensors(module: torch.nn.Module, *extra: torch.Tensor) -> list[torch.Tensor]:
    """Weights, buffers and the given tensors: what is allocated before the forward starts."""
    return [*module.parameters(), *module.buffers(), *extra]


def track_forward(module: torch.nn.Module, x: torch.Tensor,
                  context: Callable[[], contextlib.AbstractContextManager] | None = None) -> LiveTensorTracker:
    """Run one forward under inference_mode with a LiveTensorTracker and return the tracker."""
    tracker = LiveTensorTracker(resident_tensors(module, x))
    with torch.inference_mode(), (context or contextlib.nullcontext)(), tracker:
        out = module(x)
    del out
    return tracker


def cuda_forward_peak(module: torch.nn.Module, x: torch.Tensor,
                      context: Callable[[], contextlib.AbstractContextManager] | None = None) -> int:
    """Peak CUDA memory of one forward beyond what was allocated before it (weights, input): the
    allocator's max_memory_allocated after reset_peak_memory_stats, minus memory_allocated at the start.
    Kernel workspaces (cuBLAS, fused attention) are included; the caching allocator's rounding of each
    block to 512 bytes is too."""
    device = x.device
    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode(), (context or contextlib.nullcontext)():
        out = module(x)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    del out
    return peak


def allocator_forward_peak(module: torch.nn.Module, x: torch.Tensor,
                           context: Callable[[], contextlib.AbstractContextManager] | None = None) -> int:
    """Peak bytes the allocator of x's device hands out during one forward beyond what it held before:
    the forward runs under `torch.profiler.profile(profile_memory=True)`, which records every allocation
    (+bytes) and free (-bytes) the allocator serves; the running sum of those records in time order
    peaks at this figure. Unlike the tracker it sees an op's internal scratch buffers; unlike
    `cuda_forward_peak` it works on the CPU. No allocator rounding is included (the CPU allocator has
    none). The profiler's own log lines are silenced unless KINETO_LOG_LEVEL is set."""
    from torch.profiler import ProfilerActivity, profile

    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # read when the profiler first starts
    with torch.inference_mode(), (context or contextlib.nullcontext)():
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            out = module(x)
            del out
    device = x.device.type.upper()
    records = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                     if e.name() == "[memory]" and e.device_type().name == device)
    live = peak = 0
    for _, nbytes in records:
        live += nbytes
        peak = max(peak, live)
    return peak


def measure_forward_memory(module: torch.nn.Module, x: torch.Tensor,
                           context: Callable[[], contextlib.AbstractContextManager] | None = None, *,
                           allocator: bool = True) -> ForwardMemory:
    """Measure one forward: tracked live tensors everywhere; on CUDA the allocator's peak as well,
    which is then the reported peak (`peak_bytes`). With `allocator` the allocator level is measured too
    (`allocator_peak_bytes`), by one more forward: CUDA's max_memory_allocated, the CPU profiler's
    allocation records elsewhere."""
    tracker = track_forward(module, x, context)
    alloc, alloc_method = None, ""
    if x.device.type == "cuda":
        peak, method = cuda_forward_peak(module, x, context), "cuda max_memory_allocated - resident"
        alloc, alloc_method = peak, method
    else:
        peak, method = tracker.peak, "peak live tensor bytes (TorchDispatchMode)"
        if allocator:
            alloc = allocator_forward_peak(module, x, context)
            alloc_method = "torch.profiler memory records (profile_memory=True)"
    return ForwardMemory(peak, tracker.peak, tracker.score_bytes, tracker.score_peak, tracker.sdpa_backend,
                         tracker.peak_op, method, alloc, alloc_method)


__all__ = ["LiveTensorTracker", "ForwardMemory", "track_forward", "cuda_forward_peak", "allocator_forward_peak",
           "measure_forward_memory", "resident_tensors", "SDPA_BACKENDS"]
