"""Read the measured evidence a report can show beside the analytic numbers: the JSON rows written
by `vitcost check --format json` (analytic vs fvcore vs FlopCounterMode counts) and by
`vitcost profile --format json` (predicted vs measured time and memory).

Only the fields the report uses are validated; any other field is carried along untouched. A file
that is missing, is not JSON, or lacks a field raises VitcostError naming the file, the row and the
field, so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vitcost.errors import VitcostError

# What a field must hold, worded for the error message.
NUMBER = "a non-negative number"
NULLABLE = "a non-negative number or null"
TEXT = "non-empty text"
RES = "a resolution (a positive whole number, or text such as 224x320)"

CHECK_FIELDS: dict[str, str] = {"model": TEXT, "res": RES, "status": TEXT, "analytic": NUMBER,
                                "fvcore": NULLABLE, "torch": NULLABLE}
PROFILE_FIELDS: dict[str, str] = {"model": TEXT, "res": RES, "status": TEXT, "predicted_time_s": NULLABLE,
                                  "measured_time_s": NULLABLE, "predicted_mem_bytes": NULLABLE,
                                  "measured_mem_bytes": NULLABLE}
# Used when present: checked the same way, absent is fine.
PROFILE_OPTIONAL: dict[str, str] = {"predicted_attn_bytes": NULLABLE, "measured_attn_bytes": NULLABLE,
                                    "achieved_tflops": NULLABLE, "peak_fraction": NULLABLE,
                                    "time_spread_s": NULLABLE}
CHECK_OPTIONAL: dict[str, str] = {"fvcore_diff": NULLABLE, "torch_diff": NULLABLE}


def _fits(value: Any, kind: str) -> bool:
    if kind == TEXT:
        return isinstance(value, str) and bool(value)
    if kind == RES:
        return (isinstance(value, str) and bool(value)) or (type(value) is int and value > 0)
    if value is None:
        return kind == NULLABLE
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value >= 0)


def _rows(path: Path, option: str) -> list[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        raise VitcostError(f"{option} {path} is a folder; give the JSON file that `vitcost {option.lstrip('-')} "
                           "-f json -o FILE` wrote.")
    if not path.is_file():
        raise VitcostError(f"{option} file {path} does not exist.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise VitcostError(f"{option} file {path} is not UTF-8 text.") from None
    except json.JSONDecodeError as e:
        raise VitcostError(f"{option} file {path} is not valid JSON ({e.msg} at line {e.lineno}).") from None
    except OSError as e:
        raise VitcostError(f"cannot read {option} file {path}: {e.strerror or e}.") from None
    if isinstance(data, dict) and isinstance(data.get("rows"), list):
        data = data["rows"]
    if not isinstance(data, list):
        raise VitcostError(f"{option} file {path} must hold a JSON list of rows.")
    if not data:
        raise VitcostError(f"{option} file {path} holds no rows.")
    return data


def _validate(rows: list[Any], path: Path, option: str, required: dict[str, str],
              optional: dict[str, str]) -> list[dict[str, Any]]:
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise VitcostError(f"{option} file {path}: row {i} is not a JSON object.")
        for field in required:
            if field not in row:
                raise VitcostError(f"{option} file {path}: row {i} lacks the field {field!r}.")
        for field, kind in {**required, **optional}.items():
            if field in row and not _fits(row[field], kind):
                raise VitcostError(f"{option} file {path}: row {i} field {field!r} must be {kind}, "
                                   f"got {row[field]!r}.")
    return rows


def read_check(path: Path) -> list[dict[str, Any]]:
    """Rows of a `vitcost check` JSON file: model, res, status, analytic, fvcore, torch, ..."""
    return _validate(_rows(path, "--check"), path, "--check", CHECK_FIELDS, CHECK_OPTIONAL)


def read_profile(path: Path) -> list[dict[str, Any]]:
    """Rows of a `vitcost profile` JSON file: model, res, status, predicted/measured time and memory, ..."""
    return _validate(_rows(path, "--profile"), path, "--profile", PROFILE_FIELDS, PROFILE_OPTIONAL)
