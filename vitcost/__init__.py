"""vitcost: what will this attention design cost at 1024 px?

The top level stays light: torch, sympy, pandas and plotly are imported only by the functions that
need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitcost.analytic.estimate import Estimate, estimate
from vitcost.design import Design, load_spec_file, parse_design
from vitcost.errors import SpecError, VitcostError
from vitcost.specs import (
    ConvNeXtSpec,
    MixerSpec,
    MViTSpec,
    NATSpec,
    PixelSpec,
    ResNetSpec,
    SwinSpec,
    SwinV2Spec,
    ViTSpec,
)
from vitcost.zoo import PRESETS

if TYPE_CHECKING:
    import pandas
    import sympy

from vitcost.version import __version__ as __version__


def compare(models: Any = None, res: Any = 224, batch: int = 1, dtype: str = "fp32", attn: str = "math",
            convention: str = "macs", hardware: Any = None, amp: bool = False) -> pandas.DataFrame:
    """One row per design x resolution (see `Estimate.row`), plus `cost` in `convention` and `growth`
    against the smallest resolution. `models`: one design or a list of them, each a preset or family
    name, a spec file, a name with `:field=value` overrides, a spec object or a Design (default: one
    preset per family); `res`: one resolution or a list. `hardware` (a device profile's name or file, or
    a `Hardware`): adds `hardware`, `time_s` (one forward of the batch, a roofline) and `images_per_s`;
    `amp`: autocast at `dtype` over fp32 weights, as timm's --amp runs it."""
    import pandas

    from vitcost.report.rows import compare_rows

    if isinstance(models, dict) or isinstance(models, (list, tuple)) and not models:
        raise VitcostError(f"models must be a design or a non-empty list of them, not {models!r}.")

    return pandas.DataFrame(compare_rows(models, res, batch=batch, dtype=dtype, attn=attn, convention=convention,
                                         hardware=hardware, amp=amp))


def formula(kind: str) -> sympy.Expr:
    """Symbolic MACs: `global_attention` / `window_attention` (Swin Eq. 1-2, symbols h, w, C, M),
    `local_attention` (NAT Table 1, H, W, D, K), `conv` (H, W, Cin, Cout, K), or a design (symbols H, W)."""
    from vitcost.analytic.symbolic import formula as _formula

    return _formula(kind)


def count(module: Any, input_shape: Any, **kwargs: Any) -> Any:
    """Count a torch module's cost with fvcore and FlopCounterMode (see `vitcost.measure.counting`)."""
    try:
        from vitcost.measure.counting import count as _count

        return _count(module, input_shape, **kwargs)
    except ModuleNotFoundError as e:
        if e.name not in ("torch", "fvcore", "iopath", "psutil"):
            raise
        raise VitcostError(f"counting needs {e.name}, which is not installed: pip install 'vitcost[torch]'.") from None


__all__ = ["Estimate", "estimate", "compare", "formula", "count", "SpecError", "VitcostError", "PRESETS",
           "Design", "parse_design", "load_spec_file",
           "ViTSpec", "PixelSpec", "SwinSpec", "SwinV2Spec", "MViTSpec", "MixerSpec", "NATSpec", "ConvNeXtSpec",
           "ResNetSpec"]
