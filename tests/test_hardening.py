"""Hardening: outputs that never destroy, inputs that never crash, a library that raises only its own errors.

Every bad input ends in one line on stderr ("vitcost: error: ...") and exit code 2; no traceback ever
reaches the user; `-o` never replaces what is not a regular file; the public library functions raise
only `VitcostError` (or a subclass).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vitcost
from vitcost.cli import main
from vitcost.errors import VitcostError

VITCOST = [sys.executable, "-m", "vitcost"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str) -> bool:
    """Exit 2 and exactly one line besides `check`'s progress lines ("vitcost: counting ...")."""
    lines = [line for line in err.splitlines() if not line.startswith("vitcost: counting ")]
    return code == 2 and len(lines) == 1 and lines[0].startswith("vitcost: error: ") and "Traceback" not in err


# --- outputs -------------------------------------------------------------------------------------------

def test_output_through_a_symlink_writes_its_target(tmp_path, capsys):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    code, _, err = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "-f", "json", "-o", str(link))
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(target)  # still a link, to the same file
    assert target.read_text().startswith("[")  # the target got the output


def test_output_to_a_read_only_file_is_refused_even_for_root(tmp_path, capsys):
    # The refusal reads the permission bits, so it holds for root too (root could otherwise write).
    target = tmp_path / "keep.json"
    target.write_text("precious")
    target.chmod(stat.S_IRUSR | stat.S_IRGRP)
    code, _, err = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "-f", "json", "-o", str(target))
    assert one_line_error(code, err) and "read-only" in err
    assert target.read_text() == "precious"


def test_output_to_a_device_is_written_directly_and_stays_a_device(capsys):
    code, _, err = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "-f", "json", "-o", os.devnull)
    assert code == 0, err
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_output_to_a_full_device_is_one_line(capsys):
    code, _, err = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "-o", "/dev/full")
    assert one_line_error(code, err) and "space" in err.lower()
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_dash_is_stdout_and_empty_is_an_error(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "-f", "json", "-o", "-")
    assert code == 0 and out.lstrip().startswith("[") and not (tmp_path / "-").exists()
    code, _, err = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "-o", "")
    assert one_line_error(code, err) and "file name" in err


def test_every_command_takes_output(tmp_path, capsys):
    for argv in (["models"], ["compare", "-m", "vit_ti16", "-r", "224"], ["spec", "vit_ti16"],
                 ["profile", "-m", "vit_ti16", "-r", "64", "--predict-only", "--hardware", "cpu"]):
        path = tmp_path / f"{argv[0]}.md"
        code, out, err = run(capsys, *argv, "-o", str(path))
        assert code == 0, (argv, err)
        assert path.read_text().strip() and not out.strip(), argv


def test_markdown_keeps_the_table_context(capsys):
    code, out, _ = run(capsys, "compare", "-m", "vit_ti16", "-r", "224", "--batch", "3", "--dtype", "bf16",
                       "-f", "markdown")
    assert code == 0 and out.splitlines()[0] == "**vitcost compare** — batch 3, bf16, math attention, macs convention"


def test_profile_checks_its_output_before_the_sweep(tmp_path, capsys):
    t0 = time.perf_counter()
    code, out, err = run(capsys, "profile", "-m", "vit_b16", "-r", "224", "512", "--device", "cpu",
                         "-o", str(tmp_path / "missing" / "p.json"))
    assert one_line_error(code, err) and "does not exist" in err
    assert time.perf_counter() - t0 < 5  # nothing was run: a ViT-B forward at 512 px alone takes longer


