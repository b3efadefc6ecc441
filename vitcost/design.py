"""Designs: what a user asks about, parsed once at the edge into a spec and the label every output
row carries.

A design is written as
* a preset name or alias: `swin_t`, `swin_tiny_patch4_window7_224`;
* a spec file: `my_swin.toml` (TOML, as `vitcost spec swin_t` writes it) or `my_swin.json`;
* either of these with field overrides after a colon: `vit_b16:dim=1024,depth=24,heads=16,patch=14`,
  `swin_t:depths=2-2-18-2,window=16` (a list is `a-b-c` or `[a,b,c]`);
* from Python, a spec object (`ViTSpec(...)`) or a `Design`.
The label of a row is the text that reproduces it: the preset or file name, then the overrides.
Overrides are errors, not silence, when the field is unknown to the family, the value has the wrong
type, or it changes nothing.
"""

from __future__ import annotations

import codecs
import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

from vitcost.errors import SpecError, VitcostError
from vitcost.specs import SPEC_CLASSES, Spec, SpecBase, field_docs
from vitcost.vocab import Res
from vitcost.zoo import PRESETS, get_preset

SPEC_BY_FAMILY: dict[str, type] = SPEC_CLASSES
SPEC_SUFFIXES = (".toml", ".json")
DEFAULT_RES = 224  # the resolution of a design that names none (a spec object, a file without `res`)


class Design(NamedTuple):
    """An architecture to cost: its spec, the label its rows carry and its default resolution
    (a NamedTuple, not a dataclass: `vitcost compare` imports it and dataclasses cost ~1 ms each to create)."""

    name: str
    spec: Spec
    res: int = DEFAULT_RES
    preset: str | None = None  # the preset it starts from, if any
    frames: int | None = None  # the default clip's frames T (a design with a time axis), None for an image

    @property
    def family(self) -> str:
        return self.spec.family

    @property
    def size(self) -> Res:
        """The default input: res x res, with `frames` frames for a clip."""
        return Res(self.res, self.res, self.frames)


