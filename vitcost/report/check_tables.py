"""Renderings of cross-check results and of counts of a user module: tables, Markdown, JSON, CSV.

Counts are exact integers and are shown whole (with thousands separators): a check is about the
last digit, so nothing is rounded here.

The objects rendered come from `vitcost.measure` (a `CheckResult` per model x resolution x attention
path, with its `LayerCheck`s and `Counts`) but are taken as they are, by their attributes: the
report layer sits above analytic/ and beside measure/, and does not import torch-backed code.
"""

from __future__ import annotations

from typing import Any

from vitcost.analytic.cost import CONVENTIONS
from vitcost.vocab import res_label

# Duck types, named for what they are: see vitcost.measure.check.CheckResult and
# vitcost.measure.counting.Counts for their attributes.
CheckResult = Any
Counts = Any

SUMMARY_HEADER = ["model", "res", "batch", "attn", "method", "analytic", "fvcore", "Δ fvcore", "torch", "Δ torch",
                  "status", "first mismatch"]
LAYER_HEADER = ["layer", "analytic", "fvcore", "Δ fvcore", "torch", "Δ torch", ""]
# A training step (`check --mode train`): FlopCounterMode alone; forward and backward are the analytic split,
# "known defect" what FlopCounterMode counted beyond the hand-derived figure where its formula is wrong.
TRAIN_SUMMARY_HEADER = ["model", "res", "batch", "attn", "method", "forward", "backward", "analytic", "torch",
                        "Δ torch", "known defect", "status", "first mismatch"]
TRAIN_LAYER_HEADER = ["layer", "forward", "backward", "analytic", "torch", "Δ torch", "known defect", ""]
VIA_DISPATCH = "*"  # marks a method whose fvcore column comes from fvcore's rules at the dispatcher


def whole(n: int) -> str:
    return f"{n:,}"


def delta(n: int) -> str:
    return "0" if n == 0 else f"{n:+,}"


def method_cell(counts: Counts) -> str:
    return counts.method + (VIA_DISPATCH if counts.fvcore_via == "dispatch" else "")


def is_train(results: list[CheckResult]) -> bool:
    return bool(results) and getattr(results[0], "mode", "inference") == "train"


def train_summary_cells(results: list[CheckResult]) -> list[list[str]]:
    return [[r.model, str(res_label(r.res)), str(r.batch), r.attn, r.counts.method, whole(r.forward[0]),
             whole(r.backward[0]), whole(r.analytic), whole(r.torch), delta(r.torch - r.analytic),
             delta(r.known), r.status, r.first_mismatch or "—"] for r in results]


def layer_mark(result: CheckResult, layer: Any) -> str:
    """✗ for a layer that disagrees (the first one named); a known FlopCounterMode defect by its op."""
    name = layer.path or "(root)"
    if not layer.ok(result.tol):
        return "✗ first mismatch" if name == result.first_mismatch else "✗"
    if layer.known:
        ops = ", ".join((result.counts.defects or {}).get(layer.path, {})) or "?"
        return f"known FlopCounterMode defect ({ops})"
    return ""


def train_layer_cells(result: CheckResult) -> list[list[str]]:
    return [[layer.path or "(root)", whole(layer.forward[0]), whole(layer.backward[0]), whole(layer.analytic),
             whole(layer.torch), delta(layer.torch - layer.analytic), delta(layer.known), layer_mark(result, layer)]
            for layer in result.layers]


def summary_cells(results: list[CheckResult]) -> list[list[str]]:
    if is_train(results):
        return train_summary_cells(results)
    return [[r.model, str(res_label(r.res)), str(r.batch), r.attn, method_cell(r.counts), whole(r.analytic),
             whole(r.fvcore), delta(r.fvcore - r.analytic), whole(r.torch), delta(r.torch - r.analytic), r.status,
             r.first_mismatch or "—"] for r in results]


def layer_cells(result: CheckResult) -> list[list[str]]:
    if getattr(result, "mode", "inference") == "train":
        return train_layer_cells(result)
    first = result.first_mismatch
    cells = []
    for layer in result.layers:
        name = layer.path or "(root)"
        mark = "" if layer.ok(result.tol) else ("✗ first mismatch" if name == first else "✗")
        cells.append([name, whole(layer.analytic), whole(layer.fvcore), delta(layer.fvcore - layer.analytic),
                      whole(layer.torch), delta(layer.torch - layer.analytic), mark])
    return cells