def test_broken_pipe_exits_quietly():
    p = subprocess.Popen([*VITCOST, "formula", "mvitv2_b"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(8)
    p.stdout.close()  # the reader goes away, as `| head -1` does
    err = p.stderr.read().decode()
    p.wait(timeout=60)
    assert err == "" and p.returncode in (0, 1)


def test_ctrl_c_prints_one_line_and_exits_130():
    # many short counts, so the interrupt lands between two ops quickly even on a loaded machine
    p = subprocess.Popen([*VITCOST, "check", "-m", "vit_ti16", "vit_s16", "-r", *map(str, range(64, 400, 16)),
                          "--method", "real"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(4)  # past the imports (an interrupt during them is handled the same way), inside the counting
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    lines = [line for line in err.decode().splitlines() if not line.startswith("vitcost: counting")]
    assert p.returncode == 130 and lines == ["vitcost: interrupted"]


# --- inputs (CLI) --------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["check", "--module", "tests.lazy_factory:build", "--input", "1x3x8x8"], "lazy"),
    (["check", "-m", "vit_ti16", "-r", "224", "--batch", "1000000", "--method", "real", "--attn", "math"],
     "meta device"),
    (["check", "-m", "vit_ti16", "-r", "1000000", "--method", "meta", "--attn", "math"], "failed"),
    (["check", "--module", "vitcost.nets.examples:small_cnn", "--input", "1x3x32x32", "-r", "999", "--batch", "7",
      "--by-layer", "--attn", "math", "--tol", "5"], "do not apply"),
    (["profile", "-m", "vit_b16", "--predict-only", "--bandwidth", "inf"], "finite"),
    (["profile", "-m", "vit_b16", "--predict-only", "--device-memory", "=80GB"], "memory size"),
    (["report", "-m", "vit_ti16", "-r", "224", "--device-memory", "=80GB"], "empty name"),
    (["report", "-m", "vit_ti16", "-r", "224", "--device-memory", "H100=80GB", "H100=141GB"], "twice"),
    (["report", "-m", "vit_ti16", "-r", "224", "-o", "r.pdf"], ".html"),
])
def test_bad_inputs_are_one_line(argv, needle, capsys, monkeypatch, tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "lazy_factory.py").write_text(
        "import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.LazyLinear(4))\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run(capsys, *argv)
    assert one_line_error(code, err) and needle in err, err


@pytest.mark.parametrize("command", [["compare"], ["report", "-o", "r.html"], ["check", "--method", "meta"],
                                     ["profile", "--predict-only"]])
def test_a_patch_that_does_not_fit_is_exit_2_everywhere(command, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *command, "-m", "vit_b16", "-r", "8")
    assert one_line_error(code, err) and "does not fit" in err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"vitcost {vitcost.__version__}"


# --- the library ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda: vitcost.estimate(123),
    lambda: vitcost.estimate(None),
    lambda: vitcost.estimate("vit_b16", res=None),
    lambda: vitcost.estimate("vit_b16", res="224x"),
    lambda: vitcost.estimate("vit_b16", dtype=["fp32"]),
    lambda: vitcost.estimate("vit_b16", batch=1.5),
    lambda: vitcost.estimate("vit_b16", attn="fast"),
    lambda: vitcost.estimate("vit_b16").count("bogus"),
    lambda: vitcost.estimate("vit_b16").by_layer(None),
    lambda: vitcost.formula(None),
    lambda: vitcost.formula(42),
    lambda: vitcost.formula("nonsense"),
    lambda: vitcost.compare(123),
    lambda: vitcost.compare("vit_b16", res=[]),
    lambda: vitcost.compare("vit_b16", convention="gflops"),
    lambda: vitcost.load_spec_file(3.5),
    lambda: vitcost.ViTSpec(dim=64, depth=2, heads=2.5),
    lambda: vitcost.SwinSpec(embed_dim=32, depths=(2,), heads=(1,), window=3.5),
    lambda: vitcost.ViTSpec(dim=64, depth=2, heads=2, mlp_ratio=0.001),
    lambda: vitcost.count("not a module", (1, 3, 8, 8)),
])
def test_library_raises_only_its_own_errors(call):
    with pytest.raises(VitcostError):
        call()


def test_library_accepts_what_users_pass():
    import numpy as np

    assert len(vitcost.compare("vit_b16")) == 1  # one model, not one per character
    assert list(vitcost.compare("vit_b16", res="224")["res"]) == [224]
    e = vitcost.estimate("vit_b16", res=np.int64(224), batch=np.int32(2))
    assert e.res == (224, 224) and e.batch == 2
    assert vitcost.ViTSpec(dim=np.int64(64), depth=2, heads=2).dim == 64
    assert len(repr(e)) < 400  # a few lines, not the op list


def test_count_without_torch_says_what_to_install():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import vitcost\n"
            "try:\n    vitcost.count(object(), (1, 3, 8, 8))\n"
            "except vitcost.VitcostError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'vitcost[torch]'" in out


# --- generated junk ------------------------------------------------------------------------------------

JUNK_TEXT = st.one_of(st.sampled_from(["", " ", "-", "--", "0", "-1", "1e309", "nan", "inf", "224x", "x224",
                                       "vit_b16:", "vit_b16:dim=", "vit_b16:dim=x", ":=", "a.toml", "a.json",
                                       "\x00", "é", "9" * 40, "vit_b16:window=3.5", "swin_t:depths=2--2"]),
                      st.text(max_size=12))
OPTIONS = {
    "compare": ["-m", "-r", "--batch", "--dtype", "--attn", "--convention", "-f", "--set", "--patch", "--window", "-o"],
    "models": ["-f", "-o"],
    "formula": [],
    "spec": ["-f", "-o"],
    "profile": ["-m", "-r", "--batch", "--dtype", "--attn", "--device-memory", "--hardware", "--peak-tflops",
                "--bandwidth", "-f", "-o", "--set"],
}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(sorted(OPTIONS)), data=st.data())
def test_junk_arguments_never_crash(command, data, capsys, tmp_path_factory):
    """Any arguments: a result (exit 0), or one line and exit 2; never a traceback; no file written
    outside the test's folder (the working directory is a fresh temporary folder)."""
    folder = tmp_path_factory.mktemp("junk")
    (folder / "empty.toml").write_text("")
    (folder / "binary.json").write_bytes(b"\x89PNG\x00\xff")
    (folder / "dir.toml").mkdir()
    (folder / "link.toml").symlink_to(folder / "nowhere.toml")
    files = st.sampled_from([str(folder / n) for n in ("empty.toml", "binary.json", "dir.toml", "link.toml")])
    argv = [command]
    if command in ("formula", "spec"):
        argv.append(data.draw(st.one_of(JUNK_TEXT, files, st.sampled_from(["vit_ti16", "swin_t"]))))
    for _ in range(data.draw(st.integers(0, 3))):
        option = data.draw(st.sampled_from(OPTIONS[command] or ["--latex"]))
        argv.append(option)
        if option != "--latex":
            argv.append(data.draw(st.one_of(JUNK_TEXT, files)) if option != "-o" else str(folder / "out.txt"))
    if command == "profile":
        argv += ["--predict-only", "--hardware", "cpu"]
    if command == "compare" and "-r" not in argv:
        argv += ["-r", "64"]
    before = sorted(os.listdir(Path.cwd()))
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code, out, err = run(capsys, *argv)
    finally:
        os.chdir(cwd)
    assert code == 0 or one_line_error(code, err), (argv, code, err)
    assert sorted(os.listdir(Path.cwd())) == before


