"""The cross-check and `vitcost check`: every family agrees exactly with fvcore and FlopCounterMode,
layer by layer; a deliberate mismatch is named at its layer and exits 1; bad input exits 2 with one
line."""

from __future__ import annotations

import csv
import io
import json
import textwrap

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("fvcore")

from torch import nn  # noqa: E402

from vitcost.cli import main  # noqa: E402
from vitcost.errors import VitcostError  # noqa: E402
from vitcost.measure.check import CheckResult, LayerCheck, check_model, join_layers  # noqa: E402
from vitcost.specs import MixerSpec, MViTSpec, PixelSpec, SwinSpec, ViTSpec  # noqa: E402

ROW_FIELDS = {"model", "family", "res", "batch", "attn", "convention", "analytic", "fvcore", "torch", "fvcore_diff",
              "torch_diff", "method", "status", "first_mismatch", "unsupported_ops"}

# Small variants of every family that a real CPU forward runs in well under a second, at sizes that
# do not divide evenly: Swin's 100 px gives a 25x25 grid (padded to 28 for window 7, then odd grids
# padded for merging); MViTv2's stem and pooling round down; ViT/Mixer drop the leftover pixels.
SMALL = {
    "vit": (ViTSpec(dim=64, depth=2, heads=2), 72),
    "pixel": (PixelSpec(dim=32, depth=2, heads=2, vocab=16), 12),
    "swin": (SwinSpec(embed_dim=32, depths=(2, 2, 2), heads=(1, 2, 4), window=7), 100),
    "mvit": (MViTSpec(dims=(32, 64, 128), depths=(1, 2, 1), heads=(1, 2, 4)), 70),
    "mixer": (MixerSpec(dim=64, depth=2, tokens_hidden=32, channels_hidden=128), 72),
}


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


@pytest.mark.parametrize("attn", ["math", "sdpa"])
@pytest.mark.parametrize("family", list(SMALL))
def test_small_variants_pass_exactly_on_a_real_forward(family: str, attn: str) -> None:
    spec, res = SMALL[family]
    convention = {"math": "fvcore", "sdpa": "torch"}[attn]
    r = check_model(spec, res, batch=2, attn=attn, convention=convention, method="real")
    assert r.method == "real" and r.counts.fvcore_via == "jit"
    assert r.status == "PASS", r.first_mismatch
    assert r.analytic == r.fvcore == r.torch > 0


PRESET_RUNS = [(m, 224, 1, "fvcore") for m in ("vit_b16", "swin_t", "mvitv2_t", "mixer_b16", "igpt_s")] + [
    ("vit_b16", 320, 2, "torch"), ("swin_t", 320, 2, "macs"), ("mvitv2_t", 320, 2, "torch"),
    ("mixer_b16", 320, 2, "macs"), ("igpt_s", 48, 2, "torch")]


@pytest.mark.parametrize("attn", ["math", "sdpa"])
@pytest.mark.parametrize(("model", "res", "batch", "convention"), PRESET_RUNS)
def test_presets_pass_exactly_on_meta(model: str, res: int, batch: int, convention: str, attn: str) -> None:
    r = check_model(model, res, batch=batch, attn=attn, convention=convention, method="meta")
    assert r.method == "meta"
    assert r.status == "PASS", r.first_mismatch
    assert r.layers and all(layer.ok(0) for layer in r.layers)


def test_published_totals_through_the_check(published) -> None:
    """At 224 the check's three columns equal timm's published GMACs (fvcore convention)."""
    for model, res, _, gmacs in published:
        if res == 224 and model in ("vit_b16", "swin_t", "mvitv2_t", "mixer_b16"):
            r = check_model(model, res, method="meta")
            assert round(r.fvcore / 1e9, 2) == round(r.torch / 1e9, 2) == gmacs


@pytest.mark.slow
@pytest.mark.parametrize("attn", ["math", "sdpa"])
def test_swin_t_preset_passes_on_a_real_forward(attn: str) -> None:
    r = check_model("swin_t", 224, attn=attn, method="real")
    assert r.method == "real" and r.status == "PASS"


def test_auto_counts_pixel_attention_on_meta() -> None:
    r = check_model("igpt_s", 224, attn="sdpa")  # 50,176 tokens: 80 GB of scores per layer
    assert r.method == "meta" and r.status == "PASS"


