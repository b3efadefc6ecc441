"""Device profiles for the roofline and the memory wall: data, not code.

A profile is a TOML file (`vitcost/devices/*.toml` for the built-in ones; a user's own in
`$XDG_CONFIG_HOME/vitcost/devices/`, else `~/.config/vitcost/devices/`, where a file's stem is its
name). Each figure is a table of one value in a stated unit and its `source` (a vendor document, a
derivation from one, "assumed: ..." or a fit on named data):

    name = "H100 SXM"                     # the label captions and rows carry
    description = "..."                   # optional
    indicative = false                    # true: the figures are guesses (the `cpu` profile)
    per_thread = false                    # true: figures are per CPU thread, scaled by the thread count
    threads = 2                           # optional: the CPU thread count the figures were measured at
    [memory]          gib | gb | bytes    # device memory (marketed "80 GB" of HBM is 80 GiB of chips)
    [bandwidth]       tb_per_s | gb_per_s (and cap_gb_per_s with per_thread)
    [vector]          tflops | gflops     # the peak of elementwise work: norms, softmax, GELU, adds
    [matmul.fp32]     tflops | gflops     # matmul/conv peaks per dtype, dense (no sparsity), with the
    [matmul.fp16]     ...                 # accumulate torch uses (fp32 for fp16/bf16: GeForce cards run
    [matmul.bf16]     ...                 # it at half their FP16-accumulate rate)
    [launch_overhead] us | s              # optional: one kernel launch (the per-op time model's)
    [efficiency]                          # optional: the per-op time model's figures (`time_model`), with a
                                          # `source`, and one table per kernel class:
    [efficiency.gemm] fraction, half_work # the share of the class's roof a large launch reaches, and the
                                          # work per launch at which it reaches half of that
    [calibration]                         # optional, written by `vitcost calibrate`: where and how the
                                          # figures were measured (device = "cpu" | "cuda", host, date,
                                          # torch, threads, min_matmul_flops: the smallest matmul launch
                                          # measured, and `runs`: every micro-benchmark's median seconds
                                          # and the spread of its repeats)

fp32 matmuls run on the FP32 pipes unless TF32 is switched on (torch's default for matmul is off), so
`fp32` is the FP32 figure. Elementwise work never runs on tensor cores: the roofline gives it the
vector peak. `get_hardware(name_or_file)` is the one entry point. This module does not import torch.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

from vitcost.errors import VitcostError
from vitcost.vocab import parse_bytes, parse_size

TB = 10**12
GIB = 2**30
DTYPES = ("fp32", "fp16", "bf16")
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "devices"

# section -> unit key -> factor to the base unit (FLOP/s, bytes/s, bytes, seconds)
_UNITS: dict[str, dict[str, float]] = {
    "flops": {"tflops": 1e12, "gflops": 1e9},
    "bandwidth": {"tb_per_s": 1e12, "gb_per_s": 1e9},
    "memory": {"gib": GIB, "gb": 1e9, "bytes": 1},
    "launch_overhead": {"us": 1e-6, "s": 1},
}


@dataclass(frozen=True)
class Hardware:
    """Peak arithmetic (FLOP/s) per dtype for matmuls, the vector peak for elementwise work, memory
    bandwidth (bytes/s) and memory size (bytes), each with its source. `indicative` marks guesses."""

    name: str
    matmul_flops: dict[str, float]  # dtype -> FLOP/s of matmul/conv work
    vector_flops: float  # FLOP/s of elementwise work (norms, softmax, GELU, adds)
    bandwidth: float  # bytes/s
    memory: int  # bytes (0: unknown, the machine's for a CPU)
    indicative: bool = False
    key: str = ""  # the profile's name (h100-sxm) or its file
    description: str = ""
    launch_overhead: float | None = None  # seconds per kernel launch
    efficiency: dict[str, Any] = field(default_factory=dict)  # kernel class -> efficiency.Efficiency
    sources: dict[str, str] = field(default_factory=dict)  # figure (memory, bandwidth, vector, fp16, ...) -> source
    overridden: str = ""  # what --peak-tflops / --bandwidth changed
    per_thread: bool = False  # the figures were per CPU thread, scaled by the thread count
    threads: int | None = None  # the CPU thread count a measured profile's figures hold for
    calibration: dict[str, Any] = field(default_factory=dict)  # `vitcost calibrate`'s record (see the docstring)

    @property
    def cpu(self) -> bool:
        """Whether the profile describes a CPU (the per-thread preset, or one calibrated on a CPU)."""
        return self.per_thread or self.calibration.get("device") == "cpu"

    def peak(self, dtype: str) -> float:
        """Matmul peak for `dtype` (fp32 | fp16 | bf16) in FLOP/s."""
        try:
            return self.matmul_flops[str(dtype)]
        except KeyError:
            raise VitcostError(f"no peak figure for dtype {dtype!r} on {self.name}.") from None

    @property
    def label(self) -> str:
        """The caption's name: the profile, and what the user overrode."""
        return f"{self.name} ({self.overridden}, overridden)" if self.overridden else self.name

    def override(self, peak_tflops: float | None = None, bandwidth: float | None = None,
                 dtype: str = "fp32") -> Hardware:
        """The same device with the matmul peak of `dtype` set to `peak_tflops` (TFLOP/s) — every other
        dtype's peak and the vector peak scaled by the same factor — and/or the bandwidth (bytes/s)."""
        hw, said = self, []
        if peak_tflops is not None:
            if not 0 < peak_tflops < math.inf:
                raise VitcostError(f"--peak-tflops must be a positive finite number, got {peak_tflops}.")
            k = peak_tflops * TB / hw.peak(dtype)
            hw = replace(hw, matmul_flops={d: f * k for d, f in hw.matmul_flops.items()}, vector_flops=hw.vector_flops
                         * k)
            said.append(f"{dtype} peak {peak_tflops:g} TFLOP/s")
        if bandwidth is not None:
            if not 0 < bandwidth < math.inf:
                raise VitcostError(f"--bandwidth must be a positive finite number, got {bandwidth}.")
            hw = replace(hw, bandwidth=bandwidth)
            said.append(f"bandwidth {bandwidth / TB:g} TB/s")
        return replace(hw, overridden=", ".join(filter(None, [self.overridden, *said]))) if said else hw


