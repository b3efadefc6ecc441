"""Fitting a device's time-model figures on measured micro-benchmarks (`vitcost calibrate`).

Each measurement is a `Sample`: the kernel the time model would charge for the call that ran
(`time_model.Kernel`: its class, matmul FLOPs, other FLOPs, bytes and dtype) and the median seconds
it took. From a set of them, in this order:

* launch_s    the median time of the cheapest call (a one-element add): the per-kernel floor;
* bandwidth   the best bytes/s among the memory-class samples (a large add or copy);
* vector      the best other-FLOPs/s among the memory-class samples that carry vector work (GELU,
              softmax, LayerNorm);
* peak(dtype) the best FLOP/s among the gemm samples of that dtype;
* per class   `Efficiency(fraction, half_work)`: the pair minimising the sum of squared log ratios of
              `time_model.kernel_time` (the figure the model will give, its max with the memory term
              and the floor included) to the measured times. The memory class is fitted first (the
              matmul classes' memory term reads its fraction); a class without samples is left out.

The search: for each half_work on a log grid (and 0) the best fraction by golden-section search on its
log, then the best grid point refined by golden-section between its neighbours. The loss is smooth
and unimodal in the fraction for a fixed half_work, so this finds the optimum the tests derive by
hand. No torch here.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from vitcost.analytic.time_model import (
    CLASSES,
    MATMUL_CLASSES,
    MAX_FRACTION,
    Efficiency,
    Kernel,
    TimeDevice,
    kernel_time,
)
from vitcost.errors import VitcostError

_MIN_FRACTION = 1e-4
_GOLDEN = (math.sqrt(5) - 1) / 2


@dataclass(frozen=True)
class Sample:
    """One measured micro-benchmark: the kernel it runs and its median seconds over the repeats, with the
    repeats' relative spread ((max - min) / median) and a label."""

    name: str
    kernel: Kernel
    seconds: float
    spread: float = 0.0
    launch: bool = False  # the floor's probe (a one-element op), not a sample of its class


def _best(values: Iterable[float], what: str) -> float:
    values = [v for v in values if v > 0 and math.isfinite(v)]
    if not values:
        raise VitcostError(f"calibration measured no {what}.")
    return max(values)


def measured_peaks(samples: Sequence[Sample]) -> tuple[dict[str, float], float, float, float]:
    """(matmul peaks per dtype, vector peak, bandwidth, launch floor) of the samples (see the module
    docstring); dtypes without a gemm sample are missing from the peaks."""
    floor = [s.seconds for s in samples if s.launch]
    if not floor:
        raise VitcostError("calibration measured no launch floor (a one-element op).")
    body = [s for s in samples if not s.launch]
    memory = [s for s in body if s.kernel.cls == "memory"]
    bandwidth = _best((s.kernel.bytes / s.seconds for s in memory), "memory-bound op")
    vector = _best((s.kernel.other_flops / s.seconds for s in memory if s.kernel.other_flops), "vector op")
    peaks = {}
    for dtype in sorted({s.kernel.dtype for s in body if s.kernel.cls == "gemm"}):
        peaks[dtype] = _best((s.kernel.flops / s.seconds for s in body
                              if s.kernel.cls == "gemm" and s.kernel.dtype == dtype), f"{dtype} GEMM")
    return peaks, vector, bandwidth, statistics.median(floor)


def log_loss(samples: Sequence[Sample], device: TimeDevice) -> float:
    """Sum of squared log(predicted / measured) of `samples` on `device`."""
    return sum(math.log(kernel_time(s.kernel, device) / s.seconds) ** 2 for s in samples)


def _golden(f: Callable[[float], float], lo: float, hi: float, steps: int = 60) -> float:
    """The minimiser of a unimodal `f` on [lo, hi] by golden-section search."""
    a, b = lo, hi
    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(steps):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = f(d)
    return (a + b) / 2


def fit_class(cls: str, samples: Sequence[Sample], device: TimeDevice) -> Efficiency:
    """The Efficiency of class `cls` that best fits `samples` (all of that class) on `device` (whose
    other figures are already set): see the module docstring."""
    if not samples:
        raise VitcostError(f"no samples of class {cls!r} to fit.")
    work = [s.kernel.flops if cls in MATMUL_CLASSES else s.kernel.bytes for s in samples]
    top = max(work) or 1.0

    def loss(fraction: float, half_work: float) -> float:
        eff = dict(device.efficiency)
        eff[cls] = Efficiency(fraction, half_work)
        return log_loss(samples, replace(device, efficiency=eff))

    def best_fraction(half_work: float) -> float:
        return math.exp(_golden(lambda lf: loss(math.exp(lf), half_work), math.log(_MIN_FRACTION),
                                math.log(MAX_FRACTION)))

    grid = [0.0] + [top * 10 ** (k / 8) for k in range(-64, 17)]  # 1e-8 .. 100x the largest launch's work
    scored = [(loss(best_fraction(h), h), i) for i, h in enumerate(grid)]
    _, i = min(scored)
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    h = _golden(lambda x: loss(best_fraction(x), x), lo, hi, steps=40) if hi > lo else grid[i]
    for candidate in (grid[i], 0.0):  # a grid point (or no per-launch term) as good as the refined value wins
        if loss(best_fraction(candidate), candidate) <= loss(best_fraction(h), h) * (1 + 1e-9) + 1e-15:
            h = candidate
    return Efficiency(best_fraction(h), h)


# Fitting order: memory first (the matmul classes' memory term reads its fraction), then the rest
FIT_ORDER = ("memory",) + tuple(c for c in CLASSES if c != "memory")


def fit_device(name: str, samples: Sequence[Sample]) -> TimeDevice:
    """A TimeDevice fitted on `samples`: the measured peaks, bandwidth and floor, and one Efficiency per
    class with samples (see the module docstring)."""
    peaks, vector, bandwidth, floor = measured_peaks(samples)
    device = TimeDevice(name, peaks, vector, bandwidth, floor, {"memory": Efficiency(1.0)})
    body = [s for s in samples if not s.launch and (s.kernel.cls not in MATMUL_CLASSES or s.kernel.dtype in peaks)]
    for cls in FIT_ORDER:
        of_class = [s for s in body if s.kernel.cls == cls]
        if of_class:
            eff = dict(device.efficiency)
            eff[cls] = fit_class(cls, of_class, device)
            device = replace(device, efficiency=eff)
    return device


def ratios(samples: Sequence[Sample], device: TimeDevice) -> list[float]:
    """predicted / measured of every sample that is not the floor's probe."""
    return [kernel_time(s.kernel, device) / s.seconds for s in samples if not s.launch]


__all__ = ["FIT_ORDER", "Sample", "fit_class", "fit_device", "log_loss", "measured_peaks", "ratios"]
