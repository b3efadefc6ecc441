"""Counting without allocating: meta-device copies, inputs, and the memory a real count would need.

A meta tensor has a shape and a dtype but no storage, so a forward on meta tensors runs every op's
shape logic and nothing else: an 1,048,576-token attention matrix costs no memory. Both counters only
read shapes, so they count a meta forward exactly as a real one (fvcore's jit trace included).

What a real count holds (`count_hold_bytes`, measured by benchmarks/bench_counting_memory.py, output in
reports/counting_memory.txt): FlopCounterMode runs the forward under no_grad, so it holds the forward's
live activations at their peak; fvcore's jit trace runs it with autograd on, so everything each op
saves for a backward stays alive to the end of the forward (every attention matrix of every block,
on the math path). Both figures come from one meta forward each (`forward_profile`), plus the model's
parameters, buffers and input, plus the counters' own bookkeeping.

A real count "might not fit" when `SAFETY` times the prediction exceeds the least of what this process
may still take (`memory_limits`): the available memory, the address-space limit (RLIMIT_AS) less the
address space already mapped, and the cgroup's memory.max less its current use. `method="auto"` then
counts on the meta device, and `method="real"` refuses before allocating anything.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vitcost.errors import VitcostError

SAFETY = 1.5  # a real count runs only when 1.5x its predicted memory fits in the least of the limits
CGROUP = Path("/sys/fs/cgroup")  # cgroup v2: memory.max and memory.current of this process's group
# The counters' own bookkeeping beyond the tensors (the trace graph, the dispatch tables; resident pages of
# code first touched), measured at small sizes: see reports/counting_memory.txt.
COUNTER_OVERHEAD = {"torch": 24 * 2**20, "fvcore": 32 * 2**20}
# The torch pass's resident peak is about 1.5x the live tensors' peak: the heap keeps freed buffers that
# the next op's allocation of another size cannot reuse (measured, reports/counting_memory.txt).
TORCH_PASS_FACTOR = 1.5


def _vm_size() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def memory_limits() -> dict[str, int]:
    """{what limits: bytes this process may still take}: the available memory (psutil), the
    address-space limit less the address space already mapped (when RLIMIT_AS is set), the cgroup's
    memory.max less its memory.current (when the cgroup sets one)."""
    import resource

    import psutil

    limits = {"available memory": int(psutil.virtual_memory().available)}
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits["the address-space limit (RLIMIT_AS)"] = max(0, soft - (_vm_size() or 0))
    cap = _read_int(CGROUP / "memory.max")
    if cap is not None:
        limits["the cgroup's memory.max"] = max(0, cap - (_read_int(CGROUP / "memory.current") or 0))
    return limits


def memory_budget() -> int:
    """Bytes a real count may take: the least of `memory_limits`."""
    return min(memory_limits().values())


def fits(predicted: int, budget: int) -> bool:
    """Whether a count predicted to hold `predicted` bytes may run for real within `budget`."""
    return SAFETY * predicted <= budget


def too_large(predicted: int, budget: int | None = None) -> str:
    """The sentence refusing a real count predicted to hold `predicted` bytes."""
    limits = memory_limits() if budget is None else {"the budget": budget}
    name, room = min(limits.items(), key=lambda kv: kv[1])
    return (f"a real count needs about {_gib(predicted)} ({SAFETY:g}x that is {_gib(SAFETY * predicted)}), more "
            f"than {name} ({_gib(room)}); count on the meta device instead (--method meta or auto).")


def _gib(n: float) -> str:
    gib = n / 2**30
    return f"{gib:,.0f} GiB" if gib >= 10 else f"{gib:.3g} GiB"


def count_hold_bytes(backend: str, live_peak: int, grad_peak: int, fixed: int = 0) -> int:
    """Bytes a real count by `backend` holds: `fixed` (parameters, buffers, input) plus, for the torch pass,
    `TORCH_PASS_FACTOR` times the no-grad forward's live peak, and for fvcore's trace the autograd
    forward's peak, each plus the counter's own bookkeeping (`COUNTER_OVERHEAD`)."""
    activations = grad_peak if backend == "fvcore" else int(TORCH_PASS_FACTOR * live_peak)
    return fixed + activations + COUNTER_OVERHEAD[backend]


def tensors_of(module: Any) -> list[Any]:
    """Parameters and buffers, each once."""
    seen: dict[int, Any] = {}
    for t in [*module.parameters(), *module.buffers()]:
        seen.setdefault(id(t), t)
    return list(seen.values())


def is_meta(module: Any, inputs: Sequence[Any] = ()) -> bool:
    return any(t.is_meta for t in [*tensors_of(module), *inputs])


def to_meta(module: Any) -> Any:
    """A copy of `module` whose parameters, buffers and tensor attributes live on the meta device.
    The copy shares no storage with the original and allocates nothing for the tensors."""
    import torch

    if all(t.is_meta for t in tensors_of(module)):
        return module
    memo: dict[int, Any] = {}
    for mod in module.modules():
        for p in mod._parameters.values():
            if p is not None and id(p) not in memo:
                memo[id(p)] = torch.nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for value in [*mod._buffers.values(), *vars(mod).values()]:
            if isinstance(value, torch.Tensor) and id(value) not in memo:
                memo[id(value)] = torch.empty_like(value, device="meta")
    try:
        return copy.deepcopy(module, memo)
    except Exception as e:  # a module holding locks, files, generators...
        raise VitcostError(f"cannot copy the model to the meta device for counting ({type(e).__name__}: "
                           f"{first_line(e)}); count it with method='real'.") from None


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def float_dtype(module: Any) -> Any:
    """The dtype inputs should have: the module's first floating parameter's, else float32."""
    import torch

    for t in tensors_of(module):
        if t.is_floating_point():
            return t.dtype
    return torch.float32


def input_shapes(inputs: Any) -> tuple[tuple[int, ...], ...]:
    """A shape (ints), a tensor, or a tuple of tensors -> the shapes of the input tensors."""
    import torch

    if isinstance(inputs, torch.Tensor):
        return (tuple(inputs.shape),)
    if isinstance(inputs, (tuple, list)) and inputs and all(isinstance(t, torch.Tensor) for t in inputs):
        return tuple(tuple(t.shape) for t in inputs)
    if (isinstance(inputs, (tuple, list, torch.Size)) and inputs
            and all(type(n) is int and n > 0 for n in inputs)):
        return (tuple(inputs),)
    raise VitcostError(f"input {inputs!r} is neither a shape of positive whole numbers nor a tensor.")


def make_inputs(inputs: Any, *, meta: bool, dtype: Any) -> tuple[Any, ...]:
    """The tensors to call the model with: the given tensors (meta copies when `meta`), or a random
    input of the given shape."""
    import torch

    if isinstance(inputs, torch.Tensor):
        inputs = (inputs,)
    if isinstance(inputs, (tuple, list)) and inputs and isinstance(inputs[0], torch.Tensor):
        return tuple(torch.empty_like(t, device="meta") if meta else t for t in inputs)
    shape = input_shapes(inputs)[0]
    if meta:
        return (torch.empty(shape, dtype=dtype, device="meta"),)
    return (torch.randn(shape, dtype=dtype),)


def _nbytes(t: Any) -> int:
    return t.numel() * t.element_size()


class _LiveBytes:
    """A dispatch mode (built on first use, so that torch is imported only then) that follows the bytes
    of every tensor an op creates: `live` from its creation until it is freed, `peak` the most alive at
    once, `created` the sum over every tensor ever created. An op's return that aliases an input (a view,
    an in-place result) shares that input's memory and counts nothing."""

    @staticmethod
    def make() -> Any:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode

        class LiveBytes(TorchDispatchMode):
            def __init__(self) -> None:
                super().__init__()
                self.live = 0
                self.peak = 0
                self.created = 0
                self.tracked: set[int] = set()
                self.finalizers: list[weakref.finalize] = []

            def _free(self, key: int, n: int) -> None:
                self.tracked.discard(key)
                self.live -= n

            def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
                out = func(*args, **(kwargs or {}))
                outs = out if isinstance(out, (tuple, list)) else (out,)
                returns = func._schema.returns
                for i, t in enumerate(outs):
                    aliased = i < len(returns) and returns[i].alias_info is not None
                    if isinstance(t, torch.Tensor) and not aliased and id(t) not in self.tracked:
                        n = _nbytes(t)
                        self.tracked.add(id(t))
                        self.live += n
                        self.created += n
                        self.finalizers.append(weakref.finalize(t, self._free, id(t), n))
                self.peak = max(self.peak, self.live)
                return out

        return LiveBytes()