# ---------------------------------------------------------------------------------------------
# Reading and writing profiles

def _figure(data: dict[str, Any], section: str, units: str, where: str, extra: tuple[str, ...] = ()) -> tuple[float,
                                                                                                               str]:
    """(value in base units, source) of one figure table; one-line errors naming the file and field."""
    table = data.get(section) if "." not in section else data.get("matmul", {}).get(section.split(".")[1])
    if not isinstance(table, dict):
        raise VitcostError(f"{where}: missing [{section}] (a value in {' or '.join(_UNITS[units])}, and its source).")
    given = [k for k in _UNITS[units] if k in table]
    unknown = [k for k in table if k not in _UNITS[units] and k != "source" and k not in extra]
    if unknown or len(given) != 1:
        raise VitcostError(f"{where}: [{section}] takes one of {', '.join(_UNITS[units])} and a source"
                           + (f", not {unknown[0]!r}." if unknown else "."))
    value = table[given[0]]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise VitcostError(f"{where}: [{section}] {given[0]} must be a positive finite number, got {value!r}.")
    source = table.get("source")
    if not isinstance(source, str) or not source.strip():
        raise VitcostError(f"{where}: [{section}] needs a source (a vendor document, \"assumed: ...\", a fit).")
    scaled = value * _UNITS[units][given[0]]
    if not scaled < math.inf:  # 1.8e308 GB is finite, but not in bytes
        raise VitcostError(f"{where}: [{section}] {given[0]} = {value!r} is too large for a device.")
    return scaled, source


