"""The torch backend: `FlopCounterMode`, attributed to dotted module paths as self counts.

FlopCounterMode keys its per-module counts by its own names (`VisionTransformer.blocks.0.attn`) and
adds every op to *all* modules running at the time, so its table is inclusive, and a module reused
from another parent lands under the caller as well as under itself. Instead of undoing that after
the fact, a thin dispatch mode sits on top of FlopCounterMode and, around each aten op, reads how much
FlopCounterMode's total grew; the growth is that op's count in FlopCounterMode's own formulas, and it
goes to the innermost module running (module names: the first dotted name of each module instance,
as fvcore names them). Self counts therefore sum to FlopCounterMode's total exactly.

Added formulas: torch 2.13 registers SDPA formulas for the CUDA kernels (flash, efficient, cudnn) but
not for the CPU kernel `_scaled_dot_product_flash_attention_for_cpu` (nor the "overrideable" one), so
fused attention on CPU counted 0. They are registered through `custom_mapping` with
`attention_flops` (2 per MAC of QK^T and AV), the same rule torch uses for the CUDA kernels.

The same pass also observes, per path, the non-matmul ops fvcore counts (LayerNorm elements, ...) by
fvcore's rules, so the torch pass can be re-expressed in the fvcore convention independently of the
jit trace. Compute-looking ops with no formula at all are reported as gaps, never dropped silently.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

from vitcost.errors import VitcostError
from vitcost.measure.counting_formulas import (
    FVCORE_BILINEAR_FLOPS,
    FVCORE_BN_EVAL_FLOPS,
    FVCORE_NEAREST_FLOPS,
    FVCORE_POOL_FLOPS,
    SDPA_OPS,
    attention_flops,
    norm_flops,
)

# Ops that multiply-accumulate: if FlopCounterMode has no formula for one, it is a gap to report.
_COMPUTE_OP = re.compile(r"^_*(addmm|addmv|addr|addbmm|baddbmm|bmm|mm|mv|dot|vdot|matmul|einsum|linear|int_mm"
                         r"|(cudnn_|mkldnn_|slow_|thnn_|miopen_)?conv\w*|\w*attention\w*)$")


def sdpa_flop(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
              **kwargs: Any) -> int:
    """FlopCounterMode formula (called with shapes) for a fused SDPA kernel:
    q [b, h, Nq, d], k [b, h, Nk, d], v [b, h, Nk, d_v] -> 2 * b*h*Nq*Nk*(d + d_v)."""
    return attention_flops(query_shape, key_shape, value_shape)


def sdpa_custom_mapping(registry: dict[Any, Any]) -> dict[Any, Callable[..., int]]:
    """`custom_mapping` entries for the SDPA kernels that `registry` (FlopCounterMode's) lacks."""
    import torch

    aten = torch.ops.aten
    packets = [getattr(aten, name) for name in SDPA_OPS if hasattr(aten, name)]
    return {p: sdpa_flop for p in packets if p not in registry}


def _numel(t: Any) -> int:
    return t.numel()


def _fvcore_rules() -> dict[Any, Callable[[tuple, Any], int]]:
    """fvcore's non-matmul counting rules, restated for the aten ops the dispatcher sees.
    Each rule gets the op's args and output (LayerNorm: 5 per input element when affine)."""
    import torch

    aten = torch.ops.aten

    def first(out: Any) -> Any:
        return out[0] if isinstance(out, (tuple, list)) else out

    rules: dict[Any, Callable[[tuple, Any], int]] = {
        # native_layer_norm(input, normalized_shape, weight, bias, eps)
        aten.native_layer_norm: lambda a, out: norm_flops(_numel(a[0]), a[2] is not None),
        # native_group_norm(input, weight, bias, N, C, HxW, group, eps)
        aten.native_group_norm: lambda a, out: norm_flops(_numel(a[0]), a[1] is not None),
        # native_batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps)
        aten.native_batch_norm: lambda a, out: (norm_flops(_numel(a[0]), a[1] is not None) if a[5]
                                                else _numel(a[0]) * (FVCORE_BN_EVAL_FLOPS if a[1] is not None
                                                                     else FVCORE_BN_EVAL_FLOPS - 1)),
        # _native_batch_norm_legit_no_training(input, weight, bias, running_mean, running_var, momentum, eps)
        aten._native_batch_norm_legit_no_training: lambda a, out: _numel(a[0]) * (
            FVCORE_BN_EVAL_FLOPS if a[1] is not None else FVCORE_BN_EVAL_FLOPS - 1),
        aten._adaptive_avg_pool2d: lambda a, out: FVCORE_POOL_FLOPS * _numel(a[0]),
        aten.upsample_nearest2d: lambda a, out: FVCORE_NEAREST_FLOPS * _numel(first(out)),
        aten.upsample_bilinear2d: lambda a, out: FVCORE_BILINEAR_FLOPS * _numel(first(out)),
        aten.grid_sampler_2d: lambda a, out: FVCORE_BILINEAR_FLOPS * _numel(first(out)),
    }
    return rules


class ModuleStack:
    """Which module is running: forward hooks push and pop each module's first dotted name.
    `order` lists paths in the order their forward first ran."""

    def __init__(self, module: Any) -> None:
        self.stack: list[str] = [""]
        self.order: dict[str, None] = {}
        self._handles: list[Any] = []
        for name, mod in module.named_modules():  # first name of each instance, like fvcore's aliases
            self._handles.append(mod.register_forward_pre_hook(self._push(name)))
            self._handles.append(mod.register_forward_hook(self._pop, always_call=True))

    def _push(self, name: str) -> Callable[..., None]:
        def hook(mod: Any, args: Any) -> None:
            self.stack.append(name)
            self.order.setdefault(name, None)

        return hook

    def _pop(self, mod: Any, args: Any, out: Any) -> None:
        if len(self.stack) > 1:
            self.stack.pop()

    @property
    def top(self) -> str:
        return self.stack[-1]

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _attributing_mode(counter: Any, modules: ModuleStack, table: dict, observed: dict, gaps: dict) -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    rules = _fvcore_rules()

    class AttributingMode(TorchDispatchMode):
        """Sits above FlopCounterMode: each op's count is the growth of FlopCounterMode's total."""

        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            before = counter.get_total_flops()
            out = func(*args, **(kwargs or {}))
            packet = func._overloadpacket
            name = packet.__name__
            grown = counter.get_total_flops() - before
            path = modules.top
            if grown:
                table[path][name] += grown
            elif packet not in counter.flop_registry and _COMPUTE_OP.match(name):
                gaps[f"aten::{name}"] += 1
            rule = rules.get(packet)
            if rule is not None:
                observed[path][name] += rule(args, out)
            return out

    return AttributingMode()


class TorchPass(NamedTuple):
    """What one forward under FlopCounterMode gives."""

    table: dict[str, dict[str, int]]  # self counts {path: {op: flops}}, torch convention
    observed: dict[str, dict[str, int]]  # non-matmul ops by fvcore's rules {path: {op: count}}
    gaps: dict[str, int]  # compute ops without a formula {op: calls}
    order: list[str]  # module paths in the order their forward first ran


def count_torch(module: Any, inputs: tuple[Any, ...]) -> TorchPass:
    """Count one forward of `module(*inputs)` under FlopCounterMode, attributed per path."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    probe = FlopCounterMode(display=False)
    counter = FlopCounterMode(display=False, custom_mapping=sdpa_custom_mapping(probe.flop_registry))
    table: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    observed: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    gaps: dict[str, int] = defaultdict(int)
    modules = ModuleStack(module)
    try:
        with torch.no_grad(), counter, _attributing_mode(counter, modules, table, observed, gaps):
            module(*inputs)
    finally:
        modules.remove()
    attributed = sum(sum(ops.values()) for ops in table.values())
    if attributed != counter.get_total_flops():  # e.g. ops counted inside a higher-order op's branches
        raise VitcostError(f"FlopCounterMode counted {counter.get_total_flops():,} but only {attributed:,} could be "
                           "attributed to modules; this model's torch counts cannot be split by layer.")
    return TorchPass({p: dict(ops) for p, ops in table.items()}, {p: dict(ops) for p, ops in observed.items()},
                     dict(gaps), list(modules.order))
