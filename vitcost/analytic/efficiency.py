"""The per-op time model's efficiency figures as a device profile carries them: the kernel classes, one
`Efficiency` per class (`[efficiency.<class>]`: the share of the class's roof a large launch reaches and
the work per launch at which it reaches half of that), read and checked here so that loading a profile
does not import the time model itself (`vitcost.analytic.time_model`, which reads them).

This module does not import torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vitcost.errors import VitcostError

# The largest efficiency fraction a profile may carry: a GeForce card's boost clock can run ~20% above the
# clock its vendor peak is quoted at; a figure further above the roof is a wrong peak, not an efficiency.
MAX_FRACTION = 1.5

MATMUL_CLASSES = ("gemm", "conv", "flash", "efficient")
MEMORY_CLASSES = ("depthwise", "memory", "gather")
# A class a profile may leave out, and the class whose figures it then takes
FALLBACK = {"gather": "memory"}
CLASSES = MATMUL_CLASSES + MEMORY_CLASSES


@dataclass(frozen=True)
class Efficiency:
    """One `[efficiency.<class>]` table: the share of the roof a large launch reaches (`fraction`,
    0 < fraction <= MAX_FRACTION; above 1 where a card holds a higher clock than the one its vendor quotes
    the peak at) and the work per launch at which half of it is reached (`half_work`, FLOPs for
    matmul classes, bytes for memory classes; 0 = the rate does not depend on size)."""

    fraction: float
    half_work: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= MAX_FRACTION:
            raise VitcostError(f"efficiency fraction must be in (0, {MAX_FRACTION}], got {self.fraction}.")
        if not (self.half_work >= 0 and math.isfinite(self.half_work)):
            raise VitcostError(f"efficiency half_work must be a finite number >= 0, got {self.half_work}.")


def efficiency_from_table(table: Mapping[str, Any]) -> dict[str, Efficiency]:
    """The `[efficiency]` table of a device profile ({class: {fraction, half_work}}) as Efficiency records;
    an unknown class or field is an error."""
    out = {}
    for cls, t in table.items():
        if cls not in CLASSES:
            raise VitcostError(f"unknown efficiency class {cls!r}; choose from {', '.join(CLASSES)}.")
        if not isinstance(t, Mapping) or set(t) - {"fraction", "half_work"} or "fraction" not in t:
            raise VitcostError(f"[efficiency.{cls}] takes `fraction` and optionally `half_work`, got {t!r}.")
        fraction, half_work = t["fraction"], t.get("half_work", 0.0)
        for what, v, lo in (("fraction", fraction, 0.0), ("half_work", half_work, -1.0)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= lo:
                raise VitcostError(f"[efficiency.{cls}] {what} must be a finite number "
                                   f"{'above 0' if what == 'fraction' else 'of at least 0'}, got {v!r}.")
        if fraction > MAX_FRACTION:
            raise VitcostError(f"[efficiency.{cls}] fraction {fraction} is above {MAX_FRACTION} of the vendor peak.")
        out[cls] = Efficiency(float(fraction), float(half_work))
    return out


__all__ = ["CLASSES", "FALLBACK", "MATMUL_CLASSES", "MAX_FRACTION", "MEMORY_CLASSES", "Efficiency",
           "efficiency_from_table"]
