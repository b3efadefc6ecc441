"""The cross-check: the analytic estimate joined, layer by layer, with what fvcore and FlopCounterMode
count on the torch reference model built from the same spec.

Both sides name a layer by the dotted path of the module that runs it, so the join is on the path:
analytic `Estimate.by_layer(convention)` against the counted self counts (`Counts.self_counts`).
A layer agrees when |counted - analytic| <= tol * |analytic| for both counters (tol = 0: exactly);
the check passes when every layer and both totals agree, and otherwise names the first layer, in
forward order, that does not.

`mode="train"` checks one training step (forward, `loss = out.float().sum()`, backward; train mode; the
reference nets have no dropout) against FlopCounterMode alone, since fvcore counts no backward, in the
torch or macs convention: the analytic side is `Estimate.train_cost` (`vitcost.analytic.training`), the
counted side each module's forward ops plus the backward ops of the autograd nodes its forward created.
Where FlopCounterMode's formula is known to be wrong (`counting_formulas.KNOWN_DEFECTS`: a grouped or
depthwise convolution's weight gradient, counted groups times), the layer shows the difference and
names the op; it agrees when the difference is exactly what FlopCounterMode counted beyond the
hand-derived figure for that op (`known`), and the summary lists every such layer. On the sdpa path the
analytic kernel is what torch runs: on the CPU the fused kernel, or the math composite for a call whose
additive mask needs a gradient; on the meta device (no fused kernels) always the math composite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vitcost.errors import VitcostError
from vitcost.measure.counting import COUNTED_CONVENTIONS, Counts
from vitcost.vocab import Kernel, frames, parse_run_mode, res_label

ATTN_PATHS: tuple[str, ...] = tuple(dict.fromkeys(k.net_mode for k in Kernel))  # the nets' paths: math, sdpa
COUNTERS: tuple[str, ...] = ("fvcore", "torch")
TRAIN_CHECK_CONVENTIONS: tuple[str, ...] = ("torch", "macs")  # a training step is counted by FlopCounterMode alone


def agrees(counted: int, analytic: int, tol: float) -> bool:
    """|counted - analytic| <= tol * |analytic|; with tol = 0, equality."""
    return abs(counted - analytic) <= tol * abs(analytic)


@dataclass(frozen=True)
class LayerCheck:
    """One dotted path: its analytic count and each counter's self count, in one convention. A training
    step (`forward` set) has no fvcore count (None); `known` is what FlopCounterMode counted beyond the
    hand-derived figure where its formula is known to be wrong, and `forward`/`backward` the
    (analytic, torch) split of the step."""

    path: str
    analytic: int
    fvcore: int | None
    torch: int
    known: int = 0
    forward: tuple[int, int] | None = None
    backward: tuple[int, int] | None = None

    def ok(self, tol: float) -> bool:
        fvcore_ok = self.fvcore is None or agrees(self.fvcore, self.analytic, tol)
        return fvcore_ok and agrees(self.torch - self.known, self.analytic, tol)

    @property
    def explained(self) -> bool:
        """The torch count differs from the analytic one by a known FlopCounterMode defect."""
        return self.known != 0

    def row(self) -> dict[str, Any]:
        if self.forward is None:
            return {"path": self.path, "analytic": self.analytic, "fvcore": self.fvcore, "torch": self.torch,
                    "fvcore_diff": self.fvcore - self.analytic, "torch_diff": self.torch - self.analytic}
        return {"path": self.path, "analytic": self.analytic, "analytic_forward": self.forward[0],
                "analytic_backward": self.backward[0], "torch": self.torch, "torch_forward": self.forward[1],
                "torch_backward": self.backward[1], "torch_diff": self.torch - self.analytic,
                "known_defect": self.known}


@dataclass(frozen=True)
class CheckResult:
    """One model x resolution x batch x attention path, checked in one convention."""

    model: str
    family: str
    res: tuple[int, int]
    batch: int
    attn: str
    convention: str
    tol: float
    analytic: int
    fvcore: int | None  # None for a training step: fvcore counts no backward
    torch: int
    layers: tuple[LayerCheck, ...]
    counts: Counts
    mode: str = "inference"  # one forward; "train": one training step
    kernel: str = ""  # train: the analytic attention kernel checked (see the module docstring)
    forward: tuple[int, int] | None = None  # train: (analytic, torch) totals of the forward
    backward: tuple[int, int] | None = None  # train: (analytic, torch) totals of the backward

    @property
    def known(self) -> int:
        """What FlopCounterMode counted beyond the hand-derived figures, over all layers (known defects)."""
        return sum(layer.known for layer in self.layers)

    @property
    def known_defects(self) -> list[dict[str, Any]]:
        """Every layer whose torch count carries a known FlopCounterMode defect: path, op, excess, what."""
        from vitcost.measure.counting_formulas import KNOWN_DEFECTS

        scale = 1 if self.convention == "torch" else 2
        defects = self.counts.defects or {}
        paths = dict.fromkeys([*(layer.path for layer in self.layers), *defects])  # forward order
        return [{"path": path, "op": op, "excess": n // scale, "defect": KNOWN_DEFECTS.get(op, "")}
                for path in paths for op, n in defects.get(path, {}).items()]

    @property
    def method(self) -> str:
        return self.counts.method

    @property
    def first_mismatch(self) -> str | None:
        """The first layer in forward order that disagrees; "(total)" if only the totals do."""
        for layer in self.layers:
            if not layer.ok(self.tol):
                return layer.path or "(root)"
        fvcore_ok = self.fvcore is None or agrees(self.fvcore, self.analytic, self.tol)
        if not (fvcore_ok and agrees(self.torch - self.known, self.analytic, self.tol)):
            return "(total)"
        return None

    @property
    def status(self) -> str:
        return "PASS" if self.first_mismatch is None else "FAIL"

    def row(self, by_layer: bool = False) -> dict[str, Any]:
        """The JSON/CSV row. `*_diff` are |counted - analytic| (non-negative, as reports read them);
        `unsupported_ops` maps each op a counter saw but did not count to its number of calls."""
        h, w = self.res
        row: dict[str, Any] = {
            "model": self.model, "family": self.family, "res": res_label(self.res), "frames": frames(self.res),
            "batch": self.batch,
            "attn": self.attn, "convention": self.convention, "analytic": self.analytic, "fvcore": self.fvcore,
            "torch": self.torch, "fvcore_diff": abs(self.fvcore - self.analytic) if self.fvcore is not None else None,
            "torch_diff": abs(self.torch - self.analytic), "method": self.method,
            "fvcore_via": self.counts.fvcore_via, "tol": self.tol, "status": self.status,
            "first_mismatch": self.first_mismatch, "unsupported_ops": self.counts.unsupported,
        }
        if self.mode == "train":
            row.update({"fvcore": None, "fvcore_diff": None, "mode": "train", "kernel": self.kernel,
                        "analytic_forward": self.forward[0], "analytic_backward": self.backward[0],
                        "torch_forward": self.forward[1], "torch_backward": self.backward[1],
                        "known_defect": self.known, "known_defects": self.known_defects})
        if by_layer:
            row["layers"] = [layer.row() for layer in self.layers]
        return row


def join_layers(analytic: dict[str, int], fvcore: dict[str, int], torch: dict[str, int]) -> tuple[LayerCheck, ...]:
    """One LayerCheck per path any side counts: analytic order (the forward order of the walker),
    then paths only the counters know, in their order."""
    paths = dict.fromkeys([*analytic, *fvcore, *torch])
    rows = (LayerCheck(p, analytic.get(p, 0), fvcore.get(p, 0), torch.get(p, 0)) for p in paths)
    return tuple(r for r in rows if r.analytic or r.fvcore or r.torch)


def join_train_layers(analytic: dict[str, tuple[int, int]], counted: dict[str, tuple[int, int]],
                      known: dict[str, int]) -> tuple[LayerCheck, ...]:
    """One LayerCheck per path either side counts in a training step, from {path: (forward, backward)}
    of each side and the known-defect excess per path: analytic order, then paths only the counter knows."""
    rows = []
    for p in dict.fromkeys([*analytic, *counted]):
        (af, ab), (tf, tb) = analytic.get(p, (0, 0)), counted.get(p, (0, 0))
        if af or ab or tf or tb:
            rows.append(LayerCheck(p, af + ab, None, tf + tb, known.get(p, 0), (af, tf), (ab, tb)))
    return tuple(rows)


def choose_method(method: str, meta_net: Any, shape: tuple[int, ...], budget_bytes: int | None = None,
                  mode: str = "inference") -> str:
    """"real" or "meta" for counting the reference net (given on the meta device) on `shape`: `auto` is
    meta when a real count might not fit (`counting_meta.fits`: 1.5x the predicted memory of both
    counters, or of FlopCounterMode's training step in mode "train", against the least of the memory
    limits); "real" refuses such a count."""
    from vitcost.measure import counting_meta as cm
    from vitcost.measure.counting import METHODS

    if method not in METHODS:
        raise VitcostError(f"unknown counting method {method!r}; choose from {', '.join(METHODS)}.")
    if method == "meta":
        return method
    inputs = cm.make_inputs(shape, meta=True, dtype=cm.float_dtype(meta_net))
    train = mode == "train"
    predicted = cm.predict_count_bytes(meta_net, inputs, ("torch",) if train else COUNTERS, train)
    budget = cm.memory_budget() if budget_bytes is None else budget_bytes
    if cm.fits(predicted, budget):
        return "real"
    if method == "real":
        raise VitcostError(cm.too_large(predicted, budget_bytes))
    return "meta"


TORCH_MAX_ELEMENTS = 2**63  # torch indexes a tensor's elements with a signed 64-bit integer


def check_countable(est: Any) -> None:
    """A one-line error when a tensor of the design's forward is too large for torch to build at all."""
    largest = max((max(op.out, op.inp, op.cost.params) for op in est.ops), default=0)
    if largest >= TORCH_MAX_ELEMENTS:
        raise VitcostError(f"{est.model} at {res_label(est.res)} has a tensor of {largest:.3g} elements, more than "
                           "torch can index (2^63): it cannot be built to count; its analytic figures are compare's.")


