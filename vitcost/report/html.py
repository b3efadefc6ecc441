"""One self-contained HTML page from report panels: plotly.js inlined once, no MathJax, nothing
fetched at view time.

The page opens offline and stays offline: every script and style is inline, and a
Content-Security-Policy (`default-src 'none'`) tells the browser to refuse any request to a network
or another file, so a report can be mailed, archived and opened years later. A few lines of inline
script, run before anything else, show any script or resource error in a red box at the top of the
page (`#vitcost-errors`), so a broken chart never fails silently.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any

# Inline scripts and styles only, images and fonts as data: URIs; no network, no other file.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "img-src data:; font-src data:; connect-src 'none'; form-action 'none'; base-uri 'none'")

# Installed first in <head>: records uncaught errors, failed resource loads (capture phase) and
# console.error calls in the #vitcost-errors box.
ERROR_HOOK = """(function () {
  var pending = [];
  function show(msg) {
    var box = document.getElementById("vitcost-errors");
    if (!box) { pending.push(msg); return; }
    box.hidden = false;
    box.appendChild(document.createTextNode(msg + "\\n"));
  }
  window.addEventListener("error", function (ev) {
    var t = ev.target || {};
    show("error: " + (ev.message || t.src || t.href || "a resource failed to load"));
  }, true);
  window.addEventListener("unhandledrejection", function (ev) { show("error: " + ev.reason); });
  var original = console.error;
  console.error = function () {
    show("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
  document.addEventListener("DOMContentLoaded", function () { pending.splice(0).forEach(show); });
})();"""

# Plot config: no Plotly logo, no "share to Plotly Cloud" button (it would upload the chart); the
# camera button saves a PNG in the browser, offline.
PLOT_CONFIG: dict[str, Any] = {"displaylogo": False, "showSendToCloud": False, "responsive": True,
                               "toImageButtonOptions": {"format": "png", "scale": 2}}

# Fixed panel size in the static (PNG) layout, so the screenshot height is known in advance.
STATIC_WIDTH = 1600
STATIC_PANEL_HEIGHT = 640
STATIC_HEADER_HEIGHT = 120
STATIC_FOOTER_HEIGHT = 190

CSS = """
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #1d2530;
       margin: 0 auto; padding: 16px 24px; max-width: 1700px; background: #fff; }
header h1 { font-size: 22px; margin: 4px 0; }
header p { margin: 2px 0; color: #4a5563; }
.errors { background: #fde8e8; color: #8a1111; border: 1px solid #d33; padding: 8px; white-space: pre-wrap;
          font-family: ui-monospace, monospace; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(700px, 1fr)); gap: 18px; margin-top: 12px; }
.panel { border: 1px solid #dde2e8; border-radius: 6px; padding: 10px 12px; min-width: 0; }
.panel h2 { font-size: 16px; margin: 0 0 4px; }
.caption { margin: 0 0 6px; color: #374151; font-size: 13px; }
.plot { width: 100%; height: 460px; }
details { margin-top: 6px; }
summary { cursor: pointer; color: #1f4f8f; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 12px; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border-bottom: 1px solid #e5e7eb; padding: 3px 8px; text-align: right; white-space: nowrap; }
th { background: #f3f5f8; }
td:first-child, th:first-child { text-align: left; }
.scroll { overflow-x: auto; }
footer { margin-top: 18px; border-top: 1px solid #dde2e8; padding-top: 8px; color: #4a5563; font-size: 12px; }
footer dl { display: grid; grid-template-columns: max-content 1fr; gap: 1px 12px; margin: 4px 0; }
footer dt { font-weight: 600; }
footer code { white-space: pre-wrap; }
body.static { width: WIDTHpx; max-width: none; }
body.static header { height: HEADERpx; overflow: hidden; }
body.static .grid { grid-template-columns: 1fr 1fr; }
body.static .panel { height: PANELpx; overflow: hidden; }
body.static details { display: none; }
body.static footer { height: FOOTERpx; overflow: hidden; }
""".replace("WIDTH", str(STATIC_WIDTH)).replace("HEADER", str(STATIC_HEADER_HEIGHT)).replace(
    "PANEL", str(STATIC_PANEL_HEIGHT)).replace("FOOTER", str(STATIC_FOOTER_HEIGHT))


@dataclass
class DataTable:
    """A table behind a plot: already formatted cells, first column left-aligned."""

    caption: str
    header: list[str]
    rows: list[list[str]]


@dataclass
class Panel:
    """One figure of the report with its caption and the tables behind it."""

    key: str  # a short id: the plot's div is `fig-<key>`
    title: str
    caption: str
    figure: Any  # a plotly Figure
    tables: list[DataTable] = field(default_factory=list)


@dataclass
class Footer:
    conventions: dict[str, str]  # name -> description
    convention: str  # the one the plots use
    versions: dict[str, str]  # package -> version
    date: str
    command: str
    notes: list[str] = field(default_factory=list)


def plotly_js_version(js: str) -> str:
    """The version in the bundled plotly.js banner ("plotly.js v4.1.1" -> "4.1.1")."""
    m = re.search(r"plotly\.js v(\d[\w.\-]*)", js[:400])
    return m.group(1) if m else "unknown"


def table_html(t: DataTable) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in t.rows)
    return (f'<div class="scroll"><table><caption>{html.escape(t.caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def panel_html(p: Panel, number: int) -> str:
    import plotly.io as pio

    div = pio.to_html(p.figure, full_html=False, include_plotlyjs=False, include_mathjax=False,
                      div_id=f"fig-{p.key}", config=PLOT_CONFIG, default_width="100%", default_height="460px")
    rows = sum(len(t.rows) for t in p.tables)
    tables = "".join(table_html(t) for t in p.tables)
    details = (f"<details><summary>Data behind figure {number} ({rows} rows)</summary>{tables}</details>"
               if p.tables else "")
    return (f'<section class="panel" id="panel-{p.key}"><h2>Figure {number}. {html.escape(p.title)}</h2>'
            f'<p class="caption">{html.escape(p.caption)}</p>{div}{details}</section>')


def footer_html(f: Footer) -> str:
    convs = "".join(
        f"<dt>{html.escape(k)}{' (shown)' if k == f.convention else ''}</dt><dd>{html.escape(v)}</dd>"
        for k, v in f.conventions.items())
    versions = " · ".join(f"{html.escape(k)} {html.escape(v)}" for k, v in f.versions.items())
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in f.notes)
    return (f"<footer><p><b>Counting conventions</b></p><dl>{convs}</dl>{notes}"
            f"<p>Generated {html.escape(f.date)} with {versions}; plotly.js is inlined, no network is used.</p>"
            f"<p>Command: <code>{html.escape(f.command)}</code></p></footer>")


def render_page(title: str, subtitle: str, panels: list[Panel], footer: Footer, *, static: bool = False) -> str:
    """The whole report as one HTML string. `static` lays the panels out at a fixed size for a
    screenshot (two columns, tables hidden)."""
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    footer.versions.setdefault("plotly.js", plotly_js_version(js))
    body = "".join(panel_html(p, i) for i, p in enumerate(panels, 1))
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f"<script>{ERROR_HOOK}</script><style>{CSS}</style>"
        f"<script>{js}</script></head>"
        f'<body class="{"static" if static else ""}" data-plots="{len(panels)}">'
        f"<header><h1>{html.escape(title)}</h1><p>{html.escape(subtitle)}</p>"
        '<div id="vitcost-errors" class="errors" hidden></div></header>'
        f'<main class="grid">{body}</main>{footer_html(footer)}</body></html>\n'
    )


def static_height(n_panels: int) -> int:
    """Pixel height of the static layout with `n_panels` panels in two columns."""
    rows = (n_panels + 1) // 2
    return STATIC_HEADER_HEIGHT + rows * (STATIC_PANEL_HEIGHT + 18) + STATIC_FOOTER_HEIGHT + 60