def unsupported_text(unsupported: dict[str, int]) -> str:
    return ", ".join(f"{op} ×{n}" for op, n in unsupported.items()) or "none"


def train_caption_lines(results: list[CheckResult]) -> list[str]:
    """What a training-step check shows, and every known FlopCounterMode defect met, by op and layer."""
    from vitcost.analytic.training import TRAIN_CONVENTIONS

    convention = results[0].convention
    lines = [f"training step (forward + loss.backward(), train mode), {convention}: {TRAIN_CONVENTIONS[convention]}. "
             "fvcore counts no backward: FlopCounterMode only.",
             "forward / backward: the analytic split; known defect: what FlopCounterMode counted beyond the "
             "hand-derived figure where its formula is wrong (the layer agrees when Δ is exactly that)."]
    kernels = sorted({f"{r.attn} -> {r.kernel}" for r in results if r.attn != r.kernel})
    if kernels:
        lines.append("analytic attention kernel per path (sdpa: the fused CPU kernel, or the math composite for a "
                     "learned mask or on meta): " + ", ".join(kernels) + ".")
    defects: dict[str, list[str]] = {}
    for r in results:
        for d in r.known_defects:
            defects.setdefault(f"{d['op']}: {d['defect']}", []).append(f"{r.model} {d['path']} {delta(d['excess'])}")
    for what, where in defects.items():
        shown = "; ".join(where[:6]) + (f"; … {len(where) - 6} more" if len(where) > 6 else "")
        lines.append(f"Known FlopCounterMode defect, {what}. Layers: {shown}.")
    return lines


def check_caption(results: list[CheckResult]) -> str:
    convention = results[0].convention if results else "fvcore"
    tol = results[0].tol if results else 0.0
    if is_train(results):
        lines = train_caption_lines(results)
        lines.append("Δ = counted - analytic; " + ("exact agreement required." if tol == 0
                                                   else f"relative tolerance {tol:g}."))
        lines.append("method real: a step on real tensors; meta: on the meta device (nothing allocated).")
        return "\n".join(lines)
    lines = [f"{convention}: {CONVENTIONS[convention]}. Δ = counted - analytic; "
             + ("exact agreement required." if tol == 0 else f"relative tolerance {tol:g}."),
             "method real: a forward on real tensors; meta: on the meta device (nothing allocated)."]
    if any(r.counts.fvcore_via == "dispatch" for r in results):
        lines.append(f"{VIA_DISPATCH} fvcore column from fvcore's rules applied at the dispatcher: its jit trace "
                     "cannot run convolutions on meta tensors.")
    ops: dict[str, int] = {}
    for r in results:
        for op in r.counts.unsupported:
            ops[op] = ops.get(op, 0) + 1
    if ops:
        lines.append("Ops seen but not counted (outside the counters' conventions, or without a formula): "
                     + ", ".join(ops) + ".")
    return "\n".join(lines)


def render_check_table(results: list[CheckResult], by_layer: bool) -> str:
    from vitcost.report.boxtable import box_table

    convention = results[0].convention if results else "fvcore"
    train = is_train(results)
    parts = []
    if by_layer:
        for r in results:
            title = (f"{r.model} @ {res_label(r.res)}, batch {r.batch}, attn {r.attn}, {r.method}: "
                     f"{r.status}" + (f", first mismatch {r.first_mismatch}" if r.first_mismatch else ""))
            header, right = (TRAIN_LAYER_HEADER, {1, 2, 3, 4, 5, 6}) if train else (LAYER_HEADER, {1, 2, 3, 4, 5})
            parts.append(box_table(header, layer_cells(r), right=right, title=title))
    sections = [i for i in range(1, len(results)) if results[i].model != results[i - 1].model]
    if train:
        header, right = TRAIN_SUMMARY_HEADER, {1, 2, 5, 6, 7, 8, 9, 10}
        title = f"vitcost check — training step, analytic vs FlopCounterMode, {convention} convention"
    else:
        header, right = SUMMARY_HEADER, {1, 2, 5, 6, 7, 8, 9}
        title = f"vitcost check — analytic vs fvcore vs FlopCounterMode, {convention} convention"
    parts.append(box_table(header, summary_cells(results), right=right, sections=sections, title=title,
                           caption=check_caption(results)))
    return "\n\n".join(parts)


