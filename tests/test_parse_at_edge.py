"""User input is parsed once, at the edge: the CLI (`vitcost/cli/`), the library facade
(`vitcost/__init__.py`) and the few public entry points listed below turn names, files and strings into
typed values (`Design`, `Dtype`, `Kernel`, (h, w), `Optimizer`, blocks per checkpoint); everything else
takes those values and never calls a parser. Read from the source with `ast`; a parser is any function
of `PARSERS`. A parser may call other parsers (a `parse_*` function composes them)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "vitcost"
PARSERS = {"parse_design", "parse_models", "parse_formula", "resolve_designs", "parse_res", "parse_resolutions",
           "parse_dtype", "parse_kernel", "parse_optimizer", "parse_checkpoint", "parse_precision",
           "parse_run_mode", "parse_convention", "parse_threads", "parse_size", "parse_memory", "get_hardware"}
# Where parsing is the job: the modules that define the parsers, the CLI and the facade...
EDGE_MODULES = ("vocab.py", "design.py", "__init__.py", "__main__.py", "cli/")
# ...and the public entry points below them, each with why it is one.
EDGE_FUNCTIONS = {
    "nets/build.py": {"build", "torch_dtype"},  # `vitcost.nets.build("vit_b16", 224)`: a design to a torch module
    "measure/check.py": {"check_model"},  # `check_model("swin_t", 224)`: the cross-check's library entry
    "measure/counting.py": {"_check_options"},  # `vitcost.count(module, shape, mode=...)`'s options
    "measure/profile.py": {"__post_init__", "resolve_hardware"},  # ProfileConfig: `profile`'s options, as given
    "analytic/hardware.py": {"cpu_preset", "__getattr__"},  # the built-in profiles, read by their names
}


def parser_calls(path: Path, source: str) -> list[str]:
    """`file:line: function calls parser` for each parser call outside a parse_* function and the edge."""
    rel = path.relative_to(PKG).as_posix()
    if rel.startswith(EDGE_MODULES) and ("/" not in rel or rel.startswith("cli/")):
        return []
    allowed = EDGE_FUNCTIONS.get(rel, set())
    found: list[str] = []

    def visit(node: ast.AST, func: str) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            func = node.name
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            if name in PARSERS and func not in allowed and not func.startswith("parse_"):
                found.append(f"{rel}:{node.lineno}: {func or '<module>'} calls {name}")
        for child in ast.iter_child_nodes(node):
            visit(child, func)

    visit(ast.parse(source, filename=str(path)), "")
    return found


def test_every_listed_entry_point_parses() -> None:
    """The allowances are not wider than what is there: each listed function does call a parser."""
    for rel, funcs in list(EDGE_FUNCTIONS.items()):
        source = (PKG / rel).read_text(encoding="utf-8")
        callers = {line.split(": ")[1].split(" calls ")[0] for line in parser_calls_in(PKG / rel, source)}
        assert funcs <= callers, (rel, funcs - callers)


def parser_calls_in(path: Path, source: str) -> list[str]:
    """`parser_calls` with no allowances: every parser call, by the function it sits in."""
    saved = EDGE_FUNCTIONS.pop(path.relative_to(PKG).as_posix(), set())
    try:
        return parser_calls(path, source)
    finally:
        EDGE_FUNCTIONS[path.relative_to(PKG).as_posix()] = saved


def test_only_the_edge_parses() -> None:
    paths = sorted(PKG.rglob("*.py"))
    assert len(paths) > 60
    bad = [line for p in paths for line in parser_calls(p, p.read_text(encoding="utf-8"))]
    assert not bad, "parsing below the edge (take typed values instead):\n" + "\n".join(bad)


@pytest.mark.parametrize("module,source", [
    ("analytic/memory.py", "def f(x):\n    return parse_kernel(x)\n"),
    ("report/rows.py", "def g(m):\n    from vitcost.design import parse_design\n    return parse_design(m)\n"),
    ("measure/profile.py", "def h(v):\n    return vocab.parse_res(v)\n"),
])
def test_the_check_fails_on_a_parse_below_the_edge(module: str, source: str) -> None:
    path = PKG / module
    assert path.is_file()
    assert len(parser_calls(path, path.read_text(encoding="utf-8") + source)) == 1
