"""`count`: what fvcore and torch's FlopCounterMode say a torch module costs, per dotted module path.

Both counters run on the same module and input (a real forward, or a forward on the meta device when
the real one would not fit), and their counts are kept as *self* counts: the ops run by a module's own
forward, not by its children (so `blocks.3.attn`'s QK^T and AV are separate from `blocks.3.attn.qkv`).
The query methods follow fvcore's: `total()`, `by_module()` (inclusive, like fvcore), `by_operator()`,
plus `self_counts()` and `unsupported`.

Each backend counts in its own convention: fvcore 1 per MAC plus 5 per LayerNorm element (with
fused attention counted, which stock fvcore drops), torch 2 per MAC. `self_counts(backend, convention)`
re-expresses either in `macs`, `fvcore` or `torch`: fvcore's MAC ops are known by name, and the torch
pass observes the LayerNorm elements itself, so the two backends give two independent counts in
every convention.

A training step (`mode="train"`) is counted by FlopCounterMode alone: fvcore traces the forward only
and has no formulas for backward ops. Its self counts hold each module's forward ops plus the backward
ops of the autograd nodes its forward created (`counting_torch`); `phase_counts` splits the two, and
`known_defects` gives what FlopCounterMode counted beyond the hand-derived figure where one of its
formulas is known to be wrong (`counting_formulas.KNOWN_DEFECTS`).

>>> c = count(model, (1, 3, 224, 224))
>>> c.total("fvcore"), c.total("torch"), c.method, c.unsupported
>>> t = count(model, (2, 3, 224, 224), mode="train")
>>> t.total("torch"), t.phase_counts("backward"), t.known_defects()
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vitcost.analytic.cost import FLOPS_PER_MAC
from vitcost.errors import VitcostError
from vitcost.measure.counting_formulas import FVCORE_MAC_OPS
from vitcost.vocab import RunMode, parse_run_mode

BACKENDS: tuple[str, ...] = ("fvcore", "torch")
METHODS: tuple[str, ...] = ("auto", "real", "meta")
MODES: tuple[str, ...] = tuple(m.value for m in RunMode)  # one forward; one training step (forward + backward)
PHASES: tuple[str, ...] = ("forward", "backward")
# The conventions a counter can give: `flops` also counts softmax, GELU and adds, which neither sees.
COUNTED_CONVENTIONS: tuple[str, ...] = ("macs", "fvcore", "torch")


def _in_subtree(path: str, root: str) -> bool:
    return root == "" or path == root or path.startswith(root + ".")


@dataclass(frozen=True)
class Counts:
    """Per-path self counts of one forward, by backend and operator."""

    method: str  # "real": a forward on real tensors; "meta": a forward on the meta device
    input_shapes: tuple[tuple[int, ...], ...]
    backends: tuple[str, ...]
    tables: dict[str, dict[str, dict[str, int]]]  # backend -> path -> op -> self count, backend's convention
    observed: dict[str, dict[str, int]]  # torch pass: non-matmul ops fvcore counts, by fvcore's rules
    unsupported_by_backend: dict[str, dict[str, int]]  # backend -> op -> calls it could not count
    paths: tuple[str, ...]  # every module path, in the order its forward first ran
    fvcore_via: str | None = None  # "jit": fvcore's FlopCountAnalysis; "dispatch": its rules on the torch pass
    predicted_bytes: int | None = None  # predicted memory of a real forward, when method was "auto"
    budget_bytes: int | None = None  # the memory budget the prediction was held against
    mode: str = "inference"  # one forward; "train": forward + backward (torch backend only)
    backward: dict[str, dict[str, int]] | None = None  # train: the torch table's backward share, by path and op
    defects: dict[str, dict[str, int]] | None = None  # train: {path: {op: flops counted beyond the hand figure}}

    def _backend(self, backend: str | None) -> str:
        if backend is None:
            return self.backends[0]
        if backend not in self.tables:
            raise VitcostError(f"backend {backend!r} was not counted; counted: {', '.join(self.backends)}.")
        return backend

    @property
    def unsupported(self) -> dict[str, int]:
        """Ops some backend saw and could not count {op: calls} (the larger count where both report
        one). fvcore lists every op it has no handle for, including the ones its convention leaves
        out on purpose (softmax, GELU, adds); the torch pass lists only compute ops with no formula."""
        out: dict[str, int] = {}
        for ops in self.unsupported_by_backend.values():
            for op, n in ops.items():
                out[op] = max(out.get(op, 0), n)
        return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))

    def self_counts(self, backend: str | None = None, convention: str | None = None) -> dict[str, int]:
        """{path: count} of each module's own ops, forward order, in `convention` (default: the
        backend's own). Paths with nothing counted are left out."""
        backend = self._backend(backend)
        counted = self._counted_paths(backend)
        out = {}
        for path in [*(p for p in self.paths if p in counted), *(p for p in counted if p not in self.paths)]:
            n = self._path_count(backend, path, convention)
            if n:
                out[path] = n
        return out

    def _counted_paths(self, backend: str) -> dict[str, None]:
        """Paths with any count: the backend's table, plus the torch pass's observed norms."""
        extra = self.observed if backend == "torch" else {}
        return dict.fromkeys([*self.tables[backend], *extra])

    def _path_count(self, backend: str, path: str, convention: str | None) -> int:
        ops = self.tables[backend].get(path, {})
        convention = convention or backend
        if convention not in COUNTED_CONVENTIONS:
            raise VitcostError(f"the {convention!r} convention cannot be counted; use one of "
                               f"{', '.join(COUNTED_CONVENTIONS)} (flops also counts softmax, GELU and adds, "
                               "which neither counter sees).")
        if self.mode == "train":
            _torch_scale(convention)  # a training step has no fvcore count
        if backend == "fvcore":
            macs = sum(n for op, n in ops.items() if op in FVCORE_MAC_OPS)
            if convention == "fvcore":
                return sum(ops.values())
            return macs if convention == "macs" else FLOPS_PER_MAC * macs
        flops = sum(ops.values())
        if convention == "torch":
            return flops
        macs = flops // FLOPS_PER_MAC
        return macs if convention == "macs" else macs + sum(self.observed.get(path, {}).values())

    def phase_counts(self, phase: str, convention: str = "torch") -> dict[str, int]:
        """Train mode: {path: count} of the forward's or the backward's ops alone (FlopCounterMode's
        counts, in `torch` or `macs`). Paths with nothing counted are left out."""
        if self.mode != "train" or self.backward is None:
            raise VitcostError("phase counts need a training step: count with mode='train'.")
        if phase not in PHASES:
            raise VitcostError(f"unknown phase {phase!r}; choose from {', '.join(PHASES)}.")
        scale = _torch_scale(convention)
        out = {}
        for path, ops in self.tables["torch"].items():
            bwd = sum(self.backward.get(path, {}).values())
            n = bwd if phase == "backward" else sum(ops.values()) - bwd
            if n:
                out[path] = n // scale
        return out

    def known_defects(self, convention: str = "torch") -> dict[str, dict[str, int]]:
        """Train mode: {path: {op: count}} that FlopCounterMode counted beyond the hand-derived figure,
        where one of its formulas is known to be wrong (see `counting_formulas.KNOWN_DEFECTS`)."""
        scale = _torch_scale(convention)
        return {p: {op: n // scale for op, n in ops.items()} for p, ops in (self.defects or {}).items()}

    def total(self, backend: str | None = None, convention: str | None = None) -> int:
        """The whole forward's count (default: the first backend, in its own convention)."""
        backend = self._backend(backend)
        return sum(self._path_count(backend, p, convention) for p in self._counted_paths(backend))

    def by_module(self, backend: str | None = None, convention: str | None = None) -> dict[str, int]:
        """{path: count} including each module's descendants, like fvcore's `by_module()`; every
        module path appears (uncounted ones with 0), forward order."""
        own = self.self_counts(backend, convention)
        return {root: sum(n for p, n in own.items() if _in_subtree(p, root)) for root in self.paths}

    def by_operator(self, backend: str | None = None, module: str = "") -> dict[str, int]:
        """{operator: count} over `module` and its descendants, in the backend's own convention."""
        backend = self._backend(backend)
        out: dict[str, int] = {}
        for path, ops in self.tables[backend].items():
            if _in_subtree(path, module):
                for op, n in ops.items():
                    out[op] = out.get(op, 0) + n
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _torch_scale(convention: str) -> int:
    """What FlopCounterMode's counts are divided by to give `convention` (torch or macs)."""
    if convention not in ("torch", "macs"):
        raise VitcostError(f"a training step is counted by FlopCounterMode alone, in the torch or macs convention, "
                           f"not {convention!r} (fvcore counts no backward).")
    return 1 if convention == "torch" else FLOPS_PER_MAC


def _check_options(method: str, backends: Any, mode: str = "inference") -> tuple[str, ...]:
    if method not in METHODS:
        raise VitcostError(f"unknown counting method {method!r}; choose from {', '.join(METHODS)}.")
    mode = parse_run_mode(mode).value
    if backends is None:
        backends = BACKENDS if mode == "inference" else ("torch",)
    if mode == "train" and "fvcore" in ((backends,) if isinstance(backends, str) else tuple(backends)):
        raise VitcostError("fvcore counts no backward: a training step is counted by FlopCounterMode alone "
                           "(backends='torch').")
    if isinstance(backends, str):
        backends = (backends,)
    backends = tuple(dict.fromkeys(backends))
    if not backends or any(b not in BACKENDS for b in backends):
        raise VitcostError(f"backends must be one or more of {', '.join(BACKENDS)}, got {backends!r}.")
    return backends


def _model_failed(shapes: tuple[tuple[int, ...], ...], e: Exception) -> VitcostError:
    from vitcost.measure.counting_meta import first_line

    shown = ", ".join("x".join(map(str, s)) for s in shapes)
    return VitcostError(f"the model's forward failed on input {shown}: {type(e).__name__}: {first_line(e)}")


def _plan(module: Any, given: Any, method: str, budget_bytes: int | None, shapes: tuple[tuple[int, ...], ...],
          backends: tuple[str, ...], train: bool = False) -> tuple[str, Any, int | None, int | None]:
    """(method, module to run, predicted bytes, budget): resolve "auto", copy to meta where needed, and
    refuse a real count that might not fit (`counting_meta.fits`)."""
    import torch

    from vitcost.measure import counting_meta as cm

    tensors = [t for t in (given if isinstance(given, (tuple, list)) else (given,)) if isinstance(t, torch.Tensor)]
    on_meta = cm.is_meta(module, tensors)
    if method == "real" and on_meta:
        raise VitcostError("a model or input on the meta device can only be counted with method='meta'.")
    if method == "meta" or on_meta:
        return "meta", cm.to_meta(module), None, None
    meta_module = cm.to_meta(module)
    try:
        predicted = cm.predict_count_bytes(meta_module, cm.make_inputs(given, meta=True, dtype=cm.float_dtype(module)),
                                           backends, train)
    except Exception as e:
        raise _model_failed(shapes, e) from None
    budget = cm.memory_budget() if budget_bytes is None else budget_bytes
    if cm.fits(predicted, budget):
        return "real", module, predicted, budget
    if method == "real":
        raise VitcostError(cm.too_large(predicted, budget_bytes))
    return "meta", meta_module, predicted, budget


def count(module: Any, input_shape_or_tensor: Any, *, method: str = "auto",
          backends: tuple[str, ...] | list[str] | str | None = None, budget_bytes: int | None = None,
          mode: str = "inference") -> Counts:
    """Count one forward of `module` on an input of the given shape (a random tensor) or on the given
    tensor(s), with fvcore and/or FlopCounterMode (default: both), per dotted module path.

    mode "train" counts one training step instead, with FlopCounterMode alone (fvcore counts no backward):
    the module in train mode (its mode is restored afterwards), the forward with autograd on, the loss
    `sum(out.float().sum())` and its backward; the input does not require grad, and the parameters'
    `.grad` are left as they were.

    method: "real" runs a real forward; "meta" runs it on the meta device (nothing is allocated; the
    module is copied to meta, the original is untouched); "auto" picks meta when a real count might not
    fit: 1.5x its predicted memory (`counting_meta.predict_count_bytes`; in train mode of a whole training
    step) exceeds `budget_bytes` (default: the least of the available memory, the address-space limit and
    the cgroup's memory.max), and always meta for a module or input already on the meta device; "real"
    refuses such a count before allocating anything. `Counts.method` says which ran. In mode "inference" the
    module is counted in its current train/eval mode.
    """
    import torch

    from vitcost.measure import counting_meta as cm

    backends = _check_options(method, backends, mode)
    train = mode == "train"
    if not isinstance(module, torch.nn.Module):
        raise VitcostError(f"expected a torch.nn.Module to count, got {type(module).__name__}.")
    shapes = cm.input_shapes(input_shape_or_tensor)
    if any(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in module.parameters()):
        raise VitcostError("the model has uninitialised (lazy) parameters; run one forward on a real input "
                           "before counting it.")
    try:
        method, run_module, predicted, budget = _plan(module, input_shape_or_tensor, method, budget_bytes, shapes,
                                                      backends, train)
        inputs = cm.make_inputs(input_shape_or_tensor, meta=method == "meta", dtype=cm.float_dtype(module))
    except VitcostError:
        raise
    except Exception as e:  # the user's module or an input too large to allocate: one line, not a traceback
        hint = " (use method 'meta' to count without allocating)" if _is_allocation_failure(e) else ""
        raise VitcostError(f"{_model_failed(shapes, e)}{hint}") from None
    if not train:
        return _run_backends(run_module, inputs, shapes, method, backends, predicted, budget)
    was_training = run_module.training
    run_module.train()
    try:
        return _run_backends(run_module, inputs, shapes, method, backends, predicted, budget, train=True)
    finally:
        run_module.train(was_training)


def _is_allocation_failure(e: BaseException) -> bool:
    text = str(e).lower()
    return isinstance(e, MemoryError) or "allocate" in text or "out of memory" in text


def _fvcore_via_dispatch(run: Any) -> dict[str, dict[str, int]]:
    """fvcore's convention from the torch pass: each matmul/conv/attention op's MACs (FlopCounterMode
    counts 2 per MAC) plus the non-matmul ops by fvcore's rules, per path, keyed by aten op name."""
    from vitcost.measure.counting_formulas import macs_from_torch

    table: dict[str, dict[str, int]] = {}
    for path in dict.fromkeys([*run.table, *run.observed]):
        ops = {op: macs_from_torch(n) for op, n in run.table.get(path, {}).items()}
        ops.update(run.observed.get(path, {}))
        table[path] = ops
    return table


def _run_backends(module: Any, inputs: tuple[Any, ...], shapes: tuple[tuple[int, ...], ...], method: str,
                  backends: tuple[str, ...], predicted: int | None, budget: int | None, train: bool = False
                  ) -> Counts:
    """Run the requested counters. torch goes first: a plain forward gives the clearest error when the
    model rejects the input. If fvcore's jit trace cannot run (torch's Python meta kernel for
    convolution breaks under the tracer, so every conv model on meta; or a model jit cannot trace),
    fvcore's counts come from its rules applied to the torch pass, and `fvcore_via` says so."""
    from vitcost.measure.counting_fvcore import count_fvcore
    from vitcost.measure.counting_torch import count_torch

    def torch_pass() -> Any:
        try:
            return count_torch(module, inputs, train)
        except VitcostError:
            raise
        except Exception as e:
            raise _model_failed(shapes, e) from None

    tables: dict[str, dict[str, dict[str, int]]] = {}
    unsupported: dict[str, dict[str, int]] = {}
    run = torch_pass() if "torch" in backends else None
    if run is not None:
        tables["torch"], unsupported["torch"] = run.table, run.gaps
    fvcore_via = None
    if "fvcore" in backends:
        try:
            tables["fvcore"], unsupported["fvcore"] = count_fvcore(module, inputs)
            fvcore_via = "jit"
        except VitcostError:
            raise
        except Exception:
            run = run or torch_pass()  # the model itself may be at fault: then this raises
            tables["fvcore"], unsupported["fvcore"] = _fvcore_via_dispatch(run), dict(run.gaps)
            fvcore_via = "dispatch"
    named = [name for name, _ in module.named_modules()]
    paths = tuple(dict.fromkeys([*(run.order if run else []), *named]))
    return Counts(method=method, input_shapes=shapes, backends=tuple(b for b in BACKENDS if b in backends),
                  tables=tables, observed=run.observed if run else {}, unsupported_by_backend=unsupported,
                  paths=paths, fvcore_via=fvcore_via, predicted_bytes=predicted, budget_bytes=budget,
                  mode="train" if train else "inference", backward=run.backward if run else None,
                  defects=run.defects if run else None)
