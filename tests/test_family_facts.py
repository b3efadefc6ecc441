"""A family's facts live in its own module or its registry record: the shared analytic modules (memory,
training, roofline, ...) read what the walkers state on each op (block marks, producers, tags) and never
recognise a family by its name. And the facts the walkers state agree with the reference nets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vitcost import estimate
from vitcost.analytic.registry import FAMILIES
from vitcost.zoo import PRESETS

ANALYTIC = Path(__file__).resolve().parents[1] / "vitcost" / "analytic"
FAMILY_MODULES = {f.module for f in FAMILIES.values()} | {"registry"}
SHARED = sorted(p for p in ANALYTIC.glob("*.py") if p.stem not in FAMILY_MODULES)


def family_names_in(source: str) -> list[str]:
    """String constants of a module that are a family's name."""
    return [node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in FAMILIES]


def test_the_shared_modules_are_the_ones_we_know():
    assert {"memory", "liveness", "train_memory", "training", "roofline", "estimate", "trace", "cost"} <= {
        p.stem for p in SHARED}


@pytest.mark.parametrize("path", SHARED, ids=[p.stem for p in SHARED])
def test_no_shared_module_names_a_family(path: Path):
    assert family_names_in(path.read_text(encoding="utf-8")) == []


def test_the_family_check_can_fail():
    assert family_names_in('def f(ctx):\n    return ctx.family == "resnet" or x in ("swin", "nat")\n') == [
        "resnet", "swin", "nat"]


def _net_modules(name: str, res: int):
    pytest.importorskip("torch")
    from vitcost.design import parse_design
    from vitcost.nets import build

    return dict(build(parse_design(name), (res, res), attn="math", device="meta").named_modules())


@pytest.mark.parametrize("name", ["resnet50", "mvitv2_t", "swin_t", "vit_b16", "nat_mini", "convnext_tiny",
                                  "biformer_tiny"])
def test_block_marks_and_max_pools_are_the_nets_modules(name):
    """Every block a walker marks is a module of the reference net, and the ops it tags as max pools are
    exactly the net's nn.MaxPool2d modules."""
    import torch.nn as nn

    res = PRESETS[name].res
    mods = _net_modules(name, res)
    ops = estimate(name, res).ops
    assert {op.block.prefix for op in ops if op.block} <= set(mods)
    assert {op.path for op in ops if "max_pool" in op.tags} == {p for p, m in mods.items()
                                                                  if isinstance(m, nn.MaxPool2d)}


def test_resnet_shortcut_reads_the_block_input():
    """A projection shortcut reads what the block's first conv reads: the previous block's output."""
    ops = estimate("resnet50", 224).ops
    keys = [f"{op.path}#{op.kind}" for op in ops]
    for op in ops:
        if op.path.endswith("downsample.0"):
            conv1 = keys.index(f"{op.block.prefix}.conv1#conv")
            assert op.src == (keys[conv1 - 1],) and ops[conv1 - 1].block != op.block


def test_attention_facts():
    """Swin's and NAT's biases come from float32 tables; SwinV2's shift mask (shifted blocks only) is a
    float32 buffer; SAM folds heads into the batch; NAT gathers its keys; SwinV2 runs cosine attention."""
    def tags(name, res=None):
        return [op.tags for op in estimate(name, res or PRESETS[name].res).ops if op.kind == "attention"]

    assert all("f32_terms" in t for t in tags("swin_t")) and all("f32_terms" in t for t in tags("nat_mini"))
    v2 = tags("swinv2_t")
    assert all("cosine" in t for t in v2) and [("f32_terms" in t) for t in v2[:4]] == [False, True, False, True]
    assert all("folded_heads" in t for t in tags("sam_vit_b")) and not any(t for t in tags("vit_b16"))
    assert all("gathered_kv" in t for t in tags("nat_mini"))
