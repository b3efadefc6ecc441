"""The sweep's vocabulary, parsed before any design is costed: the columns a limit or objective names
(compare's JSON keys and their short names), limits with their units, objectives, and the axes of the
design space (`depth=6..24:6`, `heads=8,12,16`)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from vitcost.design import Design, field_types, parse_value, split_items
from vitcost.errors import SpecError, VitcostError
from vitcost.specs import coerce
from vitcost.vocab import RunMode, parse_bytes

# ---------------------------------------------------------------------------------------------
# Columns: compare's JSON keys, with the short names a limit or objective may use


@dataclass(frozen=True)
class Column:
    key: str  # compare's JSON key
    unit: str  # count | bytes | time | rate: how a limit's value is read
    modes: tuple[str, ...]  # the run modes whose rows have it
    needs_hardware: bool = False
    memory: bool = False  # an activation-memory figure, which autocast inference does not give


_BOTH = ("inference", "train")
COLUMNS: dict[str, Column] = {c.key: c for c in (
    Column("params", "count", _BOTH),
    Column("tokens", "count", _BOTH),
    Column("macs", "count", ("inference",)),
    Column("flops", "count", ("inference",)),
    Column("fvcore", "count", ("inference",)),
    Column("torch", "count", ("inference",)),
    Column("attn_matrix_bytes", "bytes", ("inference",), memory=True),
    Column("attn_matrix_peak_bytes", "bytes", ("inference",), memory=True),
    Column("activation_peak_bytes", "bytes", ("inference",), memory=True),
    Column("train_cost", "count", ("train",)),
    Column("forward_cost", "count", ("train",)),
    Column("train_peak_bytes", "bytes", ("train",)),
    Column("time_s", "time", _BOTH, needs_hardware=True),
    Column("images_per_s", "rate", _BOTH, needs_hardware=True),
)}
ALIASES = {"activation_peak": "activation_peak_bytes", "attn_matrix_peak": "attn_matrix_peak_bytes",
           "attn_matrix": "attn_matrix_bytes", "train_peak": "train_peak_bytes", "time": "time_s",
           "img/s": "images_per_s"}


def column(name: str, mode: RunMode, hardware: bool, amp: bool, what: str) -> Column:
    """The column `name` (a JSON key or an alias), checked against what the sweep's rows will have."""
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    col = COLUMNS.get(key)
    if col is None:
        names = ", ".join([*COLUMNS, *ALIASES])
        raise VitcostError(f"{what}: unknown column {name.strip()!r}; the columns are {names}.")
    if mode.value not in col.modes:
        hint = ("add --mode train" if mode is RunMode.inference
                else "a training step's rows have params, tokens, train_cost, forward_cost, train_peak_bytes, "
                     "time_s and images_per_s")
        raise VitcostError(f"{what}: {col.key} is not a column of {mode.value} rows ({hint}).")
    if col.needs_hardware and not hardware:
        raise VitcostError(f"{what}: {col.key} is a time on a device: give --hardware.")
    if col.memory and amp and mode is RunMode.inference:
        raise VitcostError(f"{what}: {col.key} is not modelled under autocast (--amp): its tensors have several "
                           "widths.")
    return col


_NUMBER = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
_COUNT = re.compile(rf"^\s*{_NUMBER}\s*([KMGTP]?)\s*$", re.IGNORECASE)
_TIME = re.compile(rf"^\s*{_NUMBER}\s*(s|ms|us|µs|ns|min)?\s*$")
_COUNT_SCALE = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}
_TIME_SCALE = {None: 1.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0}


