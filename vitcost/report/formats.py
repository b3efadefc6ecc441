"""Machine-readable and plain-text renderings of row dicts: JSON, CSV, Markdown."""

from __future__ import annotations

import csv
import io
import json
from typing import Any


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    """One line per row; a nested value (a row's full `spec`) is written as compact JSON in its cell."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else v
                      for k, v in r.items()} for r in rows)
    return buf.getvalue()


def to_markdown(header: list[str], cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(c) + " |" for c in cells]
    return "\n".join(lines) + "\n"
