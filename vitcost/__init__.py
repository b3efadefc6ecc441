"""vitcost: what will this attention design cost at 1024 px?

The top level stays light: torch, sympy, pandas and plotly are imported only by the functions that
need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitcost.analytic.estimate import Estimate, estimate
from vitcost.errors import SpecError, VitcostError
from vitcost.specs import MixerSpec, MViTSpec, PixelSpec, SwinSpec, ViTSpec
from vitcost.zoo import PRESETS

if TYPE_CHECKING:
    import pandas
    import sympy

__version__ = "0.1.0"


def compare(models: list[str] | None = None, res: list[Any] | None = None, batch: int = 1,
            dtype: str = "fp32") -> pandas.DataFrame:
    """One row per model x resolution (see `Estimate.row`), plus `growth` against the smallest
    resolution in MACs. Models are preset names or family names; default: one per family."""
    import pandas

    from vitcost.report.rows import compare_rows

    return pandas.DataFrame(compare_rows(models, res or [224], batch=batch, dtype=dtype))


def formula(kind: str) -> sympy.Expr:
    """Symbolic MACs: `global_attention` / `window_attention` (Swin Eq. 1-2, symbols h, w, C, M),
    or a preset name (symbols H, W)."""
    from vitcost.analytic.symbolic import formula as _formula

    return _formula(kind)


def count(module: Any, input_shape: Any, **kwargs: Any) -> Any:
    """Count a torch module's cost with fvcore and FlopCounterMode (see `vitcost.measure.counting`)."""
    from vitcost.measure.counting import count as _count

    return _count(module, input_shape, **kwargs)


__all__ = ["Estimate", "estimate", "compare", "formula", "count", "SpecError", "VitcostError", "PRESETS",
           "ViTSpec", "PixelSpec", "SwinSpec", "MViTSpec", "MixerSpec"]