def check_model(model: Any, res: Any = 224, batch: int = 1, attn: str = "math", convention: str = "fvcore",
                tol: float = 0.0, method: str = "auto", budget_bytes: int | None = None, mode: str = "inference"
                ) -> CheckResult:
    """Count the reference model of `model` (a design: preset, spec file, overrides or spec) on
    [batch, C, H, W] with the `attn` attention path, and join the counts with the analytic estimate in `convention`.
    `mode="train"`: one training step, against FlopCounterMode alone (torch or macs convention)."""
    from vitcost.analytic.estimate import evaluate
    from vitcost.design import parse_design
    from vitcost.measure.counting import count
    from vitcost.nets import build
    from vitcost.vocab import parse_res, whole

    mode = parse_run_mode(mode).value
    if mode == "train" and convention not in TRAIN_CHECK_CONVENTIONS:
        raise VitcostError(f"fvcore counts no backward: check a training step in the "
                           f"{' or '.join(TRAIN_CHECK_CONVENTIONS)} convention, not {convention!r}.")
    if convention not in COUNTED_CONVENTIONS:
        raise VitcostError(f"cannot check the {convention!r} convention; use one of {', '.join(COUNTED_CONVENTIONS)}.")
    if attn not in ATTN_PATHS:
        raise VitcostError(f"unknown attention path {attn!r}; choose from {', '.join(ATTN_PATHS)}.")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise VitcostError(f"tolerance must be a number of at least 0, got {tol!r}.")
    est = evaluate(parse_design(model), parse_res(res), whole(batch, "batch"))
    check_countable(est)
    meta_net = build(est.design, est.res, attn=attn, device="meta")
    meta_net.train(mode == "train")
    chosen = choose_method(method, meta_net, est.input_shape, budget_bytes, mode)
    if mode == "train":
        return _check_train(est, batch, attn, convention, float(tol), chosen)
    net = meta_net if chosen == "meta" else build(est.design, est.res, attn=attn).eval()
    counts = count(net, est.input_shape, method=chosen)
    analytic = {p: n for p, n in est.by_layer(convention).items() if n}
    fv, tc = counts.self_counts("fvcore", convention), counts.self_counts("torch", convention)
    return CheckResult(model=est.model, family=est.family, res=est.res, batch=batch, attn=attn,
                       convention=convention, tol=float(tol), analytic=est.count(convention),
                       fvcore=counts.total("fvcore", convention), torch=counts.total("torch", convention),
                       layers=join_layers(analytic, fv, tc), counts=counts)


