"""The fvcore backend: `FlopCountAnalysis` with handles for fused attention, as self counts per path.

fvcore jit-traces the forward and attributes every aten op to the module that ran it and to that
module's owners, so `by_module_and_operator()` gives *inclusive* counts keyed by dotted names (a module
reused under several names takes its first name). Self counts are a module's inclusive count minus its
direct children's; the self counts of all modules sum to the total exactly.

Stock fvcore has no handle for scaled-dot-product attention and silently counts 0 for it (DeiT-B with
fused attention: 16.87G instead of 17.58G). `SDPA_HANDLES` restores it with `attention_macs`, so a model
counts the same with fused and with explicit attention. Every other op keeps fvcore's default handle.
The trace works on meta tensors too, so the same code counts a model that could not be allocated.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from typing import Any

from vitcost.measure.counting_formulas import SDPA_OPS, attention_macs


def _shape(value: Any) -> list[int]:
    """The concrete shape of a jit value (fvcore handles see `torch._C.Value`s, not tensors)."""
    from fvcore.nn.jit_handles import get_shape

    shape = get_shape(value)
    if shape is None:
        raise ValueError("attention input without a concrete shape in the trace")
    return list(shape)


def sdpa_flop_jit(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle for every SDPA variant: the first three inputs are always query, key, value.
    q: [b, h, Nq, d], k: [b, h, Nk, d], v: [b, h, Nk, d_v] -> b*h*Nq*Nk*(d + d_v) MACs."""
    query, key, value = inputs[:3]
    return attention_macs(_shape(query), _shape(key), _shape(value))


SDPA_HANDLES: dict[str, Any] = {f"aten::{name}": sdpa_flop_jit for name in SDPA_OPS}


def fvcore_analysis(module: Any, inputs: tuple[Any, ...]) -> Any:
    """A quiet `FlopCountAnalysis` with the fused-attention handles added (nothing else changed)."""
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(module, inputs).set_op_handle(**SDPA_HANDLES)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.tracer_warnings("none")
    return analysis


def _parent(path: str) -> str | None:
    if path == "":
        return None
    return path.rsplit(".", 1)[0] if "." in path else ""


def self_counts_from_inclusive(inclusive: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """self[m][op] = inclusive[m][op] - sum of inclusive[c][op] over the direct children c of m.

    Children are found from the dotted names themselves (`a.b` is the parent of `a.b.c`); zero
    entries are dropped."""
    children: dict[str, list[str]] = defaultdict(list)
    for path in inclusive:
        parent = _parent(path)
        if parent is not None:
            children[parent].append(path)
    out: dict[str, dict[str, int]] = {}
    for path, ops in inclusive.items():
        own = dict(ops)
        for child in children[path]:
            for op, n in inclusive[child].items():
                own[op] = own.get(op, 0) - n
        own = {op: n for op, n in own.items() if n}
        if own:
            out[path] = own
    return out


def _exact(n: float | int) -> int:
    """fvcore's einsum handle returns floats of whole numbers; keep counts as exact ints."""
    return int(round(n))


def count_fvcore(module: Any, inputs: tuple[Any, ...]) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Self counts {path: {op: count}} in fvcore's convention and fvcore's unsupported ops {op: calls}."""
    analysis = fvcore_analysis(module, inputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inclusive = {path: {op: _exact(n) for op, n in ops.items()}
                     for path, ops in analysis.by_module_and_operator().items()}
        unsupported = dict(analysis.unsupported_ops(""))
    return self_counts_from_inclusive(inclusive), unsupported
