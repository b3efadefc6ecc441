"""A minimal box-drawing table for the hot `compare` path.

`vitcost compare` must answer in about the time it takes to import its CLI framework (see
benchmarks/bench_compare.py); importing and laying out a rich Table costs more than the whole cost
model, so this draws the same kind of table directly. Columns are never truncated: the table is as
wide as its content."""

from __future__ import annotations

import os
import sys


def _bold(text: str, on: bool) -> str:
    return f"\x1b[1m{text}\x1b[0m" if on else text


def box_table(header: list[str], rows: list[list[str]], *, right: set[int] = frozenset(), title: str = "",
              caption: str = "", sections: list[int] = (), color: bool | None = None) -> str:
    """Render `rows` under `header`; columns in `right` are right-aligned; a rule is drawn before
    each row index in `sections`. ANSI bold for the header and title only when writing to a terminal."""
    if color is None:
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: list[str], bold: bool = False) -> str:
        out = []
        for i, (c, w) in enumerate(zip(cells, widths)):
            text = c.rjust(w) if i in right else c.ljust(w)
            out.append(_bold(text, bold and color))
        return "│ " + " │ ".join(out) + " │"

    def rule(left: str, mid: str, end: str, fill: str = "─") -> str:
        return left + mid.join(fill * (w + 2) for w in widths) + end

    width = sum(widths) + 3 * len(widths) + 1
    lines = [_bold(title.center(width).rstrip(), color)] if title else []
    lines += [rule("┏", "┳", "┓", "━"), line(header, bold=True).replace("│", "┃"), rule("┡", "╇", "┩", "━")]
    cut = set(sections)
    for i, r in enumerate(rows):
        if i in cut and i:
            lines.append(rule("├", "┼", "┤"))
        lines.append(line(r))
    lines.append(rule("└", "┴", "┘"))
    if caption:
        lines.append(caption)
    return "\n".join(lines) + "\n"
