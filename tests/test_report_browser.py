"""Open the generated report in headless Chromium with the network off: every figure must render
and nothing may log an error. Skipped where Chromium is not installed, except on CI (CI=true),
where .ci/run installs Debian's chromium and a missing browser is a failure."""

from __future__ import annotations

import json
import os
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest

from vitcost.cli import main
from vitcost.report.browser import OFFLINE_FLAGS, dump_dom, find_chromium
from vitcost.report.html import STATIC_WIDTH, static_height

pytestmark = pytest.mark.browser

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@pytest.fixture(scope="module", autouse=True)
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        if os.environ.get("CI") == "true":
            pytest.fail("headless Chromium is missing on CI; .ci/run should have installed Debian's chromium")
        pytest.skip("headless Chromium is not installed (apt-get install chromium); the report is not rendered")
    return exe


class RenderedPlots(HTMLParser):
    """From a DOM dumped after scripts ran: per plotly plot div, how many rendered SVG roots
    (`.main-svg`) and traces (`.trace`) it holds; and the text of the #vitcost-errors box."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, str | None]] = []  # (tag, plot id if this element is a plot div)
        self.plots: dict[str, dict[str, int]] = {}
        self.errors = ""
        self._in_errors = 0

    def _current_plot(self) -> str | None:
        for _, plot in reversed(self.stack):
            if plot is not None:
                return plot
        return None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        plot = None
        if "js-plotly-plot" in classes:
            plot = a.get("id") or f"plot-{len(self.plots)}"
            self.plots[plot] = {"main-svg": 0, "trace": 0}
        owner = self._current_plot()
        if owner is not None and plot is None:
            for cls in ("main-svg", "trace"):
                if cls in classes:
                    self.plots[owner][cls] += 1
        if a.get("id") == "vitcost-errors":
            self._in_errors = len(self.stack) + 1
        if tag not in VOID:
            self.stack.append((tag, plot))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break
        if self._in_errors and len(self.stack) < self._in_errors:
            self._in_errors = 0

    def handle_data(self, data: str) -> None:
        if self._in_errors:
            self.errors += data


def render(page: Path) -> tuple[RenderedPlots, list[str]]:
    run = dump_dom(page)
    assert run.returncode == 0, run.console
    dom = RenderedPlots()
    dom.feed(run.stdout)
    return dom, run.console


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_the_browser_runs_offline() -> None:
    assert any(f.startswith("--host-resolver-rules=MAP * ~NOTFOUND") for f in OFFLINE_FLAGS)
    assert "--proxy-server=127.0.0.1:9" in OFFLINE_FLAGS


def test_error_detector_catches_a_network_script_and_console_errors(tmp_path: Path) -> None:
    """The negative control: the same hook and console capture must see a script that needs the
    network (blocked) and a console.error, or a clean run below would prove nothing."""
    from vitcost.report.html import ERROR_HOOK

    page = tmp_path / "broken.html"
    page.write_text(f"<!DOCTYPE html><html><head><script>{ERROR_HOOK}</script>"
                    '<script src="http://example.com/plotly.min.js"></script></head><body>'
                    '<div id="vitcost-errors" hidden></div><script>console.error("boom")</script></body></html>')
    dom, console = render(page)
    assert "http://example.com/plotly.min.js" in dom.errors
    assert "console.error: boom" in dom.errors
    assert any("boom" in line for line in console)


def test_report_renders_every_plot_offline_without_errors(tmp_path: Path) -> None:
    from test_report import CHECK_ROWS, PROFILE_ROWS  # tests/ is on sys.path (rootdir-less test modules)

    out = tmp_path / "scaling.html"
    with pytest.raises(SystemExit) as exc:
        main(["report", "--res", "224", "384", "512", "768", "1024",
              "--check", str(write_json(tmp_path / "check.json", CHECK_ROWS)),
              "--profile", str(write_json(tmp_path / "profile.json", PROFILE_ROWS)), "-o", str(out)])
    assert exc.value.code == 0
    dom, console = render(out)
    expected = ["fig-cost", "fig-memory", "fig-breakdown", "fig-overtake", "fig-training", "fig-counts", "fig-time",
                "fig-memfit"]
    assert list(dom.plots) == expected
    for plot, found in dom.plots.items():
        assert found["main-svg"] >= 1, f"{plot} drew no SVG"
        assert found["trace"] >= 1, f"{plot} drew no trace"
    assert dom.errors.strip() == ""
    assert console == []


def test_png_is_a_screenshot_of_the_figures(tmp_path: Path) -> None:
    out = tmp_path / "scaling.png"
    with pytest.raises(SystemExit) as exc:
        main(["report", "-m", "vit_b16", "swin_t", "-r", "224", "512", "--format", "png", "-o", str(out)])
    assert exc.value.code == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])  # IHDR
    assert (width, height) == (STATIC_WIDTH, static_height(5))  # four figures and the training step
    assert len(data) > 50_000  # drawn figures, not a blank page