def _check_train(est: Any, batch: int, attn: str, convention: str, tol: float, method: str) -> CheckResult:
    from vitcost.measure.counting import count
    from vitcost.nets import build

    net = build(est.design, est.res, attn=attn, device="meta" if method == "meta" else None).train()
    counts = count(net, est.input_shape, method=method, backends=("torch",), mode="train")
    from vitcost.analytic.kernels import counted_kernel

    kernel = counted_kernel(attn, counts.method)
    step = est.train_cost(kernel)
    af, ab = step.by_layer(convention, "forward"), step.by_layer(convention, "backward")
    analytic = {p: (af.get(p, 0), ab.get(p, 0)) for p in dict.fromkeys([*af, *ab])}
    tf, tb = counts.phase_counts("forward", convention), counts.phase_counts("backward", convention)
    counted = {p: (tf.get(p, 0), tb.get(p, 0)) for p in dict.fromkeys([*tf, *tb])}
    known = {p: sum(ops.values()) for p, ops in counts.known_defects(convention).items()}
    forward = (step.count(convention, "forward"), sum(tf.values()))
    backward = (step.count(convention, "backward"), sum(tb.values()))
    return CheckResult(model=est.model, family=est.family, res=est.res, batch=batch, attn=attn,
                       convention=convention, tol=tol, analytic=forward[0] + backward[0], fvcore=None,
                       torch=counts.total("torch", convention), layers=join_train_layers(analytic, counted, known),
                       counts=counts, mode="train", kernel=kernel, forward=forward, backward=backward)
