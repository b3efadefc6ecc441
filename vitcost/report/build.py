"""Assemble the scaling report: estimates -> panels -> one HTML page (or its PNG screenshot)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vitcost.analytic.cost import CONVENTIONS
from vitcost.analytic.estimate import Estimate, evaluate
from vitcost.analytic.scaling import DeviceMemory, parse_memory
from vitcost.design import Design
from vitcost.errors import VitcostError
from vitcost.vocab import Dtype, Optimizer, res_label

DEFAULT_RES = ("224", "384", "512", "768", "1024")
DEFAULT_DEVICE_MEMORY = ("H100=80GB", "H200=141GB")  # vendor figures, 10^9 bytes
DEFAULT_TITLE = "vitcost scaling report"


@dataclass
class ReportRequest:
    """Everything a report is made from, parsed: the CLI fills it in (`cli.report.report_request`)."""

    designs: list[Design]
    sizes: list[tuple[int, int]]  # smallest area first
    devices: list[DeviceMemory]  # ascending sizes
    batch: int = 1
    dtype: Dtype = Dtype.fp32
    convention: str = "macs"
    breakdown_res: tuple[int, int] | None = None  # default: the largest of `sizes`
    check: Path | None = None
    profile: Path | None = None
    train: bool = True  # the training-step panel
    optimizer: Optimizer = Optimizer.adamw  # its optimizer
    hardware: tuple[Any, ...] = ()  # device profiles (`Hardware`) timed in the latency panel
    title: str = DEFAULT_TITLE
    command: str = "vitcost report"


def report_date() -> str:
    """Now in UTC, or SOURCE_DATE_EPOCH when set (reproducible builds)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch and epoch.isdigit() else datetime.now(timezone.utc)
    return when.strftime("%Y-%m-%d %H:%M UTC")


def _group(ests: list[Estimate]) -> dict[str, list[Estimate]]:
    groups: dict[str, list[Estimate]] = {}
    for e in ests:
        groups.setdefault(e.model, []).append(e)
    return groups


def parse_devices(texts: list[str]) -> list[DeviceMemory]:
    """--device-memory entries (sizes, NAME=SIZE), each device once, ascending."""
    if not texts:
        raise VitcostError("--device-memory needs at least one size, such as 80GB.")
    devices = [parse_memory(t) for t in texts]
    # a device is named by NAME in NAME=SIZE, or by its size alone
    labels = [t.rpartition("=")[0].strip().lower() or d.label for t, d in zip(texts, devices)]
    twice = next((label for label in labels if labels.count(label) > 1), None)
    if twice is not None:
        raise VitcostError(f"--device-memory names {twice!r} twice; give each device once.")
    return sorted(devices, key=lambda d: d.bytes)


def build_panels(req: ReportRequest) -> tuple[list[Any], dict[str, Any]]:
    """The report's panels, and facts for its header and footer. Reads and validates the --check
    and --profile files first, so bad input fails before any work."""
    from vitcost.report import evidence
    from vitcost.report.facts import scaling_facts
    from vitcost.report.fig_breakdown import breakdown_panel
    from vitcost.report.fig_cost import cost_panel, overtake_panel
    from vitcost.report.fig_memory import memory_panel
    from vitcost.report.rows import compare_estimates

    check_rows = evidence.read_check(req.check) if req.check is not None else None
    profile_rows = evidence.read_profile(req.profile) if req.profile is not None else None
    devices = req.devices
    groups = _group(compare_estimates(req.designs, req.sizes, req.batch, req.dtype))
    sizes = req.sizes
    bres = req.breakdown_res or sizes[-1]
    at_bres = [evaluate(ests[0].design, bres, req.batch, req.dtype) for ests in groups.values()]
    scaling = scaling_facts(groups, devices, req.convention, req.batch, req.dtype)  # the searches run here

    panels = [
        cost_panel(scaling),
        memory_panel(scaling),
        breakdown_panel(at_bres, req.convention),
        overtake_panel(scaling),
    ]
    if req.train:
        from vitcost.report.facts import training_facts
        from vitcost.report.fig_training import training_panel

        panels.append(training_panel(training_facts(groups, devices, req.optimizer, req.convention, req.batch,
                                                    req.dtype)))
    if req.hardware:
        from vitcost.report.facts import latency_facts
        from vitcost.report.fig_latency import latency_panel

        panels.append(latency_panel(latency_facts(groups, list(req.hardware))))
    facts: dict[str, Any] = {"models": list(groups), "sizes": sizes, "notes": []}
    if check_rows is not None:
        from vitcost.report.fig_agreement import counts_panel

        panels.append(counts_panel(check_rows, Path(req.check).name))
    if profile_rows is not None:
        from vitcost.report.fig_agreement import memory_agreement_panel, time_panel

        name = Path(req.profile).name
        panels += [time_panel(profile_rows, name), memory_agreement_panel(profile_rows, name)]
        measured = sorted({f"{r.get('device_name') or r.get('device') or '?'} (torch {r.get('torch_version') or '?'})"
                           for r in profile_rows})
        facts["notes"].append(f"Measured on: {', '.join(measured)}.")
    return panels, facts


def render_report(req: ReportRequest, *, static: bool = False) -> str:
    """The report as one self-contained HTML string."""
    import plotly

    from vitcost.report.html import Footer, render_page
    from vitcost.version import __version__

    panels, facts = build_panels(req)
    res_text = ", ".join(str(res_label(hw)) for hw in facts["sizes"])
    subtitle = (f"{', '.join(facts['models'])} at {res_text} px · batch {req.batch} · {req.dtype.value} · "
                f"{req.convention} convention")
    footer = Footer(conventions=dict(CONVENTIONS), convention=req.convention,
                    versions={"vitcost": __version__, "plotly": plotly.__version__,
                              "Python": platform.python_version()},
                    date=report_date(), command=req.command, notes=facts["notes"])
    return render_page(req.title, subtitle, panels, footer, static=static)


def render_png(req: ReportRequest) -> bytes:
    """A PNG of the report's figures: the static layout, screenshot by headless Chromium."""
    import tempfile

    from vitcost.report.browser import screenshot
    from vitcost.report.html import STATIC_WIDTH, static_height

    page = render_report(req, static=True)
    n_panels = page.count('<section class="panel"')
    with tempfile.TemporaryDirectory(prefix="vitcost-report-") as tmp:
        src = Path(tmp) / "report.html"
        src.write_text(page, encoding="utf-8")
        return screenshot(src, STATIC_WIDTH, static_height(n_panels))
