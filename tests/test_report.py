"""`vitcost report`: the numbers behind the figures (derived by hand here), the file it writes
(self-contained, no network sources), and one-line errors with nothing left behind."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from vitcost.analytic.scaling import attention_overtakes, fit_slope, overtake_closed_form, parse_memory, score_wall
from vitcost.cli import main
from vitcost.design import parse_design
from vitcost.errors import VitcostError
from vitcost.report import evidence
from vitcost.zoo import get_preset

GIB = 2**30

# --- fixtures: rows shaped like `vitcost check` / `vitcost profile` JSON output -------------------

CHECK_ROWS = [
    {"model": "vit_b16", "family": "vit", "res": 224, "batch": 1, "attn": "math", "convention": "fvcore",
     "analytic": 17_600_000_000, "fvcore": 17_600_000_000, "torch": 35_100_000_000, "fvcore_diff": 0,
     "torch_diff": 0, "method": "layer join", "status": "ok", "first_mismatch": None, "unsupported_ops": []},
    {"model": "swin_t", "family": "swin", "res": 384, "batch": 1, "attn": "math", "convention": "fvcore",
     "analytic": 13_300_000_000, "fvcore": 13_200_000_000, "torch": None, "fvcore_diff": 100_000_000,
     "torch_diff": None, "method": "layer join", "status": "mismatch", "first_mismatch": "layers.0.blocks.0.attn",
     "unsupported_ops": ["aten::roll"]},
]
PROFILE_ROWS = [
    {"model": "vit_b16", "family": "vit", "res": 224, "batch": 8, "dtype": "bf16", "attn": "sdpa",
     "attn_backend": "flash", "device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "torch_version": "2.13.0",
     "threads": 16, "status": "ok", "note": "", "macs": 140_000_000_000, "flops": 281_000_000_000,
     "predicted_time_s": 0.0011, "measured_time_s": 0.0019, "time_spread_s": 0.0001,
     "predicted_mem_bytes": 900_000_000, "measured_mem_bytes": 1_100_000_000, "mem_ratio": 1.22,
     "predicted_attn_bytes": 0, "measured_attn_bytes": None, "achieved_tflops": 148.0, "peak_fraction": 0.15},
    {"model": "igpt_l", "family": "pixel", "res": 128, "batch": 1, "dtype": "bf16", "attn": "math",
     "attn_backend": "math", "device": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "torch_version": "2.13.0",
     "threads": 16, "status": "oom", "note": "attention matrices need 384 GiB", "macs": None, "flops": None,
     "predicted_time_s": 2.5, "measured_time_s": None, "time_spread_s": None,
     "predicted_mem_bytes": 420_000_000_000, "measured_mem_bytes": None, "mem_ratio": None,
     "predicted_attn_bytes": 412_316_860_416, "measured_attn_bytes": None, "achieved_tflops": None,
     "peak_fraction": None},
]


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data))
    return path


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


# --- the numbers behind the figures --------------------------------------------------------------

def test_fit_slope_recovers_a_power_law() -> None:
    xs = [224, 384, 512, 768, 1024]
    assert fit_slope(xs, [3.0 * x**2.5 for x in xs]) == pytest.approx(2.5, abs=1e-12)
    assert fit_slope([100, 1000], [10.0, 1e5]) == pytest.approx(4.0)
    assert fit_slope([224], [1.0]) is None


def test_vit_b16_attention_overtakes_at_6d_tokens() -> None:
    # Per layer: scores 2*N^2*d MACs vs qkv + proj + MLP 12*N*d^2: equal at N = 6d = 4608 tokens.
    # N = g^2 + 1 (class token), g = floor(R / 16): g = 67 gives 4490 < 4608, g = 68 gives 4625, so the
    # first resolution is R = 68 * 16 = 1088 px; the closed form is 16 * sqrt(4607).
    assert overtake_closed_form(get_preset("vit_b16").spec) == pytest.approx(16 * math.sqrt(4607))
    c = attention_overtakes(parse_design("vit_b16"))
    assert (c.res, c.where) == (1088, "at")


def test_pixel_attention_overtakes_at_96_px() -> None:
    # iGPT-L: d = 1536, no class token, N = R^2: 6d = 9216 = 96^2 exactly.
    assert overtake_closed_form(get_preset("igpt_l").spec) == pytest.approx(96.0)
    assert attention_overtakes(parse_design("igpt_l")).res == 96


def test_window_attention_never_overtakes_and_mixer_has_none() -> None:
    # Swin: 2*M^2*hw*C scores vs 12*hw*C^2 linear per block: M^2/6C = 49/576 at stage 1, whatever R.
    assert attention_overtakes(parse_design("swin_t")).where == "beyond"
    assert attention_overtakes(parse_design("mixer_b16")) is None
    assert overtake_closed_form(get_preset("swin_t").spec) is None


def test_score_wall_of_pixel_attention_by_hand() -> None:
    # iGPT-L, fp32: 48 layers x 16 heads x (R^2)^2 scores x 4 B = 3072 R^4 bytes. The published
    # figure: R = 128 -> 768 GiB exactly, so 768 GiB is first reached at 128 px.
    assert score_wall(parse_design("igpt_l"), 768 * GIB).res == 128
    # 80 GB: R^4 >= 80e9 / 3072 = 26,041,666.7 -> 71^4 = 25,411,681 is short, 72^4 = 26,873,856 is not.
    assert score_wall(parse_design("igpt_l"), 80 * 10**9).res == 72
    # Largest single layer: 16 x R^4 x 4 B = 64 R^4 >= 80e9 -> R^4 >= 1.25e9 -> 188^4 < 1.25e9 <= 189^4.
    assert score_wall(parse_design("igpt_l"), 80 * 10**9, "layer").res == 189


def test_score_wall_of_vit_by_hand() -> None:
    # ViT-B/16, fp32: 12 layers x 12 heads x N^2 x 4 B >= 80e9 -> N >= 11,785.1; N = g^2 + 1 -> g = 109
    # (108^2 + 1 = 11,665 is short) -> R = 109 * 16 = 1744 px.
    assert score_wall(parse_design("vit_b16"), 80 * 10**9).res == 1744
    assert score_wall(parse_design("mixer_b16"), 80 * 10**9) is None


def test_parse_memory() -> None:
    assert parse_memory("80GB").bytes == 80 * 10**9
    assert parse_memory("141 GB").label == "141 GB"
    assert parse_memory("24GiB").bytes == 24 * GIB
    assert parse_memory("80").bytes == 80 * 10**9
    d = parse_memory("H100=80GB")
    assert (d.label, d.bytes) == ("H100 80 GB", 80 * 10**9)
    for bad in ("lots", "-5GB", "0GB", "80 parsecs"):
        with pytest.raises(VitcostError):
            parse_memory(bad)


# --- reading check / profile rows ----------------------------------------------------------------

def test_evidence_readers_accept_rows_and_a_rows_object(tmp_path: Path) -> None:
    assert evidence.read_check(write_json(tmp_path / "c.json", CHECK_ROWS))[1]["torch"] is None
    assert len(evidence.read_profile(write_json(tmp_path / "p.json", {"rows": PROFILE_ROWS}))) == 2


@pytest.mark.parametrize("content, fragment", [
    ("{not json", "is not valid JSON"),
    ('{"a": 1}', "must hold a JSON list"),
    ("[]", "holds no rows"),
    ("[1]", "row 1 is not a JSON object"),
    (json.dumps([{k: v for k, v in PROFILE_ROWS[0].items() if k != "measured_time_s"}]),
     "lacks the field 'measured_time_s'"),
    (json.dumps([{**PROFILE_ROWS[0], "predicted_time_s": "fast"}]), "'predicted_time_s' must be"),
    (json.dumps([{**PROFILE_ROWS[0], "measured_mem_bytes": -1}]), "'measured_mem_bytes' must be"),
])
def test_profile_reader_rejects_malformed_files(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(VitcostError, match=fragment):
        evidence.read_profile(path)


# --- the written file ----------------------------------------------------------------------------

class SourceScan(HTMLParser):
    """Script sources, stylesheet links, plot divs and the CSP of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.inline_scripts = 0
        self.plot_divs: list[str] = []
        self.tables = 0
        self.csp = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            if a.get("src"):
                self.sources.append(a["src"] or "")
            else:
                self.inline_scripts += 1
        if tag == "link" and a.get("href"):
            self.sources.append(a["href"] or "")
        if tag == "div" and "plotly-graph-div" in (a.get("class") or "").split():
            self.plot_divs.append(a.get("id") or "")
        if tag == "table":
            self.tables += 1
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = a.get("content") or ""


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("report")
    check = write_json(d / "check.json", CHECK_ROWS)
    profile = write_json(d / "profile.json", PROFILE_ROWS)
    out = d / "scaling.html"
    with pytest.raises(SystemExit) as exc:
        main(["report", "--res", "224", "384", "512", "768", "1024", "--check", str(check),
              "--profile", str(profile), "-o", str(out)])
    assert exc.value.code == 0
    return out


