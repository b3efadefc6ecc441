"""Designs (presets, spec files, `--set` overrides, spec objects) end to end: one activation peak per design
whichever command asks; custom designs match a hand derivation and pass the fvcore/FlopCounterMode check
exactly; spec files round-trip; a ViTDet/SAM hybrid is data in a spec file; bad designs are one line and
exit 2; the library takes specs and names the way the CLI does.

Every expected number below is derived by hand in this file (formula in the comment) or counted by fvcore
and torch's FlopCounterMode through `vitcost check`; none is copied from vitcost's own output."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import vitcost
from vitcost.cli import main
from vitcost.specs import ViTSpec
from vitcost.zoo import PRESETS


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def run_json(capsys, *argv: str) -> list[dict]:
    code, out, err = run(capsys, *argv, "--format", "json")
    assert code == 0, err
    return json.loads(out)


# ---------------------------------------------------------------------------------------------
# Hand derivations (ViT, Dosovitskiy et al. 2021): a stride-P conv patch embedding, N = g^2 + class tokens
# of width D, `depth` pre-norm blocks of MSA + MLP (hidden width h), a final norm and a linear head.


def vit_tokens(res: int, patch: int) -> int:
    """Side g of the token grid: a P x P conv with stride P and no padding gives floor((R - P) / P) + 1."""
    return (res - patch) // patch + 1


def vit_macs(*, res: int, batch: int, dim: int, depth: int, hidden: int, patch: int, classes: int,
             in_chans: int = 3, class_tokens: int = 1) -> int:
    g = vit_tokens(res, patch)
    n = g * g + class_tokens
    embed = g * g * in_chans * patch**2 * dim  # conv: C_in * P^2 * D per output token
    block = (3 * n * dim**2  # qkv: [N, D] @ [D, 3D]
             + 2 * n**2 * dim  # q @ k^T: N^2 * D/H per head, and attn @ v the same; H heads -> 2 N^2 D
             + n * dim**2  # proj: [N, D] @ [D, D]
             + 2 * n * dim * hidden)  # fc1 [N, D] @ [D, h] and fc2 [N, h] @ [h, D]
    head = dim * classes  # on the class token
    return batch * (embed + depth * block + head)


def vit_params(*, res: int, dim: int, depth: int, hidden: int, patch: int, classes: int, in_chans: int = 3,
               class_tokens: int = 1) -> int:
    g = vit_tokens(res, patch)
    n = g * g + class_tokens
    layer_norm = 2 * dim  # weight and bias
    embed = in_chans * patch**2 * dim + dim  # conv weight + bias
    block = (layer_norm  # norm1
             + 3 * dim * dim + 3 * dim  # qkv weight + bias
             + dim * dim + dim  # proj
             + layer_norm  # norm2
             + dim * hidden + hidden  # fc1
             + hidden * dim + dim)  # fc2
    return (embed + class_tokens * dim + n * dim  # cls token, pos embed (one row per token)
            + depth * block + layer_norm + dim * classes + classes)  # final norm, head


def test_the_hand_derivation_gives_the_published_vit_b16() -> None:
    """The formula itself against timm's published ViT-B/16 params (86.57M) and GMACs (17.58G, fvcore's
    count: the MACs plus 5 per LayerNorm element, 2 * 12 + 1 norms over 197 x 768)."""
    b16 = {"dim": 768, "depth": 12, "hidden": 3072, "patch": 16, "classes": 1000}
    assert round(vit_params(res=224, **b16) / 1e6, 2) == 86.57
    fvcore_norms = (2 * 12 + 1) * 197 * 768 * 5
    assert round((vit_macs(res=224, batch=1, **b16) + fvcore_norms) / 1e9, 2) == 17.58


# The spec file written by hand, and the same numbers for the derivation.
TINY_TOML = """\
family = "vit"
res = 64
dim = 64
depth = 2
heads = 2
patch = 8
mlp_ratio = 2
class_tokens = 1
num_classes = 10
"""
TINY = {"dim": 64, "depth": 2, "hidden": 128, "patch": 8, "classes": 10}  # hidden = 64 * 2
# vit_ti16 (DeiT-Ti: D=192, 3 heads, MLP 768, 1000 classes) with depth=2 and patch=8.
TI_SET = "vit_ti16:depth=2,patch=8"
TI_SMALL = {"dim": 192, "depth": 2, "hidden": 768, "patch": 8, "classes": 1000}


@pytest.fixture
def tiny_toml(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_vit.toml"
    path.write_text(TINY_TOML)
    return path


# ---------------------------------------------------------------------------------------------
# 1. One activation peak per design, whichever command asks


def resolution_groups() -> dict[tuple[int | str, int | str], list[str]]:
    """Presets grouped by the two resolutions each is checked at: pixel presets at 32 and 64 (their
    attention is all pairs of pixels), clip presets at their own clip and one of twice the frames, the
    others at their own resolution and twice it."""
    groups: dict[tuple[int | str, int | str], list[str]] = {}
    for p in PRESETS.values():
        sizes = (32, 64) if p.family == "pixel" else (p.res, 2 * p.res) if p.frames is None else \
            (f"{p.frames}x{p.res}x{p.res}", f"{2 * p.frames}x{p.res}x{p.res}")
        groups.setdefault(sizes, []).append(p.name)
    return groups


@pytest.mark.parametrize(("batch", "dtype", "attn"), [(1, "fp32", "math"), (2, "bf16", "sdpa")])
def test_one_activation_peak_per_design(capsys, batch: int, dtype: str, attn: str) -> None:
    setting = ["--batch", str(batch), "--dtype", dtype, "--attn", attn]
    seen = set()
    for sizes, names in resolution_groups().items():
        res = [str(r) for r in sizes]
        compared = run_json(capsys, "compare", "-m", *names, "-r", *res, *setting)
        predicted = run_json(capsys, "profile", "--predict-only", "--hardware", "cpu", "-m", *names, "-r", *res,
                             *setting)
        from_compare = {(r["model"], r["res"]): r["activation_peak_bytes"] for r in compared}
        from_profile = {(r["model"], r["res"]): r["predicted_mem_bytes"] for r in predicted}
        expected_keys = {(m, r) for m in names for r in sizes}
        assert set(from_compare) == set(from_profile) == expected_keys
        for (model, r), peak in from_compare.items():
            lib = vitcost.estimate(model, r, batch, dtype, attn).activation_peak_bytes
            assert type(peak) is int and peak > 0
            assert peak == from_profile[model, r] == lib, (model, r)
        seen |= {m for m, _ in expected_keys}
    assert seen == set(PRESETS)


# ---------------------------------------------------------------------------------------------
# 2. Custom designs end to end: a spec file and a --set override


@pytest.mark.parametrize("batch", [1, 2])
def test_custom_designs_compare_against_the_hand_derivation(capsys, tiny_toml: Path, batch: int) -> None:
    rows = run_json(capsys, "compare", "-m", str(tiny_toml), "--set", TI_SET, "-r", "64", "76", "--batch",
                    str(batch))
    by_key = {(r["model"], r["res"]): r for r in rows}
    assert set(by_key) == {(m, r) for m in ("tiny_vit.toml", TI_SET) for r in (64, 76)}
    for (model, res), row in by_key.items():
        arch = TINY if model == "tiny_vit.toml" else TI_SMALL
        assert row["params"] == vit_params(res=res, **arch), (model, res)
        assert row["macs"] == vit_macs(res=res, batch=batch, **arch), (model, res)
        assert row["tokens"] == vit_tokens(res, arch["patch"]) ** 2
        assert row["spec"]["family"] == "vit"
        assert {k: row["spec"][k] for k in ("dim", "depth", "patch")} == {k: arch[k] for k in ("dim", "depth",
                                                                                                 "patch")}


@pytest.mark.parametrize("batch", [1, 2])
def test_custom_designs_pass_the_check_exactly(capsys, tiny_toml: Path, batch: int) -> None:
    """fvcore and FlopCounterMode, on real forwards of both attention paths, count exactly the hand-derived
    MACs (in the macs convention FlopCounterMode's 2 per MAC is halved)."""
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    rows = run_json(capsys, "check", "-m", str(tiny_toml), "--set", TI_SET, "-r", "64", "76", "--batch", str(batch),
                    "--attn", "both", "--method", "real", "--convention", "macs", "--tol", "0")
    keys = [(r["model"], r["res"], r["attn"]) for r in rows]
    assert sorted(keys) == sorted((m, r, a) for m in ("tiny_vit.toml", TI_SET) for r in (64, 76)
                                  for a in ("math", "sdpa"))
    for row in rows:
        arch = TINY if row["model"] == "tiny_vit.toml" else TI_SMALL
        assert row["status"] == "PASS" and row["first_mismatch"] is None, row
        assert row["batch"] == batch and row["method"] == "real"
        assert row["fvcore"] == row["torch"] == row["analytic"] == vit_macs(res=row["res"], batch=batch, **arch)


def test_custom_designs_profile_predict_only(capsys, tiny_toml: Path) -> None:
    rows = run_json(capsys, "profile", "--predict-only", "--hardware", "cpu", "-m", str(tiny_toml), "--set", TI_SET,
                    "-r", "64")
    assert [r["model"] for r in rows] == ["tiny_vit.toml", TI_SET]
    for row in rows:
        arch = TINY if row["model"] == "tiny_vit.toml" else TI_SMALL
        assert row["status"] == "predicted"
        assert row["params"] == vit_params(res=64, **arch)
        assert row["macs"] == vit_macs(res=64, batch=1, **arch)
        assert row["spec"]["dim"] == arch["dim"]


# ---------------------------------------------------------------------------------------------
# 3. Round trip: `vitcost spec P` written to a file costs the same as P


@pytest.mark.parametrize("fmt", ["toml", "json"])
def test_spec_files_round_trip(capsys, tmp_path: Path, fmt: str) -> None:
    by_res: dict[str, list[str]] = {}
    for p in PRESETS.values():
        path = tmp_path / f"{p.name}.{fmt}"
        code, out, err = run(capsys, "spec", p.name, "--format", fmt, "-o", str(path))
        assert code == 0 and out == "" and err == "", err
        loaded = vitcost.load_spec_file(path)
        assert (loaded.res, loaded.frames) == (p.res, p.frames)
        by_res.setdefault(str(p.res) if p.frames is None else f"{p.frames}x{p.res}x{p.res}", []).append(p.name)
    for res, names in by_res.items():
        files = [str(tmp_path / f"{n}.{fmt}") for n in names]
        from_files = run_json(capsys, "compare", "-m", *files, "-r", str(res))
        from_presets = run_json(capsys, "compare", "-m", *names, "-r", str(res))
        assert len(from_files) == len(from_presets) == len(names)
        for name, f, p in zip(names, from_files, from_presets):
            assert (f["model"], p["model"]) == (f"{name}.{fmt}", name)
            assert {k: v for k, v in f.items() if k != "model"} == {k: v for k, v in p.items() if k != "model"}


# ---------------------------------------------------------------------------------------------
# 4. A ViTDet/SAM hybrid as data: window attention in blocks 0 and 2, global attention in blocks 1 and 3

HYBRID_TOML = """\
family = "vit"
dim = 64
depth = 4
heads = 2
patch = 8
class_tokens = 0
window = 4
global_blocks = [1, 3]
num_classes = 10
"""
HEADS, HEAD_DIM = 2, 32  # 64 / 2


def hybrid_attention(res: int, batch: int) -> dict[str, int]:
    """Score elements and score MACs per block kind. A window block pads the g x g grid to a multiple of
    the window M = 4 and attends inside (g_pad / 4)^2 windows of 16 tokens; a global block attends over all
    g^2 tokens (no class token)."""
    g = res // 8
    g_pad = -(-g // 4) * 4  # 9 -> 12, 8 -> 8
    windows = (g_pad // 4) ** 2  # 72 px: 9 windows; 64 px: 4
    window_scores = batch * HEADS * windows * 16 * 16
    global_scores = batch * HEADS * g**2 * g**2
    return {"window_scores": window_scores, "global_scores": global_scores,
            # q @ k^T and attn @ v: 2 * (scores) * head_dim MACs
            "window_macs": 2 * window_scores * HEAD_DIM, "global_macs": 2 * global_scores * HEAD_DIM}


def test_hybrid_attention_elements_by_hand(capsys, tmp_path: Path) -> None:
    path = tmp_path / "hybrid.toml"
    path.write_text(HYBRID_TOML)
    # 72 px: 9x9 grid padded to 12x12 -> 9 windows of 16 tokens; global blocks 81 x 81 scores.
    assert hybrid_attention(72, 1)["window_scores"] == HEADS * 9 * 16 * 16
    assert hybrid_attention(72, 1)["global_scores"] == HEADS * 81 * 81
    for batch in (1, 2):
        rows = run_json(capsys, "compare", "-m", str(path), "-r", "72", "64", "--batch", str(batch))
        for row in rows:
            a = hybrid_attention(row["res"], batch)
            assert row["model"] == "hybrid.toml"
            assert row["attn_matrix_elems"] == 2 * a["window_scores"] + 2 * a["global_scores"], row["res"]
            assert row["spec"]["window"] == 4 and row["spec"]["global_blocks"] == [1, 3]


@pytest.mark.parametrize("batch", [1, 2])
def test_hybrid_passes_the_check_exactly(capsys, tmp_path: Path, batch: int) -> None:
    """At 72 px (a 9x9 grid the window does not divide, padded) and 64 px (8x8, divided), both attention
    paths agree exactly with fvcore and FlopCounterMode, layer by layer; fvcore's count of each block's
    attention equals the hand-derived score MACs of its kind."""
    pytest.importorskip("torch")
    pytest.importorskip("fvcore")
    path = tmp_path / "hybrid.toml"
    path.write_text(HYBRID_TOML)
    rows = run_json(capsys, "check", "-m", str(path), "-r", "72", "64", "--batch", str(batch), "--attn", "both",
                    "--method", "real", "--tol", "0", "--by-layer")
    assert sorted((r["res"], r["attn"]) for r in rows) == sorted((r, a) for r in (64, 72) for a in ("math", "sdpa"))
    for row in rows:
        assert row["model"] == "hybrid.toml" and row["batch"] == batch
        assert row["status"] == "PASS" and row["first_mismatch"] is None, row
        assert row["fvcore"] == row["torch"] == row["analytic"]
        assert all(layer["fvcore_diff"] == layer["torch_diff"] == 0 for layer in row["layers"])
        a = hybrid_attention(row["res"], batch)
        attn = {layer["path"]: layer["fvcore"] for layer in row["layers"] if layer["path"].endswith(".attn")}
        assert attn == {"blocks.0.attn": a["window_macs"], "blocks.1.attn": a["global_macs"],
                        "blocks.2.attn": a["window_macs"], "blocks.3.attn": a["global_macs"]}


# ---------------------------------------------------------------------------------------------
# 5. Bad designs: one line on stderr, exit 2


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("vitcost: error: ") and "Traceback" not in err
    for needle in needles:
        assert re.search(needle, err), (needle, err)


@pytest.mark.parametrize("command", [["compare"], ["check", "--method", "meta"],
                                     ["profile", "--predict-only", "--hardware", "cpu"], ["report"]])
def test_unknown_field_in_set_on_every_command(capsys, tmp_path: Path, command: list[str]) -> None:
    code, out, err = run(capsys, *command, "-m", "vit_b16", "--set", "vit_b16:foo=1", "-r", "224",
                         "-o", str(tmp_path / "out"))
    assert_one_line_error(code, out, err, "'foo'")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("override", "needles"), [
    ("vit_b16:foo=1", ["no field 'foo'"]),
    ("swin_t:window=3.5", ["window", "3.5", "whole number"]),
    ("igpt_s:window=7", ["no field 'window'"]),
    ("vit_b16:patch=16", ["patch=16", "changes nothing"]),
    ("vit_b16:mlp_ratio=0.001", ["mlp_ratio", "0.001"]),
    ("depth=2.5", ["depth", "2.5"]),  # a --set for every model
])
def test_bad_override(capsys, override: str, needles: list[str]) -> None:
    code, out, err = run(capsys, "compare", "-m", "vit_b16", "--set", override, "-r", "224")
    assert_one_line_error(code, out, err, *map(re.escape, needles))


# Each bad spec file: its name, its text, what the message must say.
BAD_FILES = [
    ("unknown.toml", 'family = "vit"\ndim = 64\ndepth = 2\nheads = 2\nfoo = 1\n', ["unknown.toml", "'foo'"]),
    ("wrong_type.toml", 'family = "vit"\ndim = 64\ndepth = 2\nheads = "x"\n', ["wrong_type.toml", "heads", "'x'"]),
    ("float_int.json", '{"family": "vit", "dim": 64, "depth": 2, "heads": 2.5}', ["heads", "2.5"]),
    # line 3 is `depth = = 2`: the second `=` is column 9
    ("broken.toml", 'family = "vit"\ndim = 64\ndepth = = 2\nheads = 2\n', ["broken.toml", "TOML", r"line 3\b",
                                                                           r"column 9\b"]),
    # line 3 is ` "depth": 2 "heads": 2}`: the missing comma is before the `"` at column 13
    ("broken.json", '{"family": "vit",\n "dim": 64,\n "depth": 2 "heads": 2}', ["broken.json", "JSON", r"line 3\b",
                                                                               r"column 13\b"]),
    ("tiny_mlp.toml", 'family = "vit"\ndim = 64\ndepth = 2\nheads = 2\nmlp_ratio = 0.001\n', ["mlp_ratio"]),
    ("no_family.toml", 'dim = 64\ndepth = 2\nheads = 2\n', ["family"]),
]


@pytest.mark.parametrize(("name", "text", "needles"), BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_spec_file(capsys, tmp_path: Path, name: str, text: str, needles: list[str]) -> None:
    path = tmp_path / name
    path.write_text(text)
    code, out, err = run(capsys, "compare", "-m", str(path), "-r", "224")
    assert_one_line_error(code, out, err, *needles)


def test_bad_spec_objects_raise_spec_error() -> None:
    with pytest.raises(vitcost.SpecError, match="heads"):
        ViTSpec(dim=64, depth=2, heads=2.5)
    with pytest.raises(vitcost.SpecError, match="mlp_ratio"):
        ViTSpec(dim=64, depth=2, heads=2, mlp_ratio=0.001)  # int(64 * 0.001) = 0 hidden units
    with pytest.raises(vitcost.SpecError, match="window"):
        ViTSpec(dim=64, depth=2, heads=2, window=4)  # a class token has no place in a window grid


# ---------------------------------------------------------------------------------------------
# 6. The library takes designs as the CLI does


def test_library_compare_takes_specs_and_names() -> None:
    spec = ViTSpec(dim=64, depth=2, heads=2)  # patch 16, MLP 256, class token, 1000 classes
    df = vitcost.compare([spec, "swin_t"], res=[224, 256])
    assert len(df) == 4
    label = vitcost.parse_design(spec).name
    assert label != "swin_t" and label.startswith("vit") and "dim=64" in label
    assert list(zip(df["model"], df["res"])) == [(label, 224), (label, 256), ("swin_t", 224), ("swin_t", 256)]
    arch = {"dim": 64, "depth": 2, "hidden": 256, "patch": 16, "classes": 1000}
    for _, row in df[df["model"] == label].iterrows():
        assert row["params"] == vit_params(res=row["res"], **arch)
        assert row["macs"] == vit_macs(res=row["res"], batch=1, **arch)


def test_library_compare_one_name_is_one_design() -> None:
    df = vitcost.compare("vit_b16")
    assert list(df["model"]) == ["vit_b16"] and list(df["res"]) == [224]
    df = vitcost.compare("vit_b16", res="224")
    assert list(df["model"]) == ["vit_b16"] and list(df["res"]) == [224]
    b16 = {"dim": 768, "depth": 12, "hidden": 3072, "patch": 16, "classes": 1000}
    assert df["macs"].iloc[0] == vit_macs(res=224, batch=1, **b16)
