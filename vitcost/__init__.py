"""vitcost: what will this attention design cost at 1024 px?

The top level stays light: torch, sympy, pandas and plotly are imported only by the functions that
need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vitcost.analytic.estimate import Estimate, evaluate
from vitcost.design import Design, load_spec_file, parse_design, parse_formula, parse_models
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
from vitcost.vocab import parse_convention, parse_dtype, parse_kernel, parse_res, parse_resolutions, whole
from vitcost.zoo import PRESETS

if TYPE_CHECKING:
    import pandas
    import sympy

from vitcost.version import __version__ as __version__


def estimate(model: Any, res: Any = 224, batch: Any = 1, dtype: Any = "fp32", attn: Any = "math",
             amp: bool = False) -> Estimate:
    """Analytic cost of `model` on a [batch, C, H, W] input: a preset name, a spec file, either with `:field=value`
    overrides, a spec object or a Design (see `vitcost.design`); `res` 224, "512x384" or (H, W), or a clip [batch,
    C, T, H, W] as "16x224x224" or (T, H, W) (families with a time axis); `dtype` fp32 | fp16 | bf16; `attn` math |
    sdpa | flash | efficient. `amp`: autocast at `dtype` (fp16 | bf16) over fp32 weights and an fp32 input, as
    timm's `benchmark.py --amp` runs it. The input is parsed here, once (`vitcost.analytic.estimate.evaluate` takes
    the typed values).

    >>> e = estimate("vit_b16", res=224)
    >>> e.count("fvcore"), e.params, e.activation_peak_bytes
    """
    b = whole(batch, "batch")
    dt, kernel = parse_dtype(dtype), parse_kernel(attn)
    return evaluate(parse_design(model), parse_res(res), b, dt, kernel, amp)


def compare(models: Any = None, res: Any = 224, batch: int = 1, dtype: str = "fp32", attn: str = "math",
            convention: str = "macs", hardware: Any = None, amp: bool = False) -> pandas.DataFrame:
    """One row per design x resolution (see `report.rows.estimate_row`), plus `cost` in `convention` and `growth`
    against the smallest resolution. `models`: one design or a list of them, each a preset or family name, a spec
    file, a name with `:field=value` overrides, a spec object or a Design (default: one preset per family); `res`:
    one resolution or a list (clips as "TxHxW", see `estimate`). `hardware` (a device profile's name or file, or a
    `Hardware`): adds `hardware`, `time_s` (one forward of the batch) and `images_per_s`; `amp`: autocast at `dtype`
    over fp32 weights, as timm's --amp runs it."""
    import pandas

    from vitcost.analytic.hardware import Hardware, get_hardware
    from vitcost.report.rows import compare_estimates, compare_rows

    if isinstance(models, dict) or isinstance(models, (list, tuple)) and not models:
        raise VitcostError(f"models must be a design or a non-empty list of them, not {models!r}.")
    designs, sizes = parse_models(models), parse_resolutions(res)
    b = whole(batch, "batch")
    dt, kernel, conv = parse_dtype(dtype), parse_kernel(attn), parse_convention(convention).value
    hw = hardware if hardware is None or isinstance(hardware, Hardware) else get_hardware(hardware)
    return pandas.DataFrame(compare_rows(compare_estimates(designs, sizes, b, dt, kernel, amp), conv, hw))


def sweep(base: Any, vary: Any = None, res: Any = 224, limits: Any = None, pareto: Any = None, *, batch: Any = 1,
          dtype: Any = "fp32", hardware: Any = None, attn: str = "math", amp: bool | None = None,
          mode: str = "inference", optimizer: str | None = None, checkpoint: str | None = None,
          convention: str = "macs", sample: int | None = None, seed: int = 0, jobs: int = 1,
          max_designs: int = 1_000_000) -> pandas.DataFrame:
    """Search a design space: one row per surviving design, each `compare`'s row for its `label` (the
    base with the fields that differ from it), plus `pareto` (on the front of `pareto`'s objectives).

    `base`: a design (preset, spec file, overrides, spec object); `vary`: {field: values}, the values a
    list, a `range`, or text as `--vary` takes it ("6..24:6", "8,12,16"); `res`, `batch`, `dtype` and
    `hardware` may each be a list, crossed with the grid; `limits`: ["train_peak<=80GiB", "time<=250ms"];
    `pareto`: ["macs", "max:img/s"] or "macs,max:img/s". `df.attrs` holds `dropped` (designs dropped, by
    reason) and `evaluated`. With `jobs` > 1 the designs are costed in spawned processes: call it under
    `if __name__ == "__main__":` in a script."""
    import pandas

    from vitcost.report.sweep import sweep_rows

    result = sweep_rows(base, vary, res=res, batch=batch, dtype=dtype, hardware=hardware, attn=attn, amp=amp,
                        mode=mode, optimizer=optimizer, checkpoint=checkpoint, convention=convention, limits=limits,
                        pareto=pareto, sample=sample, seed=seed, max_designs=max_designs, jobs=jobs)
    df = pandas.DataFrame(result.rows)
    df.attrs.update(dropped=result.dropped, evaluated=result.evaluated)
    return df


def formula(kind: str) -> sympy.Expr:
    """Symbolic MACs: `global_attention` / `window_attention` (Swin Eq. 1-2, symbols h, w, C, M),
    `local_attention` (NAT Table 1, H, W, D, K), `conv` (H, W, Cin, Cout, K), or a design (symbols H, W)."""
    from vitcost.analytic.symbolic import formula as _formula

    return _formula(parse_formula(kind))


def count(module: Any, input_shape: Any, **kwargs: Any) -> Any:
    """Count a torch module's cost with fvcore and FlopCounterMode (see `vitcost.measure.counting`)."""
    try:
        from vitcost.measure.counting import count as _count

        return _count(module, input_shape, **kwargs)
    except ModuleNotFoundError as e:
        if e.name not in ("torch", "fvcore", "iopath", "psutil"):
            raise
        raise VitcostError(f"counting needs {e.name}, which is not installed: pip install 'vitcost[torch]'.") from None


__all__ = ["Estimate", "estimate", "compare", "sweep", "formula", "count", "SpecError", "VitcostError", "PRESETS",
           "Design", "parse_design", "load_spec_file",
           "ViTSpec", "PixelSpec", "SwinSpec", "SwinV2Spec", "MViTSpec", "MixerSpec", "NATSpec", "ConvNeXtSpec",
           "ResNetSpec"]