def _fused_attention_mode(saved: list[Any]) -> Any:
    """A function mode that stands in for torch's fused CPU attention kernel on the meta device, where
    `F.scaled_dot_product_attention` would run its math composite and materialise the scores: the call
    makes its output and the kernel's logsumexp ([B, H, Nq] fp32) and nothing else, and with autograd
    on (an input requiring grad) keeps what the kernel saves for a backward (q, k, v, the output, the
    logsumexp) alive in `saved`. A call whose additive mask needs a gradient is left to the composite,
    as torch's CPU dispatcher does."""
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    class FusedAttention(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            kwargs = kwargs or {}
            if func is not F.scaled_dot_product_attention:
                return func(*args, **kwargs)
            q, k, v = args[:3]
            mask = kwargs.get("attn_mask", args[3] if len(args) > 3 else None)
            grad = torch.is_grad_enabled() and any(t.requires_grad for t in (q, k, v))
            if grad and mask is not None and mask.requires_grad:
                return func(*args, **kwargs)
            out = torch.empty((*q.shape[:-1], v.shape[-1]), dtype=q.dtype, device=q.device)
            lse = torch.empty(q.shape[:-1], dtype=torch.float32, device=q.device)
            if grad:
                out.requires_grad_()
                saved.extend((q, k, v, out, lse))
            return out

    return FusedAttention()


def _run_tracked(meta_module: Any, meta_inputs: tuple[Any, ...], train: bool, grad: bool = False,
                 fused: bool = False) -> Any:
    """Run the meta forward (and with `train` the loss and backward) under `_LiveBytes`; `fused`: the
    attention calls as torch's fused CPU kernel runs them (`_fused_attention_mode`)."""
    import contextlib

    import torch

    mode = _LiveBytes.make()
    saved: list[Any] = []
    grads = [(p, p.grad) for p in meta_module.parameters()]
    try:
        with torch.enable_grad() if train or grad else torch.no_grad(), \
                _fused_attention_mode(saved) if fused else contextlib.nullcontext(), mode:
            out = meta_module(*meta_inputs)
            if train:
                from vitcost.measure.counting_torch import training_loss

                training_loss(out).backward()
    finally:
        for f in mode.finalizers:
            f.detach()
        for p, g in grads:
            p.grad = g
    return mode


def forward_peak_bytes(meta_module: Any, meta_inputs: tuple[Any, ...], train: bool = False) -> int:
    """Predicted memory of one real inference forward: parameters, buffers and inputs, plus the peak
    of the bytes held by live activations during a meta forward. A tensor counts from the op that
    creates it until it is freed; an op's return that aliases an input (a view, an in-place
    result) shares that input's memory and counts nothing. With `train`, of a whole training step
    instead: the forward with autograd on (what it saves stays alive), the loss and the backward, the
    parameters' gradients included (the meta module's `.grad` are left as they were)."""
    fixed = sum(_nbytes(t) for t in tensors_of(meta_module)) + sum(_nbytes(t) for t in meta_inputs)
    return fixed + _run_tracked(meta_module, meta_inputs, train).peak


def forward_profile(meta_module: Any, meta_inputs: tuple[Any, ...]) -> tuple[int, int]:
    """(no-grad peak, autograd peak) of one inference forward on the meta device, with attention run as
    torch's fused CPU kernel runs it (`_fused_attention_mode`; the math path's explicit scores are
    ordinary ops): the most activation bytes alive at once under no_grad, and with autograd on, where
    what each op saves for a backward stays alive to the end of the forward (parameters and inputs
    excluded from both)."""
    return (_run_tracked(meta_module, meta_inputs, False, fused=True).peak,
            _run_tracked(meta_module, meta_inputs, False, grad=True, fused=True).peak)


def predict_count_bytes(meta_module: Any, meta_inputs: tuple[Any, ...], backends: Sequence[str] = ("fvcore", "torch"),
                        train: bool = False) -> int:
    """What a real count of `meta_module(*meta_inputs)` by `backends` holds at its peak (`count_hold_bytes`;
    the counters run one after the other, so the larger). A training step, counted by FlopCounterMode
    alone: the step's peak on the meta device (`forward_peak_bytes` with `train`) plus its bookkeeping."""
    fixed = sum(_nbytes(t) for t in tensors_of(meta_module)) + sum(_nbytes(t) for t in meta_inputs)
    if train:
        return forward_peak_bytes(meta_module, meta_inputs, train=True) + COUNTER_OVERHEAD["torch"]
    live_peak, grad_peak = forward_profile(meta_module, meta_inputs)
    return max(count_hold_bytes(b, live_peak, grad_peak, fixed) for b in backends)