def spec_dict(spec: Spec) -> dict[str, Any]:
    """The full effective spec as plain data: {"family": ..., field: value, ...}, lists for tuples."""
    out: dict[str, Any] = {"family": spec.family}
    for f in dataclasses.fields(spec):  # type: ignore[arg-type]
        v = getattr(spec, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def spec_label(spec: Spec) -> str:
    """A label for a spec given as an object: the family and every field that differs from its default."""
    parts = []
    for f in dataclasses.fields(spec):  # type: ignore[arg-type]
        v = getattr(spec, f.name)
        if f.default is dataclasses.MISSING or v != f.default:
            parts.append(f"{f.name}={_show(v)}")
    return f"{spec.family}({','.join(parts)})"


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return "-".join(str(x) for x in v) if v else "[]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return f"{v:g}" if isinstance(v, float) else str(v)


# ---------------------------------------------------------------------------------------------
# Overrides


def field_types(spec_type: type) -> dict[str, str]:
    return {f.name: str(f.type) for f in dataclasses.fields(spec_type)}


def parse_value(text: str, kind: str, where: str) -> Any:
    t = text.strip()
    if kind == "tuple[int, ...]":
        inner = t[1:-1] if t.startswith("[") and t.endswith("]") else t
        parts = [p for p in inner.replace(",", "-").replace(" ", "").split("-")] if inner.strip() else []
        return tuple(parse_value(p, "int", where) for p in parts)
    if kind == "str":
        return t
    if kind == "bool":
        if t.lower() in ("true", "yes", "1"):
            return True
        if t.lower() in ("false", "no", "0"):
            return False
        raise SpecError(f"{where} must be true or false, got {text!r}.")
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        raise SpecError(f"{where} must be a number, got {text!r}.") from None


def split_items(text: str) -> list[str]:
    """"a=1,b=[2,3],c=4" -> ["a=1", "b=[2,3]", "c=4"] (commas inside brackets stay)."""
    items, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    return [i.strip() for i in items if i.strip()]


def _given(text: str, base: str) -> dict[str, str]:
    """"dim=1024,depth=24" -> {"dim": "1024", "depth": "24"}: each field once, its value as written."""
    out: dict[str, str] = {}
    for item in split_items(text):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise SpecError(f"override {item!r} for {base} is not field=value.")
        if key in out:
            raise SpecError(_twice(base, key, out[key], value))
        out[key] = value
    return out


def _twice(base: str, key: str, first: str, second: str) -> str:
    return f"{base}: the field {key!r} is given twice ({key}={first} and {key}={second}); give it once."


def parse_overrides(text: str, spec_type: type, base: str) -> dict[str, Any]:
    """"dim=1024,depth=24" -> {"dim": 1024, "depth": 24}, each value parsed for its field's type."""
    types = field_types(spec_type)
    out: dict[str, Any] = {}
    for key, value in _given(text, base).items():
        if key not in types:
            raise SpecError(f"{base} ({spec_type.family} family) has no field {key!r}; its fields are "
                            f"{', '.join(types)}.")
        out[key] = parse_value(value, types[key], f"{spec_type.__name__}.{key}")
    if not out:
        raise SpecError(f"no override given for {base}: write field=value after the colon.")
    return out


def with_fields(design: Design, changes: dict[str, Any]) -> Design:
    """`design` with its spec's fields changed; an unknown field or a change to the same value raises."""
    spec = design.spec
    types = field_types(type(spec))
    for key in changes:
        if key not in types:
            raise SpecError(f"{design.name} ({spec.family} family) has no field {key!r}; its fields are "
                            f"{', '.join(types)}.")
    new = dataclasses.replace(spec, **changes)  # type-checks each value first: 7.0 is no whole number
    for key in changes:
        current = getattr(spec, key)
        if getattr(new, key) == current:
            raise SpecError(f"{design.name}: {key}={_show(current)} changes nothing (it is already {_show(current)}).")
    label = ",".join(f"{k}={_show(getattr(new, k))}" for k in changes)
    sep = "," if ":" in design.name else ":"
    return Design(f"{design.name}{sep}{label}", new, design.res, design.preset, design.frames)


# ---------------------------------------------------------------------------------------------
# Spec files


def is_spec_path(text: str) -> bool:
    return text.lower().endswith(SPEC_SUFFIXES)


def load_spec_file(path: str | Path) -> Design:
    """Read a TOML or JSON spec file: `family` names the spec class, `res` (optional) the default
    resolution, and every other key a field of that spec."""
    if not isinstance(path, (str, Path)):
        raise VitcostError(f"a spec file is named by a path, not {type(path).__name__} ({path!r}).")
    p = Path(path)
    if not is_spec_path(str(p)):
        raise VitcostError(f"{p}: a spec file ends in .toml or .json.")
    try:
        raw = p.read_bytes()
    except IsADirectoryError:
        raise VitcostError(f"{p} is a folder, not a spec file.") from None
    except OSError as e:
        raise VitcostError(f"cannot read spec file {p}: {e.strerror or e}.") from None
    if raw.startswith(codecs.BOM_UTF8):
        raise VitcostError(f"{p} starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without a BOM.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise VitcostError(f"{p} is not a text file (it is not UTF-8).") from None
    try:
        data = parse_toml(text, p) if p.suffix.lower() == ".toml" else _parse_json(text, p)
    except RecursionError:
        raise VitcostError(f"{p} nests its values too deeply to be a spec file (a spec file is one flat table "
                           "of fields).") from None
    if not isinstance(data, dict):
        raise VitcostError(f"{p}: a spec file holds a table of fields, not {type(data).__name__}.")
    return design_from_dict(data, p.name)


def parse_toml(text: str, p: Path) -> Any:
    """The TOML document `text` (read from `p`, which errors name)."""
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise VitcostError(f"{p} is not valid TOML: {e}.") from None


def _parse_json(text: str, p: Path) -> Any:
    import json

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise VitcostError(f"{p} gives the key {key!r} twice ({_json_show(seen[key])} and "
                                   f"{_json_show(value)}); give it once.")
            seen[key] = value
        return seen

    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as e:
        raise VitcostError(f"{p} is not valid JSON: {e.msg} (at line {e.lineno}, column {e.colno}).") from None


def _json_show(value: Any) -> str:
    import json

    return json.dumps(value)


def design_from_dict(data: dict[str, Any], name: str) -> Design:
    """A design from plain data (a parsed spec file or a JSON row's `spec`)."""
    data = dict(data)
    family = data.pop("family", None)
    if family not in SPEC_BY_FAMILY:
        raise SpecError(f"{name}: `family` must be one of {', '.join(SPEC_BY_FAMILY)}, got {family!r}.")
    res = data.pop("res", DEFAULT_RES)
    if isinstance(res, bool) or not isinstance(res, int) or res < 1:
        raise SpecError(f"{name}: `res` must be a positive whole number, got {res!r}.")
    frames = data.pop("frames", None)
    if frames is not None and (isinstance(frames, bool) or not isinstance(frames, int) or frames < 1):
        raise SpecError(f"{name}: `frames` must be a positive whole number, got {frames!r}.")
    cls = SPEC_BY_FAMILY[family]
    types = field_types(cls)
    unknown = [k for k in data if k not in types]
    if unknown:
        raise SpecError(f"{name}: the {family} family has no field {unknown[0]!r}; its fields are "
                        f"{', '.join(types)}.")
    missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and f.name not in data]
    if missing:
        raise SpecError(f"{name}: field {missing[0]!r} is required for the {family} family.")
    try:
        spec = cls(**data)
    except SpecError as e:
        raise SpecError(f"{name}: {e}") from None
    return Design(name, spec, res, frames=frames)


def spec_toml(design: Design, note: str = "") -> str:
    """The design as an editable TOML spec file, one commented line per field."""
    spec = design.spec
    docs = field_docs(type(spec))
    lines = [f"# vitcost design: {design.name}" + (f" ({note})" if note else ""),
             "# Edit any field, then use this file wherever a model name goes, e.g.",
             "#   vitcost compare -m THIS_FILE.toml --res 224 1024",
             "",
             _kv("family", f'"{spec.family}"', f"architecture family: {', '.join(SPEC_BY_FAMILY)}"),
             _kv("res", str(design.res), "default resolution (used by check and build; compare takes --res)"),
             *([_kv("frames", str(design.frames), "default clip length T (a TxHxW input)")] if design.frames else []),
             ""]
    for key, value in spec_dict(spec).items():
        if key != "family":
            lines.append(_kv(key, toml_value(value), docs.get(key, "")))
    return "\n".join(lines) + "\n"


def _kv(key: str, value: str, comment: str) -> str:
    left = f"{key} = {value}"
    return f"{left:<28}  # {comment}" if comment else left


def toml_value(v: Any) -> str:
    """`v` (a string, bool, number or list of them) written as a TOML value."""
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, float):
        return repr(v)
    return str(v)


