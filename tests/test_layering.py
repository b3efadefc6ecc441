"""Imports point down (the design notes' "Layering (imports only point down)"): read from the source
with `ast`, without importing it, every import counted, at module level and inside functions.

From the top: the package facade (`vitcost/__init__.py`, `__main__`), cli/, report/, measure/, nets/,
analytic/, and at the bottom the spec modules (specs, design, zoo, vocab, errors, version). A module
imports only modules of its own layer or below; report/ does not import measure/ either (it renders
what measure/ produced). The figures only draw what the assembler hands them; the analytic core and the
spec modules stay importable without torch, fvcore, pandas or plotly."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "vitcost"
HEAVY = ("torch", "fvcore", "pandas", "plotly")
SEARCHES = {"attention_overtakes", "score_wall", "first_crossing", "cached_estimate"}


@dataclass(frozen=True)
class Imp:
    """One imported name. `module`: absolute dotted module; `name`: what `from module import name`
    brings in, or None for `import module`. `top`: runs when the module is imported (not inside a
    function, not under `if TYPE_CHECKING:`)."""

    module: str
    name: str | None
    line: int
    top: bool

    def text(self) -> str:
        return f"import {self.module}" if self.name is None else f"from {self.module} import {self.name}"


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(node: ast.ImportFrom, path: Path) -> str:
    if not node.level:
        return node.module or ""
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(source: str, path: Path) -> list[Imp]:
    out: list[Imp] = []

    def visit(node: ast.AST, top: bool) -> None:
        if isinstance(node, ast.Import):
            out.extend(Imp(a.name, None, node.lineno, top) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            out.extend(Imp(_absolute(node, path), a.name, node.lineno, top) for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            top = False
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, top)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, top)

    visit(ast.parse(source, filename=str(path)), True)
    return out


def modules(*parts: str) -> list[Path]:
    """Source files under PKG: each part a folder (every module in it, recursively) or a file."""
    found: list[Path] = []
    for part in parts:
        p = PKG / part
        found += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return found


def where(path: Path, imp: Imp) -> str:
    return f"{path.relative_to(PKG.parent)}:{imp.line}: {imp.text()}"


def is_submodule(name: str) -> bool:
    return (PKG / f"{name}.py").is_file() or (PKG / name / "__init__.py").is_file()


def scan(paths: list[Path]) -> list[tuple[Path, Imp]]:
    assert paths, "no modules found: is PKG right?"
    return [(p, imp) for p in paths for imp in imports_of(p.read_text(encoding="utf-8"), p)]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


# --- the checker itself --------------------------------------------------------------------------

def test_the_checker_sees_module_level_relative_and_lazy_imports() -> None:
    source = ("import torch\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pandas\n"
              "else:\n    import fvcore\ntry:\n    import plotly.io as pio\nexcept ImportError:\n    pass\n"
              "class A:\n    import numpy\ndef f():\n    import sympy\n"
              "from . import scaling\nfrom ..report import fig_cost\nfrom .scaling import score_wall\n")
    path = PKG / "analytic" / "x.py"
    got = {(i.text(), i.top) for i in imports_of(source, path)}
    assert got == {("import torch", True), ("from typing import TYPE_CHECKING", True), ("import pandas", False),
                   ("import fvcore", True), ("import plotly.io", True), ("import numpy", True),
                   ("import sympy", False), ("from vitcost.analytic import scaling", True),
                   ("from vitcost.report import fig_cost", True),
                   ("from vitcost.analytic.scaling import score_wall", True)}
    assert is_submodule("report") and is_submodule("vocab") and not is_submodule("__version__")


def test_the_scanned_folders_hold_the_modules_we_know() -> None:
    names = {module_name(p) for p in modules("report", "analytic", "measure", "nets")}
    assert {"vitcost.report.build", "vitcost.report.fig_cost", "vitcost.analytic.scaling",
            "vitcost.measure.check", "vitcost.nets"} <= names


# --- the layer order -----------------------------------------------------------------------------

LAYERS = (("vitcost.cli", 5), ("vitcost.report", 4), ("vitcost.measure", 3), ("vitcost.nets", 2),
          ("vitcost.analytic", 1))
FACADE = ("vitcost", "vitcost.__main__")


def layer(module: str) -> int | None:
    """The layer of a vitcost module (higher = nearer the user); None for anything outside vitcost."""
    if module in FACADE:
        return 6
    for prefix, rank in LAYERS:
        if _under(module, prefix):
            return rank
    return 0 if module.startswith("vitcost.") else None


def imported_module(imp: Imp) -> str:
    """`from vitcost.analytic import memory` imports vitcost.analytic.memory, not only the package."""
    if imp.name and is_submodule(f"{imp.module}.{imp.name}".removeprefix("vitcost.").replace(".", "/")):
        return f"{imp.module}.{imp.name}"
    return imp.module


def upward(paths_and_sources: list[tuple[Path, str]]) -> list[str]:
    """Every import that points up the layer order."""
    bad = []
    for path, source in paths_and_sources:
        me = layer(module_name(path))
        for imp in imports_of(source, path):
            target = layer(imported_module(imp))
            if target is not None and me is not None and target > me:
                bad.append(where(path, imp))
    return bad


def test_imports_point_down() -> None:
    paths = modules(*(p.name for p in sorted(PKG.iterdir()) if p.suffix == ".py" or (p / "__init__.py").is_file()))
    assert len(paths) > 60
    bad = upward([(p, p.read_text(encoding="utf-8")) for p in paths])
    assert not bad, "imports pointing up the layers:\n" + "\n".join(bad)


@pytest.mark.parametrize("module,source", [
    ("analytic/registry.py", "from vitcost.cli.app import app\n"),
    ("analytic/registry.py", "def f():\n    from vitcost.cli import app\n"),
    ("analytic/memory.py", "def f():\n    import vitcost.measure.memory\n"),
    ("specs.py", "from vitcost.analytic import estimate\n"),
    ("nets/vit.py", "from vitcost.report import table\n"),
    ("analytic/trace.py", "from . import registry\nfrom ..report import rows\n"),
])
def test_the_layer_check_fails_on_an_upward_import(module: str, source: str) -> None:
    """The check is not vacuous: each of these upward imports, added to a real module, is caught."""
    path = PKG / module
    assert path.is_file()
    assert len(upward([(path, path.read_text(encoding="utf-8") + source)])) == 1


def test_registry_net_paths_are_nets() -> None:
    """The registry names each family's torch net as "module:Class", imported by measure/ and nets.build
    when a net is built: each must be a module of nets/ that defines the class."""
    from vitcost.analytic.registry import FAMILIES

    for family in FAMILIES.values():
        module, _, cls = family.net.partition(":")
        assert layer(module) == layer("vitcost.nets"), family
        assert is_submodule(module.removeprefix("vitcost.").replace(".", "/")), family
        assert f"class {cls}(" in (PKG.parent / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"), family


# --- the rules -----------------------------------------------------------------------------------

def test_report_does_not_import_measure() -> None:
    """report/ renders what measure/ produced, taken by its attributes; it never imports measure/."""
    bad = [where(p, imp) for p, imp in scan(modules("report"))
           if _under(imp.module, "vitcost.measure")
           or (imp.module == "vitcost" and imp.name == "measure")]
    assert not bad, "report/ imports measure/:\n" + "\n".join(bad)


def test_nothing_below_cli_imports_the_package_facade() -> None:
    """`vitcost/__init__.py` is for users and cli/; layers below it import the module they need."""
    top_level = [p for p in sorted(PKG.glob("*.py")) if p.name != "__init__.py"]
    paths = modules("analytic", "report", "measure", "nets") + top_level
    bad = [where(p, imp) for p, imp in scan(paths)
           if imp.module == "vitcost" and (imp.name is None or not is_submodule(imp.name))]
    assert not bad, "imports of the package facade below cli/:\n" + "\n".join(bad)


@pytest.mark.parametrize("heavy", HEAVY)
def test_core_imports_no_heavy_library_at_module_level(heavy: str) -> None:
    """The analytic core and the spec modules import torch, fvcore, pandas and plotly only inside
    the functions that need them, so `vitcost compare` starts without them."""
    paths = modules("analytic", "specs.py", "design.py", "vocab.py", "zoo.py", "errors.py", "version.py")
    bad = [where(p, imp) for p, imp in scan(paths) if imp.top and _under(imp.module, heavy)]
    assert not bad, f"module-level imports of {heavy}:\n" + "\n".join(bad)


def test_figures_run_no_estimate_or_search() -> None:
    """fig_*.py draw the numbers they are handed (report/facts.py finds them)."""
    def forbidden(imp: Imp) -> bool:
        if imp.module == "vitcost.analytic.scaling":
            return imp.name is None or imp.name == "*" or imp.name in SEARCHES
        if imp.module == "vitcost.analytic.estimate":
            return imp.name in (None, "*", "estimate")
        if imp.module == "vitcost.analytic":  # the module itself brings every function in it
            return imp.name in ("scaling", "estimate", "*")
        return False

    bad = [where(p, imp) for p, imp in scan(sorted((PKG / "report").glob("fig_*.py"))) if forbidden(imp)]
    assert not bad, "figure modules importing an estimate or a search:\n" + "\n".join(bad)