def test_report_is_self_contained(full_report: Path) -> None:
    text = full_report.read_text(encoding="utf-8")
    scan = SourceScan()
    scan.feed(text)
    assert [s for s in scan.sources if s.lower().startswith(("http://", "https://", "//"))] == []
    assert scan.sources == []  # no external script or stylesheet of any kind
    assert "default-src 'none'" in scan.csp  # the browser itself refuses any request
    assert "plotly.js v" in text and len(text) > 3_000_000  # plotly.js inlined, not fetched
    assert "MathJax.js" not in text and "cdn.plot.ly/plotly" not in text.split("<body", 1)[1]


def test_report_has_every_figure_and_its_tables(full_report: Path) -> None:
    scan = SourceScan()
    scan.feed(full_report.read_text(encoding="utf-8"))
    assert scan.plot_divs == ["fig-cost", "fig-memory", "fig-breakdown", "fig-overtake", "fig-training", "fig-counts",
                              "fig-time", "fig-memfit"]
    assert scan.tables >= 7
    text = full_report.read_text(encoding="utf-8")
    assert "Counting conventions" in text and "vitcost 0." in text and " UTC" in text
    assert "layers.0.blocks.0.attn" in text  # a check row's first mismatch, in the table behind the scatter
    assert "attention matrices need 384 GiB" in text  # an OOM profile row's note
    assert "NVIDIA H100 80GB HBM3 (torch 2.13.0)" in text  # where the measured rows come from