# ---------------------------------------------------------------------------------------------
# The edge


def parse_design(model: Any) -> Design:
    """A Design from a preset name, a spec file path, either with `:field=value,...`, a spec object or a
    Design (returned as is)."""
    if isinstance(model, Design):
        return model
    if isinstance(model, SpecBase):
        return Design(spec_label(model), model)
    if isinstance(model, Path):
        return load_spec_file(model)
    if not isinstance(model, str):
        raise VitcostError(f"a model is a preset name, a spec file or a spec object, not {type(model).__name__} "
                           f"({model!r}).")
    text = model.strip()
    if not text:
        raise VitcostError("empty model name; run `vitcost models` to list them.")
    split = split_override(text)
    if split:
        design = base_design(split[0])
        return with_fields(design, parse_overrides(split[1], type(design.spec), design.name))
    return base_design(text)


def base_design(text: str) -> Design:
    if is_spec_path(text):
        return load_spec_file(text)
    p = get_preset(text)
    return Design(p.name, p.spec, p.res, p.name, p.frames)


def split_override(text: str) -> tuple[str, str] | None:
    """"vit_b16:patch=8,depth=6" -> ("vit_b16", "patch=8,depth=6"); None for a model without overrides."""
    base, sep, rest = text.strip().rpartition(":")
    return (base, rest) if sep and base and "=" in rest and "=" not in base else None


