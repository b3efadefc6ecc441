"""The report's latency figure: with --hardware it times every design and resolution on each device with
the one forward-time figure `compare --hardware` shows (`roofline.forward_time`: the per-op model in its
measured regime, the roofline elsewhere), a 16-bit report as autocast over fp32 weights; without
--hardware there is no such figure."""

from __future__ import annotations

import pytest

pytest.importorskip("plotly")

from vitcost import estimate  # noqa: E402
from vitcost.analytic.hardware import get_hardware  # noqa: E402
from vitcost.analytic.roofline import forward_time  # noqa: E402
from vitcost.cli.report import report_request  # noqa: E402
from vitcost.report.build import build_panels  # noqa: E402


def panels(**options: object) -> dict[str, object]:
    found, _ = build_panels(report_request(["vit_s16", "nat_tiny"], [], ["224", "512"], train=False, **options))
    return {p.key: p for p in found}


def test_each_cell_is_compares_time() -> None:
    panel = panels(batch=256, dtype="bf16", hardware=["rtx4090", "h100-sxm"])["latency"]
    (table,) = panel.tables
    rows = {(r[0], r[1], r[2]): dict(zip(table.header, r)) for r in table.rows}
    assert len(rows) == 2 * 2 * 2  # designs x devices x sizes
    for model in ("vit_s16", "nat_tiny"):
        for name in ("rtx4090", "h100-sxm"):
            hw = get_hardware(name)
            for res in (224, 512):
                t = forward_time(estimate(model, res, 256, "bf16", amp=True), hw)
                row = rows[(model, hw.label, str(res))]
                assert row["ms"] == f"{t['time_s'] * 1e3:.4g}" and row["time model"] == t["time_model"]
    assert "per-op" in {r["time model"] for r in rows.values()}  # batch 256, 512 px: the measured regime


def test_an_fp32_report_is_timed_by_the_roofline_and_no_hardware_no_figure() -> None:
    panel = panels(hardware=["rtx4090"])["latency"]
    assert {row[-1] for row in panel.tables[0].rows} == {"roofline"}
    assert "latency" not in panels()
