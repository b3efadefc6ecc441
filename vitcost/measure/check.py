"""The cross-check: the analytic estimate joined, layer by layer, with what fvcore and FlopCounterMode
count on the torch reference model built from the same spec.

Both sides name a layer by the dotted path of the module that runs it, so the join is on the path:
analytic `Estimate.by_layer(convention)` against the counted self counts (`Counts.self_counts`).
A layer agrees when |counted - analytic| <= tol * |analytic| for both counters (tol = 0: exactly);
the check passes when every layer and both totals agree, and otherwise names the first layer, in
forward order, that does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vitcost.errors import VitcostError
from vitcost.measure.counting import COUNTED_CONVENTIONS, Counts
from vitcost.vocab import Kernel, res_label

ATTN_PATHS: tuple[str, ...] = tuple(dict.fromkeys(k.net_mode for k in Kernel))  # the nets' paths: math, sdpa
COUNTERS: tuple[str, ...] = ("fvcore", "torch")


def agrees(counted: int, analytic: int, tol: float) -> bool:
    """|counted - analytic| <= tol * |analytic|; with tol = 0, equality."""
    return abs(counted - analytic) <= tol * abs(analytic)


@dataclass(frozen=True)
class LayerCheck:
    """One dotted path: its analytic count and each counter's self count, in one convention."""

    path: str
    analytic: int
    fvcore: int
    torch: int

    def ok(self, tol: float) -> bool:
        return agrees(self.fvcore, self.analytic, tol) and agrees(self.torch, self.analytic, tol)

    def row(self) -> dict[str, Any]:
        return {"path": self.path, "analytic": self.analytic, "fvcore": self.fvcore, "torch": self.torch,
                "fvcore_diff": self.fvcore - self.analytic, "torch_diff": self.torch - self.analytic}


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
    fvcore: int
    torch: int
    layers: tuple[LayerCheck, ...]
    counts: Counts

    @property
    def method(self) -> str:
        return self.counts.method

    @property
    def first_mismatch(self) -> str | None:
        """The first layer in forward order that disagrees; "(total)" if only the totals do."""
        for layer in self.layers:
            if not layer.ok(self.tol):
                return layer.path or "(root)"
        if not (agrees(self.fvcore, self.analytic, self.tol) and agrees(self.torch, self.analytic, self.tol)):
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
            "model": self.model, "family": self.family, "res": res_label(self.res), "batch": self.batch,
            "attn": self.attn, "convention": self.convention, "analytic": self.analytic, "fvcore": self.fvcore,
            "torch": self.torch, "fvcore_diff": abs(self.fvcore - self.analytic),
            "torch_diff": abs(self.torch - self.analytic), "method": self.method,
            "fvcore_via": self.counts.fvcore_via, "tol": self.tol, "status": self.status,
            "first_mismatch": self.first_mismatch, "unsupported_ops": self.counts.unsupported,
        }
        if by_layer:
            row["layers"] = [layer.row() for layer in self.layers]
        return row


def join_layers(analytic: dict[str, int], fvcore: dict[str, int], torch: dict[str, int]) -> tuple[LayerCheck, ...]:
    """One LayerCheck per path any side counts: analytic order (the forward order of the walker),
    then paths only the counters know, in their order."""
    paths = dict.fromkeys([*analytic, *fvcore, *torch])
    rows = (LayerCheck(p, analytic.get(p, 0), fvcore.get(p, 0), torch.get(p, 0)) for p in paths)
    return tuple(r for r in rows if r.analytic or r.fvcore or r.torch)


def predicted_forward_bytes(est: Any) -> int:
    """What a real forward of the reference model holds at its peak, from the analytic estimate:
    the fp32 parameters plus the largest set of activations alive at once (scores included)."""
    return est.params * est.bytes_per_elem + est.activation_peak_bytes


def choose_method(method: str, est: Any, budget_bytes: int | None = None) -> str:
    """"real" or "meta": `auto` is meta when the predicted real forward exceeds the budget."""
    from vitcost.measure.counting import METHODS

    if method not in METHODS:
        raise VitcostError(f"unknown counting method {method!r}; choose from {', '.join(METHODS)}.")
    if method != "auto":
        return method
    from vitcost.measure.counting_meta import memory_budget

    budget = memory_budget() if budget_bytes is None else budget_bytes
    return "meta" if predicted_forward_bytes(est) > budget else "real"


def check_model(model: Any, res: Any = 224, batch: int = 1, attn: str = "math", convention: str = "fvcore",
                tol: float = 0.0, method: str = "auto", budget_bytes: int | None = None) -> CheckResult:
    """Count the reference model of `model` (a design: preset, spec file, overrides or spec) on
    [batch, C, H, W] with the `attn` attention path, and join the counts with the analytic estimate in `convention`."""
    from vitcost.analytic.estimate import estimate
    from vitcost.measure.counting import count
    from vitcost.nets import build

    if convention not in COUNTED_CONVENTIONS:
        raise VitcostError(f"cannot check the {convention!r} convention; use one of {', '.join(COUNTED_CONVENTIONS)}.")
    if attn not in ATTN_PATHS:
        raise VitcostError(f"unknown attention path {attn!r}; choose from {', '.join(ATTN_PATHS)}.")
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise VitcostError(f"tolerance must be a number of at least 0, got {tol!r}.")
    est = estimate(model, res, batch)
    chosen = choose_method(method, est, budget_bytes)
    net = build(est.design, est.res, attn=attn, device="meta" if chosen == "meta" else None).eval()
    counts = count(net, (batch, est.spec.in_chans, *est.res), method=chosen)
    analytic = {p: n for p, n in est.by_layer(convention).items() if n}
    fv, tc = counts.self_counts("fvcore", convention), counts.self_counts("torch", convention)
    return CheckResult(model=est.model, family=est.family, res=est.res, batch=batch, attn=attn,
                       convention=convention, tol=float(tol), analytic=est.count(convention),
                       fvcore=counts.total("fvcore", convention), torch=counts.total("torch", convention),
                       layers=join_layers(analytic, fv, tc), counts=counts)
