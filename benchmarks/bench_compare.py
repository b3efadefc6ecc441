"""Wall time of `vitcost compare --res 224 512 1024` as a ratio to a bare `python -c "import typer, rich"`.

Both run as fresh processes, interleaved, in the same run, so machine noise hits both alike; the
ratio of medians is the figure (the ratio of minima is printed too). Target: <= 1.5x. Beside it, the same
compare with a device profile (`--hardware rtx4090`, the time columns) against compare without one:
target <= 1.1x, and with the per-op time model (`--dtype bf16 --amp`) for the record.

vitcost is byte-compiled first, as `pip install` does for typer and rich: an editable install under
PYTHONDONTWRITEBYTECODE=1 would otherwise recompile vitcost's sources in every process and measure
the compiler rather than the tool.

    python benchmarks/bench_compare.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

BASELINE = [sys.executable, "-c", "import typer, rich"]
COMPARE = [sys.executable, "-m", "vitcost", "compare", "--res", "224", "512", "1024"]
WITH_HW = [*COMPARE, "--hardware", "rtx4090"]
PER_OP = [*WITH_HW, "--dtype", "bf16", "--amp", "--batch", "256"]
TARGET = 1.5
HW_TARGET = 1.1


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    import compileall

    import vitcost

    compileall.compile_dir(os.path.dirname(vitcost.__file__), quiet=1)
    wall(BASELINE), wall(COMPARE), wall(WITH_HW), wall(PER_OP)  # warm the file cache
    base, comp, hw, per_op = [], [], [], []
    for _ in range(args.repeats):
        base.append(wall(BASELINE))
        comp.append(wall(COMPARE))
        hw.append(wall(WITH_HW))
        per_op.append(wall(PER_OP))
    b, c = statistics.median(base), statistics.median(comp)
    ratio = c / b
    print(f"import typer, rich : median {b * 1e3:7.1f} ms  (min {min(base) * 1e3:.1f}, max {max(base) * 1e3:.1f})")
    print(f"vitcost compare    : median {c * 1e3:7.1f} ms  (min {min(comp) * 1e3:.1f}, max {max(comp) * 1e3:.1f})")
    print(f"ratio              : {ratio:.2f}x of medians, {min(comp) / min(base):.2f}x of minima  "
          f"(target <= {TARGET}x: {'met' if ratio <= TARGET else 'NOT met'})")
    h, q = statistics.median(hw), statistics.median(per_op)
    print(f"--hardware rtx4090 : median {h * 1e3:7.1f} ms  {h / c:.2f}x of compare "
          f"(target <= {HW_TARGET}x: {'met' if h / c <= HW_TARGET else 'NOT met'})")
    print(f"  + bf16 --amp b256: median {q * 1e3:7.1f} ms  {q / c:.2f}x of compare (the per-op time model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