@settings(max_examples=80, deadline=None)
@given(model=st.one_of(JUNK_TEXT, st.integers(), st.floats(), st.none(), st.lists(st.integers(), max_size=2)),
       res=st.one_of(JUNK_TEXT, st.integers(-5, 10**6), st.floats(), st.none(), st.tuples(st.integers(), st.text())),
       batch=st.one_of(st.integers(-2, 4), st.floats(), st.text(max_size=3), st.none()),
       dtype=st.one_of(st.sampled_from(["fp32", "bf16", "fp64", ""]), st.integers(), st.none()))
def test_junk_library_calls_raise_only_vitcost_errors(model, res, batch, dtype):
    for call in (lambda: vitcost.estimate(model, res, batch, dtype),
                 lambda: vitcost.compare(model, res, batch, dtype),
                 lambda: vitcost.formula(model),
                 lambda: vitcost.parse_design(model)):
        try:
            call()
        except VitcostError as e:
            assert str(e) and "\n" not in str(e)


# --- second round: crashes and unclear messages --------------------------------------------------------

def _spec_file(tmp_path, name: str, text: str | bytes) -> str:
    p = tmp_path / name
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(p)


@pytest.mark.parametrize("make,needle", [
    (lambda t: "vit_b16:mlp_ratio=nan", "finite"),
    (lambda t: "vit_b16:mlp_ratio=inf", "finite"),
    (lambda t: _spec_file(t, "a.json", '{"family": "vit", "dim": 64, "depth": 2, "heads": 2, "mlp_ratio": NaN}'),
     "finite"),
    (lambda t: _spec_file(t, "a.toml", 'family = "vit"\ndim = 64\ndepth = 2\nheads = 2\nmlp_ratio = inf\n'), "finite"),
    (lambda t: _spec_file(t, "deep.json", "[" * 5000 + "]" * 5000), "too deeply"),
    (lambda t: _spec_file(t, "deep.toml", "a = " + "[" * 5000 + "]" * 5000), "too deeply"),
    (lambda t: _spec_file(t, "bom.toml", b"\xef\xbb\xbffamily = 'vit'\n"), "byte-order mark"),
    (lambda t: _spec_file(t, "dup.json", '{"family": "vit", "dim": 64, "dim": 128}'), "'dim' twice (64 and 128)"),
    (lambda t: "swin_t:window=7.0", "whole number"),
    (lambda t: "vit_b16:patch=8,patch=4", "patch=8 and patch=4"),
])
def test_spec_inputs_are_one_line(make, needle, capsys, tmp_path):
    code, _, err = run(capsys, "compare", "-m", make(tmp_path), "-r", "224")
    assert one_line_error(code, err) and needle in err, err


