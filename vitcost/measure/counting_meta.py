"""Counting without allocating: meta-device copies, inputs, and the memory a real forward would need.

A meta tensor has a shape and a dtype but no storage, so a forward on meta tensors runs every op's
shape logic and nothing else: an 1,048,576-token attention matrix costs no memory. Both counters only
read shapes, so they count a meta forward exactly as a real one (fvcore's jit trace included).

`method="auto"` counts for real only when the forward is predicted to fit: the prediction is a meta
forward that tracks live tensor bytes (every new tensor from its creation until it is freed)
plus parameters, buffers and inputs, compared with a budget of `BUDGET_FRACTION` of the available RAM.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Sequence
from typing import Any

from vitcost.errors import VitcostError

BUDGET_FRACTION = 0.25  # of the RAM available now: leaves room for the counters' own work and the OS


def memory_budget() -> int:
    """Bytes a real forward may use: `BUDGET_FRACTION` of the available RAM (psutil)."""
    import psutil

    return int(psutil.virtual_memory().available * BUDGET_FRACTION)


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


def forward_peak_bytes(meta_module: Any, meta_inputs: tuple[Any, ...], train: bool = False) -> int:
    """Predicted memory of one real inference forward: parameters, buffers and inputs, plus the peak
    of the bytes held by live activations during a meta forward. A tensor counts from the op that
    creates it until it is freed; an op's return that aliases an input (a view, an in-place
    result) shares that input's memory and counts nothing. With `train`, of a whole training step
    instead: the forward with autograd on (what it saves stays alive), the loss and the backward, the
    parameters' gradients included (the meta module's `.grad` are left as they were)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class LiveBytes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.live = 0
            self.peak = 0
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
                # a return that aliases an input (a view, an in-place result) holds no new memory
                aliased = i < len(returns) and returns[i].alias_info is not None
                if isinstance(t, torch.Tensor) and not aliased and id(t) not in self.tracked:
                    n = _nbytes(t)
                    self.tracked.add(id(t))
                    self.live += n
                    self.finalizers.append(weakref.finalize(t, self._free, id(t), n))
            self.peak = max(self.peak, self.live)
            return out

    fixed = sum(_nbytes(t) for t in tensors_of(meta_module)) + sum(_nbytes(t) for t in meta_inputs)
    mode = LiveBytes()
    grads = [(p, p.grad) for p in meta_module.parameters()]
    try:
        with torch.enable_grad() if train else torch.no_grad(), mode:
            out = meta_module(*meta_inputs)
            if train:
                from vitcost.measure.counting_torch import training_loss

                training_loss(out).backward()
    finally:
        for f in mode.finalizers:
            f.detach()
        for p, g in grads:
            p.grad = g
    return fixed + mode.peak