def parse_amount(text: str, unit: str, what: str) -> float | int:
    """A limit's value in the column's unit: bytes as every memory size (80GB, 80GiB; a bare number is GB),
    times as 250ms, 1.5s (a bare number is seconds), counts and rates as 300M, 2G, 1.5e9."""
    if unit == "bytes":
        try:
            return parse_bytes(text)
        except VitcostError as e:
            raise VitcostError(f"{what}: {e}") from None
    if unit == "time":
        m = _TIME.match(text)
        if m is None:
            raise VitcostError(f"{what}: {text.strip()!r} is not a time such as 250ms, 1.5s or 300us.")
        return float(m.group(1)) * _TIME_SCALE[m.group(2)]
    m = _COUNT.match(text)
    if m is None:
        raise VitcostError(f"{what}: {text.strip()!r} is not a number such as 300M, 2G or 1500 "
                           "(K, M, G, T, P are powers of 1000).")
    value = float(m.group(1)) * _COUNT_SCALE[m.group(2).upper()]
    return int(value) if value.is_integer() and abs(value) < 2**63 else value


_OPS: dict[str, Callable[[Any, Any], bool]] = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b,
                                                "<": lambda a, b: a < b, ">": lambda a, b: a > b}
_LIMIT = re.compile(r"^\s*([A-Za-z_/]+)\s*(<=|>=|<|>)\s*(.*?)\s*$")


@dataclass(frozen=True)
class Limit:
    text: str  # as written, without spaces: the reason its drops are counted under
    key: str
    op: str
    value: float | int

    def holds(self, row: dict[str, Any]) -> bool:
        v = row.get(self.key)
        return v is not None and _OPS[self.op](v, self.value)


def parse_limit(text: str, mode: RunMode, hardware: bool, amp: bool) -> Limit:
    """"train_peak<=80GiB" -> Limit("train_peak<=80GiB", "train_peak_bytes", "<=", 80 * 2**30)."""
    m = _LIMIT.match(str(text))
    if m is None or not m.group(3):
        raise VitcostError(f"--limit {text!r} is not COLUMN<=VALUE (or <, >=, >), e.g. train_peak<=80GiB.")
    col = column(m.group(1), mode, hardware, amp, f"--limit {text!r}")
    value = parse_amount(m.group(3), col.unit, f"--limit {text!r}")
    return Limit(re.sub(r"\s+", "", str(text)), col.key, m.group(2), value)


@dataclass(frozen=True)
class Objective:
    key: str
    maximise: bool = False

    @property
    def text(self) -> str:
        return f"max:{self.key}" if self.maximise else self.key


def parse_objectives(items: Any, mode: RunMode, hardware: bool, amp: bool) -> list[Objective]:
    """"macs,activation_peak,max:img/s" (or a list of such names) -> objectives; each once."""
    texts = [items] if isinstance(items, str) else list(items or [])
    out: list[Objective] = []
    for part in (p.strip() for t in texts for p in str(t).split(",")):
        if not part:
            raise VitcostError(f"--pareto {','.join(map(str, texts))!r} has an empty objective; write "
                               "COLUMN,COLUMN,... with max: before a column to maximise.")
        sense, _, name = part.rpartition(":")
        if sense.lower() not in ("", "min", "max"):
            raise VitcostError(f"--pareto: {part!r}: the prefix is max: (maximise) or min:, not {sense}:.")
        col = column(name, mode, hardware, amp, f"--pareto {part!r}")
        if any(o.key == col.key for o in out):
            raise VitcostError(f"--pareto names {col.key} twice.")
        out.append(Objective(col.key, sense.lower() == "max"))
    return out


# ---------------------------------------------------------------------------------------------
# The design space


class FloatRange(Sequence):
    """lo, lo + step, ... (n values), each rounded to 12 digits so 0.1 steps print as written."""

    def __init__(self, lo: float, step: float, n: int) -> None:
        self.lo, self.step, self.n = lo, step, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return round(self.lo + (i % self.n) * self.step, 12)


@dataclass(frozen=True)
class Axis:
    field: str
    values: Sequence[Any]  # a list, a range or a FloatRange: never materialised when large


_RANGE = re.compile(r"^\s*(-?[0-9.eE+-]+?)\s*\.\.\s*(-?[0-9.eE+-]+?)\s*(?::\s*(\S+))?\s*$")


