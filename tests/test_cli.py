"""The command line: output formats, help, and one-line errors with exit code 2 on bad input."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest

from vitcost.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_compare_default_table(capsys):
    code, out, err = run(capsys, "compare", "--res", "224", "512", "1024")
    assert code == 0 and err == ""
    for model in ("igpt_l", "vit_b16", "swin_t", "mvitv2_t", "mixer_b16"):
        assert model in out
    assert "GMACs" in out and "O(R^4)" in out and "O(HWC)" in out
    # Pixel attention at 1024 is absurd and shown as such: 1024^4 pairs x 16 heads x 48 layers x 4 B.
    assert 1024**4 * 16 * 48 * 4 == 3 * 2**50
    assert "3 PiB" in out


def test_compare_json_rows(capsys):
    code, out, _ = run(capsys, "compare", "-m", "vit_b16", "swin", "-r", "224", "384x640", "--format", "json",
                       "--dtype", "bf16", "--batch", "2")
    assert code == 0
    rows = json.loads(out)
    required = {"model", "family", "res", "batch", "dtype", "tokens", "params", "macs", "flops",
                "attn_matrix_elems", "attn_matrix_bytes", "attn_matrix_peak_bytes", "complexity"}
    assert all(required <= set(r) for r in rows)
    assert {r["model"] for r in rows} == {"vit_b16", "swin_t", "swin_s", "swin_b", "swin_b_384", "swin_l"}
    vit = [r for r in rows if r["model"] == "vit_b16"]
    assert [r["res"] for r in vit] == [224, "384x640"]
    assert vit[0]["tokens"] == 196 and vit[1]["tokens"] == 24 * 40
    assert vit[0]["attn_matrix_bytes"] == 2 * 12 * 12 * 197 * 197 * 2  # batch 2, bf16


def test_compare_csv_and_markdown(capsys):
    code, out, _ = run(capsys, "compare", "-m", "mixer_b16", "-r", "224", "--format", "csv")
    assert code == 0
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert row["model"] == "mixer_b16" and row["attn_matrix_elems"] == "0"
    code, out, _ = run(capsys, "compare", "-m", "vit_b16", "-r", "224", "--format", "markdown")
    assert code == 0 and out.startswith("**vitcost compare** — batch 1, fp32") and "\n| model |" in out


def test_compare_output_file(tmp_path, capsys):
    target = tmp_path / "rows.json"
    code, out, _ = run(capsys, "compare", "-m", "vit_b16", "--format", "json", "-o", str(target))
    assert code == 0 and out == ""
    assert len(json.loads(target.read_text())) == 3


def test_convention_changes_the_header_and_numbers(capsys):
    _, out, _ = run(capsys, "compare", "-m", "vit_b16", "-r", "224", "--convention", "fvcore", "--format", "json")
    assert json.loads(out)[0]["cost"] == 17_582_740_224  # timm's published 17.58G, derived in test_analytic


def test_models_and_formula(capsys):
    code, out, _ = run(capsys, "models", "--format", "json")
    rows = json.loads(out)
    assert code == 0 and {"vit_b16", "swin_t", "mvitv2_t", "mixer_b16", "igpt_l"} <= {r["model"] for r in rows}
    code, out, _ = run(capsys, "formula", "window_attention")
    assert code == 0 and "LaTeX: 4 C^{2} h w + 2 C M^{2} h w" in out
    code, out, _ = run(capsys, "formula", "global_attention", "--latex")
    assert code == 0 and out.strip() == "4 C^{2} h w + 2 C h^{2} w^{2}"


@pytest.mark.parametrize("argv, needle", [
    (["compare", "--res", "0"], "positive"),
    (["compare", "--res", "-3"], "positive"),
    (["compare", "--res", "abc"], "not a whole number"),
    (["compare", "--batch", "0"], "batch"),
    (["compare", "--models", "vit_b61"], "Did you mean vit_b16"),
    (["compare", "-m", "vit_b16", "--patch", "300"], "does not fit"),
    (["compare", "-m", "swin_t", "--window", "64"], "larger than"),
    (["compare", "-m", "vit_b16", "--window", "7"], "class_tokens = 0"),
    (["compare", "-m", "igpt_s", "--window", "7"], "has no field 'window'"),
    (["compare", "--dtype", "fp8"], "fp8"),
    (["compare", "--bogus"], "bogus"),
    (["formula", "nonsense"], "unknown"),
    (["compare", "--format", "json", "-o", "/nonexistent/dir/x.json"], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("vitcost: error: ") and needle in err
    assert "Traceback" not in err


def test_help_teaches():
    out = subprocess.run([sys.executable, "-m", "vitcost", "compare", "--help"], capture_output=True, text=True,
                         env={"COLUMNS": "200", "PATH": ""})
    assert out.returncode == 0
    for flag in ("--models", "--res", "--batch", "--dtype", "--convention", "--format", "--window", "--patch"):
        assert flag in out.stdout


def test_compare_path_imports_no_heavy_library():
    code = ("import sys, io, contextlib\n"
            "from vitcost.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        main(['compare', '--res', '224', '512', '1024'])\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0, e.code\n"
            "print(','.join(m for m in ('torch', 'sympy', 'pandas', 'plotly', 'fvcore') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_compare_with_a_roofline_profile_imports_no_time_model():
    """`compare --hardware` at fp32 shows the roofline: loading the profile (its [efficiency] tables
    included) must not pull in the per-op time model, which only autocast runs use."""
    code = ("import sys, io, contextlib\n"
            "from vitcost.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        main(['compare', '--res', '224', '--hardware', 'rtx4090'])\n"
            "    except SystemExit as e:\n"
            "        assert e.code == 0, e.code\n"
            "print('vitcost.analytic.time_model' in sys.modules, 'vitcost.analytic.efficiency' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


def test_analytic_modules_import_no_torch():
    """Every module of vitcost/analytic, specs and zoo: torch-free by design (sympy only on demand)."""
    code = ("import sys, pkgutil, importlib, vitcost.analytic, vitcost.specs, vitcost.zoo\n"
            "for m in pkgutil.iter_modules(vitcost.analytic.__path__):\n"
            "    importlib.import_module('vitcost.analytic.' + m.name)\n"
            "print(sorted(m for m in ('torch', 'fvcore', 'pandas', 'plotly') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_torch_is_one_line(tmp_path):
    """Without the torch extra, a torch-backed command says what to install instead of a traceback."""
    blocker = tmp_path / "torch.py"
    blocker.write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    code = "import sys; sys.path.insert(0, sys.argv[1]); from vitcost.cli import main; main(sys.argv[2:])"
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path), "check", "-m", "vit_ti16", "-r", "64"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
    assert "pip install 'vitcost[torch]'" in out.stderr
