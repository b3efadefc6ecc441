"""Shared test fixtures: the published reference figures, read from tests/data/published.md (an
independent source: papers' tables, vendors' figures and timm's fvcore counts, each row with its source)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PUBLISHED_MD = Path(__file__).resolve().parent / "data" / "published.md"

# Row labels of published.md's "Params and MACs" table -> (preset, resolution).
PUBLISHED_ROWS = {
    "ViT-Ti/16": ("vit_ti16", 224), "ViT-S/16 (DeiT-S)": ("vit_s16", 224), "ViT-B/16 (DeiT-B)": ("vit_b16", 224),
    "ViT-B/16 @384": ("vit_b16", 384), "ViT-L/16": ("vit_l16", 224), "ViT-H/14": ("vit_h14", 224),
    "Swin-T": ("swin_t", 224), "Swin-S": ("swin_s", 224), "Swin-B": ("swin_b", 224),
    "Swin-B @384, window 12": ("swin_b_384", 384), "Swin-L": ("swin_l", 224), "MViTv2-T": ("mvitv2_t", 224),
    "MViTv2-S": ("mvitv2_s", 224), "MViTv2-B": ("mvitv2_b", 224), "Mixer-B/16": ("mixer_b16", 224),
    "Mixer-L/16": ("mixer_l16", 224),
}


def read_published() -> list[tuple[str, int, float, float]]:
    """(preset, res, params in millions, GMACs) for every row of the published table."""
    text = PUBLISHED_MD.read_text()
    out = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0] in PUBLISHED_ROWS:
            params = float(re.match(r"[\d.]+", cells[1]).group())
            gmacs = float(re.match(r"[\d.]+", cells[2]).group())
            out.append((*PUBLISHED_ROWS[cells[0]], params, gmacs))
    return out


@pytest.fixture(scope="session")
def published() -> list[tuple[str, int, float, float]]:
    rows = read_published()
    assert len(rows) == len(PUBLISHED_ROWS), "published.md changed shape: update PUBLISHED_ROWS"
    return rows


@pytest.fixture(scope="session")
def published_cells():
    """The cells of the published.md row whose first cell starts with a label (the "More designs" table,
    one row per family: `published_cells("BiFormer-T / S / B, 224")`)."""
    lines = PUBLISHED_MD.read_text().splitlines()

    def cells(label: str) -> list[str]:
        for line in lines:
            if line.startswith(f"| {label}"):
                return [c.strip() for c in line.strip().strip("|").split("|")]
        raise AssertionError(f"published.md has no {label!r} row")
    return cells


@pytest.fixture
def one_thread():
    """torch on one thread for the test (the memory models' scratch buffers follow the thread count)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def passes_exactly():
    """`check_model` on `model` that must PASS at tolerance 0 in every layer, in the convention each attention
    path is counted in (math: fvcore, sdpa: torch); returns the result for further assertions."""
    from vitcost.measure.check import check_model

    def run(model, res, *, batch: int = 1, attn: str = "math", method: str = "real"):
        convention = {"math": "fvcore", "sdpa": "torch"}[attn]
        r = check_model(model, res, batch=batch, attn=attn, convention=convention, method=method)
        assert r.method == method and r.status == "PASS", r.first_mismatch
        assert r.layers and all(layer.ok(0) for layer in r.layers)
        return r
    return run
