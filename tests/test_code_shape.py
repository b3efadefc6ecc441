"""The analytic core stays readable: no function in `vitcost/analytic/` longer than 60 lines (docstring
included), read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

ANALYTIC = Path(__file__).resolve().parents[1] / "vitcost" / "analytic"
MAX_LINES = 60


def long_functions(source: str, name: str) -> list[str]:
    return [f"{name}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_LINES]


def test_no_function_in_the_analytic_core_exceeds_60_lines() -> None:
    paths = sorted(ANALYTIC.glob("*.py"))
    assert len(paths) > 20
    bad = [line for p in paths for line in long_functions(p.read_text(encoding="utf-8"), p.name)]
    assert not bad, "split these:\n" + "\n".join(bad)


def test_the_check_sees_a_long_function() -> None:
    source = "def f():\n" + "    x = 1\n" * MAX_LINES
    assert long_functions(source, "x.py") == ["x.py:1 f (61 lines)"]