def _efficiency(data: dict[str, Any], where: str, sources: dict[str, str]) -> dict[str, Any]:
    """A profile's [efficiency] table read by the time model (`efficiency.efficiency_from_table`), its
    source recorded in `sources`; empty until the time model is fitted for the device."""
    efficiency = dict(data.get("efficiency", {})) if isinstance(data.get("efficiency", {}), dict) else None
    if efficiency is None:
        raise VitcostError(f"{where}: [efficiency] is a table of kernel class -> {{fraction, half_work}}.")
    source = efficiency.pop("source", "")
    if not efficiency:
        return efficiency
    from vitcost.analytic.efficiency import efficiency_from_table

    if not isinstance(source, str) or not source.strip():
        raise VitcostError(f"{where}: [efficiency] needs a `source` (fitted on what, measured, or assumed "
                           "from which card).")
    try:
        efficiency = efficiency_from_table(efficiency)
    except VitcostError as e:
        raise VitcostError(f"{where}: {e}") from None
    sources["efficiency"] = source
    return efficiency


def profile_from_dict(data: dict[str, Any], key: str, where: str, threads: int = 1,
                      memory: int | None = None) -> Hardware:
    """A Hardware from a parsed profile (see the module docstring); `where` names it in errors."""
    known = {"name", "description", "indicative", "per_thread", "threads", "memory", "bandwidth", "vector",
             "matmul", "launch_overhead", "efficiency", "calibration"}
    unknown = [k for k in data if k not in known]
    if unknown:
        raise VitcostError(f"{where}: unknown field {unknown[0]!r}; a profile holds {', '.join(sorted(known))}.")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise VitcostError(f"{where}: missing `name` (the device's label).")
    per_thread = data.get("per_thread", False)
    indicative = data.get("indicative", False)
    if not isinstance(per_thread, bool) or not isinstance(indicative, bool):
        raise VitcostError(f"{where}: `per_thread` and `indicative` are true or false.")
    sources: dict[str, str] = {}
    peaks: dict[str, float] = {}
    for dt in DTYPES:
        peaks[dt], sources[dt] = _figure(data, f"matmul.{dt}", "flops", where)
    extra = [k for k in data.get("matmul", {}) if k not in DTYPES]
    if extra:
        raise VitcostError(f"{where}: [matmul] holds {', '.join(DTYPES)}, not {extra[0]!r}.")
    vector, sources["vector"] = _figure(data, "vector", "flops", where)
    bandwidth, sources["bandwidth"] = _figure(data, "bandwidth", "bandwidth", where,
                                              ("cap_gb_per_s",) if per_thread else ())
    if per_thread:
        if threads < 1:
            raise VitcostError(f"thread count must be at least 1, got {threads}.")
        cap = data["bandwidth"].get("cap_gb_per_s")
        peaks = {d: f * threads for d, f in peaks.items()}
        vector *= threads
        bandwidth *= threads
        if cap is not None:
            if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not 0 < cap < math.inf:
                raise VitcostError(f"{where}: [bandwidth] cap_gb_per_s must be a positive finite number, got {cap!r}.")
            bandwidth = min(bandwidth, cap * 1e9)
        name = f"{name} ({threads} thread{'s' if threads != 1 else ''})"
    if "memory" in data or not per_thread:
        mem, sources["memory"] = _figure(data, "memory", "memory", where)
        size = int(mem)
    else:
        size = memory or 0
    launch = None
    if "launch_overhead" in data:
        launch, sources["launch_overhead"] = _figure(data, "launch_overhead", "launch_overhead", where)
    efficiency = _efficiency(data, where, sources)
    return Hardware(name.strip(), peaks, vector, bandwidth, size, indicative, key, str(data.get("description", "")),
                    launch, dict(efficiency), sources, per_thread=per_thread,
                    threads=_threads(data, where, per_thread), calibration=_calibration(data, where))