def parse_set(items: list[str] | None) -> tuple[dict[str, str], str]:
    """--set values -> ({model: "field=value,..."}, "field=value,..." for every model)."""
    targeted: dict[str, str] = {}
    every: list[str] = []
    for item in items or []:
        if not item.strip():
            raise SpecError("--set was given an empty value; give field=value or MODEL:field=value.")
        base, sep, rest = item.rpartition(":")
        if sep and base and "=" not in base:
            targeted[base] = f"{targeted[base]},{rest}" if base in targeted else rest
        else:
            every.append(item)
    return targeted, ",".join(every)


def parse_formula(kind: Any) -> str | Design:
    """What `formula` is asked for, parsed: one of `vocab.FORMULA_KINDS`, else a design (a preset, a spec
    file, either with overrides); anything else is a one-line error."""
    from vitcost.vocab import FORMULA_KINDS

    if isinstance(kind, str) and kind in FORMULA_KINDS:
        return kind
    if not isinstance(kind, str):
        raise VitcostError(f"a formula is named by a string, not {type(kind).__name__}.")
    try:
        return parse_design(kind)
    except VitcostError as e:
        raise VitcostError(f"unknown formula {kind!r}: use one of {', '.join(FORMULA_KINDS)} or a model ({e})"
                           ) from None


def parse_models(models: Any, set_items: list[str] | None = None) -> list[Design]:
    """The designs a user named, parsed once: None -> the default presets (`zoo.DEFAULT_MODELS`); one
    model (a name, a path, a spec, a Design) or a list of them, with `--set` overrides
    (`resolve_designs`)."""
    from vitcost.zoo import DEFAULT_MODELS

    if models is None:
        models = list(DEFAULT_MODELS)
    elif isinstance(models, (str, bytes)) or not hasattr(models, "__iter__"):
        models = [models]
    return resolve_designs(list(models), set_items)


def resolve_designs(models: list[Any] | tuple[Any, ...], set_items: list[str] | None = None) -> list[Design]:
    """Expand models (names, family names, files, specs) into designs, in order, once each, and apply
    `--set` overrides: `MODEL:field=value,...` changes that model (added when not listed) and
    `field=value,...` changes every model. A field given twice for one model, in its `-m` name, in
    `--set` or across both, is an error naming both values."""
    from vitcost.zoo import FAMILY_NAMES

    targeted, every = parse_set(set_items)
    entries: list[Any] = []
    for m in models:
        if isinstance(m, str) and m.strip().lower() in FAMILY_NAMES:
            # a family name stands for its image presets; clip presets (`Preset.frames`) are named one by one
            entries += [p.name for p in PRESETS.values() if p.family == m.strip().lower() and p.frames is None]
        else:
            entries.append(m)
    designs = [parse_design(m) for m in entries]
    given = [_given(split[1], split[0]) if isinstance(m, str) and (split := split_override(m)) else {}
             for m in entries]

    def apply(i: int, rest: str) -> None:
        for key, value in _given(rest, designs[i].name).items():
            if key in given[i]:
                raise SpecError(_twice(designs[i].name, key, given[i][key], value))
            given[i][key] = value
        designs[i] = with_fields(designs[i], parse_overrides(rest, type(designs[i].spec), designs[i].name))

    for key, rest in targeted.items():
        target = base_design(key).name
        hits = [i for i, d in enumerate(designs) if d.name == target]
        if not hits:
            designs.append(base_design(key))
            given.append({})
            hits = [len(designs) - 1]
        for i in hits:
            apply(i, rest)
    if every:
        for i in range(len(designs)):
            apply(i, every)
    out: dict[str, Design] = {}
    for d in designs:
        out.setdefault(d.name, d)
    return list(out.values())


__all__ = ["Design", "parse_design", "resolve_designs", "parse_models", "parse_formula", "load_spec_file", "spec_toml",
           "spec_dict", "spec_label",
           "with_fields", "parse_overrides", "design_from_dict"]
