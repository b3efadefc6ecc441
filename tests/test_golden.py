"""Golden figures: the analytic layer reproduces every figure frozen in tests/golden/figures.json.gz.

These are regression guards that hold refactors of the analytic layer to the same numbers, beside (never
instead of) the independent checks in the rest of the suite. The whole file is checked by
`python tests/golden/make_golden.py --check` (about 4 minutes); here each preset is checked at one of its
size/batch pairs, chosen by the preset's position, and the memory walls of a few presets.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("make_golden", Path(__file__).parent / "golden" / "make_golden.py")
golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(golden)

EXPECTED = golden.load()
CONFIGS = list(golden.configs())
BY_PRESET: dict[str, list] = {}
for _cfg in CONFIGS:
    BY_PRESET.setdefault(_cfg[0], []).append(_cfg)
PICKED = [cfgs[i % len(cfgs)] for i, cfgs in enumerate(BY_PRESET.values())]


def test_golden_file_covers_every_preset_and_setting():
    assert {f"{n} {r} {b}" for n, r, b in CONFIGS} | {f"{n} walls" for n in golden.presets()} == set(EXPECTED)
    some = EXPECTED["vit_b16 224 2"]
    # every dtype x kernel forward, every optimizer x checkpoint x device step (math and flash)
    assert sum(k.startswith("mem ") for k in some) == 3 * 4 * 3
    assert sum(k.startswith("train ") and k.split()[2] in ("math", "flash") and not k.endswith("half")
               for k in some) == 3 * 2 * 3 * 3 * 2


@pytest.mark.parametrize("name,res,batch", PICKED, ids=[f"{n}-{r}-{b}" for n, r, b in PICKED])
def test_figures_unchanged(name, res, batch):
    got = {f"{name} {res} {batch}": golden.record(name, res, batch)}
    assert golden.diff(EXPECTED, got) == []


@pytest.mark.parametrize("name", ["vit_b16", "swin_t", "convnext_tiny"])
def test_walls_unchanged(name):
    assert golden.diff(EXPECTED, {f"{name} walls": golden.walls(name)}) == []


def test_a_changed_figure_is_reported():
    key = f"{PICKED[0][0]} {PICKED[0][1]} {PICKED[0][2]}"
    changed = {key: {**EXPECTED[key], "params": EXPECTED[key]["params"] + 1}}
    assert golden.diff(EXPECTED, changed) == [
        f"{key} / params: golden {EXPECTED[key]['params']!r}, now {EXPECTED[key]['params'] + 1!r}"]