def test_a_nan_ratio_in_the_library_is_a_spec_error():
    for bad in (float("nan"), float("inf")):
        with pytest.raises(VitcostError, match="finite"):
            vitcost.ViTSpec(dim=64, depth=2, heads=2, mlp_ratio=bad)


@pytest.mark.parametrize("argv,needle", [
    (["compare", "-m", "vit_b16:patch=8", "--set", "patch=4"], "patch=8 and patch=4"),
    (["compare", "-m", "vit_b16", "--set", "patch=8", "--set", "patch=4"], "patch=8 and patch=4"),
    (["compare", "-m", "vit_b16", "--set", "vit_b16:patch=8", "--set", "patch=4"], "patch=8 and patch=4"),
    (["compare", "-m", "vit_b16", "--set", ""], "empty"),
    (["spec", "vit"], "vit_b16"),
    (["savings", "vit"], "is a family"),
    (["profile", "-m", "vit_ti16", "-r", "32", "--device", "cpu", "--threads", "100000"], "cores"),
    (["profile", "-m", "vit_ti16", "-r", "32", "--predict-only", "--threads", "100000"], "cores"),
    (["check", "-m", "vit_ti16", "--tol", "nan"], "finite"),
    (["check", "--module", "exits:build", "--input", "1x3x8x8"], "sys.exit(0)"),
    (["check", "--module", "sub/exits.py:build", "--input", "1x3x8x8"], "sub.exits:build"),
])
def test_second_round_inputs_are_one_line(argv, needle, capsys, monkeypatch, tmp_path):
    (tmp_path / "exits.py").write_text("import sys\n\ndef build():\n    sys.exit(0)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, _, err = run(capsys, *argv)
    assert one_line_error(code, err) and needle in err, err
    assert "vitcost: counting" not in err  # refused before any work


def test_savings_of_a_pixel_preset_leaves_linear_attention_out_and_says_why(capsys):
    code, out, err = run(capsys, "savings", "igpt_s")
    assert code == 0, err
    assert "linear attention: the pixel family has no attention option" in out


def test_profile_train_of_a_net_that_cannot_train_at_a_size_is_a_skipped_row(capsys):
    """ResNet-50 at 32 px ends in a 1x1 map: train-mode BatchNorm needs more than one value per channel."""
    import json

    code, out, err = run(capsys, "profile", "-m", "resnet50", "-r", "32", "--device", "cpu", "--mode", "train",
                         "-f", "json")
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["status"] == "skipped" and "cannot train" in row["note"]


def test_compare_refuses_no_models_and_presets_are_read_only():
    for bad in ({}, [], ()):
        with pytest.raises(VitcostError, match="non-empty"):
            vitcost.compare(bad)
    with pytest.raises(TypeError):
        vitcost.PRESETS["vit_b16"] = None


def test_a_window_larger_than_the_grid_is_said():
    """A ViT window larger than its token grid pads (as SAM does) and the table says so; 224 px with
    patch 16 is a 14x14 grid."""
    out = subprocess.run([*VITCOST, "compare", "-m", "vit_b16:window=300,class_tokens=0", "-r", "224"],
                         capture_output=True, text=True)
    assert out.returncode == 0
    assert "window 300 is larger than its token grid (14x14 at 224)" in " ".join(out.stdout.split())


def test_a_checkpoint_interval_longer_than_the_model_names_the_block_count():
    out = subprocess.run([*VITCOST, "compare", "--mode", "train", "-m", "vit_b16", "-r", "224", "--checkpoint",
                          "1000"], capture_output=True, text=True)
    assert out.returncode == 2 and out.stderr.count("\n") == 1
    assert "vit_b16 has 12 blocks" in out.stderr


@pytest.mark.parametrize("option", ["--check", "--profile"])
def test_a_folder_given_as_evidence_is_named_a_folder(tmp_path, option):
    out = subprocess.run([*VITCOST, "report", option, str(tmp_path), "-o", str(tmp_path / "r.html")],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "is a folder" in out.stderr and not (tmp_path / "r.html").exists()


def test_savings_prints_one_table_per_size():
    out = subprocess.run([*VITCOST, "savings", "vit_ti16", "--res", "224", "448"], capture_output=True, text=True)
    assert out.returncode == 0
    assert out.stdout.count("vitcost savings — vit_ti16 at 224,") == 1
    assert out.stdout.count("vitcost savings — vit_ti16 at 448,") == 1
    rows = json.loads(subprocess.run([*VITCOST, "savings", "vit_ti16", "-r", "448", "224", "-f", "json"],
                                     capture_output=True, text=True, check=True).stdout)
    assert [r["res"] for r in rows if r["technique"] == "baseline"] == [224, 448]