def test_report_tables_carry_the_hand_derived_crossings(full_report: Path) -> None:
    text = full_report.read_text(encoding="utf-8")
    assert "1,088 px" in text and "1,744 px" in text and "72 px" in text


def test_report_module_stays_off_the_light_import_path() -> None:
    code = ("import sys, vitcost, vitcost.cli\n"
            "vitcost.cli.load_commands()\n"
            "heavy = [m for m in ('plotly', 'pandas', 'torch') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert 'report' in [c.name or c.callback.__name__ for c in vitcost.cli.app.registered_commands]\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- the training step ---------------------------------------------------------------------------

def training_panel(models: list[str], res: list[str], **options: object) -> object:
    from vitcost.cli.report import report_request
    from vitcost.report.build import build_panels

    panels, _ = build_panels(report_request(models, [], res, **options))
    return next(p for p in panels if p.key == "training")


def table_rows(table: object) -> dict[tuple[str, str, str], dict[str, str]]:
    """(model, res, checkpoint) -> {column: cell} of a table behind the training figure."""
    return {tuple(row[:3]): dict(zip(table.header, row)) for row in table.rows}


def test_training_table_is_the_train_memory_model() -> None:
    from vitcost import estimate
    from vitcost.analytic.train_memory import train_memory

    panel = training_panel(models=["vit_b16"], res=["224", "384"], batch=2, dtype="bf16")
    parts, stacks = table_rows(panel.tables[0]), table_rows(panel.tables[1])
    assert len(parts) == 4  # two sizes, each without and with checkpointing per block
    names = {"weights": "weights", "gradients": "gradients", "optimizer_state": "optimizer state",
             "input": "batch", "activations_saved": "activations saved", "weight_casts": "weight casts",
             "forward_peak": "forward peak", "backward_peak": "backward peak", "optimizer_peak": "optimizer peak",
             "step_peak": "step peak"}
    for r in (224, 384):
        e = estimate("vit_b16", r, 2, "bf16")  # autocast: 16-bit activations and weight copies, fp32 weights
        for label, checkpoint in (("none", 0), ("block", 1)):
            m = train_memory(e, "adamw", checkpoint, device="cuda")  # GPU rules: the figure is set against GPUs
            row = parts[("vit_b16", str(r), label)]
            assert {k: int(row[col].replace(",", "")) for k, col in names.items()} == m.parts()
            assert row["peak in"] == m.peak_at
            # the bar: its parts stack up to the step peak exactly
            bar = stacks[("vit_b16", str(r), label)]
            cells = [int(v.replace(",", "")) for k, v in bar.items() if k not in ("model", "res", "checkpoint", "sum")]
            assert sum(cells) == int(bar["sum"].replace(",", "")) == m.step_peak
    assert int(parts[("vit_b16", "384", "block")]["weight casts"].replace(",", "")) > 0


def test_optimizer_step_peak_stacks_gradients_and_one_copy_of_the_weights() -> None:
    # ViT-B/16 at 224, batch 1, fp32: the backward holds less than the AdamW step, so the peak stacks
    # weights 4P + exp_avg and exp_avg_sq 8P + a float32 step per parameter tensor + the batch, then the
    # gradients 4P and the multi-tensor update's temporary copy of all weights 4P (P = 86,567,656).
    panel = training_panel(models=["vit_b16"], res=["224"])
    bar = table_rows(panel.tables[1])[("vit_b16", "224", "none")]
    p, tensors = 86_567_656, 152  # timm's vit_base_patch16_224: 12 blocks x 12 tensors + 8 outside them
    assert int(bar["weights"].replace(",", "")) == 4 * p
    assert int(bar["optimizer state"].replace(",", "")) == 8 * p + 4 * tensors
    assert int(bar["batch"].replace(",", "")) == 3 * 224 * 224 * 4 + 8  # images and int64 labels
    assert int(bar["gradients"].replace(",", "")) == 4 * p
    assert int(bar["optimizer update"].replace(",", "")) == 4 * p
    assert int(bar["sum"].replace(",", "")) == 20 * p + 4 * tensors + 3 * 224 * 224 * 4 + 8


def test_checkpointing_lowers_the_step_peak_of_a_deep_model() -> None:
    # A 24-block ViT-B/16 at 768 px (2,305 tokens): without checkpointing every block's activations and
    # score matrices are saved; with it, each block's input only and one block recomputed at a time.
    panel = training_panel(models=["vit_b16:depth=24"], res=["768"])
    rows = table_rows(panel.tables[0])
    model = next(iter(rows))[0]
    plain, block = (int(rows[(model, "768", c)]["step peak"].replace(",", "")) for c in ("none", "block"))
    assert block < plain / 2
    assert rows[(model, "768", "block")]["peak in"].startswith(("backward", "recompute"))
    saved_plain, saved_block = (int(rows[(model, "768", c)]["activations saved"].replace(",", ""))
                                for c in ("none", "block"))
    assert saved_block < saved_plain / 10
    recomputed = int(rows[(model, "768", "block")]["recomputed (MACs)"].replace(",", ""))
    assert recomputed > 0 and rows[(model, "768", "none")]["recomputed (MACs)"] == "0"


def test_training_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    code, _, err = run_cli(["report", "-m", "swin_t", "-r", "224", "--optimizer", "sgd", "-o", str(out)], capsys)
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert 'id="fig-training"' in text and "SGD with momentum" in text
    assert "vitcost report --models swin_t --res 224 --optimizer sgd -o" in text  # the footer reproduces it
    code, _, err = run_cli(["report", "-m", "swin_t", "-r", "224", "--no-train", "-o", str(out)], capsys)
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert 'id="fig-training"' not in text and "--no-train -o" in text
    code, _, err = run_cli(["report", "-m", "swin_t", "-r", "224", "--no-train", "--optimizer", "sgd", "-o",
                            str(tmp_path / "x.html")], capsys)
    assert_one_line_error(code, err)


# --- bad input: one line, exit 2, nothing written ------------------------------------------------

def assert_one_line_error(code: int, err: str) -> None:
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vitcost: error: "), err


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_unwritable_output_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = run_cli(["report", "-r", "224", "512", "-o", str(blocker / "scaling.html")], capsys)
    assert_one_line_error(code, err)
    folder = tmp_path / "is-a-folder.html"
    folder.mkdir()
    code, _, err = run_cli(["report", "-r", "224", "512", "-o", str(folder)], capsys)
    assert_one_line_error(code, err)
    assert folder.is_dir() and no_temp_files(tmp_path)


@pytest.mark.parametrize("content", [None, "{oops", '[{"model": "vit_b16"}]'])
def test_bad_profile_is_one_line_error_and_keeps_the_old_report(tmp_path: Path, content: str | None,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    profile = tmp_path / "results.json"
    if content is not None:
        profile.write_text(content)
    out = tmp_path / "scaling.html"
    out.write_text("previous report")
    code, stdout, err = run_cli(["report", "-r", "224", "512", "--profile", str(profile), "-o", str(out)],
                                capsys)
    assert_one_line_error(code, err)
    assert "--profile" in err and stdout == ""
    assert out.read_text() == "previous report" and no_temp_files(tmp_path)


def test_bad_check_file_and_options_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "r.html"
    bad_check = write_json(tmp_path / "c.json", [{**CHECK_ROWS[0], "analytic": None}])
    for args in (["--check", str(bad_check)], ["--device-memory", "lots"], ["--breakdown-res", "big"],
                 ["--format", "png", "-o", str(out)], ["-m", "vit_b99"], ["-r", "0"]):
        code, _, err = run_cli(["report", "-r", "224", "512", "-o", str(out), *args], capsys)
        assert_one_line_error(code, err)
        assert not out.exists()


def test_small_report_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "vit.html"
    code, _, err = run_cli(["report", "-m", "vit_b16", "swin_t", "-r", "224", "448", "--convention", "flops",
                            "--breakdown-res", "448", "--device-memory", "24GiB", "A100=40GB", "--title", "ViT vs Swin",
                            "-o", str(out)], capsys)
    assert code == 0, err
    text = out.read_text(encoding="utf-8")
    assert "<title>ViT vs Swin</title>" in text and "24 GiB" in text and "A100 40 GB" in text
    assert "flops (shown)" in text and "FLOPs (flops)" in text
    assert out.stat().st_mode & 0o044 == 0o044  # readable by the team, not only its writer


def test_png_without_chromium_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VITCOST_CHROMIUM", str(tmp_path / "no-such-browser"))
    out = tmp_path / "scaling.png"
    code, _, err = run_cli(["report", "-r", "224", "512", "-o", str(out)], capsys)
    assert_one_line_error(code, err)
    assert "Chromium" in err and not out.exists() and no_temp_files(tmp_path)
