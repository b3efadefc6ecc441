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
`attention_flops` (2 per MAC of QK^T and AV), the same rule torch uses for the CUDA kernels; their
backward kernels likewise with `attention_backward_flops` (the five score-sized products of torch's
`sdpa_backward_flop_count`, the recomputed QK^T included).

A training step (`train=True`): the forward with autograd on, `loss = sum(out.float().sum())` outside
every module, then `loss.backward()`; the image does not require grad. Backward ops are attributed
to the module whose forward op created the autograd node being run: the module stack marks the
autograd sequence number at every module entry and exit, and a backward op goes to the module that
was innermost when its node (`torch._C._current_autograd_node()`) got its sequence number. So
`blocks.0.attn.qkv` gets both gradient products of its linear, and `blocks.0.attn` those of q k^T and
scores @ v. FlopCounterMode's own table does it differently: its ModuleTracker enters a module in the
backward when the gradients of all its outputs are ready and leaves it when those of its inputs are,
and counts an op under every module entered at the time, by class-qualified name
(`VisionTransformer.blocks.0`), plus `Global`. Branches that run side by side in the backward then
share their ops: a residual block's shortcut conv is entered when the sum's gradient arrives and left
only after the main branch's backward has run, so it is charged with that backward as well (ResNet's
`downsample.0`; SwinV2's `cpb_mlp.1`, a ReLU, gets other layers' backward). Its totals are right; only
its total (`Global`) is used here, as in the forward.