def _threads(data: dict[str, Any], where: str, per_thread: bool) -> int | None:
    """A measured CPU profile's thread count (none for a per-thread profile, which scales with any)."""
    n = data.get("threads")
    if n is None:
        return None
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or per_thread:
        raise VitcostError(f"{where}: `threads` is a whole number of at least 1, for a profile that is not "
                           f"per_thread; got {n!r}.")
    return n


def _calibration(data: dict[str, Any], where: str) -> dict[str, Any]:
    """The [calibration] record, kept as written; its figures the time model reads are checked."""
    cal = data.get("calibration", {})
    if not isinstance(cal, dict):
        raise VitcostError(f"{where}: [calibration] is a table (written by `vitcost calibrate`).")
    low = cal.get("min_matmul_flops", 1.0)
    if isinstance(low, bool) or not isinstance(low, (int, float)) or not 0 < low < math.inf:
        raise VitcostError(f"{where}: [calibration] min_matmul_flops must be a positive number, got {low!r}.")
    if cal.get("device", "cpu") not in ("cpu", "cuda"):
        raise VitcostError(f"{where}: [calibration] device is cpu or cuda, got {cal['device']!r}.")
    return dict(cal)


def load_profile(path: str | Path, threads: int = 1, memory: int | None = None, key: str | None = None) -> Hardware:
    """The profile in the TOML file `path`."""
    from vitcost.design import parse_toml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VitcostError(f"hardware profile {p} does not exist.") from None
    except IsADirectoryError:
        raise VitcostError(f"hardware profile {p} is a folder, not a TOML file.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise VitcostError(f"cannot read hardware profile {p}: {getattr(e, 'strerror', None) or e}.") from None
    data = parse_toml(text, p)
    return profile_from_dict(data, key or str(p), str(p), threads, memory)


def profile_toml(hw: Hardware) -> str:
    """`hw` as a profile file (the format of the module docstring), every figure with its source. A
    per-thread profile is written as the fixed device it is at its thread count."""
    from vitcost.design import toml_value

    def table(section: str, unit: str, value: float, source: str) -> list[str]:
        # 12 significant digits: a unit conversion's float noise (1.03e-06 s -> 1.0299999999999998 us) goes
        value = float(f"{value:.12g}") if isinstance(value, float) else value
        return [f"[{section}]", f"{unit} = {toml_value(value)}", f"source = {toml_value(source)}", ""]

    src = hw.sources
    lines = [f"# vitcost device profile: {hw.description or hw.name}", "", f"name = {toml_value(hw.name)}"]
    if hw.description:
        lines.append(f"description = {toml_value(hw.description)}")
    lines += [f"indicative = {toml_value(hw.indicative)}"]
    lines += ([f"threads = {hw.threads}"] if hw.threads is not None else []) + [""]
    if hw.memory:
        lines += (table("memory", "gib", hw.memory // GIB, src.get("memory", "")) if hw.memory % GIB == 0 else
                  table("memory", "bytes", hw.memory, src.get("memory", "")))
    lines += table("bandwidth", "tb_per_s", hw.bandwidth / TB, src.get("bandwidth", ""))
    lines += table("vector", "tflops", hw.vector_flops / TB, src.get("vector", ""))
    for dt in DTYPES:
        lines += table(f"matmul.{dt}", "tflops", hw.matmul_flops[dt] / TB, src.get(dt, ""))
    if hw.launch_overhead is not None:
        lines += table("launch_overhead", "us", hw.launch_overhead * 1e6, src.get("launch_overhead", ""))
    lines.append("[efficiency]")
    if hw.efficiency:
        lines.append(f"source = {toml_value(src.get('efficiency', ''))}")
    for op_class, e in hw.efficiency.items():
        lines.append(f"{op_class} = {{ fraction = {e.fraction:.4g}, half_work = {e.half_work:.4g} }}")
    if hw.calibration:
        lines += ["", "[calibration]"] + _calibration_lines(hw.calibration, toml_value)
    return "\n".join(lines) + "\n"


def _calibration_lines(cal: dict[str, Any], toml_value: Any) -> list[str]:
    """The [calibration] table's lines: its scalars, then `runs` as an array of one-line inline tables."""
    def inline(row: dict[str, Any]) -> str:
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in row.items()) + " }"

    lines = [f"{k} = {toml_value(v)}" for k, v in cal.items() if k != "runs"]
    if "runs" in cal:
        lines += ["runs = ["] + [f"  {inline(r)}," for r in cal["runs"]] + ["]"]
    return lines


# ---------------------------------------------------------------------------------------------
# Names

def user_dir() -> Path:
    """Where a user's own profiles live: $XDG_CONFIG_HOME/vitcost/devices, else ~/.config/vitcost/devices."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vitcost" / "devices"


def known_hardware() -> dict[str, Path]:
    """Every hardware name -> its file: the built-in profiles, then the user's (which may replace one)."""
    names = {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}
    udir = user_dir()
    if udir.is_dir():
        names.update({p.stem.lower(): p for p in sorted(udir.glob("*.toml"))})
    return names


@cache
def _builtin(key: str, threads: int, memory: int | None) -> Hardware:
    return load_profile(BUILTIN_DIR / f"{key}.toml", threads, memory, key)


def get_hardware(name: str | Path, threads: int = 1, memory: int | None = None) -> Hardware:
    """A device by name (a built-in profile such as h100-sxm, l4, rtx4090 or cpu, or a file in the user's
    profile directory) or by the path of a profile file. `threads` and `memory` apply to per-thread
    profiles (cpu): its figures scale with the threads, its memory is the machine's."""
    text = str(name).strip()
    if isinstance(name, Path) or text.lower().endswith(".toml") or os.sep in text:
        return load_profile(text, threads, memory)
    key = text.lower()
    path = known_hardware().get(key)
    if path is None:
        raise VitcostError(f"unknown --hardware {text!r} (a profile's name or a .toml file); known: "
                           f"{', '.join(known_hardware())}.")
    if path.parent == BUILTIN_DIR:
        return _builtin(key, threads, memory)
    return load_profile(path, threads, memory, key)


def cpu_preset(threads: int, memory: int | None = None) -> Hardware:
    """The indicative CPU profile for `threads` threads."""
    return get_hardware("cpu", threads, memory)


def builtin_names() -> tuple[str, ...]:
    return tuple(p.stem for p in sorted(BUILTIN_DIR.glob("*.toml")))


def preset_for_device_name(device_name: str) -> str | None:
    """The profile matching a CUDA device name ("NVIDIA H100 80GB HBM3" -> h100-sxm), or None."""
    n = device_name.upper().replace("GEFORCE ", "")
    if "H200" in n:
        return "h200"
    if "H100" in n:
        return "h100-pcie" if "PCIE" in n else "h100-sxm"
    if "A100" in n:
        return "a100"
    if "L40S" in n:
        return "l40s"
    if "RTX PRO 6000" in n and "MAX-Q" in n:
        return "rtx-pro-6000-maxq"
    for card in ("3090", "4090", "5090"):
        if f"RTX {card}" in n and "TI" not in n.split(card, 1)[1][:4]:
            return f"rtx{card}"
    if n.endswith(" L4") or n == "L4":
        return "l4"
    return None


def __getattr__(attr: str) -> Any:
    # PRESETS and HARDWARE_NAMES are read lazily: importing this module parses no profile
    if attr == "PRESETS":
        return {k: get_hardware(k) for k in builtin_names() if k != "cpu"}
    if attr == "HARDWARE_NAMES":
        return tuple(known_hardware())
    raise AttributeError(attr)


__all__ = ["Hardware", "cpu_preset", "get_hardware", "preset_for_device_name",
           "load_profile", "profile_from_dict", "profile_toml", "known_hardware", "user_dir", "builtin_names",
           "parse_bytes", "parse_size"]
