"""The `vitcost` command line. Each command lives in its own module and registers itself on `app`."""

from vitcost.cli import check as _check  # noqa: F401
from vitcost.cli import compare as _compare  # noqa: F401  (registers compare, models, formula)
from vitcost.cli import profile as _profile  # noqa: F401
from vitcost.cli import report as _report  # noqa: F401
from vitcost.cli.app import app, main

__all__ = ["app", "main"]