Known defects: where one of FlopCounterMode's formulas is wrong against a hand derivation
(`counting_formulas.KNOWN_DEFECTS`: a grouped convolution's weight gradient), the pass records, per
path, how much FlopCounterMode counted beyond the hand-derived figure, so a check can show and name it.

The same pass also observes, per path, the non-matmul ops fvcore counts (LayerNorm elements, ...) by
fvcore's rules, so the torch pass can be re-expressed in the fvcore convention independently of the
jit trace. Compute-looking ops with no formula at all are reported as gaps, never dropped silently.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable
from typing import Any, NamedTuple

from vitcost.errors import VitcostError
from vitcost.measure.counting_formulas import (
    FVCORE_BILINEAR_FLOPS,
    FVCORE_BN_EVAL_FLOPS,
    FVCORE_NEAREST_FLOPS,
    FVCORE_POOL_FLOPS,
    SDPA_BACKWARD_OPS,
    SDPA_OPS,
    attention_backward_flops,
    attention_flops,
    conv_backward_flops,
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


def sdpa_backward_flop(grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any,
                       out_shape: Any = None, **kwargs: Any) -> int:
    """FlopCounterMode formula (called with shapes) for a fused SDPA kernel's backward:
    dO [b, h, Nq, d_v], q [b, h, Nq, d], k [b, h, Nk, d], v [b, h, Nk, d_v] -> 2 * b*h*Nq*Nk*(3d + 2d_v)."""
    return attention_backward_flops(grad_out_shape, query_shape, key_shape, value_shape)


def sdpa_custom_mapping(registry: dict[Any, Any]) -> dict[Any, Callable[..., int]]:
    """`custom_mapping` entries for the SDPA kernels (forward and backward) that `registry`
    (FlopCounterMode's) lacks."""
    import torch

    aten = torch.ops.aten
    formulas = {**{name: sdpa_flop for name in SDPA_OPS}, **{name: sdpa_backward_flop for name in SDPA_BACKWARD_OPS}}
    packets = {getattr(aten, name): f for name, f in formulas.items() if hasattr(aten, name)}
    return {p: f for p, f in packets.items() if p not in registry}


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


def _sequence_nr() -> int:
    """The autograd sequence number the next node created on this thread will get."""
    import torch

    return torch._C._autograd._get_sequence_nr()


class ModuleStack:
    """Which module is running: forward hooks push and pop each module's first dotted name.
    `order` lists paths in the order their forward first ran. Every push and pop also marks the
    autograd sequence number, so `path_of_node` can tell which module created an autograd node."""

    def __init__(self, module: Any) -> None:
        self.stack: list[str] = [""]
        self.order: dict[str, None] = {}
        self.marks: list[int] = [_sequence_nr()]  # ascending: the sequence number at each change of `top`
        self.marked: list[str] = [""]  # `top` from that mark on
        self._handles: list[Any] = []
        for name, mod in module.named_modules():  # first name of each instance, like fvcore's aliases
            self._handles.append(mod.register_forward_pre_hook(self._push(name)))
            self._handles.append(mod.register_forward_hook(self._pop, always_call=True))

    def _mark(self) -> None:
        self.marks.append(_sequence_nr())
        self.marked.append(self.top)

    def _push(self, name: str) -> Callable[..., None]:
        def hook(mod: Any, args: Any) -> None:
            self.stack.append(name)
            self.order.setdefault(name, None)
            self._mark()

        return hook

    def _pop(self, mod: Any, args: Any, out: Any) -> None:
        if len(self.stack) > 1:
            self.stack.pop()
            self._mark()

    @property
    def top(self) -> str:
        return self.stack[-1]

    def path_of_node(self, node: Any) -> str:
        """The module that was innermost when autograd `node` was created ("" for none: the loss, or a
        node made outside the forward)."""
        if node is None:
            return ""
        seq = node._sequence_nr()
        return self.marked[bisect_right(self.marks, seq) - 1] if seq >= self.marks[0] else ""

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


def _conv_backward_excess(args: tuple, counted: int) -> int:
    """How much FlopCounterMode counted for one `convolution_backward` beyond `conv_backward_flops`.
    convolution_backward(grad_output, input, weight, bias_sizes, stride, padding, dilation, transposed,
    output_padding, groups, output_mask)."""
    grad_out, x, weight, transposed, mask = args[0], args[1], args[2], args[7], args[10]
    return counted - conv_backward_flops(tuple(grad_out.shape), tuple(x.shape), tuple(weight.shape), transposed, mask)


class Tables(NamedTuple):
    """Where the attributing mode writes: self counts by phase, observed norms, gaps, known defects."""

    forward: dict[str, dict[str, int]]
    backward: dict[str, dict[str, int]]
    observed: dict[str, dict[str, int]]
    gaps: dict[str, int]
    defects: dict[str, dict[str, int]]


def _tables() -> Tables:
    def nested() -> dict:
        return defaultdict(lambda: defaultdict(int))

    return Tables(nested(), nested(), nested(), defaultdict(int), nested())


def _attributing_mode(counter: Any, modules: ModuleStack, tables: Tables, phase: list[str]) -> Any:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    rules = _fvcore_rules()
    conv_backward = torch.ops.aten.convolution_backward

    class AttributingMode(TorchDispatchMode):
        """Sits above FlopCounterMode: each op's count is the growth of FlopCounterMode's total."""

        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
            before = counter.get_total_flops()
            out = func(*args, **(kwargs or {}))
            packet = func._overloadpacket
            name = packet.__name__
            grown = counter.get_total_flops() - before
            backward = phase[0] == "backward"
            path = modules.path_of_node(torch._C._current_autograd_node()) if backward else modules.top
            if grown:
                (tables.backward if backward else tables.forward)[path][name] += grown
            elif packet not in counter.flop_registry and _COMPUTE_OP.match(name):
                tables.gaps[f"aten::{name}"] += 1
            if packet is conv_backward and grown:
                excess = _conv_backward_excess(args, grown)
                if excess:
                    tables.defects[path][name] += excess
            rule = rules.get(packet)
            if rule is not None and not backward:
                tables.observed[path][name] += rule(args, out)
            return out

    return AttributingMode()


class TorchPass(NamedTuple):
    """What one forward (or training step) under FlopCounterMode gives."""

    table: dict[str, dict[str, int]]  # self counts {path: {op: flops}}, torch convention, forward + backward
    observed: dict[str, dict[str, int]]  # non-matmul ops of the forward by fvcore's rules {path: {op: count}}
    gaps: dict[str, int]  # compute ops without a formula {op: calls}
    order: list[str]  # module paths in the order their forward first ran
    backward: dict[str, dict[str, int]] | None = None  # training step: the backward's share of `table`
    defects: dict[str, dict[str, int]] | None = None  # training step: {path: {op: flops over the hand figure}}


def training_loss(out: Any) -> Any:
    """The scalar a training step differentiates: every floating output summed in float32, outside
    every module (its own few adds are not a layer's)."""
    import torch
    from torch.utils._pytree import tree_leaves

    leaves = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.requires_grad]
    if not leaves:
        raise VitcostError("the model's output does not depend on any parameter; there is no backward to count.")
    return sum(t.float().sum() for t in leaves)


def _merged(*tables: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for table in tables:
        for path, ops in table.items():
            mine = out.setdefault(path, {})
            for op, n in ops.items():
                mine[op] = mine.get(op, 0) + n
    return out


def _plain(table: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {p: dict(ops) for p, ops in table.items()}


def count_torch(module: Any, inputs: tuple[Any, ...], train: bool = False) -> TorchPass:
    """Count one forward of `module(*inputs)` under FlopCounterMode, attributed per path; with `train`,
    one training step (forward, `training_loss`, backward) in the module's current train/eval mode,
    its parameters' `.grad` left as they were."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    probe = FlopCounterMode(display=False)
    counter = FlopCounterMode(display=False, custom_mapping=sdpa_custom_mapping(probe.flop_registry))
    tables = _tables()
    phase = ["forward"]
    modules = ModuleStack(module)
    grads = [(p, p.grad) for p in module.parameters()]
    try:
        with torch.enable_grad() if train else torch.no_grad(), counter, \
                _attributing_mode(counter, modules, tables, phase):
            out = module(*inputs)
            if train:
                loss = training_loss(out)
                phase[0] = "backward"
                loss.backward()
    finally:
        modules.remove()
        for p, g in grads:
            p.grad = g
    table = _merged(tables.forward, tables.backward)
    attributed = sum(sum(ops.values()) for ops in table.values())
    if attributed != counter.get_total_flops():  # e.g. ops counted inside a higher-order op's branches
        raise VitcostError(f"FlopCounterMode counted {counter.get_total_flops():,} but only {attributed:,} could be "
                           "attributed to modules; this model's torch counts cannot be split by layer.")
    return TorchPass(table, _plain(tables.observed), dict(tables.gaps), list(modules.order),
                     _plain(tables.backward) if train else None, _plain(tables.defects) if train else None)