def _wider_mlp(build):
    """A reference model whose blocks.1.mlp.fc2 is split in two: the counts move to fc2.0/fc2.1."""

    def patched(*args, **kwargs):
        net = build(*args, **kwargs)
        fc2 = net.blocks[1].mlp.fc2
        net.blocks[1].mlp.fc2 = nn.Sequential(fc2, nn.Linear(fc2.out_features, fc2.out_features))
        return net

    return patched


def test_a_changed_layer_fails_and_is_named(monkeypatch) -> None:
    import vitcost.nets

    monkeypatch.setattr(vitcost.nets, "build", _wider_mlp(vitcost.nets.build))
    r = check_model(SMALL["vit"][0], 72, method="meta")
    assert r.status == "FAIL" and r.first_mismatch == "blocks.1.mlp.fc2"
    # no tolerance excuses a layer whose whole count moved to other paths (fc2 counts 0 of its analytic count)
    assert check_model(SMALL["vit"][0], 72, method="meta", tol=0.5).status == "FAIL"


def test_join_and_tolerance_by_hand() -> None:
    layers = join_layers({"a": 100, "b": 50, "": 10}, {"a": 100, "b": 55, "c": 1}, {"a": 100, "b": 50, "": 10})
    assert [x.path for x in layers] == ["a", "b", "", "c"]
    assert layers[1] == LayerCheck("b", 50, 55, 50) and not layers[1].ok(0) and layers[1].ok(0.1)
    assert layers[2] == LayerCheck("", 10, 0, 10)
    assert LayerCheck("x", 0, 0, 0).ok(0)


def test_check_rejects_bad_arguments() -> None:
    with pytest.raises(VitcostError, match="convention"):
        check_model("vit_b16", 224, convention="flops", method="meta")
    with pytest.raises(VitcostError, match="attention path"):
        check_model("vit_b16", 224, attn="flash", method="meta")
    with pytest.raises(VitcostError, match="tolerance"):
        check_model("vit_b16", 224, tol=-0.1, method="meta")
    with pytest.raises(VitcostError, match="method"):
        check_model("vit_b16", 224, method="fast")


def test_cli_json_rows_have_the_report_fields(capsys, tmp_path) -> None:
    from vitcost.report.evidence import read_check

    out_file = tmp_path / "check.json"
    code, out, err = run(capsys, "check", "-m", "vit_b16", "mixer_b16", "-r", "224", "320", "--method", "meta",
                         "--format", "json", "-o", str(out_file))
    # stdout empty; stderr only the progress lines a non-terminal gets, one per count
    assert code == 0 and out == "" and err.splitlines() == [
        f"vitcost: counting {m} {r} {a} ({i}/8)" for i, (m, r, a) in enumerate(
            ((m, r, a) for m in ("vit_b16", "mixer_b16") for r in (224, 320) for a in ("math", "sdpa")), 1)]
    rows = json.loads(out_file.read_text())
    assert len(rows) == 2 * 2 * 2  # models x res x attention paths
    assert all(ROW_FIELDS <= set(r) for r in rows)
    assert {(r["model"], r["res"], r["attn"]) for r in rows} == {
        (m, s, a) for m in ("vit_b16", "mixer_b16") for s in (224, 320) for a in ("math", "sdpa")}
    assert all(r["status"] == "PASS" and r["first_mismatch"] is None and r["fvcore_diff"] == 0 for r in rows)
    assert read_check(out_file) == rows  # the HTML report accepts them


def test_cli_by_layer_table_csv_and_markdown(capsys) -> None:
    code, out, _ = run(capsys, "check", "-m", "mixer_b16", "-r", "224", "--attn", "math", "--method", "meta",
                       "--by-layer", "--convention", "torch")
    assert code == 0
    assert "blocks.11.mlp_channels.fc2" in out and "PASS" in out and "torch convention" in out
    code, out, _ = run(capsys, "check", "-m", "swin_t", "-r", "320", "--attn", "sdpa", "--method", "meta",
                       "--format", "csv")
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["status"] == "PASS" and row["res"] == "320" and row["method"] == "meta"
    code, out, _ = run(capsys, "check", "-m", "swin_t", "-r", "224", "--attn", "math", "--method", "meta",
                       "--format", "markdown", "-c", "macs")
    assert code == 0 and out.startswith("| model |") and "| PASS |" in out and "macs: multiply-accumulates" in out