def _field_kind(name: str, design: Design, where: str) -> str:
    types = field_types(type(design.spec))
    if name not in types:
        raise VitcostError(f"{where}: {design.name} ({design.spec.family} family) has no field {name!r}; its "
                           f"fields are {', '.join(types)}.")
    return types[name]


def parse_vary(text: str, design: Design) -> Axis:
    """"depth=6..24:6" -> depth 6, 12, 18, 24; "heads=8,12,16" -> a list; values of the field's type."""
    name, eq, rest = str(text).partition("=")
    name, rest = name.strip(), rest.strip()
    if not eq or not name or not rest:
        raise VitcostError(f"--vary {text!r} is not FIELD=V1,V2,... or FIELD=LO..HI[:STEP].")
    where = f"--vary {text!r}"
    kind = _field_kind(name, design, where)
    if ".." in rest and not rest.startswith("["):
        return Axis(name, _range(rest, kind, where))
    items = split_items(rest)
    try:
        parsed = [parse_value(i, kind, f"{type(design.spec).__name__}.{name}") for i in items]
    except SpecError as e:
        raise VitcostError(f"{where}: {e}") from None
    return _axis(name, kind, parsed, design, where)


def axis_of(name: str, values: Any, design: Design) -> Axis:
    """An axis from Python values: a list of the field's values, or a `range` for a whole-number field."""
    where = f"vary[{name!r}]"
    kind = _field_kind(name, design, where)
    if isinstance(values, range):
        if kind != "int":
            raise VitcostError(f"{where}: a range needs a whole-number field; this one is {kind}.")
        if not len(values):
            raise VitcostError(f"{where}: the range {values} is empty.")
        return Axis(name, values)
    if kind == "tuple[int, ...]" and isinstance(values, tuple):
        values = [values]
    return _axis(name, kind, _listed(values), design, where)


def _axis(name: str, kind: str, values: list[Any], design: Design, where: str) -> Axis:
    out: list[Any] = []
    for v in values:
        try:
            c = coerce(design.spec, name, kind, v)
        except SpecError as e:
            raise VitcostError(f"{where}: {e}") from None
        if c not in out:
            out.append(c)
    if not out:
        raise VitcostError(f"{where} gives no value.")
    return Axis(name, out)


def _range(text: str, kind: str, where: str) -> Sequence[Any]:
    m = _RANGE.match(text)
    if kind not in ("int", "float"):
        raise VitcostError(f"{where}: a range LO..HI needs a number field; this one is {kind}: list its values.")
    if m is None:
        raise VitcostError(f"{where}: {text!r} is not a range LO..HI or LO..HI:STEP of numbers.")
    try:
        lo, hi = (float(g) for g in m.group(1, 2))
        step = float(m.group(3)) if m.group(3) is not None else None
    except ValueError:
        raise VitcostError(f"{where}: {text!r} is not a range LO..HI or LO..HI:STEP of numbers.") from None
    if not all(math.isfinite(x) for x in (lo, hi, step if step is not None else 1.0)):
        raise VitcostError(f"{where}: the range's bounds and step must be finite numbers.")
    if step is not None and step <= 0:
        raise VitcostError(f"{where}: the step must be positive, got {m.group(3)}.")
    if hi < lo:
        raise VitcostError(f"{where}: the range is empty ({m.group(2)} is below {m.group(1)}).")
    if kind == "int":
        if not (lo.is_integer() and hi.is_integer() and (step is None or step.is_integer())):
            raise VitcostError(f"{where}: the field takes whole numbers; so must the range's bounds and step.")
        return range(int(lo), int(hi) + 1, int(step or 1))
    if step is None:
        raise VitcostError(f"{where}: a range of a decimal field needs a step, LO..HI:STEP.")
    n = math.floor((hi - lo) / step + 1e-9) + 1
    return FloatRange(lo, step, n)


def _listed(values: Any) -> list[Any]:
    if values is None:
        return []
    if isinstance(values, (str, bytes, int, float)) or not hasattr(values, "__iter__"):
        return [values]
    return list(values)
