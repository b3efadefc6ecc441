"""Wall time of a module's forward: warm-up, then repeated timed forwards under inference_mode.

On CUDA each forward is bracketed by CUDA events and the host synchronises before reading them, so
the figure is the GPU's execution time of the forward (kernel launch included), not the time to
enqueue it. On the CPU the intra-op thread count is fixed first (when asked) and recorded, because CPU
timings mean little without it, and each forward is timed by `cpu_clock`: with one thread the calling
thread's CPU time, which other processes sharing the core do not inflate; with more, the wall clock.

The result reports the median and the spread, the interquartile range (q3 - q1 of the repeats, the
full range when fewer than four repeats ran), which is robust to the odd slow run of a shared machine.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from vitcost.errors import VitcostError


@dataclass(frozen=True)
class Timing:
    """Seconds per forward over `repeats` timed runs after `warmup` untimed ones."""

    median_s: float
    spread_s: float  # interquartile range (full range under four repeats)
    min_s: float
    max_s: float
    times_s: tuple[float, ...]
    warmup: int
    device: str
    threads: int


def spread(times: list[float]) -> float:
    """Interquartile range of `times` (inclusive quartiles), or max - min under four samples."""
    if len(times) < 2:
        return 0.0
    if len(times) < 4:
        return max(times) - min(times)
    q1, _, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return q3 - q1


def set_threads(threads: int | None) -> int:
    """Fix torch's intra-op thread count (when given) and return the count in force."""
    if threads is not None:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def cpu_clock(device: Any) -> Any:
    """The clock a timing on `device` reads (a zero-argument function of seconds): on the CPU with one
    intra-op thread the calling thread does all the work (torch runs its parallel loops inline), and its
    CPU time (`time.thread_time`, user + system) is the run's time on an idle core, however busy the
    machine; with more threads, or on CUDA (timed by events), the wall clock (`time.perf_counter`)."""
    return time.thread_time if str(device).startswith("cpu") and torch.get_num_threads() == 1 else time.perf_counter


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(module: torch.nn.Module, x: torch.Tensor, *, warmup: int = 2, repeats: int = 5,
                 threads: int | None = None, context: Any = None) -> Timing:
    """Time `module(x)`: `warmup` untimed forwards, then `repeats` timed ones, all under inference_mode.

    `context`, when given, is a zero-argument callable returning a context manager entered around
    every forward (for example an SDPA backend selection)."""
    if repeats < 1 or warmup < 0:
        raise VitcostError(f"need at least one repeat and no negative warm-up, got repeats={repeats}, "
                           f"warmup={warmup}.")
    device = x.device
    nthreads = set_threads(threads)
    enter = context or contextlib.nullcontext
    clock = cpu_clock(device)
    times: list[float] = []
    with torch.inference_mode():
        for _ in range(warmup):
            with enter():
                module(x)
        _sync(device)
        for _ in range(repeats):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                with enter():
                    start.record()
                    module(x)
                    end.record()
                torch.cuda.synchronize(device)
                times.append(start.elapsed_time(end) / 1e3)  # elapsed_time is in milliseconds
            else:
                with enter():
                    t0 = clock()
                    module(x)
                    times.append(clock() - t0)
    return Timing(statistics.median(times), spread(times), min(times), max(times), tuple(times), warmup,
                  str(device), nthreads)


__all__ = ["Timing", "cpu_clock", "time_forward", "set_threads", "spread"]