def test_cli_exits_1_and_names_the_layer(capsys, monkeypatch) -> None:
    import vitcost.nets

    monkeypatch.setattr(vitcost.nets, "build", _wider_mlp(vitcost.nets.build))
    code, out, _ = run(capsys, "check", "-m", "vit_b16", "-r", "224", "--attn", "sdpa", "--method", "meta",
                       "--by-layer")
    assert code == 1
    assert "FAIL" in out and "✗ first mismatch" in out and "blocks.1.mlp.fc2" in out


@pytest.fixture()
def user_models(tmp_path, monkeypatch):
    (tmp_path / "usermodels.py").write_text(textwrap.dedent("""
        from torch import nn

        def small():
            return nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 30 * 30, 10))

        def broken():
            raise ValueError("no weights here")
    """))
    (tmp_path / "badimport.py").write_text("import a_package_that_is_not_installed\n")
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def test_cli_module_counts_any_model(capsys, user_models) -> None:
    code, out, err = run(capsys, "check", "--module", "usermodels:small", "--input", "2x3x32x32", "-f", "json")
    assert code == 0 and err == ""
    (report,) = json.loads(out)
    conv, linear = 2 * 8 * 30 * 30 * 3 * 3 * 3, 2 * 8 * 30 * 30 * 10  # by hand: outputs x taps; rows x in x out
    assert report["fvcore"] == report["torch"] == conv + linear
    assert report["by_module"] == [{"path": "0", "fvcore": conv, "torch": conv},
                                   {"path": "2", "fvcore": linear, "torch": linear}]
    code, out, _ = run(capsys, "check", "--module", "usermodels:small", "--input", "1x3x32x32")
    assert code == 0 and "usermodels:small" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--module", "not_a_module_here:f", "--input", "1x3x32x32"], "cannot import not_a_module_here"),
    (["--module", "badimport:f", "--input", "1x3x32x32"], "cannot import badimport"),
    (["--module", "usermodels:broken", "--input", "1x3x32x32"], "raised ValueError: no weights here"),
    (["--module", "usermodels:missing", "--input", "1x3x32x32"], "no attribute"),
    (["--module", "usermodels", "--input", "1x3x32x32"], "package.module:factory"),
    (["--module", "usermodels:small", "--input", "1x3x16x16"], "forward failed on input 1x3x16x16"),
    (["--module", "usermodels:small", "--input", "1x3xfoo"], "not a shape"),
    (["--module", "usermodels:small", "--input", "0x3x32x32"], "not a shape"),
    (["--module", "usermodels:small"], "needs --input"),
    (["-m", "vit_b16", "--input", "1x3x32x32"], "only with --module"),
    (["-m", "vit_b99"], "unknown model"),
    (["-m", "swin_t", "-r", "20"], "larger than"),
    (["-m", "vit_b16", "--tol", "-1"], "--tol"),
    (["-m", "vit_b16", "-o", "no/such/folder/x.json"], "does not exist"),
])
def test_cli_bad_input_is_one_line_and_exit_2(capsys, user_models, argv, message) -> None:
    code, out, err = run(capsys, "check", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("vitcost: error: ") and message in err
    assert list(user_models.glob("**/*.json")) == []  # nothing half-written


def test_check_help_has_examples(capsys) -> None:
    code, out, _ = run(capsys, "check", "--help")
    assert code == 0
    for text in ("--by-layer", "--module", "--input", "--tol", "Exit code 1", "vitcost check --models"):
        assert text in out


def test_result_row_diffs_are_absolute() -> None:
    from vitcost.measure.counting import Counts

    counts = Counts(method="meta", input_shapes=((1, 3, 8, 8),), backends=("fvcore", "torch"), tables={},
                    observed={}, unsupported_by_backend={}, paths=())
    r = CheckResult("m", "vit", (8, 16), 1, "math", "macs", 0.0, 100, 90, 110, (), counts)
    row = r.row()
    assert row["res"] == "8x16" and row["fvcore_diff"] == 10 and row["torch_diff"] == 10
    assert row["status"] == "FAIL" and row["first_mismatch"] == "(total)"


def test_a_size_torch_cannot_index_is_one_line_before_counting(capsys):
    """At 10^30 px ViT-Ti's tokens number 3.9e57: no torch tensor holds them (torch indexes with int64), so
    check refuses in one line before it counts anything, rather than a traceback from torch."""
    from vitcost.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["check", "-m", "vit_ti16", "--method", "meta", "-r", str(10**30)])
    _, err = capsys.readouterr()
    assert exc.value.code == 2 and err.count("\n") == 1 and "2^63" in err and "counting" not in err
