"""Torch-free analytic cost model: a cost vector per op, one walker per family."""

from vitcost.analytic.cost import CONVENTIONS, Cost, Op, project
from vitcost.analytic.estimate import Estimate, evaluate, walk

__all__ = ["CONVENTIONS", "Cost", "Op", "project", "Estimate", "evaluate", "walk"]