def render_check_markdown(results: list[CheckResult], by_layer: bool) -> str:
    from vitcost.report.formats import to_markdown

    train = is_train(results)
    layer_header = (TRAIN_LAYER_HEADER if train else LAYER_HEADER)[:-1] + ["mismatch"]
    parts = []
    if by_layer:
        for r in results:
            parts.append(f"### {r.model} @ {res_label(r.res)}, batch {r.batch}, attn {r.attn}: {r.status}\n\n"
                         + to_markdown(layer_header, layer_cells(r)))
    header = TRAIN_SUMMARY_HEADER if train else SUMMARY_HEADER
    parts.append(to_markdown(header, summary_cells(results)) + "\n" + check_caption(results) + "\n")
    return "\n".join(parts)


def check_csv_rows(results: list[CheckResult], by_layer: bool) -> list[dict[str, Any]]:
    """Summary rows (ops flattened to `op:calls` text), or one row per layer with `--by-layer`."""
    if by_layer:
        return [{"model": r.model, "res": res_label(r.res), "batch": r.batch, "attn": r.attn,
                 "convention": r.convention, "method": r.method, **layer.row(), "agrees": layer.ok(r.tol)}
                for r in results for layer in r.layers]
    rows = []
    for r in results:
        row = r.row()
        row["unsupported_ops"] = " ".join(f"{op}:{n}" for op, n in row["unsupported_ops"].items())
        if "known_defects" in row:
            row["known_defects"] = " ".join(f"{d['path']}:{d['op']}:{d['excess']}" for d in row["known_defects"])
        rows.append(row)
    return rows


def module_report(target: str, counts: Counts, convention: str, top: int) -> dict[str, Any]:
    """The machine-readable summary of a user module's counts: totals, top modules by self count."""
    fv, tc = counts.self_counts("fvcore", convention), counts.self_counts("torch", convention)
    ranked = sorted(dict.fromkeys([*fv, *tc]), key=lambda p: -max(fv.get(p, 0), tc.get(p, 0)))
    return {"module": target, "input": " ".join("x".join(map(str, s)) for s in counts.input_shapes),
            "method": counts.method, "fvcore_via": counts.fvcore_via, "convention": convention,
            "fvcore": counts.total("fvcore", convention), "torch": counts.total("torch", convention),
            "by_module": [{"path": p or "(root)", "fvcore": fv.get(p, 0), "torch": tc.get(p, 0)}
                          for p in ranked[:top]],
            "unsupported_ops": counts.unsupported}


def module_csv_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One CSV row per module of `module_report`'s top list, each naming the module counted."""
    return [{"module": report["module"], "input": report["input"], "method": report["method"],
             "convention": report["convention"], **m} for m in report["by_module"]]


def render_module_table(report: dict[str, Any], markdown: bool = False) -> str:
    header = ["module (self)", "fvcore", "torch", "share"]
    total = max(report["fvcore"], 1)
    cells = [[m["path"], whole(m["fvcore"]), whole(m["torch"]), f"{100 * m['fvcore'] / total:.1f}%"]
             for m in report["by_module"]]
    via = " (fvcore's rules at the dispatcher)" if report["fvcore_via"] == "dispatch" else ""
    caption = "\n".join([
        f"{report['convention']}: {CONVENTIONS[report['convention']]}.",
        f"totals: fvcore {whole(report['fvcore'])}{via}, torch {whole(report['torch'])}; "
        f"method {report['method']}; self counts: each module's own ops, children excluded.",
        f"ops seen but not counted: {unsupported_text(report['unsupported_ops'])}."])
    title = f"vitcost check — {report['module']} on {report['input']}, {report['convention']} convention"
    if markdown:
        from vitcost.report.formats import to_markdown

        return f"### {title}\n\n" + to_markdown(header, cells) + "\n" + caption + "\n"
    from vitcost.report.boxtable import box_table

    return box_table(header, cells, right={1, 2, 3}, title=title, caption=caption)
