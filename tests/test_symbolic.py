"""`formula` against the Swin paper's Eq. 1 and 2, and the symbolic walk against the integer one."""

from __future__ import annotations

import sympy

import vitcost


def _named(expr: sympy.Expr) -> dict[str, sympy.Symbol]:
    return {s.name: s for s in expr.free_symbols}


def test_global_attention_is_swin_eq1():
    expr = vitcost.formula("global_attention")
    s = _named(expr)
    assert set(s) == {"h", "w", "C"}
    h, w, c = s["h"], s["w"], s["C"]
    assert sympy.simplify(expr - (4 * h * w * c**2 + 2 * (h * w) ** 2 * c)) == 0


def test_window_attention_is_swin_eq2():
    expr = vitcost.formula("window_attention")
    s = _named(expr)
    assert set(s) == {"h", "w", "C", "M"}
    h, w, c, m = s["h"], s["w"], s["C"], s["M"]
    assert sympy.simplify(expr - (4 * h * w * c**2 + 2 * m**2 * h * w * c)) == 0


def test_model_formula_agrees_with_the_integer_walk():
    for name, res in [("vit_b16", (224, 224)), ("vit_b16", (232, 200)), ("swin_t", (320, 224)),
                      ("mixer_b16", (224, 224)), ("mvitv2_t", (224, 200)), ("igpt_s", (32, 48))]:
        expr = vitcost.formula(name)
        s = _named(expr)
        value = expr.subs({s["H"]: res[0], s["W"]: res[1]})
        assert int(value) == vitcost.estimate(name, res).macs, name
